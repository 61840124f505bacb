// One time step of the whole model at small batch (B <= kStepMaxBatch rows),
// for the loops that feed back their own output (sampling, beam search):
// every layer and the decoder in one parallel region, one barrier per layer.
//
// At batch 1 a step reads every weight once and does almost nothing else,
// so what counts is streaming the weights at the memory's rate and not
// stopping in between. Each thread owns chunks of hidden units for all
// layers: it computes the gate rows of its units (W_ih x + b_ih and
// W_hh h + b_hh, rows of the weights read once, R at a time with the next
// rows prefetched: dot_rows) and then their cell update, so the only wait is
// for the layer's new h before the next layer reads it. The decoder's rows
// are split the same way. Compiled inside pcr::PCR_ISA_NS.
#pragma once

#include "cells.hpp"
#include "gemm.hpp"

namespace pcr {
namespace PCR_ISA_NS {

// Rows out[r] = init[r] + dot(W[r, :K], a) for r in [r0, r1), 4 at a time.
template <typename T>
inline void rows_times(const T* W, idx K, const T* a, const T* init, idx r0, idx r1, T* out) {
  T acc[4];
  idx r = r0;
  for (; r + 4 <= r1; r += 4) {
    dot_rows<T, 4>(K, a, W + r * K, K, acc, r + 8 <= r1 ? 4 * K : 0);
    for (int i = 0; i < 4; ++i) out[r + i] = init[r + i] + acc[i];
  }
  for (; r < r1; ++r) {
    dot_rows<T, 1>(K, a, W + r * K, K, acc, 0);
    out[r] = init[r] + acc[0];
  }
}

// The largest batch whose step runs here (Kernels::step_max_batch); larger
// ones take the model's general forward pass.
constexpr idx kStepMaxBatch = 4;

// Units a thread owns: chunks of 16 (a cache line of floats).
constexpr idx kStepChunk = 16;

// Multiply-adds per step below which the step stays on one thread.
constexpr idx kParallelStep = 1 << 17;

// Scratch elements step_forward needs.
template <typename T>
idx step_scratch_size(int G, idx B, idx H, idx L) {
  return B * G * H * 2 + B * H + 2 * L * B * H;
}

// One step of B <= kStepMaxBatch rows through L layers and the decoder.
//   ids [B]; emb [V, E] (E > 0) or null (one-hot: W_ih_l0's column ids[b])
//   Wih[l] [G*H, in_l], Whh[l] [G*H, H], bih[l], bhh[l] [G*H]
//   h [L, B, H] (and c for the LSTM): the state, read and overwritten
//   decw [V, H], decb [V]; logits [B, V] out; work: step_scratch_size
template <typename T>
void step_forward(CellKind kind, idx B, idx V, idx E, idx H, idx L, const std::int32_t* ids,
                  const T* emb, const T* const* Wih, const T* const* Whh, const T* const* bih,
                  const T* const* bhh, const T* decw, const T* decb, T* h, T* c, T* logits,
                  T* work) {
  const idx G = gate_count(kind), GH = G * H, BH = B * H;
  T* xp = work;              // [B, GH]
  T* hp = xp + B * GH;       // [B, GH]
  T* aux = hp + B * GH;      // [B, H]
  T* hnew = aux + BH;        // [L, B, H]
  T* cnew = hnew + L * BH;   // [L, B, H]
  double macs = static_cast<double>(V) * H;
  for (idx l = 0; l < L; ++l) macs += static_cast<double>(GH) * ((l ? H : E) + H);
  macs *= static_cast<double>(B);
  const idx chunks = (H + kStepChunk - 1) / kStepChunk;
  const int nt = macs < kParallelStep ? 1 : static_cast<int>(mn(static_cast<idx>(num_threads()), chunks));
  SpinBarrier barrier;
  parallel_team(nt, [&](int tid, int nth) {
    idx c0, c1;
    chunk_of(chunks, tid, nth, &c0, &c1);
    const idx u0 = c0 * kStepChunk, u1 = mn(H, c1 * kStepChunk);
    for (idx l = 0; l < L; ++l) {
      const idx in = l ? H : E;
      for (idx b = 0; b < B; ++b) {
        T* xb = xp + b * GH;
        T* hb = hp + b * GH;
        const T* hprev = h + l * BH + b * H;
        for (idx g = 0; g < G; ++g) {
          const idx r0 = g * H + u0, r1 = g * H + u1;
          if (l == 0 && E == 0) {  // one-hot: a column of W_ih_l0 [GH, V]
            const idx id = ids[b];
            for (idx r = r0; r < r1; ++r) xb[r] = bih[0][r] + Wih[0][r * V + id];
          } else {
            const T* x = l == 0 ? emb + static_cast<idx>(ids[b]) * E : hnew + (l - 1) * BH + b * H;
            rows_times(Wih[l], in, x, bih[l], r0, r1, xb);
          }
          rows_times(Whh[l], H, hprev, bhh[l], r0, r1, hb);
        }
      }
      StepIO<T> s{B, H, xp, hp, h + l * BH, hnew + l * BH,
                  c ? c + l * BH : nullptr, c ? cnew + l * BH : nullptr, aux, nullptr};
      for (idx b = 0; b < B; ++b) cell_forward_units(kind, s, b, u0, u1);
      barrier.wait(nth);  // the new h of this layer before anyone reads it
    }
    idx v0, v1;
    chunk_of(V, tid, nth, &v0, &v1);
    for (idx b = 0; b < B; ++b)
      rows_times(decw, H, hnew + (L - 1) * BH + b * H, decb, v0, v1, logits + b * V);
    for (idx l = 0; l < L; ++l)
      for (idx b = 0; b < B; ++b) {
        const idx o = l * BH + b * H;
        for (idx j = u0; j < u1; ++j) h[o + j] = hnew[o + j];
        if (c)
          for (idx j = u0; j < u1; ++j) c[o + j] = cnew[o + j];
      }
  });
}

}  // namespace PCR_ISA_NS
}  // namespace pcr
