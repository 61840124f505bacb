// The device model behind one interface, whichever executor runs it: the
// bindings (bindings/device.cpp) hold a DeviceModelAPI<T> and never see the
// executor. make_device_model builds one: on the GPU (device.cu, CUDA
// builds) or on the host executor (device_host.cpp), whose runs check the
// device model's code against the CPU's model on a machine without a GPU.
// Arrays are host arrays the bindings have checked; parameters, gradients
// and optimizer buffers live in the model's memory.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "../beam.hpp"
#include "../common.hpp"
#include "../dispatch.hpp"
#include "../draw.hpp"
#include "../dropout.hpp"
#include "../memory.hpp"
#include "../opt_spec.hpp"

namespace pcr {

// The device's memory cannot hold what a call needs (Python's MemoryError,
// as for a model too large for the host).
struct DeviceMemoryError : TooLarge {
  using TooLarge::TooLarge;
};

template <typename T>
class DeviceModelAPI {
 public:
  virtual ~DeviceModelAPI() = default;
  virtual idx num_params() const = 0;
  virtual void set_params(const T* host) = 0;
  virtual void get_params(T* host) = 0;
  virtual void get_grads(T* host) = 0;
  // Optimizer buffer k (0..2): absent until an update needs it (zeros then).
  virtual bool has_opt_buffer(int k) const = 0;
  virtual void set_opt_buffer(int k, const T* host) = 0;
  virtual void get_opt_buffer(int k, T* host) = 0;
  virtual void forward(const std::int32_t* x, idx B, idx Tn, const T* state_in, T* state_out,
                       T* logits, bool train, std::uint64_t seed) = 0;
  virtual double loss(const std::int32_t* x, const std::int32_t* y, idx B, idx Tn,
                      const T* state_in, T* state_out, bool train, std::uint64_t seed,
                      double* stream_loss) = 0;
  virtual double forward_backward(const std::int32_t* x, const std::int32_t* y, idx B, idx Tn,
                                  const T* state_in, T* state_out, T* dstate, bool train,
                                  std::uint64_t seed, MaskRows rows) = 0;
  virtual double grad_sum_squares() = 0;
  virtual void optimizer_update(OptSpec<T>& o, double lr, double grad_norm) = 0;
  virtual idx train_steps(OptSpec<T>& o, const std::int32_t* xs, const std::int32_t* ys, idx K,
                          idx B, idx Tn, T* state, bool train, const std::uint64_t* seeds,
                          const double* lrs, double* losses, double* norms,
                          StepStatus* status) = 0;
  // The generation loops and the looks inside, as the CPU model's
  // (sampling.hpp, Model::trace, Model::gradient_flow); host arrays.
  virtual idx sample(T* state, T* logits, idx B, idx n, std::int32_t* out,
                     const DrawOptions& o, std::uint64_t seed, std::uint64_t position,
                     bool uniform_first, const std::int32_t* stop, idx m, std::int32_t* window,
                     std::uint8_t* live, bool feed_last) = 0;
  virtual void beam_search(const T* logits, const T* state, idx length, idx K,
                           double length_penalty, const std::int32_t* stop, idx m,
                           const Repeats& rep, std::int32_t* best, idx* best_len,
                           double* best_score, double* best_logp) = 0;
  virtual void trace(const std::int32_t* x, idx B, idx Tn, const T* state_in, T* state_out,
                     T* hidden, T* cell_out, T* gates, T* logits) = 0;
  virtual double gradient_flow(const std::int32_t* x, const std::int32_t* y, idx B, idx Tn,
                               const T* state_in, double* norms) = 0;
};

// offsets: the CPU model's parameter offsets in its layout's order.
template <typename T>
std::unique_ptr<DeviceModelAPI<T>> make_host_device_model(CellKind cell, idx V, idx E, idx H,
                                                          idx L, const Dropouts& drop,
                                                          const std::vector<idx>& offsets);
#if PYCHARRNN_HAVE_CUDA
template <typename T>
std::unique_ptr<DeviceModelAPI<T>> make_cuda_device_model(CellKind cell, idx V, idx E, idx H,
                                                          idx L, const Dropouts& drop,
                                                          const std::vector<idx>& offsets);
#endif

// The executor-independent half of the interface, over DeviceModel<T, X>.
template <typename T, typename Model, typename Exec>
class DeviceModelImpl final : public DeviceModelAPI<T> {
 public:
  template <typename... A>
  explicit DeviceModelImpl(A&&... a) : m_(exec_, std::forward<A>(a)...) {}
  idx num_params() const override { return m_.num_params(); }
  void set_params(const T* h) override {
    std::lock_guard<std::mutex> lock(mu_);
    m_.set_params(h);
  }
  void get_params(T* h) override {
    std::lock_guard<std::mutex> lock(mu_);
    m_.get_params(h);
  }
  void get_grads(T* h) override {
    std::lock_guard<std::mutex> lock(mu_);
    m_.get_grads(h);
  }
  bool has_opt_buffer(int k) const override { return m_.has_opt_buffer(k); }
  void set_opt_buffer(int k, const T* h) override {
    std::lock_guard<std::mutex> lock(mu_);
    m_.set_opt_buffer(k, h);
  }
  void get_opt_buffer(int k, T* h) override {
    std::lock_guard<std::mutex> lock(mu_);
    m_.get_opt_buffer(k, h);
  }
  void forward(const std::int32_t* x, idx B, idx Tn, const T* s0, T* s1, T* logits, bool train,
               std::uint64_t seed) override {
    std::lock_guard<std::mutex> lock(mu_);
    m_.forward(x, B, Tn, s0, s1, logits, train, seed);
  }
  double loss(const std::int32_t* x, const std::int32_t* y, idx B, idx Tn, const T* s0, T* s1,
              bool train, std::uint64_t seed, double* sl) override {
    std::lock_guard<std::mutex> lock(mu_);
    return m_.loss(x, y, B, Tn, s0, s1, train, seed, sl);
  }
  double forward_backward(const std::int32_t* x, const std::int32_t* y, idx B, idx Tn,
                          const T* s0, T* s1, T* ds, bool train, std::uint64_t seed,
                          MaskRows rows) override {
    std::lock_guard<std::mutex> lock(mu_);
    return m_.forward_backward(x, y, B, Tn, s0, s1, ds, train, seed, rows);
  }
  double grad_sum_squares() override {
    std::lock_guard<std::mutex> lock(mu_);
    return m_.grad_sum_squares();
  }
  void optimizer_update(OptSpec<T>& o, double lr, double norm) override {
    std::lock_guard<std::mutex> lock(mu_);
    m_.optimizer_update(o, lr, norm);
  }
  idx train_steps(OptSpec<T>& o, const std::int32_t* xs, const std::int32_t* ys, idx K, idx B,
                  idx Tn, T* state, bool train, const std::uint64_t* seeds, const double* lrs,
                  double* losses, double* norms, StepStatus* status) override {
    std::lock_guard<std::mutex> lock(mu_);
    return m_.train_steps(o, xs, ys, K, B, Tn, state, train, seeds, lrs, losses, norms, status);
  }
  idx sample(T* state, T* logits, idx B, idx n, std::int32_t* out, const DrawOptions& o,
             std::uint64_t seed, std::uint64_t position, bool uniform_first,
             const std::int32_t* stop, idx m, std::int32_t* window, std::uint8_t* live,
             bool feed_last) override {
    std::lock_guard<std::mutex> lock(mu_);
    return m_.sample(state, logits, B, n, out, o, seed, position, uniform_first, stop, m, window,
                     live, feed_last);
  }
  void beam_search(const T* logits, const T* state, idx length, idx K, double length_penalty,
                   const std::int32_t* stop, idx m, const Repeats& rep, std::int32_t* best,
                   idx* best_len, double* best_score, double* best_logp) override {
    std::lock_guard<std::mutex> lock(mu_);
    m_.beam_search(logits, state, length, K, length_penalty, stop, m, rep, best, best_len,
                   best_score, best_logp);
  }
  void trace(const std::int32_t* x, idx B, idx Tn, const T* s0, T* s1, T* hidden, T* cell_out,
             T* gates, T* logits) override {
    std::lock_guard<std::mutex> lock(mu_);
    m_.trace(x, B, Tn, s0, s1, hidden, cell_out, gates, logits);
  }
  double gradient_flow(const std::int32_t* x, const std::int32_t* y, idx B, idx Tn,
                       const T* s0, double* norms) override {
    std::lock_guard<std::mutex> lock(mu_);
    return m_.gradient_flow(x, y, B, Tn, s0, norms);
  }

 private:
  std::mutex mu_;  // one call at a time on the model's buffers (the GIL is released)
  Exec exec_;      // declared before m_: constructed first, destroyed last
  Model m_;
};

}  // namespace pcr
