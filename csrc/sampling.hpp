// Whole generation loops in C++: sampling (temperature, top-k, top-p, stop
// ids) and beam search, over the model's one-step forward (Model::step).
//
// Randomness is counter-based: the uniform number row b uses at position i
// of its sample is hash_uniform(seed, b, i). A row's text therefore depends
// only on the seed, its row number and the model, never on the thread
// count, on how the characters are split over calls, or on the other rows.
// The draw itself runs in double precision, in this file only (compiled
// once, not per instruction set), with the same operations as the NumPy
// reference in the tests.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <optional>
#include <stdexcept>
#include <vector>

#include "model.hpp"
#include "rng.hpp"

namespace pcr {

struct DrawOptions {
  double temperature = 1.0;  // 0: argmax
  idx top_k = 0;             // 0: off
  double top_p = 1.0;        // 1: off
};

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

[[noreturn]] inline void non_finite_logits() {
  throw std::invalid_argument(
      "the model's output is NaN or infinite (non-finite parameters or state?): nothing can "
      "be sampled from it");
}

// The first index of the largest value (np.argmax); refuses NaN and infinity.
template <typename T>
std::int32_t argmax_checked(const T* logits, idx V) {
  idx best = 0;
  for (idx v = 0; v < V; ++v) {
    if (!std::isfinite(static_cast<double>(logits[v]))) non_finite_logits();
    if (logits[v] > logits[best]) best = v;
  }
  return static_cast<std::int32_t>(best);
}

// One id from logits [V] with the uniform number u in [0, 1):
//   z = logits / temperature (in double); temperature 0, or a temperature so
//   low that z overflows, is argmax;
//   top_k: keep the ids whose z is >= the k-th largest (ties all kept);
//   p = exp(z - max z); top_p: keep the smallest set of most likely ids
//   (equal p: lower id first) whose mass before it is < top_p * total;
//   the id is the number of cumulative sums c (in id order) <= u * c[V-1]
//   (the inverse CDF), or where rounding puts u * total at the end, the
//   last id still allowed.
template <typename T>
std::int32_t draw(const T* logits, idx V, const DrawOptions& o, double u, DrawScratch& s) {
  if (o.temperature > 0) {
    double hi = -std::numeric_limits<double>::infinity(), lo = -hi;
    for (idx v = 0; v < V; ++v) {
      const double z = static_cast<double>(logits[v]) / o.temperature;
      s.z[v] = z;
      hi = std::max(hi, z);  // NaN: max/min keep the other operand, checked below
      lo = std::min(lo, z);
    }
    bool finite = std::isfinite(hi) && std::isfinite(lo);
    for (idx v = 0; finite && v < V; ++v) finite = !std::isnan(s.z[v]);
    if (finite) {
      double* z = s.z.data();
      if (o.top_k > 0 && o.top_k < V) {
        std::copy(z, z + V, s.p.data());
        std::nth_element(s.p.begin(), s.p.begin() + (V - o.top_k), s.p.begin() + V);
        const double kth = s.p[static_cast<size_t>(V - o.top_k)];
        for (idx v = 0; v < V; ++v)
          if (!(z[v] >= kth)) z[v] = -std::numeric_limits<double>::infinity();
      }
      double m = -std::numeric_limits<double>::infinity();
      for (idx v = 0; v < V; ++v) m = std::max(m, z[v]);
      double* p = s.p.data();
      for (idx v = 0; v < V; ++v) p[v] = std::exp(z[v] - m);
      if (o.top_p < 1.0) {
        idx* order = s.order.data();
        std::iota(order, order + V, idx(0));
        std::stable_sort(order, order + V, [&](idx a, idx b) { return p[a] > p[b]; });
        double total = 0;
        for (idx j = 0; j < V; ++j) total += p[order[j]];
        const double limit = o.top_p * total;
        double before = 0;
        for (idx j = 0; j < V; ++j) {
          const double pj = p[order[j]];
          if (!(before < limit)) p[order[j]] = 0;
          before += pj;
        }
      }
      double* c = s.c.data();
      double acc = 0;
      for (idx v = 0; v < V; ++v) c[v] = acc += p[v];
      const double x = u * c[V - 1];
      const idx id = std::upper_bound(c, c + V, x) - c;  // the count of c <= x
      if (id < V) return static_cast<std::int32_t>(id);
      idx last = V - 1;
      while (last > 0 && !(p[last] > 0)) --last;
      return static_cast<std::int32_t>(last);
    }
  }
  return argmax_checked(logits, V);
}

// The uniform number of row b at position i of its sample.
inline double sample_uniform(std::uint64_t seed, idx b, std::uint64_t i) {
  return hash_uniform(seed, static_cast<std::uint64_t>(b), i);
}

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
      if (!live[b]) {
        out[b * n + i] = -1;
        continue;
      }
      const double u = sample_uniform(seed, b, pos);
      std::int32_t id;
      if (uniform_first && pos == 0)
        id = static_cast<std::int32_t>(std::min<idx>(V - 1, static_cast<idx>(u * V)));
      else
        id = draw(logits + b * V, V, o, u, s);
      out[b * n + i] = fed[b] = id;
      if (m > 0) {
        std::int32_t* w = window + b * m;
        std::copy(w + 1, w + m, w);
        w[m - 1] = id;
        if (std::equal(w, w + m, stop)) live[b] = 0;
      }
      any = any || live[b];
    }
    if (!any) return i + 1;
    if (i == n - 1 && !feed_last) return n;
    const T* next = model.step(P, fed.data(), B, state);
    std::copy(next, next + B * V, logits);
  }
  return n;
}

