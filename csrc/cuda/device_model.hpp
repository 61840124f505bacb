// The model on a device: model.hpp's layout and order of operations, with
// the parameters, gradients, optimizer state and every activation in the
// device's memory. Only the ids of a batch go in and only the scalars the
// caller logs (and the states and logits it asks for) come out.
//
// The orchestration is written once against an executor X, which owns the
// memory and runs two kinds of work:
//   X::Buffer<T>                 an owning array in the executor's memory
//   x.each(n, f)                 f(i) for every i in [0, n), in any order
//                                (a kernel launch: one thread per i)
//   x.gemm_cm(...)               a column-major product with cuBLAS's
//                                arguments (cublas<t>gemm)
//   x.upload / download / copy   host -> device, device -> host, device -> device
//   x.sum_squares(a, n)          sum of a[i]^2 in double
// The CUDA executor (cuda/exec_cuda.cuh) launches kernels and calls cuBLAS;
// the host executor (cuda/exec_host.hpp) runs the same functors in a loop and
// a reference column-major product, so the CPU's tests check this file, every
// functor and the row-major -> column-major mapping of every product against
// the CPU's model (tests/test_device.py) on a machine without a GPU.
//
// Every functor's body is pointwise.hpp's arithmetic or a plain sum; dropout
// masks come from rng.hpp's hash, so a seed gives the CPU's masks. Rows are
// time-major (r = t * B + b), as in model.hpp. Compiled inside
// pcr::PCR_ISA_NS (one namespace per executor: "dev_host" and "cuda_ns").
#pragma once

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "../beam.hpp"
#include "../dispatch.hpp"
#include "../draw.hpp"
#include "../dropout.hpp"
#include "../pointwise.hpp"
#include "../rng.hpp"
#include "../opt_spec.hpp"

