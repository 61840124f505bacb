// Beam search, written once over "advance the chosen hypotheses one id"
// (a callable): the CPU's model gives it in sampling.hpp, the device model
// in cuda/device_model.hpp. Host code only.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "common.hpp"
#include "draw.hpp"

namespace pcr {

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
//   logits [V]: after the prime (read only)
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
//
// The model is reached through advance(parent, fed, B, B2): the state of new
// hypothesis b (of B2) becomes that of hypothesis parent[b] (of B) after
// reading fed[b]; returns the B2 rows of logits [B2, V], valid until the
// next call. beam_search below is this over the CPU's model; the device
// model passes its own.
template <typename T, typename Advance>
void beam_search_loop(idx V, Advance&& advance, const T* logits0, idx length, idx K,
                      double length_penalty, const std::int32_t* stop, idx m,
                      const Repeats& rep, std::int32_t* best, idx* best_len,
                      double* best_score, double* best_logp) {
  struct Hyp {
    double rank, logp;
    std::vector<std::int32_t> ids;
  };
  std::vector<Hyp> live{{0.0, 0.0, {}}}, next;
  std::vector<T> logits(logits0, logits0 + V);
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
    const idx B2 = static_cast<idx>(live.size());
    const T* z = advance(parent.data(), fed.data(), B, B2);
    logits.assign(z, z + B2 * V);
  }
  for (const Hyp& h : live) finish(h, false);
  std::copy(top.begin(), top.end(), best);
  *best_len = static_cast<idx>(top.size());
  *best_score = top_score;
  *best_logp = top_logp;
}

}  // namespace pcr
