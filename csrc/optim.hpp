// Optimizer updates over the flat parameter buffer, one fused loop each.
//
// Semantics follow torch.optim's single-tensor implementations, operation
// for operation where it matters for rounding, so that float64 runs agree
// to ~1e-15 relative step by step. Every kernel reads the gradient as
//   g = clip(scale * grad, -clip, clip)      (clip <= 0: no clipping)
// (scale carries clipping by global norm), then adds weight decay, so grads
// are never modified. All buffers are [n]; p and the state are updated in
// place. Elements are independent, so any thread count gives the same bits.
#pragma once

#include <vector>

#include "common.hpp"

namespace pcr {

template <typename T>
inline T clipped(T g, T scale, T clip) {
  g *= scale;
  if (clip > T(0)) g = g > clip ? clip : (g < -clip ? -clip : g);
  return g;
}

struct GradIn {
  double scale = 1.0, clip = 0.0, weight_decay = 0.0;
};

// SGD with momentum / dampening / Nesterov (torch.optim.SGD):
//   g += wd * p
//   buf = first ? g : momentum * buf + (1 - dampening) * g
//   g = nesterov ? g + momentum * buf : buf          (momentum > 0)
//   p -= lr * g
template <typename T>
void sgd_update(T* p, const T* grad, T* buf, idx n, const GradIn& gi, T lr, T momentum,
                T dampening, bool nesterov, bool first) {
  const T scale = T(gi.scale), clip = T(gi.clip), wd = T(gi.weight_decay);
  const int nt = threads_for(n * 4);
#pragma omp parallel for simd num_threads(nt) schedule(static) if (nt > 1)
  for (idx i = 0; i < n; ++i) {
    T g = clipped(grad[i], scale, clip);
    if (wd != T(0)) g += wd * p[i];
    if (momentum != T(0)) {
      buf[i] = first ? g : momentum * buf[i] + (T(1) - dampening) * g;
      g = nesterov ? g + momentum * buf[i] : buf[i];
    }
    p[i] -= lr * g;
  }
}

// AdaGrad:  g += wd * p;  mem += g * g
//   eps_inside (min-char-rnn):  p -= clr * g / sqrt(mem + eps)
//   otherwise (torch.optim):    p -= clr * g / (sqrt(mem) + eps)
// clr = lr / (1 + (step - 1) * lr_decay) is computed by the caller.
template <typename T>
void adagrad_update(T* p, const T* grad, T* mem, idx n, const GradIn& gi, T clr, T eps,
                    bool eps_inside) {
  const T scale = T(gi.scale), clip = T(gi.clip), wd = T(gi.weight_decay);
  const int nt = threads_for(n * 4);
#pragma omp parallel for simd num_threads(nt) schedule(static) if (nt > 1)
  for (idx i = 0; i < n; ++i) {
    T g = clipped(grad[i], scale, clip);
    if (wd != T(0)) g += wd * p[i];
    mem[i] += g * g;
    const T den = eps_inside ? std::sqrt(mem[i] + eps) : std::sqrt(mem[i]) + eps;
    p[i] -= clr * (g / den);
  }
}

// RMSProp (torch.optim.RMSprop):
//   g += wd * p;  sq = alpha * sq + (1 - alpha) * g^2
//   centered: gavg += (1 - alpha) * (g - gavg);  avg = sqrt(sq - gavg^2) + eps
//   else:     avg = sqrt(sq) + eps
//   momentum > 0: buf = momentum * buf + g / avg;  p -= lr * buf
//   else:         p -= lr * g / avg
// gavg and buf may be null when unused.
template <typename T>
void rmsprop_update(T* p, const T* grad, T* sq, T* gavg, T* buf, idx n, const GradIn& gi, T lr,
                    T alpha, T eps, T momentum, bool centered) {
  const T scale = T(gi.scale), clip = T(gi.clip), wd = T(gi.weight_decay);
  const int nt = threads_for(n * 4);
#pragma omp parallel for simd num_threads(nt) schedule(static) if (nt > 1)
  for (idx i = 0; i < n; ++i) {
    T g = clipped(grad[i], scale, clip);
    if (wd != T(0)) g += wd * p[i];
    sq[i] = sq[i] * alpha + (T(1) - alpha) * g * g;
    T avg;
    if (centered) {
      gavg[i] += (g - gavg[i]) * (T(1) - alpha);
      avg = std::sqrt(sq[i] - gavg[i] * gavg[i]) + eps;
    } else {
      avg = std::sqrt(sq[i]) + eps;
    }
    if (momentum > T(0)) {
      buf[i] = momentum * buf[i] + g / avg;
      p[i] -= lr * buf[i];
    } else {
      p[i] -= lr * (g / avg);
    }
  }
}

// Adam / AdamW (torch.optim.Adam, AdamW), bias-corrected:
//   AdamW: p *= 1 - lr * wd          Adam: g += wd * p
//   m += (1 - b1) * (g - m);  v = b2 * v + (1 - b2) * g^2
//   amsgrad: vmax = max(vmax, v), used in place of v
//   p -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps)
// bc1 = 1 - b1^step, bc2 = 1 - b2^step are computed by the caller in double.
template <typename T>
void adam_update(T* p, const T* grad, T* m, T* v, T* vmax, idx n, const GradIn& gi, T lr, T b1,
                 T b2, T eps, double bc1, double bc2, bool decoupled, bool amsgrad) {
  const T scale = T(gi.scale), clip = T(gi.clip), wd = T(gi.weight_decay);
  const T step_size = T(double(lr) / bc1);
  const T bc2_sqrt = T(std::sqrt(bc2));
  const T decay = T(1) - lr * wd;
  const int nt = threads_for(n * 4);
#pragma omp parallel for simd num_threads(nt) schedule(static) if (nt > 1)
  for (idx i = 0; i < n; ++i) {
    T g = clipped(grad[i], scale, clip);
    if (wd != T(0)) {
      if (decoupled)
        p[i] *= decay;
      else
        g += wd * p[i];
    }
    m[i] += (g - m[i]) * (T(1) - b1);
    v[i] = v[i] * b2 + g * g * (T(1) - b2);
    T vv = v[i];
    if (amsgrad) {
      vmax[i] = vmax[i] > vv ? vmax[i] : vv;
      vv = vmax[i];
    }
    p[i] -= step_size * (m[i] / (std::sqrt(vv) / bc2_sqrt + eps));
  }
}

// Sum of squares of scale-free gradients, in double, for clipping by norm.
// Chunks are summed in a fixed order, so the result does not depend on the
// thread count.
template <typename T>
double sum_squares(const T* g, idx n) {
  constexpr idx kChunk = 1 << 14;
  const idx nchunks = (n + kChunk - 1) / kChunk;
  double total = 0;
  // Partial sums per chunk, combined serially.
  const int nt = threads_for(n * 2);
  std::vector<double> part(static_cast<size_t>(nchunks > 0 ? nchunks : 1), 0.0);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
  for (idx c = 0; c < nchunks; ++c) {
    double s = 0;
    const idx i1 = std::min(n, (c + 1) * kChunk);
    for (idx i = c * kChunk; i < i1; ++i) s += double(g[i]) * double(g[i]);
    part[static_cast<size_t>(c)] = s;
  }
  for (idx c = 0; c < nchunks; ++c) total += part[static_cast<size_t>(c)];
  return total;
}

}  // namespace pcr