namespace pcr {
namespace PCR_ISA_NS {
namespace dev {

using i32 = std::int32_t;
using u64 = std::uint64_t;

// ------------------------------------------------------------ functors
// out[i] = row[i % cols]: a row (a bias) repeated over [rows, cols].
template <typename T>
struct FillRows {
  T* out;
  const T* row;
  idx cols;
  PCR_HD void operator()(idx i) const { out[i] = row[i % cols]; }
};

template <typename T>
struct Fill {
  T* out;
  T value;
  PCR_HD void operator()(idx i) const { out[i] = value; }
};

// out [N, width] = table[ids[r], :] (the embedding lookup).
template <typename T>
struct Gather {
  T* out;
  const T* table;
  const i32* ids;
  idx width;
  PCR_HD void operator()(idx i) const {
    const idx r = i / width, j = i - r * width;
    out[i] = table[idx(ids[r]) * width + j];
  }
};

// One-hot input: xp [N, GH] = b + W[:, ids[r]] (W [GH, V]).
template <typename T>
struct OnehotForward {
  T* xp;
  const T* W;
  const T* b;
  const i32* ids;
  idx GH, V;
  PCR_HD void operator()(idx i) const {
    const idx r = i / GH, g = i - r * GH;
    xp[i] = b[g] + W[g * V + idx(ids[r])];
  }
};

// dropout.hpp's apply_mask, one element per thread: the key of element i is
// its own index, or with `locked` that of the same (b, j) at step 0; with a
// part of a larger batch, that row's key in the whole batch.
template <typename T>
struct ApplyMask {
  const T* in;
  T* mask;
  T* out;
  double p;
  T keep;
  u64 seed, stream;
  idx B, width, per_step, first, total;
  bool locked, part;
  PCR_HD void operator()(idx i) const {
    const idx k = locked ? i % per_step : i;
    const T m = hash_uniform(seed, stream, mask_key(k, width, B, first, total, part)) >= p
                    ? keep
                    : T(0);
    mask[i] = m;
    out[i] = in[i] * m;
  }
};

// dropout.hpp's drop_weights: out = W * mask, from stream kWeightStream + l.
template <typename T>
struct DropWeights {
  const T* W;
  T* mask;
  T* out;
  double p;
  T keep;
  u64 seed, stream;
  PCR_HD void operator()(idx i) const {
    const T m = hash_uniform(seed, stream, u64(i)) >= p ? keep : T(0);
    mask[i] = m;
    out[i] = W[i] * m;
  }
};

// The embedding table's row mask [V] (drop_embedding_rows).
template <typename T>
struct RowMask {
  T* mask;
  double p;
  T keep;
  u64 seed;
  PCR_HD void operator()(idx v) const {
    mask[v] = hash_uniform(seed, kEmbeddingStream, u64(v)) >= p ? keep : T(0);
  }
};

// rows [N, width] *= mask[ids[r]].
template <typename T>
struct ScaleRowsById {
  T* rows;
  const T* mask;
  const i32* ids;
  idx width;
  PCR_HD void operator()(idx i) const { rows[i] *= mask[ids[i / width]]; }
};

template <typename T>
struct MultiplyBy {
  T* a;
  const T* m;
  PCR_HD void operator()(idx i) const { a[i] *= m[i]; }
};

template <typename T>
struct AddTo {
  T* a;
  const T* b;
  PCR_HD void operator()(idx i) const { a[i] += b[i]; }
};

// One step of a layer, unit (b, j) per thread (cells.hpp's loops).
template <typename T>
struct CellForward {
  int kind;
  idx H, GH;
  T* gates;
  const T* hp;
  const T* hprev;
  T* h;
  const T* cprev;
  T* c;
  T* aux;
  PCR_HD void operator()(idx u) const {
    const idx b = u / H, j = u - b * H;
    T* g = gates + b * GH;
    const T* p = hp + b * GH;
    if (kind == 0) {
      h[u] = g[j] = rnn_tanh_forward(g[j], p[j]);
    } else if (kind == 1) {
      h[u] = g[j] = rnn_relu_forward(g[j], p[j]);
    } else if (kind == 2) {
      gru_forward_at(g, p, hprev + b * H, h + b * H, aux + b * H, H, j);
    } else {
      lstm_forward_at(g, p, cprev + b * H, c + b * H, h + b * H, H, j);
    }
  }
};

template <typename T>
struct CellBackward {
  int kind;
  idx H, GH;
  T* gates;
  T* dhp;
  const T* hprev;
  const T* cprev;
  const T* c;
  const T* aux;
  T* dh;
  T* dc;
  PCR_HD void operator()(idx u) const {
    const idx b = u / H, j = u - b * H;
    T* g = gates + b * GH;
    if (kind == 0) {
      g[j] = rnn_tanh_backward(dh[u], g[j]);
    } else if (kind == 1) {
      g[j] = rnn_relu_backward(dh[u], g[j]);
    } else if (kind == 2) {
      gru_backward_at(g, dhp + b * GH, aux + b * H, hprev + b * H, dh + b * H, H, j);
    } else {
      lstm_backward_at(g, c + b * H, cprev + b * H, dh + b * H, dc + b * H, H, j);
    }
  }
};

// One row of the fused softmax cross-entropy.
template <typename T>
struct SoftmaxXent {
  T* logits;
  const i32* targets;
  double* row_loss;
  idx V;
  T scale;
  bool grad;
  PCR_HD void operator()(idx r) const {
    row_loss[r] = softmax_xent_row(logits + r * V, V, idx(targets[r]), scale, grad);
  }
};

// Sum over the rows with each id: out[v, j] (or out[j, v] with `transposed`)
// = sum of d[pos[k], j] for k in [start[v], start[v + 1]), the rows of id v
// in increasing order (the CPU's order of addition). The one-hot input's
// dW_ih [GH, V] and the embedding's dtable [V, E].
template <typename T>
struct SumById {
  T* out;
  const T* d;
  const i32* start;
  const i32* pos;
  idx width, V;
  bool transposed;
  PCR_HD void operator()(idx i) const {
    const idx v = i / width, j = i - v * width;
    T s = T(0);
    for (i32 k = start[v]; k < start[v + 1]; ++k) s += d[idx(pos[k]) * width + j];
    out[transposed ? j * V + v : i] = s;
  }
};

// One element of an optimizer's update (optim.hpp's loops, one per thread):
// the options are uniform over the launch, so the branches do not diverge.
template <typename T>
struct OptimizerUpdate {
  int kind;  // OptKind
  T* p;
  const T* g;
  T *b0, *b1, *b2;
  T scale, clip, wd;
  bool wd_l2, decoupled, amsgrad, momentum_on, nesterov, first, centered, eps_inside;
  T lr, momentum, damp1, alpha, a1, eps, b2c, one_b1, one_b2, bc2_sqrt, step_size, decay;
  PCR_HD void operator()(idx i) const {
    T none = 0, none2 = 0;
    if (kind == int(OptKind::SGD)) {
      const T gi = wd_l2 ? grad_in<T, true>(g[i], p[i], scale, clip, wd)
                         : grad_in<T, false>(g[i], p[i], scale, clip, wd);
      if (momentum_on)
        sgd_element<T, true>(gi, p[i], b0[i], lr, momentum, damp1, nesterov, first);
      else
        sgd_element<T, false>(gi, p[i], none, lr, momentum, damp1, nesterov, first);
    } else if (kind == int(OptKind::ADAGRAD)) {
      const T gi = wd_l2 ? grad_in<T, true>(g[i], p[i], scale, clip, wd)
                         : grad_in<T, false>(g[i], p[i], scale, clip, wd);
      if (eps_inside)
        adagrad_element<T, true>(gi, p[i], b0[i], lr, eps);
      else
        adagrad_element<T, false>(gi, p[i], b0[i], lr, eps);
    } else if (kind == int(OptKind::RMSPROP)) {
      const T gi = wd_l2 ? grad_in<T, true>(g[i], p[i], scale, clip, wd)
                         : grad_in<T, false>(g[i], p[i], scale, clip, wd);
      T& ga = centered ? b1[i] : none;
      T& bf = momentum_on ? b2[i] : none2;
      if (centered && momentum_on)
        rmsprop_element<T, true, true>(gi, p[i], b0[i], ga, bf, lr, alpha, a1, eps, momentum);
      else if (centered)
        rmsprop_element<T, true, false>(gi, p[i], b0[i], ga, bf, lr, alpha, a1, eps, momentum);
      else if (momentum_on)
        rmsprop_element<T, false, true>(gi, p[i], b0[i], ga, bf, lr, alpha, a1, eps, momentum);
      else
        rmsprop_element<T, false, false>(gi, p[i], b0[i], ga, bf, lr, alpha, a1, eps, momentum);
    } else {
      const T gi = wd_l2 ? grad_in<T, true>(g[i], p[i], scale, clip, wd)
                         : grad_in<T, false>(g[i], p[i], scale, clip, wd);
      T& vm = amsgrad ? b2[i] : none;
      if (decoupled && amsgrad)
        adam_element<T, true, true>(gi, p[i], b0[i], b1[i], vm, step_size, b2c, one_b1, one_b2,
                                    bc2_sqrt, eps, decay);
      else if (decoupled)
        adam_element<T, true, false>(gi, p[i], b0[i], b1[i], vm, step_size, b2c, one_b1,
                                     one_b2, bc2_sqrt, eps, decay);
      else if (amsgrad)
        adam_element<T, false, true>(gi, p[i], b0[i], b1[i], vm, step_size, b2c, one_b1,
                                     one_b2, bc2_sqrt, eps, decay);
      else
        adam_element<T, false, false>(gi, p[i], b0[i], b1[i], vm, step_size, b2c, one_b1,
                                      one_b2, bc2_sqrt, eps, decay);
    }
  }
};

// a[i] = 0 before start, a[i] * factor from there (gradient_flow: the
// gradient of the last step's mean loss from that of the mean over all).
template <typename T>
struct KeepFrom {
  T* a;
  idx start;
  T factor;
  PCR_HD void operator()(idx i) const { a[i] = i < start ? T(0) : a[i] * factor; }
};

// One step of row b of the sampling loop (draw.hpp's sample_step, the CPU's
// arithmetic, with the device's selection): out [B, n] column i; fed [B]
// the ids the next step reads (a stopped row keeps its last); error set for
// non-finite logits. Scratch z, p, c, order: [B, V] each.
template <typename T>
struct DrawRows {
  const T* logits;
  idx V;
  DrawOptions o;
  u64 seed, pos;
  bool uniform_first;
  const i32* stop;
  idx m;
  i32* window;
  std::uint8_t* live;
  double *z, *p, *c;
  idx* order;
  i32* out;
  idx n, i;
  i32* fed;
  i32* error;
  PCR_HD void operator()(idx b) const {
    const idx r = b * V;
    const i32 id = sample_step<true>(logits + r, V, o, seed, b, pos, uniform_first, stop, m,
                                     window + b * m, live[b], z + r, p + r, c + r, order + r);
    if (id == kNonFinite) {
      *error = 1;
      return;
    }
    out[b * n + i] = id;
    if (id >= 0) fed[b] = id;
  }
};

// C [M, N] = alpha op(A) op(B) + beta C, all row-major (model.hpp's
// products), as the column-major product C^T = op(B)^T op(A)^T.
template <typename X, typename T>
void gemm(X& x, bool ta, bool tb, idx M, idx N, idx K, T alpha, const T* A, idx lda, const T* B,
          idx ldb, T beta, T* C, idx ldc) {
  x.gemm_cm(tb, ta, N, M, K, alpha, B, ldb, A, lda, beta, C, ldc);
}

// ---------------------------------------------------------------- model
template <typename T, typename X>
class DeviceModel {
 public:
  template <typename U>
  using Buf = typename X::template Buffer<U>;
  template <typename U>
  using HostBuf = typename X::template HostBuffer<U>;

