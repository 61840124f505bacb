// Optimizer updates over the flat parameter buffer, one fused loop each.
#pragma once

#include "common.hpp"

namespace pcr {

// The gradient every update sees: g' = clip(scale * g, -clip, clip)
// (clip <= 0: no clipping; scale carries clipping by global norm).
template <typename T>
inline T clipped(T g, T scale, T clip) {
  g *= scale;
  if (clip > T(0)) g = g > clip ? clip : (g < -clip ? -clip : g);
  return g;
}

// AdaGrad:  mem += g'^2;
//   eps_inside (min-char-rnn):  p -= lr * g' / sqrt(mem + eps)
//   otherwise (torch.optim):    p -= lr * g' / (sqrt(mem) + eps)
// p, mem [n] are updated in place; g [n] is only read.
template <typename T>
void adagrad_update(T* p, const T* g, T* mem, idx n, T lr, T eps, T clip, T scale,
                    bool eps_inside) {
  const int nt = threads_for(n * 4);
#pragma omp parallel for simd num_threads(nt) schedule(static) if (nt > 1)
  for (idx i = 0; i < n; ++i) {
    const T gi = clipped(g[i], scale, clip);
    mem[i] += gi * gi;
    const T den = eps_inside ? std::sqrt(mem[i] + eps) : std::sqrt(mem[i]) + eps;
    p[i] -= lr * gi / den;
  }
}

}  // namespace pcr
