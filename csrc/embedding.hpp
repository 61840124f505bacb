// Input layer: embedding lookup, and one-hot input as a column gather.
#pragma once

#include "common.hpp"

namespace pcr {

// out[r, :] = table[ids[r], :]          table [V, E], out [N, E], ids [N]
template <typename T>
void embedding_forward(const T* table, idx E, const std::int32_t* ids, idx N, T* out) {
  const int nt = threads_for(N * E);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
  for (idx r = 0; r < N; ++r) copy_n(table + static_cast<idx>(ids[r]) * E, E, out + r * E);
}

// dtable = 0; dtable[ids[r], :] += dout[r, :]     (rows summed in order r)
// Columns are split between threads so that no two threads write one element.
template <typename T>
void embedding_backward(const T* dout, idx E, const std::int32_t* ids, idx N, idx V, T* dtable) {
  const int nt = threads_for(N * E);
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
#ifdef _OPENMP
    const int tid = omp_get_thread_num(), nth = omp_get_num_threads();
#else
    const int tid = 0, nth = 1;
#endif
    const idx chunk = (E + nth - 1) / nth;
    const idx e0 = std::min(E, chunk * tid), e1 = std::min(E, e0 + chunk);
    for (idx v = 0; v < V; ++v)
      for (idx e = e0; e < e1; ++e) dtable[v * E + e] = T(0);
    for (idx r = 0; r < N; ++r) {
      T* dst = dtable + static_cast<idx>(ids[r]) * E;
      const T* src = dout + r * E;
      for (idx e = e0; e < e1; ++e) dst[e] += src[e];
    }
  }
}

// One-hot input to the first layer: W_ih x for x = onehot(id) is column id
// of W_ih.   xp[r, :] = W[:, ids[r]] + bias      W [GH, V], xp [N, GH]
template <typename T>
void onehot_forward(const T* W, const T* bias, idx GH, idx V, const std::int32_t* ids, idx N,
                    T* xp) {
  const int nt = threads_for(N * GH);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
  for (idx r = 0; r < N; ++r) {
    const T* col = W + ids[r];
    T* out = xp + r * GH;
    for (idx g = 0; g < GH; ++g) out[g] = col[g * V] + bias[g];
  }
}

// dW = 0; dW[:, ids[r]] += dxp[r, :]        dW [GH, V], dxp [N, GH]
// Rows of dW are split between threads.
template <typename T>
void onehot_backward(const T* dxp, idx GH, idx V, const std::int32_t* ids, idx N, T* dW) {
  const int nt = threads_for(N * GH);
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
#ifdef _OPENMP
    const int tid = omp_get_thread_num(), nth = omp_get_num_threads();
#else
    const int tid = 0, nth = 1;
#endif
    const idx chunk = (GH + nth - 1) / nth;
    const idx g0 = std::min(GH, chunk * tid), g1 = std::min(GH, g0 + chunk);
    std::fill(dW + g0 * V, dW + g1 * V, T(0));
    for (idx r = 0; r < N; ++r) {
      const T* src = dxp + r * GH;
      const idx id = ids[r];
      for (idx g = g0; g < g1; ++g) dW[g * V + id] += src[g];
    }
  }
}

}  // namespace pcr