  const CellKind cell;
  const idx V, E, H, L;
  const Dropouts drop;
  const int G;

  // The layout is the CPU model's (the same names, shapes and offsets).
  DeviceModel(X& exec, CellKind cell_, idx V_, idx E_, idx H_, idx L_, const Dropouts& drop_,
              const std::vector<idx>& offsets)
      : cell(cell_), V(V_), E(E_), H(H_), L(L_), drop(drop_), G(gate_count(cell_)), x_(exec) {
    idx k = 0;
    if (E > 0) off_emb_ = offsets[k++];
    for (idx l = 0; l < L; ++l) {
      off_wih_.push_back(offsets[k++]);
      off_whh_.push_back(offsets[k++]);
      off_bih_.push_back(offsets[k++]);
      off_bhh_.push_back(offsets[k++]);
    }
    off_decw_ = offsets[k++];
    off_decb_ = offsets[k++];
    n_ = off_decb_ + V;
    P_.resize(n_);
    Gbuf_.resize(n_);
    x_.each(n_, Fill<T>{P_.data(), T(0)});
    x_.each(n_, Fill<T>{Gbuf_.data(), T(0)});
  }

  idx num_params() const { return n_; }
  idx state_slots() const { return has_cell_state(cell) ? 2 : 1; }
  T* params() { return P_.data(); }
  T* grads() { return Gbuf_.data(); }
  X& exec() { return x_; }

  void set_params(const T* host) { x_.upload(P_.data(), host, bytes(n_)); }
  void get_params(T* host) { x_.download(host, P_.data(), bytes(n_)); }
  void get_grads(T* host) { x_.download(host, Gbuf_.data(), bytes(n_)); }

  // Optimizer buffer k (0..2) of n elements, made (zero) on first use.
  T* opt_buffer(int k) {
    if (static_cast<idx>(opt_[k].size()) != n_) {
      opt_[k].resize(n_);
      x_.each(n_, Fill<T>{opt_[k].data(), T(0)});
    }
    return opt_[k].data();
  }
  bool has_opt_buffer(int k) const { return static_cast<idx>(opt_[k].size()) == n_; }
  void set_opt_buffer(int k, const T* host) { x_.upload(opt_buffer(k), host, bytes(n_)); }
  void get_opt_buffer(int k, T* host) { x_.download(host, opt_buffer(k), bytes(n_)); }

  // As Model::forward: x [B, Tn] host ids (checked by the caller), states
  // [S, L, B, H] on the host, logits_out [B, Tn, V] on the host or null.
  void forward(const i32* x, idx B, idx Tn, const T* state_in, T* state_out, T* logits_out,
               bool train, u64 seed) {
    prepare(B, Tn, x, nullptr);
    load_state(state_in);
    run_forward(train, seed, {});
    save_state(state_out);
    if (logits_out) download_batch_first(logits_.data(), V, logits_out);
  }

  // As Model::loss. stream_loss [B] or null.
  double loss(const i32* x, const i32* y, idx B, idx Tn, const T* state_in, T* state_out,
              bool train, u64 seed, double* stream_loss) {
    prepare(B, Tn, x, y);
    load_state(state_in);
    run_forward(train, seed, {});
    save_state(state_out);
    const double l = xent(false);
    if (stream_loss) {
      for (idx b = 0; b < B; ++b) stream_loss[b] = 0;
      for (idx t = 0; t < Tn; ++t)
        for (idx b = 0; b < B; ++b) stream_loss[b] += row_loss_h_[t * B + b];
    }
    return l;
  }

