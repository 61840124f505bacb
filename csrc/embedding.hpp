// Input layer: embedding lookup, and one-hot input as a row gather of the
// transposed input weights.
#pragma once

#include "common.hpp"

namespace pcr {

// out[r, :] = table[ids[r], :]          table [V, E], out [N, E], ids [N]
template <typename T>
void embedding_forward(const T* table, idx E, const std::int32_t* ids, idx N, T* out) {
  parallel_for(N, threads_for(N * E), [&](idx r) {
    copy_n(table + static_cast<idx>(ids[r]) * E, E, out + r * E);
  });
}

// dtable = 0; dtable[ids[r], :] += dout[r, :]     (rows summed in order r)
// Columns are split between threads so that no two threads write one element.
template <typename T>
void embedding_backward(const T* dout, idx E, const std::int32_t* ids, idx N, idx V, T* dtable) {
  parallel_team(threads_for(N * E), [&](int tid, int nth) {
    idx e0, e1;
    chunk_of(E, tid, nth, &e0, &e1);
    for (idx v = 0; v < V; ++v)
      for (idx e = e0; e < e1; ++e) dtable[v * E + e] = T(0);
    for (idx r = 0; r < N; ++r) {
      T* dst = dtable + static_cast<idx>(ids[r]) * E;
      const T* src = dout + r * E;
#pragma omp simd
      for (idx e = e0; e < e1; ++e) dst[e] += src[e];
    }
  });
}

// out[j, i] = in[i, j]: in [R, C] -> out [C, R].
template <typename T>
void transpose(const T* in, idx R, idx C, T* out) {
  constexpr idx kB = 32;
  parallel_for((R + kB - 1) / kB, threads_for(R * C), [&](idx bi) {
    const idx i0 = bi * kB, i1 = std::min(R, i0 + kB);
    for (idx j0 = 0; j0 < C; j0 += kB) {
      const idx j1 = std::min(C, j0 + kB);
      for (idx i = i0; i < i1; ++i)
        for (idx j = j0; j < j1; ++j) out[j * R + i] = in[i * C + j];
    }
  });
}

// One-hot input to the first layer: W_ih x for x = onehot(id) is column id
// of W_ih. W [GH, V] is transposed once per call into WT [V, GH] so that each
// step reads one contiguous row:  xp[r, :] = WT[ids[r], :] + bias.
// With fewer rows than symbols (small batches) the transpose would cost more
// than it saves: the columns are then read directly, strided.
template <typename T>
void onehot_forward(const T* W, const T* bias, idx GH, idx V, const std::int32_t* ids, idx N,
                    T* xp, T* WT) {
  if (N < V) {
    parallel_for(N, threads_for(N * GH), [&](idx r) {
      const T* col = W + ids[r];
      T* out = xp + r * GH;
      for (idx g = 0; g < GH; ++g) out[g] = col[g * V] + bias[g];
    });
    return;
  }
  transpose(W, GH, V, WT);
  parallel_for(N, threads_for(N * GH), [&](idx r) {
    const T* row = WT + static_cast<idx>(ids[r]) * GH;
    T* out = xp + r * GH;
#pragma omp simd
    for (idx g = 0; g < GH; ++g) out[g] = row[g] + bias[g];
  });
}

// dW [GH, V] = sum over r of dxp[r, :] into column ids[r]: accumulated
// row-wise into dWT [V, GH] (embedding_backward), then transposed.
// Small N: added straight into the columns of dW (rows summed in order r,
// as in the transposed path, so both give the same bits).
template <typename T>
void onehot_backward(const T* dxp, idx GH, idx V, const std::int32_t* ids, idx N, T* dW,
                     T* dWT) {
  if (N < 2 * V) {
    parallel_team(threads_for(N * GH), [&](int tid, int nth) {
      idx g0, g1;
      chunk_of(GH, tid, nth, &g0, &g1);
      std::fill(dW + g0 * V, dW + g1 * V, T(0));
      for (idx r = 0; r < N; ++r) {
        T* col = dW + ids[r];
        const T* src = dxp + r * GH;
        for (idx g = g0; g < g1; ++g) col[g * V] += src[g];
      }
    });
    return;
  }
  embedding_backward(dxp, GH, ids, N, V, dWT);
  transpose(dWT, V, GH, dW);
}

}  // namespace pcr
