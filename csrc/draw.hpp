// One step of one row of a sample, written once for the CPU's sampling loop
// (sampling.hpp) and the device's (cuda/device_model.hpp): the draw of an id
// from a row of logits (temperature, top-k, top-p, inverse CDF in double)
// and the row's stop matching.
//
// Two things differ by where it runs, neither in the arithmetic. Selection:
// the CPU finds top-k's k-th value with std::nth_element and top-p's order
// with std::stable_sort; the device (Portable = true) counts and insertion-
// sorts, O(V^2) on one thread per row. Both give the same value and the same
// order, so the sums over that order match term for term. Errors: a row of
// logits holding NaN or infinity returns kNonFinite, which the CPU's loop
// raises at once and the device's loop after its kernels.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <stdexcept>

#include "common.hpp"
#include "rng.hpp"

namespace pcr {

struct DrawOptions {
  double temperature = 1.0;  // 0: argmax
  idx top_k = 0;             // 0: off
  double top_p = 1.0;        // 1: off
};

// draw_row's answer for logits holding NaN or infinity.
constexpr std::int32_t kNonFinite = -2;

[[noreturn]] inline void non_finite_logits() {
  throw std::invalid_argument(
      "the model's output is NaN or infinite (non-finite parameters or state?): nothing can "
      "be sampled from it");
}

// The uniform number of row b at position i of its sample.
PCR_RNG_HD double sample_uniform(std::uint64_t seed, idx b, std::uint64_t i) {
  return hash_uniform(seed, static_cast<std::uint64_t>(b), i);
}

// Finite / NaN tests both compilers take in device code (no -ffast-math).
PCR_RNG_HD bool finite_d(double x) { return x - x == 0.0; }
PCR_RNG_HD bool nan_d(double x) { return x != x; }

// The first index of the largest value (np.argmax), or kNonFinite.
template <typename T>
PCR_RNG_HD std::int32_t argmax_row(const T* logits, idx V) {
  idx best = 0;
  for (idx v = 0; v < V; ++v) {
    if (!finite_d(static_cast<double>(logits[v]))) return kNonFinite;
    if (logits[v] > logits[best]) best = v;
  }
  return static_cast<std::int32_t>(best);
}

// The value at position q of z [V] sorted ascending (std::nth_element's).
template <bool Portable>
PCR_RNG_HD double nth_value(double* z, double* scratch, idx V, idx q) {
  if constexpr (Portable) {
    for (idx v = 0; v < V; ++v) {
      idx less = 0, equal = 0;
      for (idx w = 0; w < V; ++w) {
        less += z[w] < z[v];
        equal += z[w] == z[v];
      }
      if (less <= q && q < less + equal) return z[v];
    }
    return z[0];  // unreachable for finite z
  } else {
    std::copy(z, z + V, scratch);
    std::nth_element(scratch, scratch + q, scratch + V);
    return scratch[q];
  }
}

// order [V] = 0..V-1 sorted by p descending, equal p in increasing id
// (std::stable_sort's order).
template <bool Portable>
PCR_RNG_HD void order_by_mass(const double* p, idx* order, idx V) {
  if constexpr (Portable) {
    for (idx v = 0; v < V; ++v) {  // insertion sort: stable
      idx j = v;
      for (; j > 0 && p[order[j - 1]] < p[v]; --j) order[j] = order[j - 1];
      order[j] = v;
    }
  } else {
    std::iota(order, order + V, idx(0));
    std::stable_sort(order, order + V, [&](idx a, idx b) { return p[a] > p[b]; });
  }
}

// One id from logits [V] with the uniform number u in [0, 1); z, p, c
// (double) and order (idx) are scratch of V elements each:
//   z = logits / temperature (in double); temperature 0, or a temperature so
//   low that z overflows, is argmax;
//   top_k: keep the ids whose z is >= the k-th largest (ties all kept);
//   p = exp(z - max z); top_p: keep the smallest set of most likely ids
//   (equal p: lower id first) whose mass before it is < top_p * total;
//   the id is the number of cumulative sums c (in id order) <= u * c[V-1]
//   (the inverse CDF), or where rounding puts u * total at the end, the
//   last id still allowed.
template <bool Portable, typename T>
PCR_RNG_HD std::int32_t draw_row(const T* logits, idx V, const DrawOptions& o, double u,
                                 double* z, double* p, double* c, idx* order) {
  if (o.temperature > 0) {
    double hi = -INFINITY, lo = INFINITY;
    for (idx v = 0; v < V; ++v) {
      const double zv = static_cast<double>(logits[v]) / o.temperature;
      z[v] = zv;
      hi = zv > hi ? zv : hi;  // NaN: the comparison keeps the other operand, checked below
      lo = zv < lo ? zv : lo;
    }
    bool finite = finite_d(hi) && finite_d(lo);
    for (idx v = 0; finite && v < V; ++v) finite = !nan_d(z[v]);
    if (finite) {
      if (o.top_k > 0 && o.top_k < V) {
        const double kth = nth_value<Portable>(z, p, V, V - o.top_k);
        for (idx v = 0; v < V; ++v)
          if (!(z[v] >= kth)) z[v] = -INFINITY;
      }
      double m = -INFINITY;
      for (idx v = 0; v < V; ++v) m = z[v] > m ? z[v] : m;
      for (idx v = 0; v < V; ++v) p[v] = ::exp(z[v] - m);
      if (o.top_p < 1.0) {
        order_by_mass<Portable>(p, order, V);
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
      double acc = 0;
      for (idx v = 0; v < V; ++v) c[v] = acc += p[v];
      const double x = u * c[V - 1];
      idx lo_i = 0, hi_i = V;  // the count of c <= x (c is non-decreasing)
      while (lo_i < hi_i) {
        const idx mid = lo_i + (hi_i - lo_i) / 2;
        if (c[mid] <= x)
          lo_i = mid + 1;
        else
          hi_i = mid;
      }
      if (lo_i < V) return static_cast<std::int32_t>(lo_i);
      idx last = V - 1;
      while (last > 0 && !(p[last] > 0)) --last;
      return static_cast<std::int32_t>(last);
    }
  }
  return argmax_row(logits, V);
}

// Row b's id at position pos of its sample, and its stop matching:
//   live[b] == 0: the row has stopped; returns -1 and changes nothing;
//   else the id drawn (uniformly at position 0 with uniform_first, from
//   logits otherwise), pushed into window [m] (the row's last m ids); the
//   row stops (live[b] = 0) once window equals stop [m].
// Returns kNonFinite (and changes nothing) for non-finite logits.
template <bool Portable, typename T>
PCR_RNG_HD std::int32_t sample_step(const T* logits, idx V, const DrawOptions& o,
                                    std::uint64_t seed, idx b, std::uint64_t pos,
                                    bool uniform_first, const std::int32_t* stop, idx m,
                                    std::int32_t* window, std::uint8_t& live, double* z,
                                    double* p, double* c, idx* order) {
  if (!live) return -1;
  const double u = sample_uniform(seed, b, pos);
  std::int32_t id;
  if (uniform_first && pos == 0) {
    const idx k = static_cast<idx>(u * static_cast<double>(V));
    id = static_cast<std::int32_t>(k < V - 1 ? k : V - 1);
  } else {
    id = draw_row<Portable>(logits, V, o, u, z, p, c, order);
    if (id == kNonFinite) return id;
  }
  if (m > 0) {
    bool same = true;
    for (idx j = 0; j + 1 < m; ++j) {
      window[j] = window[j + 1];
      same = same && window[j] == stop[j];
    }
    window[m - 1] = id;
    if (same && id == stop[m - 1]) live = 0;
  }
  return id;
}

}  // namespace pcr