  // As Model::forward_backward; the gradients stay on the device (grads()).
  double forward_backward(const i32* x, const i32* y, idx B, idx Tn, const T* state_in,
                          T* state_out, T* dstate, bool train, u64 seed, MaskRows rows) {
    prepare(B, Tn, x, y, true);
    load_state(state_in);
    const double l = fb(train, seed, rows, dstate);
    save_state(state_out);
    return l;
  }

  double grad_sum_squares() { return x_.sum_squares(Gbuf_.data(), n_); }
  double param_sum_squares() { return x_.sum_squares(P_.data(), n_); }

  // train_loop.hpp's optimizer_update on the device's buffers (o's buffer
  // pointers are ignored: the model's own are used).
  void optimizer_update(OptSpec<T>& o, double lr, double grad_norm) {
    o.step += 1;
    double scale = 1.0;
    if (o.clip_norm > 0) {
      const double coef = o.clip_norm / (grad_norm + 1e-6);
      if (coef < 1.0) scale = coef;
    }
    OptimizerUpdate<T> u{};
    u.kind = int(o.kind);
    u.p = P_.data();
    u.g = Gbuf_.data();
    const bool need[4][3] = {{o.momentum != 0, false, false},
                             {true, false, false},
                             {true, o.centered, o.momentum > 0},
                             {true, true, o.amsgrad}};
    T* b[3] = {nullptr, nullptr, nullptr};
    for (int k = 0; k < 3; ++k)
      if (need[int(o.kind)][k]) b[k] = opt_buffer(k);
    u.b0 = b[0];
    u.b1 = b[1];
    u.b2 = b[2];
    u.scale = T(scale);
    u.clip = o.clip_value > 0 ? T(o.clip_value) : T(INFINITY);
    u.wd = T(o.weight_decay);
    u.wd_l2 = o.weight_decay != 0 && !(o.kind == OptKind::ADAM && o.decoupled);
    u.decoupled = o.kind == OptKind::ADAM && o.decoupled && o.weight_decay != 0;
    u.amsgrad = o.amsgrad;
    u.momentum_on = o.kind == OptKind::SGD ? o.momentum != 0 : o.momentum > 0;
    u.nesterov = o.nesterov;
    u.first = o.step == 1;
    u.centered = o.centered;
    u.eps_inside = o.eps_inside;
    u.lr = T(lr);
    u.momentum = T(o.momentum);
    u.damp1 = T(1) - T(o.dampening);
    u.alpha = T(o.alpha);
    u.a1 = T(1) - T(o.alpha);
    u.eps = T(o.eps);
    if (o.kind == OptKind::ADAGRAD)
      u.lr = T(lr / (1 + static_cast<double>(o.step - 1) * o.lr_decay));
    if (o.kind == OptKind::ADAM) {
      const double t = static_cast<double>(o.step);
      const double bc1 = 1 - std::pow(o.beta1, t), bc2 = 1 - std::pow(o.beta2, t);
      const T lrT = T(lr);
      u.step_size = T(double(lrT) / bc1);
      u.bc2_sqrt = T(std::sqrt(bc2));
      u.decay = T(1) - lrT * u.wd;
      u.one_b1 = T(1) - T(o.beta1);
      u.one_b2 = T(1) - T(o.beta2);
      u.b2c = T(o.beta2);
    }
    x_.each(n_, u);
  }

  // train_loop.hpp's train_steps with everything on the device: the state
  // [S, L, B, H] is uploaded once and downloaded at the end.
  idx train_steps(OptSpec<T>& opt, const i32* xs, const i32* ys, idx K, idx B, idx Tn, T* state,
                  bool train, const u64* seeds, const double* lrs, double* losses,
                  double* norms, StepStatus* status) {
    *status = StepStatus::OK;
    idx done = 0;
    for (idx k = 0; k < K; ++k) {
      prepare(B, Tn, xs + k * B * Tn, ys + k * B * Tn, true);
      if (k == 0) load_state(state);
      const double l = fb(train, train ? seeds[k] : 0, {}, nullptr);
      losses[k] = l;
      if (!std::isfinite(l)) {
        *status = StepStatus::LOSS;
        break;
      }
      const double norm = std::sqrt(grad_sum_squares());
      norms[k] = norm;
      if (!std::isfinite(norm)) {
        *status = StepStatus::GRAD_NORM;
        break;
      }
      optimizer_update(opt, lrs[k], norm);
      if (!std::isfinite(param_sum_squares())) {
        *status = StepStatus::PARAMS;
        break;
      }
      carry_state();
      done = k + 1;
    }
    save_initial_state(state);  // the state after the last completed step
    return done;
  }

