// The time loop of one layer at small batch (B <= MR rows), fused: one
// parallel region for all the steps, one barrier per step.
//
// At small B the step's product with W_hh is a few rows times a matrix that
// stays in cache, and forking a team per step would cost as much as it
// saves. Here each thread owns chunks of NR hidden units for the whole loop:
// it packs the weights of its units once (so they sit in its own core's
// cache), and at every step computes the gate rows of its units, then their
// pointwise cell update. Forward needs h_{t} of all units before step t+1,
// backward needs d(xp)_t of all units before the product with W_hh: that is
// the one barrier per step.
//
// Every element is summed in the same order as gemm_packed sums it (the same
// panels, K blocks and micro-kernel), so the results are the same bits as the
// step-by-step loop in model.hpp, and the same at any thread count.
// Compiled inside pcr::PCR_ISA_NS.
#pragma once

#include "cells.hpp"
#include "gemm.hpp"

namespace pcr {
namespace PCR_ISA_NS {

// Largest batch the fused loop takes: one packed A panel.
template <typename T>
constexpr idx recur_max_batch() {
  return Blocking<T>::MR;
}

// Elements of packed weights either direction needs.
template <typename T>
idx recur_packed_size(int G, idx H) {
  constexpr int NR = Blocking<T>::NR;
  return (H + NR - 1) / NR * NR * G * H;
}

// Multiply-adds per step below which the loop stays on one thread. With
// OpenMP's barrier (1-2 us a wait on this 2-core VM) one thread was faster up
// to 64K at B=1; with SpinBarrier two threads pay from here on: training at
// B=1, H=128, 2 threads against 1 (AVX-512 EPYC), RNN 1.5x, GRU 1.2x, LSTM
// 1.15x faster.
constexpr idx kParallelRecur = 1 << 14;

// Time steps per parallel region. With the thread governor on (threads.hpp)
// the recurrence runs as several regions rather than one, each reading
// num_threads() when it starts, so that a team whose unit of work has run
// past its deadline changes size within a few steps (a region also ends
// early then, at a step where its team agrees). About 4M multiply-adds a
// region, and at least 8 steps, so the fork and join (a few microseconds)
// stay near a percent of the work. With an explicit thread count: one region.
inline idx segment_steps(idx B, idx GH, idx H, idx Tn) {
  if (!threads_auto()) return mx(1, Tn);
  const idx per_step = mx(1, B * GH * H);
  return mx(8, (idx{1} << 22) / per_step);
}

template <typename T>
inline int recur_team(idx B, idx GH, idx H) {
  constexpr int NR = Blocking<T>::NR;
  const idx chunks = (H + NR - 1) / NR;
  const int nt = B * GH * H < kParallelRecur ? 1 : num_threads();
  return static_cast<int>(mn(nt, chunks));
}

// C[B, nr] (row stride ldc) = init + A[B, K] * panel `panel` of `packed`
// (K blocks of kc x NR at pc * npad + panel * kc * NR). init is a row added
// to every row (null: none); accumulate: C's own values instead. A is packed
// (pack_a, all K) when B > 1 and is the plain row when B == 1 (the one-row
// kernel reads it as a panel of one row: nothing to pack).
template <typename T>
inline void panel_product(idx B, idx K, const T* Ap, const T* packed, idx npad, idx panel,
                          idx nr, const T* init, bool accumulate, T* C, idx ldc) {
  using Bk = Blocking<T>;
  constexpr int MR = Bk::MR, NR = Bk::NR;
  alignas(64) T acc[MR * NR];
  for (idx pc = 0; pc < K; pc += Bk::KC) {
    const idx kc = mn(Bk::KC, K - pc);
    const T* Bp = packed + pc * npad + panel * kc * NR;
    const Out<T> out{acc, NR, Out<T>::kStore, T(0)};
    if (B == 1)
      micro_kernel<T, 1, NR, 1>(kc, Ap + pc, Bp, out);
    else
      KernelFor<T, MR, NR>::run(static_cast<int>(B), kc, Ap + pc * MR, Bp, out);
    for (idx b = 0; b < B; ++b) {
      T* c = C + b * ldc;
      const T* s = acc + b * NR;
      if (pc > 0 || accumulate)
        for (idx j = 0; j < nr; ++j) c[j] += s[j];
      else if (init)
        for (idx j = 0; j < nr; ++j) c[j] = init[j] + s[j];
      else
        for (idx j = 0; j < nr; ++j) c[j] = s[j];
    }
  }
}

// Forward through Tn steps. xp [Tn, B, GH] holds W_ih x_t + b_ih on entry and
// the activated gates on exit; hs, cs [Tn + 1, B, H] with the initial state
// in row 0; aux [Tn, B, H] (GRU); hp [B, GH] and packed (recur_packed_size)
// are scratch.
template <typename T>
void recur_forward(CellKind kind, idx B, idx H, idx Tn, const T* Whh, const T* bhh, T* xp,
                   T* hs, T* cs, T* aux, T* hp, T* packed) {
  using Bk = Blocking<T>;
  constexpr int MR = Bk::MR, NR = Bk::NR;
  const idx G = gate_count(kind), GH = G * H, BH = B * H;
  const idx chunks = (H + NR - 1) / NR, npad = chunks * G * NR;
  // Panel (c, g) holds the columns g*H + c*NR ... of op(B) = W_hh^T [H, GH]:
  // a chunk's gates are side by side, so a thread owns whole cells.
  const idx seg = segment_steps(B, GH, H, Tn);
  const bool governed = threads_auto();  // explicit: no early ends to check for
  for (idx t0 = 0, next = 0; t0 < Tn; t0 = next) {
    const idx t1 = mn(Tn, t0 + seg);
    next = t1;
    SpinBarrier barrier;
    parallel_team(recur_team<T>(B, GH, H), [&](int tid, int nth) {
      idx c0, c1;
      chunk_of(chunks, tid, nth, &c0, &c1);
      const idx u0 = c0 * NR, u1 = mn(H, c1 * NR);
      // The first region packs every panel (each thread its own chunks);
      // later ones, whatever their team, find them all packed.
      if (t0 == 0)
        for (idx pc = 0; pc < H; pc += Bk::KC) {
          const idx kc = mn(Bk::KC, H - pc);
          for (idx c = c0; c < c1; ++c)
            for (idx g = 0; g < G; ++g)
              pack_b_panel<T, NR>(true, Whh, H, g * H + c * NR, mn(NR, H - c * NR), pc, kc,
                                  packed + pc * npad + (c * G + g) * kc * NR);
        }
      T* Ap = B > 1 ? scratch<T, 3>(H * MR) : nullptr;
      for (idx t = t0; t < t1; ++t) {
        if (u0 < u1) {
          const T* A = hs + t * BH;
          if (B > 1) {
            pack_a<T, MR>(false, A, H, 0, B, 0, H, Ap);
            A = Ap;
          }
          for (idx c = c0; c < c1; ++c)
            for (idx g = 0; g < G; ++g) {
              const idx col = g * H + c * NR;
              panel_product(B, H, A, packed, npad, c * G + g, mn(NR, H - c * NR), bhh + col,
                            false, hp + col, GH);
            }
          StepIO<T> s = StepIO<T>::at(B, H, G, t, xp, hs, cs, aux);
          s.hp = hp;
          for (idx b = 0; b < B; ++b) cell_forward_units(kind, s, b, u0, u1);
        }
        if (governed && tid == 0 && nth > 1 && t + 1 < t1 && unit_overdue())
          barrier.stop_at(t + 1);
        barrier.wait(nth);  // h_{t+1} complete before anyone reads it
        if (governed && barrier.stopped(t + 1)) {  // the rest on the governor's new team
          if (tid == 0) next = t + 1;
          break;
        }
      }
    });
  }
}

// Backward through Tn steps (after recur_forward or the step loop).
// dout [Tn, B, H]: d(loss)/d(h_t) from above; dh, dc [B, H]: d(loss)/d(state
// after the last step) on entry, d(loss)/d(initial state) on exit. xp holds
// the activated gates on entry and d(loss)/d(xp) on exit; dhp_all [Tn, B, GH]
// gets d(loss)/d(hp) (the GRU's own buffer; xp itself for the others).
template <typename T>
void recur_backward(CellKind kind, idx B, idx H, idx Tn, const T* Whh, const T* dout, T* xp,
                    T* hs, T* cs, T* aux, T* dhp_all, T* dh, T* dc,
                    T* packed) {
  using Bk = Blocking<T>;
  constexpr int MR = Bk::MR, NR = Bk::NR;
  const idx G = gate_count(kind), GH = G * H, BH = B * H;
  const idx chunks = (H + NR - 1) / NR, npad = chunks * NR;
  // Panel c holds columns c*NR ... of op(B) = W_hh [GH, H]: units again.
  const idx seg = segment_steps(B, GH, H, Tn);
  const bool governed = threads_auto();
  for (idx t1 = Tn, next = Tn; t1 > 0; t1 = next) {
    const idx t0 = t1 > seg ? t1 - seg : 0;
    next = t0;
    SpinBarrier barrier;
    parallel_team(recur_team<T>(B, GH, H), [&](int tid, int nth) {
      idx c0, c1;
      chunk_of(chunks, tid, nth, &c0, &c1);
      const idx u0 = c0 * NR, u1 = mn(H, c1 * NR);
      if (t1 == Tn)  // the first region packs every panel, as in recur_forward
        for (idx pc = 0; pc < GH; pc += Bk::KC) {
          const idx kc = mn(Bk::KC, GH - pc);
          for (idx c = c0; c < c1; ++c)
            pack_b_panel<T, NR>(false, Whh, H, c * NR, mn(NR, H - c * NR), pc, kc,
                                packed + pc * npad + c * kc * NR);
        }
      T* Ap = B > 1 ? scratch<T, 3>(GH * MR) : nullptr;
      for (idx t = t1 - 1; t >= t0; --t) {
        bool direct = false;
        if (u0 < u1) {
          const T* dy = dout + t * BH;
          for (idx b = 0; b < B; ++b) {
            T* d = dh + b * H;
#pragma omp simd
            for (idx j = u0; j < u1; ++j) d[j] += dy[b * H + j];
          }
          StepIO<T> s = StepIO<T>::at(B, H, G, t, xp, hs, cs, aux);
          s.dhp = dhp_all + t * B * GH;
          for (idx b = 0; b < B; ++b) cell_backward_units(kind, s, dh, dc, b, u0, u1);
          direct = has_direct_dh(kind);
        }
        if (governed && tid == 0 && nth > 1 && t > t0 && unit_overdue()) barrier.stop_at(t);
        barrier.wait(nth);  // d(hp)_t complete before anyone reads it
        if (u0 < u1) {
          const T* A = dhp_all + t * B * GH;
          if (B > 1) {
            pack_a<T, MR>(false, A, GH, 0, B, 0, GH, Ap);
            A = Ap;
          }
          // Each thread writes and next reads only its own units of dh.
          for (idx c = c0; c < c1; ++c)
            panel_product<T>(B, GH, A, packed, npad, c, mn(NR, H - c * NR), nullptr, direct,
                             dh + c * NR, H);
        }
        if (governed && barrier.stopped(t)) {  // the rest on the governor's new team
          if (tid == 0) next = t;
          break;
        }
      }
    });
  }
}

}  // namespace PCR_ISA_NS
}  // namespace pcr