// Repetition control for beam search, over the ids the model read before it
// (the context) followed by each hypothesis's own ids:
//   no_repeat (N >= 1; 0: off): an id that would complete an N-gram that
//     already occurs there is not considered (Hugging Face's
//     no_repeat_ngram_size);
//   penalty (r >= 1; 1: off) over n-grams of penalty_size ids: the ranking
//     lowers an id's log-probability by log(r) for every earlier occurrence
//     there of the n-gram it would complete (CTRL's repetition penalty,
//     Keskar et al. 2019, counted over n-grams instead of single tokens, as
//     single characters all recur).
struct Repeats {
  const std::int32_t* context = nullptr;
  idx context_len = 0;
  idx no_repeat = 0;
  double penalty = 1.0;
  idx penalty_size = 1;
};

// count[v] += the occurrences in seq of the g-gram (last g - 1 ids of seq, v).
inline void count_ngrams(const std::vector<std::int32_t>& seq, idx g, std::vector<int>& count) {
  const idx n = static_cast<idx>(seq.size());
  if (g < 1 || n < g) return;
  const std::int32_t* tail = seq.data() + n - (g - 1);
  for (idx i = 0; i + g - 1 < n; ++i)
    if (std::equal(tail, tail + (g - 1), seq.data() + i)) ++count[seq[i + g - 1]];
}