  // sampling.hpp's sample_loop with the model, the draws and the stop
  // matching on the device: state [S, L, B, H], logits [B, V], out [B, n],
  // window [B, m], live [B] are host arrays, copied in once and out once.
  // Without stop ids the n steps run without a wait; with them the live
  // flags come back after each step, to end when every row has stopped.
  idx sample(T* state, T* logits, idx B, idx n, i32* out, const DrawOptions& o, u64 seed,
             u64 position, bool uniform_first, const i32* stop, idx m, i32* window,
             std::uint8_t* live, bool feed_last) {
    plan(B, 1);
    const idx BV = B * V;
    load_state(state);
    x_.upload(logits_.data(), logits, bytes(BV));
    x_.each(B, Fill<i32>{ids_.data(), 0});
    draw_.resize(3 * BV);
    order_.resize(BV);
    out_.resize(B * n);
    stop_.resize(m > 0 ? m : 1);
    window_.resize(m > 0 ? B * m : 1);
    live_.resize(B);
    error_.resize(1);
    x_.upload(out_.data(), out, static_cast<size_t>(B * n) * sizeof(i32));
    x_.upload(stop_.data(), stop, static_cast<size_t>(m) * sizeof(i32));
    x_.upload(window_.data(), window, static_cast<size_t>(B * m) * sizeof(i32));
    x_.upload(live_.data(), live, static_cast<size_t>(B));
    x_.each(1, Fill<i32>{error_.data(), 0});
    bool any = false;
    for (idx b = 0; b < B; ++b) any = any || live[b];
    DrawRows<T> d{logits_.data(), V, o, seed, 0, uniform_first, stop_.data(), m,
                  m > 0 ? window_.data() : nullptr, live_.data(), draw_.data(),
                  draw_.data() + BV, draw_.data() + 2 * BV, order_.data(), out_.data(), n, 0,
                  ids_.data(), error_.data()};
    idx steps = n;
    for (idx i = 0; i < n; ++i) {
      d.pos = position + static_cast<u64>(i);
      d.i = i;
      x_.each(B, d);
      if (m > 0) {
        x_.download(live, live_.data(), static_cast<size_t>(B));
        any = false;
        for (idx b = 0; b < B; ++b) any = any || live[b];
      }
      if (!any) {
        steps = i + 1;
        break;
      }
      if (i == n - 1 && !feed_last) break;
      run_forward(false, 0, {});
      carry_state();
    }
    i32 error = 0;
    x_.download(&error, error_.data(), sizeof(i32));
    if (error) non_finite_logits();
    x_.download(out, out_.data(), static_cast<size_t>(B * n) * sizeof(i32));
    x_.download(window, window_.data(), static_cast<size_t>(B * m) * sizeof(i32));
    x_.download(live, live_.data(), static_cast<size_t>(B));
    x_.download(logits, logits_.data(), bytes(BV));
    save_initial_state(state);
    return steps;
  }

  // sampling.hpp's beam search: the hypotheses' bookkeeping on the host,
  // their states and steps on the device; each step sends the parents and
  // ids (K each) and brings back K rows of logits. logits [V] and state
  // [S, L, 1, H] on the host.
  void beam_search(const T* logits0, const T* state0, idx length, idx K,
                   double length_penalty, const i32* stop, idx m, const Repeats& rep,
                   i32* best, idx* best_len, double* best_score, double* best_logp) {
    const idx SL = state_slots() * L;
    beam_state_.resize(SL * K * H);
    parent_.resize(K);
    x_.upload(beam_state_.data(), state0, bytes(SL * H));
    std::vector<i32> parent_h(static_cast<size_t>(K));
    std::vector<T> lg;
    auto advance = [&](const idx* parent, const i32* fed, idx B, idx B2) -> const T* {
      plan(B2, 1);
      for (idx b = 0; b < B2; ++b) parent_h[b] = static_cast<i32>(parent[b]);
      x_.upload(parent_.data(), parent_h.data(), static_cast<size_t>(B2) * sizeof(i32));
      x_.upload(ids_.data(), fed, static_cast<size_t>(B2) * sizeof(i32));
      const idx BH = B2 * H;
      for (idx sl = 0; sl < SL; ++sl)  // the chosen parents' states, in the new order
        x_.each(BH, Gather<T>{state_block(sl, 0), beam_state_.data() + sl * B * H,
                              parent_.data(), H});
      run_forward(false, 0, {});
      for (idx sl = 0; sl < SL; ++sl)
        x_.copy(beam_state_.data() + sl * BH, state_block(sl, 1), bytes(BH));
      lg.resize(static_cast<size_t>(B2 * V));
      x_.download(lg.data(), logits_.data(), bytes(B2 * V));
      return lg.data();
    };
    beam_search_loop(V, advance, logits0, length, K, length_penalty, stop, m, rep, best,
                     best_len, best_score, best_logp);
  }

  // As Model::trace: hidden, cell_out [L, B, Tn, H], gates [L, B, Tn, G*H],
  // logits [B, Tn, V] on the host (cell_out, gates null where the cell has
  // none).
  void trace(const i32* x, idx B, idx Tn, const T* state_in, T* state_out, T* hidden,
             T* cell_out, T* gates, T* logits) {
    prepare(B, Tn, x, nullptr);
    load_state(state_in);
    run_forward(false, 0, {});
    save_state(state_out);
    const idx N = B * Tn, BH = B * H, GH = G * H;
    for (idx l = 0; l < L; ++l) {
      download_batch_first(hs_[l].data() + BH, H, hidden + l * N * H);
      if (cell_out) download_batch_first(cs_[l].data() + BH, H, cell_out + l * N * H);
      if (gates) download_batch_first(xp_[l].data(), GH, gates + l * N * GH);
    }
    download_batch_first(logits_.data(), V, logits);
  }

  // As Model::gradient_flow: the mean over the B rows of the last step's
  // cross-entropy, and norms [L, Tn] (host) || d that / d h_t ||. The
  // gradients go to a scratch buffer: the model's own are left as they are.
  double gradient_flow(const i32* x, const i32* y, idx B, idx Tn, const T* state_in,
                       double* norms) {
    prepare(B, Tn, x, y, true);
    load_state(state_in);
    run_forward(false, 0, {});
    xent(true);
    const idx N = B * Tn, last = (Tn - 1) * B;
    x_.each(N * V, KeepFrom<T>{logits_.data(), last * V, T(Tn)});
    double loss = 0;
    for (idx r = last; r < N; ++r) loss += row_loss_h_[r];
    scratch_grads_.resize(n_);
    struct Reset {
      DeviceModel& m;
      ~Reset() {
        m.dh_norms_ = nullptr;
        m.grad_out_ = nullptr;
      }
    } reset{*this};
    dh_norms_ = norms;
    grad_out_ = scratch_grads_.data();
    run_backward(nullptr);
    return loss / double(B);
  }

