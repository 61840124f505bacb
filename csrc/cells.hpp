// Recurrent cells: the pointwise part of one time step, forward and backward.
//
// The time loop (model.hpp) computes, for step t and each batch row b,
//   xp[G*H] = W_ih x_t + b_ih   (all T steps in one GEMM before the loop)
//   hp[G*H] = W_hh h_{t-1} + b_hh
// and calls the cell, which turns them into h_t (and c_t). A cell is its gate
// count G plus these two functions; everything else is shared. StepIO
// (dispatch.hpp) says what is stored per step. Compiled inside pcr::PCR_ISA_NS.
#pragma once

#include "fastmath.hpp"
#include "dispatch.hpp"

namespace pcr {
namespace PCR_ISA_NS {

// Units [j0, j1) of batch row b.
template <typename T>
inline void cell_forward_units(CellKind kind, const StepIO<T>& s, idx b, idx j0, idx j1) {
  const idx H = s.H, GH = gate_count(kind) * H;
  T* g = s.gates + b * GH;
  const T* hp = s.hp + b * GH;
  T* h = s.h + b * H;
  switch (kind) {
    case CellKind::RNN_TANH:
#pragma omp simd
      for (idx j = j0; j < j1; ++j) h[j] = g[j] = tanh_t(g[j] + hp[j]);
      break;
    case CellKind::RNN_RELU:
#pragma omp simd
      for (idx j = j0; j < j1; ++j) {
        const T a = g[j] + hp[j];
        h[j] = g[j] = a > T(0) ? a : T(0);
      }
      break;
    case CellKind::GRU: {
      const T* hprev = s.h_prev + b * H;
      T* hn = s.aux + b * H;
#pragma omp simd
      for (idx j = j0; j < j1; ++j) {
        const T r = sigmoid_t(g[j] + hp[j]);
        const T z = sigmoid_t(g[H + j] + hp[H + j]);
        const T n = tanh_t(g[2 * H + j] + r * hp[2 * H + j]);
        hn[j] = hp[2 * H + j];
        g[j] = r;
        g[H + j] = z;
        g[2 * H + j] = n;
        h[j] = (T(1) - z) * n + z * hprev[j];
      }
      break;
    }
    case CellKind::LSTM: {
      const T* cprev = s.c_prev + b * H;
      T* c = s.c + b * H;
#pragma omp simd
      for (idx j = j0; j < j1; ++j) {
        const T i = sigmoid_t(g[j] + hp[j]);
        const T f = sigmoid_t(g[H + j] + hp[H + j]);
        const T gg = tanh_t(g[2 * H + j] + hp[2 * H + j]);
        const T o = sigmoid_t(g[3 * H + j] + hp[3 * H + j]);
        g[j] = i;
        g[H + j] = f;
        g[2 * H + j] = gg;
        g[3 * H + j] = o;
        c[j] = f * cprev[j] + i * gg;
        h[j] = o * tanh_t(c[j]);
      }
      break;
    }
  }
}

template <typename T>
void cell_forward(CellKind kind, const StepIO<T>& s) {
  const idx B = s.B, H = s.H, GH = gate_count(kind) * H;
  parallel_for(B, threads_for(B * GH * 8),
               [&](idx b) { cell_forward_units(kind, s, b, idx(0), H); });
}

// Backward of one step. dh[B,H]: total d(loss)/d(h_t) on entry; on exit the
// part of d(loss)/d(h_{t-1}) that does not go through W_hh (GRU: z*dh; else
// 0). dc[B,H] (LSTM): d(loss)/d(c_t) from step t+1 on entry,
// d(loss)/d(c_{t-1}) on exit. gates are overwritten with d(loss)/d(xp).
// Returns true when dh holds a direct term (so the caller accumulates).
// cell_backward_units: units [j0, j1) of batch row b.
template <typename T>
inline void cell_backward_units(CellKind kind, const StepIO<T>& s, T* dh, T* dc, idx b, idx j0,
                                idx j1) {
  const idx H = s.H, GH = gate_count(kind) * H;
  T* g = s.gates + b * GH;
  T* d = dh + b * H;
  switch (kind) {
    case CellKind::RNN_TANH:
#pragma omp simd
      for (idx j = j0; j < j1; ++j) g[j] = d[j] * (T(1) - g[j] * g[j]);
      break;
    case CellKind::RNN_RELU:
#pragma omp simd
      for (idx j = j0; j < j1; ++j) g[j] = g[j] > T(0) ? d[j] : T(0);
      break;
    case CellKind::GRU: {
      const T* hprev = s.h_prev + b * H;
      const T* hn = s.aux + b * H;
      T* dhp = s.dhp + b * GH;
#pragma omp simd
      for (idx j = j0; j < j1; ++j) {
        const T r = g[j], z = g[H + j], n = g[2 * H + j], dhj = d[j];
        const T dan = dhj * (T(1) - z) * (T(1) - n * n);
        const T daz = dhj * (hprev[j] - n) * z * (T(1) - z);
        const T dar = dan * hn[j] * r * (T(1) - r);
        g[j] = dhp[j] = dar;
        g[H + j] = dhp[H + j] = daz;
        g[2 * H + j] = dan;
        dhp[2 * H + j] = dan * r;
        d[j] = dhj * z;
      }
      break;
    }
    case CellKind::LSTM: {
      const T* cprev = s.c_prev + b * H;
      const T* c = s.c + b * H;
      T* dcb = dc + b * H;
#pragma omp simd
      for (idx j = j0; j < j1; ++j) {
        const T i = g[j], f = g[H + j], gg = g[2 * H + j], o = g[3 * H + j];
        const T tc = tanh_t(c[j]);
        const T dcj = dcb[j] + d[j] * o * (T(1) - tc * tc);
        g[j] = dcj * gg * i * (T(1) - i);
        g[H + j] = dcj * cprev[j] * f * (T(1) - f);
        g[2 * H + j] = dcj * i * (T(1) - gg * gg);
        g[3 * H + j] = d[j] * tc * o * (T(1) - o);
        dcb[j] = dcj * f;
      }
      break;
    }
  }
}

template <typename T>
bool cell_backward(CellKind kind, const StepIO<T>& s, T* dh, T* dc) {
  const idx B = s.B, H = s.H, GH = gate_count(kind) * H;
  parallel_for(B, threads_for(B * GH * 8),
               [&](idx b) { cell_backward_units(kind, s, dh, dc, b, idx(0), H); });
  return has_direct_dh(kind);
}

}  // namespace PCR_ISA_NS
}  // namespace pcr