// The most likely continuation of `length` ids under the model, by beam
// search over K = beam_width hypotheses.
//   logits [V], state [S, L, 1, H]: after the prime (read only)
//   stop [m]: a hypothesis that ends with these ids is finished there
//   rep: repetition control (see Repeats)
// A hypothesis is ranked by its log-probability (a sum of log-softmax values,
// in double) less the repetition penalties; a finished one is scored by that
// rank divided by len^length_penalty (len: its number of ids).
// At every step each live hypothesis is extended by every id that no_repeat
// allows; the extensions are ranked (ties: the earlier hypothesis, then the
// lower id); going down that list, a finished extension is kept aside and the
// others become the next hypotheses until K are found. A hypothesis that no id
// may extend is finished as it is, and after `length` steps the live ones are
// finished too. The best finished one wins (with a stop: one that ended with
// the stop beats any that did not; ties: the first found); returns it in best
// [length] (its length in *best_len), its score and its log-probability. With
// length_penalty 0 the search ends early once no live hypothesis can beat the
// best finished one (ranks only fall).
template <typename T>
void beam_search(Model<T>& model, const T* P, const T* logits0, const T* state0, idx length,
                 idx K, double length_penalty, const std::int32_t* stop, idx m,
                 const Repeats& rep, std::int32_t* best, idx* best_len, double* best_score,
                 double* best_logp) {
  const idx V = model.V, S = model.state_slots(), L = model.L, H = model.H;
  std::lock_guard<std::mutex> lock(model.mutex());
  struct Hyp {
    double rank, logp;
    std::vector<std::int32_t> ids;
  };
  std::vector<Hyp> live{{0.0, 0.0, {}}}, next;
  std::vector<T> state(static_cast<size_t>(S * L * H)), nstate, logits(logits0, logits0 + V);
  std::copy(state0, state0 + S * L * H, state.begin());
  struct Cand {
    double rank, logp;
    idx beam;
    std::int32_t id;
  };
  std::vector<Cand> cands;
  std::vector<idx> parent;          // each new hypothesis's parent in `live`
  std::vector<std::int32_t> fed;    // and the id it adds
  std::vector<std::int32_t> seq;    // context + a hypothesis's ids
  std::vector<int> banned(static_cast<size_t>(V)), seen(static_cast<size_t>(V));
  const bool repeats = rep.no_repeat > 0 || rep.penalty != 1.0;
  const double log_r = std::log(rep.penalty);
  bool found = false, top_stopped = false;
  double top_score = 0, top_logp = 0;
  std::vector<std::int32_t> top;
  auto score = [&](double r, idx len) {
    return length_penalty == 0 || len == 0
               ? r
               : r / std::pow(static_cast<double>(len), length_penalty);
  };
  auto finish = [&](const Hyp& h, bool stopped) {
    const double sc = score(h.rank, static_cast<idx>(h.ids.size()));
    if (!found || (stopped && !top_stopped) || (stopped == top_stopped && sc > top_score)) {
      found = true;
      top_stopped = stopped;
      top_score = sc;
      top_logp = h.logp;
      top = h.ids;
    }
  };
  auto ends_with_stop = [&](const std::vector<std::int32_t>& ids) {
    return m > 0 && static_cast<idx>(ids.size()) >= m &&
           std::equal(ids.end() - m, ids.end(), stop);
  };
  for (idx t = 0; t < length && !live.empty(); ++t) {
    const idx B = static_cast<idx>(live.size());
    cands.clear();
    for (idx b = 0; b < B; ++b) {
      const T* z = logits.data() + b * V;
      double mx = -std::numeric_limits<double>::infinity();
      for (idx v = 0; v < V; ++v) {
        if (!std::isfinite(static_cast<double>(z[v]))) non_finite_logits();
        mx = std::max(mx, static_cast<double>(z[v]));
      }
      double sum = 0;
      for (idx v = 0; v < V; ++v) sum += std::exp(static_cast<double>(z[v]) - mx);
      const double lse = mx + std::log(sum);
      if (repeats) {
        seq.assign(rep.context, rep.context + rep.context_len);
        seq.insert(seq.end(), live[b].ids.begin(), live[b].ids.end());
        std::fill(banned.begin(), banned.end(), 0);
        std::fill(seen.begin(), seen.end(), 0);
        if (rep.no_repeat > 0) count_ngrams(seq, rep.no_repeat, banned);
        if (rep.penalty != 1.0) count_ngrams(seq, rep.penalty_size, seen);
      }
      bool extended = false;
      for (idx v = 0; v < V; ++v) {
        if (banned[v]) continue;
        const double lp = static_cast<double>(z[v]) - lse;
        cands.push_back({live[b].rank + lp - seen[v] * log_r, live[b].logp + lp, b,
                         static_cast<std::int32_t>(v)});
        extended = true;
      }
      if (!extended) finish(live[b], false);
    }
    std::stable_sort(cands.begin(), cands.end(),
                     [](const Cand& a, const Cand& c) { return a.rank > c.rank; });
    next.clear();
    parent.clear();
    fed.clear();
    for (const Cand& c : cands) {
      if (static_cast<idx>(next.size()) == K) break;
      Hyp h{c.rank, c.logp, live[c.beam].ids};
      h.ids.push_back(c.id);
      if (ends_with_stop(h.ids)) {
        finish(h, true);
        continue;
      }
      parent.push_back(c.beam);
      fed.push_back(c.id);
      next.push_back(std::move(h));
    }
    live.swap(next);
    if (live.empty()) break;
    if (t == length - 1) break;
    if (found && length_penalty == 0 && (m == 0 || top_stopped) &&
        top_score >= live.front().rank) {
      live.clear();  // nothing live can do better
      break;
    }
    // The states of the chosen parents, in the new order: [S, L, B', H].
    const idx B2 = static_cast<idx>(live.size());
    nstate.assign(static_cast<size_t>(S * L * B2 * H), T(0));
    for (idx sl = 0; sl < S * L; ++sl)
      for (idx b = 0; b < B2; ++b)
        std::copy_n(state.data() + (sl * B + parent[b]) * H, H,
                    nstate.data() + (sl * B2 + b) * H);
    state.swap(nstate);
    const T* z = model.step(P, fed.data(), B2, state.data());
    logits.assign(z, z + B2 * V);
  }
  for (const Hyp& h : live) finish(h, false);
  std::copy(top.begin(), top.end(), best);
  *best_len = static_cast<idx>(top.size());
  *best_score = top_score;
  *best_logp = top_logp;
}

}  // namespace pcr