 private:
  X& x_;
  idx n_ = 0, off_emb_ = -1, off_decw_ = 0, off_decb_ = 0;
  std::vector<idx> off_wih_, off_whh_, off_bih_, off_bhh_;
  Buf<T> P_, Gbuf_, opt_[3];
  // Activations for B_ x T_ (sized by prepare).
  std::vector<Buf<T>> xp_, hs_, cs_, aux_, din_, mask_, weff_, wmask_;
  Buf<T> emb_, hp_, dhp_, dh_, dc_, logits_, dout_, top_, top_mask_, emb_mask_, ones_;
  Buf<i32> ids_, tgt_, id_start_, id_pos_;
  Buf<double> row_loss_;
  // sample(): draw scratch [3, B, V], order [B, V], ids out [B, n], the stop
  // ids, windows [B, m], live flags [B], the error flag; beam_search():
  // the hypotheses' states [S, L, K, H] and parents [K]; gradient_flow():
  // its gradients.
  Buf<double> draw_;
  Buf<idx> order_;
  Buf<i32> out_, stop_, window_, error_, parent_;
  Buf<std::uint8_t> live_;
  Buf<T> beam_state_, scratch_grads_;
  double* dh_norms_ = nullptr;  // gradient_flow(): [L, Tn] recorded by run_backward
  T* grad_out_ = nullptr;       // where run_backward writes (null: the model's gradients)
  // What crosses each step, in host memory the executor chooses (pinned on a GPU).
  HostBuf<i32> ids_h_, tgt_h_, start_h_, pos_h_;
  HostBuf<double> row_loss_h_;
  std::vector<i32> next_h_;
  idx B_ = 0, T_ = 0;
  std::vector<char> in_dropped_;
  bool out_dropped_ = false, emb_dropped_ = false, w_dropped_ = false;

  static size_t bytes(idx n) { return static_cast<size_t>(n) * sizeof(T); }
  const T* P(idx off) { return P_.data() + off; }
  T* Gr(idx off) { return (grad_out_ ? grad_out_ : Gbuf_.data()) + off; }

  // Shape the activations for B x Tn (their contents are not kept when it changes).
  void plan(idx B, idx Tn) {
    if (B != B_ || Tn != T_) replan(B, Tn);
  }
  // Block t (of T_ + 1) of state slot sl = s * L + l: h (s = 0) or c (s = 1).
  T* state_block(idx sl, idx t) {
    const idx l = sl % L;
    return (sl < L ? hs_[l].data() : cs_[l].data()) + t * B_ * H;
  }

  // The ids of a call, time-major; with by_id (a backward pass follows) also
  // the rows of each id, for the sums by id.
  void prepare(idx B, idx Tn, const i32* x, const i32* y, bool by_id = false) {
    plan(B, Tn);
    const idx N = B * Tn;
    for (idx b = 0; b < B; ++b)
      for (idx t = 0; t < Tn; ++t) {
        ids_h_[t * B + b] = x[b * Tn + t];
        if (y) tgt_h_[t * B + b] = y[b * Tn + t];
      }
    for (idx i = 0; i < N; ++i)
      if (ids_h_[i] < 0 || ids_h_[i] >= V || (y && (tgt_h_[i] < 0 || tgt_h_[i] >= V)))
        throw std::invalid_argument("token ids were changed while the call was running");
    x_.upload(ids_.data(), ids_h_.data(), N * sizeof(i32));
    if (y) x_.upload(tgt_.data(), tgt_h_.data(), N * sizeof(i32));
    if (!by_id) return;
    std::fill(start_h_.begin(), start_h_.end(), 0);
    for (idx i = 0; i < N; ++i) start_h_[ids_h_[i] + 1] += 1;
    for (idx v = 0; v < V; ++v) start_h_[v + 1] += start_h_[v];
    std::copy(start_h_.begin(), start_h_.end() - 1, next_h_.begin());  // [V]
    for (idx i = 0; i < N; ++i) pos_h_[next_h_[ids_h_[i]]++] = static_cast<i32>(i);
    x_.upload(id_start_.data(), start_h_.data(), (V + 1) * sizeof(i32));
    x_.upload(id_pos_.data(), pos_h_.data(), N * sizeof(i32));
  }

  void replan(idx B, idx Tn) {
    B_ = T_ = 0;  // a refused allocation leaves no shape planned: the next call plans again
    const idx N = B * Tn, GH = G * H, BH = B * H;
    const bool lstm = has_cell_state(cell), gru = cell == CellKind::GRU;
    auto sized = [](Buf<T>& b, idx n) { b.resize(n > 0 ? n : 1); };
    xp_.resize(L);
    hs_.resize(L);
    cs_.resize(L);
    aux_.resize(L);
    din_.resize(L);
    mask_.resize(L);
    weff_.resize(L);
    wmask_.resize(L);
    for (idx l = 0; l < L; ++l) {
      sized(xp_[l], N * GH);
      sized(hs_[l], (Tn + 1) * BH);
      sized(cs_[l], lstm ? (Tn + 1) * BH : 0);
      sized(aux_[l], gru ? N * H : 0);
      const idx in = l == 0 ? E : H;
      const bool dropped = drop.on_input(l, E > 0) > 0;
      sized(din_[l], dropped ? N * in : 0);
      sized(mask_[l], dropped ? N * in : 0);
      sized(weff_[l], drop.weight > 0 ? GH * H : 0);
      sized(wmask_[l], drop.weight > 0 ? GH * H : 0);
    }
    sized(emb_, E > 0 ? N * E : 0);
    sized(hp_, B * GH);
    sized(dhp_, gru ? N * GH : 0);
    sized(dh_, BH);
    sized(dc_, BH);
    sized(logits_, N * V);
    sized(dout_, N * (E > H ? E : H));
    sized(top_, drop.output > 0 ? N * H : 0);
    sized(top_mask_, drop.output > 0 ? N * H : 0);
    sized(emb_mask_, drop.embedding > 0 ? V : 0);
    sized(ones_, N);
    x_.each(N, Fill<T>{ones_.data(), T(1)});
    ids_.resize(N);
    tgt_.resize(N);
    id_start_.resize(V + 1);
    id_pos_.resize(N);
    row_loss_.resize(N);
    ids_h_.resize(N);
    tgt_h_.resize(N);
    start_h_.resize(V + 1);
    next_h_.resize(V);
    pos_h_.resize(N);
    row_loss_h_.resize(N);
    B_ = B;
    T_ = Tn;
  }

