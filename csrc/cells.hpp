// Recurrent cells: the pointwise part of one time step, forward and backward.
//
// The time loop (model.hpp) computes, for step t and each batch row b,
//   xp[G*H] = W_ih x_t + b_ih   (all T steps in one GEMM before the loop)
//   hp[G*H] = W_hh h_{t-1} + b_hh
// and calls the cell, which turns them into h_t (and c_t). A cell is its gate
// count G plus these two functions; everything else is shared. StepIO
// (dispatch.hpp) says what is stored per step. The math of one unit is
// pointwise.hpp's, shared with the CUDA kernels; these loops lay it over the
// units of a row. Compiled inside pcr::PCR_ISA_NS.
#pragma once

#include "pointwise.hpp"
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
      for (idx j = j0; j < j1; ++j) h[j] = g[j] = rnn_tanh_forward(g[j], hp[j]);
      break;
    case CellKind::RNN_RELU:
#pragma omp simd
      for (idx j = j0; j < j1; ++j) h[j] = g[j] = rnn_relu_forward(g[j], hp[j]);
      break;
    case CellKind::GRU: {
      const T* hprev = s.h_prev + b * H;
      T* hn = s.aux + b * H;
#pragma omp simd
      for (idx j = j0; j < j1; ++j) gru_forward_at(g, hp, hprev, h, hn, H, j);
      break;
    }
    case CellKind::LSTM: {
      const T* cprev = s.c_prev + b * H;
      T* c = s.c + b * H;
#pragma omp simd
      for (idx j = j0; j < j1; ++j) lstm_forward_at(g, hp, cprev, c, h, H, j);
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
      for (idx j = j0; j < j1; ++j) g[j] = rnn_tanh_backward(d[j], g[j]);
      break;
    case CellKind::RNN_RELU:
#pragma omp simd
      for (idx j = j0; j < j1; ++j) g[j] = rnn_relu_backward(d[j], g[j]);
      break;
    case CellKind::GRU: {
      const T* hprev = s.h_prev + b * H;
      const T* hn = s.aux + b * H;
      T* dhp = s.dhp + b * GH;
#pragma omp simd
      for (idx j = j0; j < j1; ++j) gru_backward_at(g, dhp, hn, hprev, d, H, j);
      break;
    }
    case CellKind::LSTM: {
      const T* cprev = s.c_prev + b * H;
      const T* c = s.c + b * H;
      T* dcb = dc + b * H;
#pragma omp simd
      for (idx j = j0; j < j1; ++j) lstm_backward_at(g, c, cprev, d, dcb, H, j);
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
