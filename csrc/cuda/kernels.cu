// The device model's kernels one at a time on host arrays (built with
// -DPYCHARRNN_CUDA=ON): the cell step, a row of the softmax cross-entropy and
// Adam's update, each the device model's functor (device_model.hpp, whose
// bodies are pointwise.hpp's) launched as it launches them. Host entry points
// (cuda.hpp) copy numpy buffers to the device, run one kernel and copy back,
// for the parity tests of tests/test_cuda.py.
#define PCR_ISA_NS cuda_ns
#include "device_model.hpp"
#include "exec_cuda.cuh"

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "cuda.hpp"

namespace pcr {
namespace cuda {
namespace {

using namespace ::pcr::cuda_ns;

using dev_exec::check;
using dev_exec::each_kernel;

// A device copy of a host buffer, copied back on demand.
template <typename T>
struct Buf {
  T* d = nullptr;
  size_t n = 0;
  Buf(const T* host, size_t count) : n(count) {
    check(cudaMalloc(&d, (n ? n : 1) * sizeof(T)), "cudaMalloc");
    if (host && n) check(cudaMemcpy(d, host, n * sizeof(T), cudaMemcpyHostToDevice), "copy in");
  }
  void to(T* host) const {
    if (host && n) check(cudaMemcpy(host, d, n * sizeof(T), cudaMemcpyDeviceToHost), "copy out");
  }
  ~Buf() { cudaFree(d); }
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;
};

unsigned blocks(idx n, unsigned threads) { return unsigned((n + threads - 1) / threads); }

template <typename T>
void cell_step_t(int kind, idx B, idx H, bool backward, T* gates, const T* hp, T* dhp,
                 const T* hprev, T* h, const T* cprev, T* c, T* aux, T* dh, T* dc) {
  const idx G = kind == 2 ? 3 : kind == 3 ? 4 : 1, BH = B * H, BGH = B * G * H;
  Buf<T> g(gates, BGH), p(hp, hp ? BGH : 0), q(dhp, dhp ? BGH : 0), hv(hprev, BH), ho(h, BH),
      cv(cprev, cprev ? BH : 0), co(c, c ? BH : 0), a(aux, aux ? BH : 0), d(dh, dh ? BH : 0),
      e(dc, dc ? BH : 0);
  const unsigned th = 128;
  if (!backward)
    each_kernel<<<blocks(BH, th), th>>>(
        BH, dev::CellForward<T>{kind, H, G * H, g.d, p.d, hv.d, ho.d, cv.d, co.d, a.d});
  else
    each_kernel<<<blocks(BH, th), th>>>(
        BH, dev::CellBackward<T>{kind, H, G * H, g.d, q.d, hv.d, cv.d, co.d, a.d, d.d, e.d});
  check(cudaGetLastError(), "cell kernel launch");
  check(cudaDeviceSynchronize(), "cell kernel");
  g.to(gates);
  if (!backward) {
    ho.to(h);
    co.to(c);
    a.to(aux);
  } else {
    q.to(dhp);
    d.to(dh);
    e.to(dc);
  }
}

template <typename T>
void softmax_xent_t(T* logits, idx N, idx V, const std::int32_t* targets, bool grad,
                    double* row_loss) {
  Buf<T> z(logits, size_t(N * V));
  Buf<std::int32_t> y(targets, size_t(N));
  Buf<double> out(nullptr, size_t(N));
  each_kernel<<<blocks(N, 128), 128>>>(
      N, dev::SoftmaxXent<T>{z.d, y.d, out.d, V, T(1) / T(N), grad});
  check(cudaGetLastError(), "softmax kernel launch");
  check(cudaDeviceSynchronize(), "softmax kernel");
  z.to(logits);
  out.to(row_loss);
}

template <typename T>
void adam_t(idx n, T* p, const T* grad, T* m, T* v, T* vmax, double lr, double b1, double b2,
            double eps, double scale, double clip, long step) {
  Buf<T> P(p, n), Gd(grad, n), M(m, n), Vv(v, n), X(vmax, vmax ? n : 0);
  const double bc1 = 1.0 - std::pow(b1, double(step)), bc2 = 1.0 - std::pow(b2, double(step));
  dev::OptimizerUpdate<T> u{};  // the device model's update, as Adam without decay
  u.kind = int(OptKind::ADAM);
  u.p = P.d;
  u.g = Gd.d;
  u.b0 = M.d;
  u.b1 = Vv.d;
  u.b2 = X.d;
  u.amsgrad = vmax != nullptr;
  u.scale = T(scale);
  u.clip = clip > 0 ? T(clip) : T(INFINITY);
  u.step_size = T(lr / bc1);
  u.b2c = T(b2);
  u.one_b1 = T(1 - b1);
  u.one_b2 = T(1 - b2);
  u.bc2_sqrt = T(std::sqrt(bc2));
  u.eps = T(eps);
  u.decay = T(1);
  each_kernel<<<blocks(n, 256), 256>>>(n, u);
  check(cudaGetLastError(), "adam kernel launch");
  check(cudaDeviceSynchronize(), "adam kernel");
  P.to(p);
  M.to(m);
  Vv.to(v);
  X.to(vmax);
}

}  // namespace

Info info() {
  Info out;
  int rt = 0;
  if (cudaRuntimeGetVersion(&rt) == cudaSuccess) out.runtime_version = rt;
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    out.error = cudaGetErrorString(e);
    cudaGetLastError();  // clear it
    return out;
  }
  out.devices = n;
  for (int i = 0; i < n; ++i) {
    cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, i) == cudaSuccess)
      out.names.push_back(std::string(prop.name) + " (sm_" + std::to_string(prop.major) +
                          std::to_string(prop.minor) + ")");
  }
  return out;
}

void cell_step(int kind, idx B, idx H, bool backward, float* gates, const float* hp, float* dhp,
               const float* hprev, float* h, const float* cprev, float* c, float* aux, float* dh,
               float* dc) {
  cell_step_t(kind, B, H, backward, gates, hp, dhp, hprev, h, cprev, c, aux, dh, dc);
}
void cell_step(int kind, idx B, idx H, bool backward, double* gates, const double* hp,
               double* dhp, const double* hprev, double* h, const double* cprev, double* c,
               double* aux, double* dh, double* dc) {
  cell_step_t(kind, B, H, backward, gates, hp, dhp, hprev, h, cprev, c, aux, dh, dc);
}
void softmax_xent(float* logits, idx N, idx V, const std::int32_t* t, bool grad, double* rl) {
  softmax_xent_t(logits, N, V, t, grad, rl);
}
void softmax_xent(double* logits, idx N, idx V, const std::int32_t* t, bool grad, double* rl) {
  softmax_xent_t(logits, N, V, t, grad, rl);
}
void adam(idx n, float* p, const float* g, float* m, float* v, float* vmax, double lr, double b1,
          double b2, double eps, double scale, double clip, long step) {
  adam_t(n, p, g, m, v, vmax, lr, b1, b2, eps, scale, clip, step);
}
void adam(idx n, double* p, const double* g, double* m, double* v, double* vmax, double lr,
          double b1, double b2, double eps, double scale, double clip, long step) {
  adam_t(n, p, g, m, v, vmax, lr, b1, b2, eps, scale, clip, step);
}

}  // namespace cuda
}  // namespace pcr