  // state [S, L, B, H] host <-> row block 0 / row block T_ of hs, cs.
  void load_state(const T* state) {
    const idx BH = B_ * H;
    for (idx l = 0; l < L; ++l) {
      x_.upload(hs_[l].data(), state + l * BH, bytes(BH));
      if (has_cell_state(cell)) x_.upload(cs_[l].data(), state + (L + l) * BH, bytes(BH));
    }
  }
  void save_state(T* state) {
    const idx BH = B_ * H;
    for (idx l = 0; l < L; ++l) {
      x_.download(state + l * BH, hs_[l].data() + T_ * BH, bytes(BH));
      if (has_cell_state(cell))
        x_.download(state + (L + l) * BH, cs_[l].data() + T_ * BH, bytes(BH));
    }
  }
  // The final state becomes the next call's initial state (K-step loop).
  void carry_state() {
    const idx BH = B_ * H;
    for (idx l = 0; l < L; ++l) {
      x_.copy(hs_[l].data(), hs_[l].data() + T_ * BH, bytes(BH));
      if (has_cell_state(cell)) x_.copy(cs_[l].data(), cs_[l].data() + T_ * BH, bytes(BH));
    }
  }
  void save_initial_state(T* state) {
    const idx BH = B_ * H;
    for (idx l = 0; l < L; ++l) {
      x_.download(state + l * BH, hs_[l].data(), bytes(BH));
      if (has_cell_state(cell)) x_.download(state + (L + l) * BH, cs_[l].data(), bytes(BH));
    }
  }

  // src [T_, B_, width] on the device (time-major rows) -> out [B_, T_, width].
  std::vector<T> tm_h_;
  void download_batch_first(const T* src, idx width, T* out) {
    tm_h_.resize(static_cast<size_t>(B_ * T_ * width));
    x_.download(tm_h_.data(), src, bytes(B_ * T_ * width));
    for (idx t = 0; t < T_; ++t)
      for (idx b = 0; b < B_; ++b)
        std::copy_n(tm_h_.data() + (t * B_ + b) * width, width, out + (b * T_ + t) * width);
  }

  double xent(bool grad) {
    const idx N = B_ * T_;
    x_.each(N, SoftmaxXent<T>{logits_.data(), tgt_.data(), row_loss_.data(), V,
                              T(1) / static_cast<T>(N), grad});
    x_.download(row_loss_h_.data(), row_loss_.data(), N * sizeof(double));
    double total = 0;
    for (idx r = 0; r < N; ++r) total += row_loss_h_[r];
    return total / static_cast<double>(N);
  }

  // dstate [S, L, B, H] on the host, or null (the K-step loop does not need it).
  double fb(bool train, u64 seed, MaskRows rows, T* dstate) {
    run_forward(train, seed, rows);
    const double l = xent(true);
    run_backward(dstate);
    return l;
  }

  const T* layer_input(idx l) {
    if (in_dropped_[l]) return din_[l].data();
    return l == 0 ? emb_.data() : hs_[l - 1].data() + B_ * H;
  }
  const T* top_output() { return out_dropped_ ? top_.data() : hs_[L - 1].data() + B_ * H; }

  void mask(double p, u64 seed, u64 stream, idx width, MaskRows rows, const T* in, T* m,
            T* out) {
    const idx B = B_, n = B * T_ * width;
    ApplyMask<T> f{in, m, out, p, T(1) / T(1 - p), seed, stream, B, width, B * width,
                   rows.first, rows.total, drop.locked, rows.part(B)};
    x_.each(n, f);
  }

  void run_forward(bool train, u64 seed, MaskRows rows) {
    const idx B = B_, Tn = T_, N = B * Tn, GH = G * H, BH = B * H;
    in_dropped_.assign(L, 0);
    emb_dropped_ = train && drop.embedding > 0;
    w_dropped_ = train && drop.weight > 0;
    out_dropped_ = train && drop.output > 0;
    if (E > 0) {
      x_.each(N * E, Gather<T>{emb_.data(), P(off_emb_), ids_.data(), E});
      if (emb_dropped_) {
        x_.each(V, RowMask<T>{emb_mask_.data(), drop.embedding,
                              T(1) / T(1 - drop.embedding), seed});
        x_.each(N * E, ScaleRowsById<T>{emb_.data(), emb_mask_.data(), ids_.data(), E});
      }
    }
    for (idx l = 0; l < L; ++l) {
      const T* Wih = P(off_wih_[l]);
      const T* Whh = P(off_whh_[l]);
      if (w_dropped_) {
        x_.each(GH * H, DropWeights<T>{Whh, wmask_[l].data(), weff_[l].data(), drop.weight,
                                       T(1) / T(1 - drop.weight), seed,
                                       kWeightStream + static_cast<u64>(l)});
        Whh = weff_[l].data();
      }
      T* xp = xp_[l].data();
      if (l == 0 && E == 0) {
        x_.each(N * GH, OnehotForward<T>{xp, Wih, P(off_bih_[l]), ids_.data(), GH, V});
      } else {
        const double p = drop.on_input(l, E > 0);
        const idx in_dim = l == 0 ? E : H;
        if (train && p > 0) {
          const T* raw = l == 0 ? emb_.data() : hs_[l - 1].data() + BH;
          mask(p, seed, l == 0 ? kInputStream : static_cast<u64>(l), in_dim, rows, raw,
               mask_[l].data(), din_[l].data());
          in_dropped_[l] = 1;
        }
        x_.each(N * GH, FillRows<T>{xp, P(off_bih_[l]), GH});
        gemm(x_, false, true, N, GH, in_dim, T(1), layer_input(l), in_dim, Wih, in_dim, T(1), xp,
             GH);
      }
      T* hs = hs_[l].data();
      T* cs = has_cell_state(cell) ? cs_[l].data() : nullptr;
      T* aux = cell == CellKind::GRU ? aux_[l].data() : nullptr;
      T* hp = hp_.data();
      for (idx t = 0; t < Tn; ++t) {
        x_.each(B * GH, FillRows<T>{hp, P(off_bhh_[l]), GH});
        gemm(x_, false, true, B, GH, H, T(1), hs + t * BH, H, Whh, H, T(1), hp, GH);
        x_.each(BH, CellForward<T>{int(cell), H, GH, xp + t * B * GH, hp, hs + t * BH,
                                   hs + (t + 1) * BH, cs ? cs + t * BH : nullptr,
                                   cs ? cs + (t + 1) * BH : nullptr, aux ? aux + t * BH : nullptr});
      }
    }
    if (out_dropped_)
      mask(drop.output, seed, kOutputStream, H, rows, hs_[L - 1].data() + BH, top_mask_.data(),
           top_.data());
    x_.each(N * V, FillRows<T>{logits_.data(), P(off_decb_), V});
    gemm(x_, false, true, N, V, H, T(1), top_output(), H, P(off_decw_), H, T(1), logits_.data(),
         V);
  }

