// The CUDA backend's kernels (built with -DPYCHARRNN_CUDA=ON). Each thread
// runs the same pointwise function the CPU's vectorized loops run
// (pointwise.hpp): a cell unit, a row of the softmax cross-entropy, an
// element of an optimizer update. Host entry points (cuda.hpp) copy numpy
// buffers to the device, run one kernel and copy back, for the parity tests
// (tests/test_cuda.py) until the device-resident model uses them.
#define PCR_ISA_NS cuda_ns
#include "../pointwise.hpp"

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "cuda.hpp"

namespace pcr {
namespace cuda {
namespace {

using namespace ::pcr::cuda_ns;

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw std::runtime_error(std::string("CUDA: ") + what + ": " + cudaGetErrorString(e));
}

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

// One unit (b, j) of one step: gates [B, G*H] in (pre-activations xp) and
// out (activated), hp [B, G*H], hprev/h [B, H], cprev/c [B, H] (LSTM),
// aux [B, H] (GRU: W_hn h + b_hn), as cells.hpp's cell_forward_units.
template <typename T>
__global__ void cell_forward_kernel(int kind, idx B, idx H, T* gates, const T* hp,
                                    const T* hprev, T* h, const T* cprev, T* c, T* aux) {
  const idx u = blockIdx.x * idx(blockDim.x) + threadIdx.x;
  if (u >= B * H) return;
  const idx b = u / H, j = u % H, G = kind == 2 ? 3 : kind == 3 ? 4 : 1, GH = G * H;
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

// Backward of one unit, as cells.hpp's cell_backward_units: gates become
// d loss / d xp, dhp (GRU) d loss / d hp, dh the direct part of
// d loss / d hprev (GRU; else unchanged), dc d loss / d cprev (LSTM).
template <typename T>
__global__ void cell_backward_kernel(int kind, idx B, idx H, T* gates, T* dhp, const T* hprev,
                                     const T* cprev, const T* c, const T* aux, T* dh, T* dc) {
  const idx u = blockIdx.x * idx(blockDim.x) + threadIdx.x;
  if (u >= B * H) return;
  const idx b = u / H, j = u % H, G = kind == 2 ? 3 : kind == 3 ? 4 : 1, GH = G * H;
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

template <typename T>
__global__ void softmax_xent_kernel(T* logits, idx N, idx V, const std::int32_t* targets,
                                    T scale, bool grad, double* row_loss) {
  const idx r = blockIdx.x * idx(blockDim.x) + threadIdx.x;
  if (r < N) row_loss[r] = softmax_xent_row(logits + r * V, V, idx(targets[r]), scale, grad);
}

template <typename T, bool AMS>
__global__ void adam_kernel(idx n, T* p, const T* grad, T* m, T* v, T* vmax, T scale, T clip,
                            T step_size, T b2, T one_b1, T one_b2, T bc2_sqrt, T eps) {
  const idx i = blockIdx.x * idx(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  T none = 0;
  adam_element<T, false, AMS>(grad_in<T, false>(grad[i], p[i], scale, clip, T(0)), p[i], m[i],
                              v[i], AMS ? vmax[i] : none, step_size, b2, one_b1, one_b2,
                              bc2_sqrt, eps, T(1));
}

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
    cell_forward_kernel<T><<<blocks(BH, th), th>>>(kind, B, H, g.d, p.d, hv.d, ho.d, cv.d, co.d,
                                                   a.d);
  else
    cell_backward_kernel<T><<<blocks(BH, th), th>>>(kind, B, H, g.d, q.d, hv.d, cv.d, co.d, a.d,
                                                    d.d, e.d);
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
  softmax_xent_kernel<T><<<blocks(N, 128), 128>>>(z.d, N, V, y.d, T(1) / T(N), grad, out.d);
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
  const T clipv = clip > 0 ? T(clip) : T(INFINITY);
  if (vmax)
    adam_kernel<T, true><<<blocks(n, 256), 256>>>(n, P.d, Gd.d, M.d, Vv.d, X.d, T(scale), clipv,
                                                   T(lr / bc1), T(b2), T(1 - b1), T(1 - b2),
                                                   T(std::sqrt(bc2)), T(eps));
  else
    adam_kernel<T, false><<<blocks(n, 256), 256>>>(n, P.d, Gd.d, M.d, Vv.d, nullptr, T(scale),
                                                    clipv, T(lr / bc1), T(b2), T(1 - b1),
                                                    T(1 - b2), T(std::sqrt(bc2)), T(eps));
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
