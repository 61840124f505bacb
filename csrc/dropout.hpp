// The regularisers a model can train with, and their masks. All are
// inverted (what is kept is scaled by 1 / (1 - p)), active only in training
// calls, and drawn from the call's seed by hash_uniform (rng.hpp), so a mask
// is the same at any thread count; the same mask serves the forward and the
// backward pass of a call. Rows are time-major, r = t * B + b.
#pragma once

#include <cstdint>

#include "common.hpp"
#include "rng.hpp"

namespace pcr {

// The rates (0: off).
struct Dropouts {
  double between = 0;    // on the input of layers 1..L-1 (torch's nn.RNN dropout)
  double input = 0;      // on layer 0's input: the embedded characters (E > 0)
  double output = 0;     // on the top layer's output, before the decoder
  double weight = 0;     // DropConnect on each W_hh: one mask per call (AWD-LSTM's weight drop)
  double embedding = 0;  // whole rows of the embedding table, one mask per call (E > 0)
  bool locked = false;   // between/input/output: one mask per sequence (batch row),
                         // shared by all its time steps (variational / locked dropout)

  bool any() const { return between > 0 || input > 0 || output > 0 || weight > 0 || embedding > 0; }

  // The rate on the input of layer l: the between-layer rate, or for layer 0
  // (fed by an embedding when `embedded`; one-hot input has none) the input rate.
  double on_input(idx l, bool embedded) const {
    return l > 0 ? between : (embedded ? input : 0.0);
  }
};

// Rows first..first+B of a batch of `total` rows: what one process of a
// data-parallel run computes, whose masks are those rows' of the whole batch.
// total == 0: the call's rows are the batch.
struct MaskRows {
  idx first = 0, total = 0;
  // Whether the B rows of a call are a part of a larger batch.
  bool part(idx B) const { return total != 0 && !(first == 0 && total == B); }
};

// Streams of hash_uniform, one per kind of mask; layer l's between-layer mask
// is stream l, its weight-drop mask kWeightStream + l.
constexpr std::uint64_t kInputStream = 1u << 20, kOutputStream = kInputStream + 1,
                        kEmbeddingStream = kInputStream + 2, kWeightStream = 1u << 21;

// The key of element i of a mask over [B*Tn, width] (rows r = t*B + b):
// i itself, or, when the B rows are rows first..first+B of a batch of `total`
// (a part), that element's index in the whole batch. Both backends draw with it.
PCR_RNG_HD std::uint64_t mask_key(idx i, idx width, idx B, idx first, idx total, bool part) {
  using u64 = std::uint64_t;
  if (!part) return static_cast<u64>(i);
  // unsigned: any total_rows the binding accepts is defined
  const idx r = i / width, j = i - r * width, t = r / B, b = r - t * B;
  return (static_cast<u64>(t) * static_cast<u64>(total) + static_cast<u64>(first + b)) *
             static_cast<u64>(width) + static_cast<u64>(j);
}

// out [B*Tn, width] = in [B*Tn, width] * mask [B*Tn, width] (rows r = t*B + b).
// Element (r, j) keeps its value (scaled) when its uniform from (seed, stream)
// is >= p: the key is (r, j), or with `locked` (b, j), one mask per sequence
// shared by every step (drawn once, then copied). With `rows` set, b is row
// first + b of a batch of `total` rows and the key is that row's in the whole
// batch.
template <typename T>
void apply_mask(double p, bool locked, std::uint64_t seed, std::uint64_t stream, idx B, idx Tn,
                idx width, MaskRows rows, const T* in, T* mask, T* out) {
  const idx n = B * Tn * width, per_step = B * width, drawn = locked ? per_step : n;
  const T keep = T(1) / T(1 - p);
  const idx first = rows.first, total = rows.total;
  const bool part = rows.part(B);
  parallel_for(drawn, threads_for(drawn * 4), [&](idx i) {
    const double u = hash_uniform(seed, stream, mask_key(i, width, B, first, total, part));
    mask[i] = u >= p ? keep : T(0);
  });
  if (locked)
    parallel_for(Tn - 1, threads_for(n), [&](idx t) {
      copy_n(mask, per_step, mask + (t + 1) * per_step);
    });
  parallel_for(n, threads_for(n), [&](idx i) { out[i] = in[i] * mask[i]; });
}

// The backward pass of a mask: a [n] *= mask [n].
template <typename T>
void multiply_by_mask(T* a, const T* mask, idx n) {
  parallel_for(n, threads_for(n), [&](idx i) { a[i] *= mask[i]; });
}

// DropConnect on layer l's W_hh [n = G*H*H]: out [n] = W * mask [n], element i
// kept (scaled) when its uniform from (seed, kWeightStream + l) is >= p.
// Returns out.
template <typename T>
const T* drop_weights(double p, std::uint64_t seed, idx l, idx n, const T* W, T* mask, T* out) {
  const T keep = T(1) / T(1 - p);
  parallel_for(n, threads_for(n * 4), [&](idx i) {
    const double u = hash_uniform(seed, kWeightStream + static_cast<std::uint64_t>(l),
                                  static_cast<std::uint64_t>(i));
    mask[i] = u >= p ? keep : T(0);
    out[i] = W[i] * mask[i];
  });
  return out;
}

// rows [N, width] *= mask [V] of each row's id: rows[r, :] *= mask[ids[r]].
template <typename T>
void scale_rows_by_id(const T* mask, const std::int32_t* ids, idx N, idx width, T* rows) {
  parallel_for(N, threads_for(N * width), [&](idx r) {
    const T f = mask[ids[r]];
    T* row = rows + r * width;
#pragma omp simd
    for (idx j = 0; j < width; ++j) row[j] *= f;
  });
}

// Embedding dropout on the embedded rows [N, E] of ids [N]: row v of the
// table [V, E] is kept (scaled) when its uniform from (seed, kEmbeddingStream)
// is >= p; mask [V] receives the table's row mask (the backward pass scales
// by it again), rows[r, :] *= mask[ids[r]].
template <typename T>
void drop_embedding_rows(double p, std::uint64_t seed, idx V, const std::int32_t* ids, idx N,
                         idx E, T* mask, T* rows) {
  const T keep = T(1) / T(1 - p);
  for (idx v = 0; v < V; ++v)
    mask[v] = hash_uniform(seed, kEmbeddingStream, static_cast<std::uint64_t>(v)) >= p
                  ? keep
                  : T(0);
  scale_rows_by_id(mask, ids, N, E, rows);
}

}  // namespace pcr