  // Column sums of d [N, cols] into out [cols]: ones [1, N] x d.
  void column_sums(const T* d, idx N, idx cols, T* out) {
    gemm(x_, false, false, 1, cols, N, T(1), ones_.data(), N, d, cols, T(0), out, cols);
  }

  void run_backward(T* dstate) {
    const idx B = B_, Tn = T_, N = B * Tn, GH = G * H, BH = B * H;
    const T* dlogits = logits_.data();
    const T* top = top_output();
    T* dout = dout_.data();
    gemm(x_, true, false, V, H, N, T(1), dlogits, V, top, H, T(0), Gr(off_decw_), H);
    column_sums(dlogits, N, V, Gr(off_decb_));
    gemm(x_, false, false, N, H, V, T(1), dlogits, V, P(off_decw_), H, T(0), dout, H);
    if (out_dropped_) x_.each(N * H, MultiplyBy<T>{dout, top_mask_.data()});
    T* dh = dh_.data();
    T* dc = dc_.data();
    for (idx l = L - 1; l >= 0; --l) {
      const T* Wih = P(off_wih_[l]);
      const T* Whh = w_dropped_ ? weff_[l].data() : P(off_whh_[l]);
      T* xp = xp_[l].data();
      T* hs = hs_[l].data();
      T* cs = has_cell_state(cell) ? cs_[l].data() : nullptr;
      T* aux = cell == CellKind::GRU ? aux_[l].data() : nullptr;
      T* dhp_all = has_separate_dhp(cell) ? dhp_.data() : xp;
      x_.each(BH, Fill<T>{dh, T(0)});
      x_.each(BH, Fill<T>{dc, T(0)});
      const T beta = has_direct_dh(cell) ? T(1) : T(0);
      for (idx t = Tn - 1; t >= 0; --t) {
        x_.each(BH, AddTo<T>{dh, dout + t * BH});
        if (dh_norms_) dh_norms_[l * Tn + t] = std::sqrt(x_.sum_squares(dh, BH));
        x_.each(BH, CellBackward<T>{int(cell), H, GH, xp + t * B * GH, dhp_all + t * B * GH,
                                    hs + t * BH, cs ? cs + t * BH : nullptr,
                                    cs ? cs + (t + 1) * BH : nullptr,
                                    aux ? aux + t * BH : nullptr, dh, dc});
        gemm(x_, false, false, B, H, GH, T(1), dhp_all + t * B * GH, GH, Whh, H, beta, dh, H);
      }
      if (dstate) {
        x_.download(dstate + l * BH, dh, bytes(BH));
        if (cs) x_.download(dstate + (L + l) * BH, dc, bytes(BH));
      }
      gemm(x_, true, false, GH, H, N, T(1), dhp_all, GH, hs, H, T(0), Gr(off_whh_[l]), H);
      if (w_dropped_) x_.each(GH * H, MultiplyBy<T>{Gr(off_whh_[l]), wmask_[l].data()});
      column_sums(dhp_all, N, GH, Gr(off_bhh_[l]));
      column_sums(xp, N, GH, Gr(off_bih_[l]));
      if (l == 0 && E == 0) {
        x_.each(V * GH, SumById<T>{Gr(off_wih_[0]), xp, id_start_.data(), id_pos_.data(), GH,
                                   V, true});
        continue;
      }
      const T* in = layer_input(l);
      const idx in_dim = l == 0 ? E : H;
      gemm(x_, true, false, GH, in_dim, N, T(1), xp, GH, in, in_dim, T(0), Gr(off_wih_[l]),
           in_dim);
      gemm(x_, false, false, N, in_dim, GH, T(1), xp, GH, Wih, in_dim, T(0), dout, in_dim);
      if (in_dropped_[l]) x_.each(N * in_dim, MultiplyBy<T>{dout, mask_[l].data()});
      if (l == 0) {
        if (emb_dropped_)
          x_.each(N * E, ScaleRowsById<T>{dout, emb_mask_.data(), ids_.data(), E});
        x_.each(V * E, SumById<T>{Gr(off_emb_), dout, id_start_.data(), id_pos_.data(), E, V,
                                  false});
      }
    }
  }
};

}  // namespace dev
}  // namespace PCR_ISA_NS
}  // namespace pcr
