// Whole generation loops in C++: sampling (temperature, top-k, top-p, stop
// ids) and beam search, over the model's one-step forward (Model::step).
//
// Randomness is counter-based: the uniform number row b uses at position i
// of its sample is hash_uniform(seed, b, i). A row's text therefore depends
// only on the seed, its row number and the model, never on the thread
// count, on how the characters are split over calls, or on the other rows.
// The draw itself (draw.hpp, shared with the device's loop) runs in double
// precision, compiled once, not per instruction set, with the same
// operations as the NumPy reference in the tests.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <optional>
#include <stdexcept>
#include <vector>

#include "beam.hpp"
#include "draw.hpp"
#include "model.hpp"

namespace pcr {

// Scratch space of one draw, reused across steps.
struct DrawScratch {
  std::vector<double> z, p, c;
  std::vector<idx> order;
  void size(idx V) {
    z.resize(static_cast<size_t>(V));
    p.resize(static_cast<size_t>(V));
    c.resize(static_cast<size_t>(V));
    order.resize(static_cast<size_t>(V));
  }
};

// Generates up to n ids for each of B rows.
//   logits [B, V]   in: what the first id of each row is drawn from; out: the
//                   logits after the last id fed (see feed_last)
//   state [S, L, B, H]  in/out, the state those logits came from
//   out [B, n]      the ids; -1 where a row had already stopped
//   position        the index of the first id within the whole sample (for
//                   the random numbers; a sample made in pieces passes the
//                   count generated so far)
//   uniform_first   the id at position 0 is drawn uniformly (no context)
//   stop [m]        stop ids (m = 0: none): a row stops once its last m ids
//                   are these; window [B, m] holds each row's last m ids
//                   (-1 before any) and live [B] whether it is still going,
//                   both carried from call to call
//   feed_last       whether the last id is fed through the model (needed
//                   when more ids will be asked for)
// Returns the number of steps made: n, or fewer when every row stopped.
template <typename T>
idx sample_loop(Model<T>& model, const T* P, T* state, T* logits, idx B, idx n,
                std::int32_t* out, const DrawOptions& o, std::uint64_t seed,
                std::uint64_t position, bool uniform_first, const std::int32_t* stop, idx m,
                std::int32_t* window, std::uint8_t* live, bool feed_last) {
  const idx V = model.V;
  std::lock_guard<std::mutex> lock(model.mutex());
  DrawScratch s;
  s.size(V);
  std::vector<std::int32_t> fed(static_cast<size_t>(B), 0);
  // Timed in blocks of kBlock steps (threads.hpp): a step alone, or a few
  // dozen, are too short to time against the scheduler's noise (a few ms).
  constexpr idx kBlock = 256;
  std::optional<Governed> unit;
  for (idx i = 0; i < n; ++i) {
    if (i % kBlock == 0) {
      unit.reset();
      unit.emplace(Site::SAMPLE, &model, B, static_cast<double>(B * std::min(kBlock, n - i)));
    }
    unit->set_amount(static_cast<double>(B * (i % kBlock + 1)));  // the steps begun so far
    const std::uint64_t pos = position + static_cast<std::uint64_t>(i);
    bool any = false;
    for (idx b = 0; b < B; ++b) {
      const std::int32_t id =
          sample_step<false>(logits + b * V, V, o, seed, b, pos, uniform_first, stop, m,
                             window + b * m, live[b], s.z.data(), s.p.data(), s.c.data(),
                             s.order.data());
      if (id == kNonFinite) non_finite_logits();
      out[b * n + i] = id;
      if (id >= 0) fed[b] = id;
      any = any || live[b];
    }
    if (!any) return i + 1;
    if (i == n - 1 && !feed_last) return n;
    const T* next = model.step(P, fed.data(), B, state);
    std::copy(next, next + B * V, logits);
  }
  return n;
}

// Beam search over the CPU's model: logits [V] and state [S, L, 1, H] after
// the prime (read only); the rest as beam_search_loop.
template <typename T>
void beam_search(Model<T>& model, const T* P, const T* logits0, const T* state0, idx length,
                 idx K, double length_penalty, const std::int32_t* stop, idx m,
                 const Repeats& rep, std::int32_t* best, idx* best_len, double* best_score,
                 double* best_logp) {
  const idx SL = model.state_slots() * model.L, H = model.H;
  std::lock_guard<std::mutex> lock(model.mutex());
  std::vector<T> state(state0, state0 + SL * H), nstate;
  auto advance = [&](const idx* parent, const std::int32_t* fed, idx B, idx B2) {
    // The states of the chosen parents, in the new order: [S, L, B2, H].
    nstate.assign(static_cast<size_t>(SL * B2 * H), T(0));
    for (idx sl = 0; sl < SL; ++sl)
      for (idx b = 0; b < B2; ++b)
        std::copy_n(state.data() + (sl * B + parent[b]) * H, H,
                    nstate.data() + (sl * B2 + b) * H);
    state.swap(nstate);
    return model.step(P, fed, B2, state.data());
  };
  beam_search_loop(model.V, advance, logits0, length, K, length_penalty, stop, m, rep, best,
                   best_len, best_score, best_logp);
}

}  // namespace pcr
