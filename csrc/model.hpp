// The whole model: input -> L recurrent layers -> decoder -> softmax + CE,
// forward and backward through time, on one flat parameter buffer and one
// workspace that is sized once per (B, T) and reused.
//
// Callers (bindings.cpp) have checked every pointer, shape and token id. The
// heavy kernels come from the table of the instruction set in use (dispatch.hpp).
//
// The recurrent weights are packed into the GEMM's panel layout once per
// layer and call, and the panels are reused at every time step. Small
// batches (B <= the micro-kernel's rows) run the whole time loop of a layer
// in one parallel region (recurrence.hpp); larger ones step by step here.
// Both sum every element in the same order: the same bits either way.
#pragma once

#include <mutex>
#include <cstdio>
#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif
#include <stdexcept>
#include <string>
#include <vector>

#include "common.hpp"
#include "embedding.hpp"
#include "dispatch.hpp"

namespace pcr {

struct ParamInfo {
  std::string name;
  std::vector<idx> shape;
  idx offset, size;
};

// Counter-based uniform [0,1) from (seed, stream, index): dropout masks are a
// pure function of the seed, identical at any thread count.
inline double hash_uniform(std::uint64_t seed, std::uint64_t stream, std::uint64_t i) {
  std::uint64_t z = seed + 0x9E3779B97F4A7C15ull * (stream + 1) + 0xBF58476D1CE4E5B9ull * i;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<double>(z >> 11) * (1.0 / 9007199254740992.0);
}

// A request for more memory than the machine has, refused before allocating
// (the bindings raise MemoryError).
struct TooLarge : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct WorkspaceTooLarge : TooLarge {
  WorkspaceTooLarge(double bytes, double limit, idx B, idx Tn)
      : TooLarge(message(bytes, limit, B, Tn)) {}
  static std::string message(double bytes, double limit, idx B, idx Tn) {
    char buf[256];
    std::snprintf(buf, sizeof buf,
                  "the workspace for batch %lld x length %lld needs %.1f GiB, more than this "
                  "machine's %.1f GiB of memory: use a smaller batch or shorter sequences",
                  static_cast<long long>(B), static_cast<long long>(Tn), bytes / 1073741824.0,
                  limit / 1073741824.0);
    return buf;
  }
};

// Physical memory in bytes (0 when unknown).
inline double physical_memory_bytes() {
#if defined(_SC_PHYS_PAGES) && defined(_SC_PAGE_SIZE)
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  if (pages > 0 && page > 0) return static_cast<double>(pages) * static_cast<double>(page);
#endif
  return 0.0;
}

// Every regulariser a model can train with. All are inverted (what is kept
// is scaled by 1 / (1 - p)), active only in training calls, drawn from the
// call's seed by hash_uniform (so the same at any thread count), and the same
// mask serves the forward and the backward pass of a call.
// Rows first..first+B of a batch of `total` rows: what one process of a
// data-parallel run computes. total == 0: the call's rows are the batch.
struct MaskRows {
  idx first = 0, total = 0;
};

struct Dropouts {
  double between = 0;    // on the input of layers 1..L-1 (torch's nn.RNN dropout)
  double input = 0;      // on layer 0's input: the embedded characters (E > 0)
  double output = 0;     // on the top layer's output, before the decoder
  double weight = 0;     // DropConnect on each W_hh: one mask per call (AWD-LSTM's weight drop)
  double embedding = 0;  // whole rows of the embedding table, one mask per call (E > 0)
  bool locked = false;   // between/input/output: one mask per sequence (batch row),
                         // shared by all its time steps (variational / locked dropout)

  bool any() const { return between > 0 || input > 0 || output > 0 || weight > 0 || embedding > 0; }
};

// Streams of hash_uniform, one per kind of mask; layer l's between-layer mask
// is stream l.
constexpr std::uint64_t kInputStream = 1u << 20, kOutputStream = kInputStream + 1,
                        kEmbeddingStream = kInputStream + 2, kWeightStream = 1u << 21;

template <typename T>
class Model {
 public:
  const CellKind cell;
  const idx V, E, H, L;  // E == 0: one-hot input
  const Dropouts drop;
  const int G;

  Model(CellKind cell_, idx V_, idx E_, idx H_, idx L_, const Dropouts& drop_ = Dropouts())
      : cell(cell_), V(V_), E(E_), H(H_), L(L_), drop(drop_), G(gate_count(cell_)) {
    if (V < 1 || H < 1 || L < 1 || E < 0) throw std::invalid_argument("sizes must be positive");
    for (double p : {drop.between, drop.input, drop.output, drop.weight, drop.embedding})
      if (!(p >= 0.0 && p < 1.0)) throw std::invalid_argument("dropout must be in [0, 1)");
    if (E == 0 && (drop.input > 0 || drop.embedding > 0))
      throw std::invalid_argument(
          "input and embedding dropout need an embedding (embedding_dim > 0)");
    if (L > kMaxLayers)
      throw std::invalid_argument("num_layers must be <= " + std::to_string(kMaxLayers));
    // The size first, in floating point: a huge request is refused before
    // the layout is built. Every product below is at most this count, so
    // none of them can wrap around.
    const double g = G, h = static_cast<double>(H),
                 first = E > 0 ? static_cast<double>(E) : static_cast<double>(V);
    const double count = static_cast<double>(V) * static_cast<double>(E) +
                         g * h * (first + h + 2) + (L - 1) * g * h * (2 * h + 2) +
                         static_cast<double>(V) * (h + 1);
    const double limit = physical_memory_bytes();
    if (count * sizeof(T) > (limit > 0 ? limit : 0x1p62) || count > static_cast<double>(kMaxParams)) {
      char buf[200];
      std::snprintf(buf, sizeof buf,
                    "a model of %.4g parameters needs %.1f GiB, more than this machine's "
                    "%.1f GiB of memory",
                    count, count * sizeof(T) / 1073741824.0, limit / 1073741824.0);
      throw TooLarge(buf);
    }
    idx off = 0;
    auto add = [&](const std::string& name, std::vector<idx> shape) {
      idx size = 1;
      for (idx s : shape) size *= s;
      layout_.push_back({name, shape, off, size});
      off += size;
      return layout_.back().offset;
    };
    const idx GH = G * H;
    if (E > 0) off_emb_ = add("embedding.weight", {V, E});
    for (idx l = 0; l < L; ++l) {
      const std::string k = std::to_string(l);
      const idx in = l == 0 ? (E > 0 ? E : V) : H;
      off_wih_.push_back(add("rnn.weight_ih_l" + k, {GH, in}));
      off_whh_.push_back(add("rnn.weight_hh_l" + k, {GH, H}));
      off_bih_.push_back(add("rnn.bias_ih_l" + k, {GH}));
      off_bhh_.push_back(add("rnn.bias_hh_l" + k, {GH}));
    }
    off_decw_ = add("decoder.weight", {V, H});
    off_decb_ = add("decoder.bias", {V});
    num_params_ = off;
  }

  // At most 2^48 parameters (a petabyte of float32), also where the size of
  // physical memory is unknown: no offset computed from them can overflow.
  static constexpr idx kMaxParams = idx(1) << 48;
  static constexpr idx kMaxLayers = 1024;

  idx num_params() const { return num_params_; }
  const std::vector<ParamInfo>& layout() const { return layout_; }
  idx state_slots() const { return has_cell_state(cell) ? 2 : 1; }  // S in [S, L, B, H]

  // x [B, Tn] batch-first ids; state_in, state_out [S, L, B, H] (may alias);
  // logits_out [B, Tn, V] or null.
  void forward(const T* P, const std::int32_t* x, idx B, idx Tn, const T* state_in,
               T* state_out, T* logits_out, bool train, std::uint64_t seed) {
    std::lock_guard<std::mutex> lock(mu_);
    prepare(B, Tn, x, nullptr);
    run_forward(P, state_in, train, seed);
    write_state(state_out);
    if (logits_out) write_logits(logits_out);
  }

  // The last forward's logits (time-major in the workspace) as [B, Tn, V].
  void write_logits(T* out) {
    parallel_for(B_ * T_, threads_for(B_ * T_ * V), [&](idx r) {
      const idx t = r / B_, b = r % B_;
      copy_n(ws_.data() + logits_ + r * V, V, out + (b * T_ + t) * V);
    });
  }

  // Mean cross-entropy (nats) of predicting y [B, Tn] from x [B, Tn];
  // stream_loss [B] (or null) receives each row's sum over its Tn steps.
  double loss(const T* P, const std::int32_t* x, const std::int32_t* y, idx B, idx Tn,
              const T* state_in, T* state_out, bool train, std::uint64_t seed,
              double* stream_loss = nullptr) {
    std::lock_guard<std::mutex> lock(mu_);
    prepare(B, Tn, x, y);
    run_forward(P, state_in, train, seed);
    write_state(state_out);
    const double loss = K_->softmax_xent(ws_.data() + logits_, B_ * T_, V, tgt_.data(), false,
                                         row_loss_.data());
    if (stream_loss) {
      for (idx b = 0; b < B_; ++b) stream_loss[b] = 0;
      for (idx t = 0; t < T_; ++t)  // row_loss_ is time-major [Tn, B]
        for (idx b = 0; b < B_; ++b) stream_loss[b] += row_loss_[t * B_ + b];
    }
    return loss;
  }

  // Loss, and every gradient: grads [num_params] (overwritten), dstate
  // [S, L, B, H] = d(loss)/d(state_in). `rows`: x holds rows first..first+B
  // of a batch of `total` rows (data-parallel training), so that the dropout
  // masks are those of these rows of the whole batch; {} for a whole batch.
  double forward_backward(const T* P, T* grads, const std::int32_t* x, const std::int32_t* y,
                          idx B, idx Tn, const T* state_in, T* state_out, T* dstate,
                          bool train, std::uint64_t seed, MaskRows rows = {}) {
    std::lock_guard<std::mutex> lock(mu_);
    prepare(B, Tn, x, y);
    run_forward(P, state_in, train, seed, rows);
    write_state(state_out);
    const double loss =
        K_->softmax_xent(ws_.data() + logits_, B_ * T_, V, tgt_.data(), true, row_loss_.data());
    run_backward(P, grads, dstate);
    return loss;
  }

  // An evaluation-mode forward of x [B, Tn] that keeps what a look inside
  // the network needs (diagnostics.py), batch-first: hidden [L, B, Tn, H];
  // cell [L, B, Tn, H] (LSTM; else null); gates [L, B, Tn, G*H] (GRU r, z, n;
  // LSTM i, f, g, o; null for a vanilla RNN); logits [B, Tn, V];
  // state_out [S, L, B, H].
  void trace(const T* P, const std::int32_t* x, idx B, idx Tn, const T* state_in, T* state_out,
             T* hidden, T* cell_out, T* gates, T* logits) {
    std::lock_guard<std::mutex> lock(mu_);
    prepare(B, Tn, x, nullptr);
    run_forward(P, state_in, false, 0);
    write_state(state_out);
    const idx GH = G * H;
    for (idx l = 0; l < L; ++l)
      parallel_for(B * Tn, threads_for(B * Tn * (GH + 2 * H)), [&](idx r) {
        const idx b = r / Tn, t = r % Tn, src = t * B + b, dst = (l * B + b) * Tn + t;
        copy_n(w(hs_[l]) + (src + B) * H, H, hidden + dst * H);
        if (cell_out) copy_n(w(cs_[l]) + (src + B) * H, H, cell_out + dst * H);
        if (gates) copy_n(w(xp_[l]) + src * GH, GH, gates + dst * GH);
      });
    write_logits(logits);
  }

  // The vanishing-gradient picture: L_last = the mean over the B rows of
  // the cross-entropy of the last step only (y's last column); norms
  // [L, Tn] receives || d L_last / d h_t || (the 2-norm over the B rows and H
  // units of layer l's output at step t, its direct and recurrent paths
  // summed), grads [num_params] d L_last / d parameters. Evaluation mode.
  // Returns L_last.
  double gradient_flow(const T* P, T* grads, const std::int32_t* x, const std::int32_t* y,
                       idx B, idx Tn, const T* state_in, double* norms) {
    std::lock_guard<std::mutex> lock(mu_);
    prepare(B, Tn, x, y);
    struct Reset {
      double*& p;
      ~Reset() { p = nullptr; }
    } reset{dh_norms_};
    dh_norms_ = norms;
    run_forward(P, state_in, false, 0);
    K_->softmax_xent(ws_.data() + logits_, B_ * T_, V, tgt_.data(), true, row_loss_.data());
    // d(mean over all B*Tn)/d logits -> d(mean over the last B)/d logits.
    T* d = w(logits_);
    const idx last = (Tn - 1) * B;
    std::fill(d, d + last * V, T(0));
    for (idx i = last * V; i < B * Tn * V; ++i) d[i] *= T(Tn);
    double loss = 0;
    for (idx r = last; r < B * Tn; ++r) loss += row_loss_[r];
    std::vector<T> dstate(static_cast<size_t>(state_slots() * L * B * H));
    run_backward(P, grads, dstate.data());
    return loss / double(B);
  }

  // One time step of B rows in evaluation mode, for loops that feed back
  // their own output (sampling.hpp): ids [B]; state [S, L, B, H] is read and
  // then overwritten with the new state. Returns the logits [B, V], in the
  // workspace (valid until the next call). The caller holds mutex().
  const T* step(const T* P, const std::int32_t* ids, idx B, T* state) {
    const Kernels<T>& K = kern<T>();
    if (B <= K.step_max_batch) {  // the whole step in one parallel region
      for (idx b = 0; b < B; ++b)
        if (ids[b] < 0 || ids[b] >= V) throw std::invalid_argument("token id out of range");
      step_ws_.resize(static_cast<size_t>(K.step_scratch_size(G, B, H, L) + B * V));
      wih_.resize(L);
      whh_.resize(L);
      bih_.resize(L);
      bhh_.resize(L);
      for (idx l = 0; l < L; ++l) {
        wih_[l] = P + off_wih_[l];
        whh_[l] = P + off_whh_[l];
        bih_[l] = P + off_bih_[l];
        bhh_[l] = P + off_bhh_[l];
      }
      T* logits = step_ws_.data() + K.step_scratch_size(G, B, H, L);
      K.step_forward(cell, B, V, E, H, L, ids, E > 0 ? P + off_emb_ : nullptr, wih_.data(),
                     whh_.data(), bih_.data(), bhh_.data(), P + off_decw_, P + off_decb_,
                     state, has_cell_state(cell) ? state + L * B * H : nullptr, logits,
                     step_ws_.data());
      return logits;
    }
    prepare(B, 1, ids, nullptr);
    run_forward(P, state, false, 0);
    write_state(state);
    return ws_.data() + logits_;
  }

  // Serialises the calls on this model's workspace.
  std::mutex& mutex() { return mu_; }

 private:
  std::vector<ParamInfo> layout_;
  idx num_params_ = 0, off_emb_ = -1, off_decw_ = 0, off_decb_ = 0;
  std::vector<idx> off_wih_, off_whh_, off_bih_, off_bhh_;

  std::mutex mu_;
  std::vector<T> step_ws_;  // step(): scratch and logits
  std::vector<const T*> wih_, whh_, bih_, bhh_;
  const Kernels<T>* K_ = nullptr;  // the table the workspace was planned for
  std::vector<T> ws_;
  std::vector<std::int32_t> ids_, tgt_;  // time-major [Tn, B]
  std::vector<double> row_loss_;
  idx B_ = 0, T_ = 0;
  MaskRows mask_rows_;  // the rows of this call in a whole batch (apply_mask)
  double* dh_norms_ = nullptr;  // gradient_flow(): [L, Tn] ||d loss / d h_t|| recorded
  // Workspace offsets (elements of ws_), for B_ x T_; rows are time-major
  // (r = t * B + b), GH = G * H. Per layer l:
  std::vector<idx> xp_,   // [T, B, GH] W_ih x + b_ih; then the gates; then d(xp)
      hs_,                // [T + 1, B, H] hidden states, row block 0: the initial state
      cs_,                // [T + 1, B, H] LSTM cell states (else unused)
      aux_,               // [T, B, H] GRU: W_hn h + b_hn (else unused)
      din_,               // [T, B, in_l] with input/between dropout: the layer's input after it
      mask_,              // [T, B, in_l] its mask, scaled by 1/(1-p)
      weff_,              // [GH, H] with weight drop: W_hh after it
      wmask_;             // [GH, H] its mask
  // Shared by the layers:
  idx emb_ = 0,     // [T, B, E] embedded input (E > 0)
      hp_ = 0,      // [B, GH] W_hh h + b_hh of one step
      dhp_ = 0,     // [T, B, GH] GRU: d(loss)/d(hp) (else the gates' memory is used)
      dh_ = 0,      // [B, H] d(loss)/d(h) carried back through time
      dc_ = 0,      // [B, H] d(loss)/d(c), LSTM
      logits_ = 0,  // [T, B, V] logits; then d(loss)/d(logits)
      dout_ = 0,    // [T, B, max(H, E)] d(loss)/d(a layer's output or input)
      wpack_ = 0,   // W_hh packed for the products, or the fused time loop's panels
      top_ = 0,     // [T, B, H] with output dropout: the top layer's output after it
      top_mask_ = 0,  // [T, B, H] its mask
      emb_mask_ = 0;  // [V] with embedding dropout: the mask of the table's rows
  idx wt_ = 0;  // one-hot input: W_ih_l0 transposed [V, GH] (and its gradient)
  // Which masks the last forward pass applied (its backward applies them too).
  std::vector<char> in_dropped_;
  bool out_dropped_ = false, emb_dropped_ = false, w_dropped_ = false;

  T* w(idx off) { return ws_.data() + off; }

  void prepare(idx B, idx Tn, const std::int32_t* x, const std::int32_t* y) {
    if (B != B_ || Tn != T_ || K_ != &kern<T>()) plan(B, Tn);
    // The caller checked the ids, but another thread may have written the
    // arrays since (the GIL is released): check again while copying.
    bool bad = false;
    for (idx b = 0; b < B; ++b)
      for (idx t = 0; t < Tn; ++t) {
        const std::int32_t xi = x[b * Tn + t];
        bad |= xi < 0 || xi >= V;
        ids_[t * B + b] = xi;
        if (y) {
          const std::int32_t yi = y[b * Tn + t];
          bad |= yi < 0 || yi >= V;
          tgt_[t * B + b] = yi;
        }
      }
    if (bad) throw std::invalid_argument("token ids were changed while the call was running");
  }

  void plan(idx B, idx Tn) {
    // Sizes are products of caller-given extents: each is formed in double
    // and checked against the machine's memory below, so none can wrap.
    const double N = static_cast<double>(B) * Tn, GH = static_cast<double>(G) * H,
                 BH = static_cast<double>(B) * H;
    idx off = 0;
    double total = 0;  // elements, in floating point
    auto take = [&](double n) {
      const idx o = off;
      total += n + 16;
      if (total < 0x1p60) off += (static_cast<idx>(n) + 15) / 16 * 16;  // 64-byte steps
      return o;
    };
    xp_.assign(L, 0);
    hs_.assign(L, 0);
    cs_.assign(L, 0);
    aux_.assign(L, 0);
    din_.assign(L, 0);
    mask_.assign(L, 0);
    weff_.assign(L, 0);
    wmask_.assign(L, 0);
    for (idx l = 0; l < L; ++l) {
      xp_[l] = take(N * GH);
      hs_[l] = take((Tn + 1) * BH);
      if (has_cell_state(cell)) cs_[l] = take((Tn + 1) * BH);
      if (cell == CellKind::GRU) aux_[l] = take(N * H);
      if (input_p(l) > 0) {
        din_[l] = take(N * input_width(l));
        mask_[l] = take(N * input_width(l));
      }
      if (drop.weight > 0) {
        weff_[l] = take(GH * H);
        wmask_[l] = take(GH * H);
      }
    }
    if (drop.output > 0) {
      top_ = take(N * H);
      top_mask_ = take(N * H);
    }
    if (drop.embedding > 0) emb_mask_ = take(static_cast<double>(V));
    if (E > 0) emb_ = take(N * E);
    if (E == 0) wt_ = take(V * GH);
    hp_ = take(B * GH);
    if (has_separate_dhp(cell)) dhp_ = take(N * GH);
    dh_ = take(BH);
    dc_ = take(BH);
    logits_ = take(N * V);
    dout_ = take(N * std::max(H, E));
    K_ = &kern<T>();
    const idx gh = G * H;  // <= num_params: no overflow
    wpack_ = take(static_cast<double>(std::max({K_->packed_b_size(gh, H),
                                                K_->packed_b_size(H, gh),
                                                K_->recur_packed_size(G, H)})));
    const double bytes = total * sizeof(T) + N * 16.0;
    const double limit = physical_memory_bytes();
    if ((limit > 0 && bytes > limit) || total >= 0x1p60) {
      B_ = T_ = 0;  // offsets above are for a shape that was refused: replan next call
      throw WorkspaceTooLarge(bytes, limit, B, Tn);
    }
    if (static_cast<idx>(ws_.size()) < off) {
      ws_.clear();
      ws_.shrink_to_fit();
      ws_.resize(static_cast<size_t>(off));
    }
    ids_.resize(static_cast<size_t>(N));
    tgt_.resize(static_cast<size_t>(N));
    row_loss_.resize(static_cast<size_t>(N));
    B_ = B;
    T_ = Tn;
  }

  // Small batches over several steps run the fused time loop (recurrence.hpp).
  bool fused(idx B, idx Tn) const { return Tn > 2 && B <= K_->recur_max_batch; }

  // Dropout on the input of layer l: the between-layer rate, or for layer 0
  // (fed by an embedding) the input rate; its width.
  double input_p(idx l) const { return l > 0 ? drop.between : (E > 0 ? drop.input : 0.0); }
  idx input_width(idx l) const { return l > 0 ? H : E; }

  // Input of layer l (> 0, or 0 with an embedding), after its dropout if any.
  const T* layer_input(idx l) {
    if (in_dropped_[l]) return w(din_[l]);
    return l == 0 ? w(emb_) : w(hs_[l - 1]) + B_ * H;
  }

  // Top layer's output, after its dropout if any.
  const T* top_output() {
    return out_dropped_ ? w(top_) : w(hs_[L - 1]) + B_ * H;
  }

  // a[i] *= m[i], i < n.
  static void multiply(T* a, const T* m, idx n) {
    parallel_for(n, threads_for(n), [&](idx i) { a[i] *= m[i]; });
  }

  // out = in * mask over the B_ * T_ rows (time-major, r = t * B + b) of
  // `width` values. Element (r, j) keeps its value (scaled) when its uniform
  // from (seed, stream) is >= p: the key is (r, j), or with `locked` (b, j),
  // one mask per sequence shared by every step (drawn once, then copied).
  // With mask_rows_ set, b is row first + b of a batch of `total` rows and
  // the key is that row's in the whole batch.
  void apply_mask(double p, bool locked, std::uint64_t seed, std::uint64_t stream, idx width,
                  const T* in, T* mask, T* out) {
    const idx n = B_ * T_ * width, per_step = B_ * width, drawn = locked ? per_step : n;
    const T keep = T(1) / T(1 - p);
    const idx first = mask_rows_.first, total = mask_rows_.total;
    const bool part = total != 0 && !(first == 0 && total == B_);
    parallel_for(drawn, threads_for(drawn * 4), [&](idx i) {
      using u64 = std::uint64_t;
      u64 key = static_cast<u64>(i);
      if (part) {  // unsigned: any total_rows the binding accepts is defined
        const idx r = i / width, j = i - r * width, t = r / B_, b = r - t * B_;
        key = (static_cast<u64>(t) * static_cast<u64>(total) + static_cast<u64>(first + b)) *
                  static_cast<u64>(width) + static_cast<u64>(j);
      }
      const double u = hash_uniform(seed, stream, key);
      mask[i] = u >= p ? keep : T(0);
    });
    if (locked)
      parallel_for(T_ - 1, threads_for(n), [&](idx t) {
        copy_n(mask, per_step, mask + (t + 1) * per_step);
      });
    parallel_for(n, threads_for(n), [&](idx i) { out[i] = in[i] * mask[i]; });
  }

  // W_hh of layer l with DropConnect: a copy, element i kept (scaled) when
  // its uniform from (seed, kWeightStream + l) is >= p.
  const T* drop_weights(idx l, const T* W, std::uint64_t seed) {
    const idx n = G * H * H;
    T* m = w(wmask_[l]);
    T* out = w(weff_[l]);
    const T keep = T(1) / T(1 - drop.weight);
    parallel_for(n, threads_for(n * 4), [&](idx i) {
      const double u = hash_uniform(seed, kWeightStream + static_cast<std::uint64_t>(l),
                                    static_cast<std::uint64_t>(i));
      m[i] = u >= drop.weight ? keep : T(0);
      out[i] = W[i] * m[i];
    });
    return out;
  }

  // Embedding dropout: row v of the table is kept (scaled) when its uniform
  // from (seed, kEmbeddingStream) is >= p; rows[r] *= mask[ids[r]].
  void drop_embedding_rows(std::uint64_t seed, T* rows) {
    T* m = w(emb_mask_);
    const T keep = T(1) / T(1 - drop.embedding);
    for (idx v = 0; v < V; ++v)
      m[v] = hash_uniform(seed, kEmbeddingStream, static_cast<std::uint64_t>(v)) >= drop.embedding
                 ? keep
                 : T(0);
    scale_rows_by_id(m, rows, E);
  }

  // rows[r, :] *= mask[ids[r]] for the B_ * T_ rows of `width` values.
  void scale_rows_by_id(const T* mask, T* rows, idx width) {
    const idx N = B_ * T_;
    parallel_for(N, threads_for(N * width), [&](idx r) {
      const T f = mask[ids_[r]];
      T* row = rows + r * width;
#pragma omp simd
      for (idx j = 0; j < width; ++j) row[j] *= f;
    });
  }

  void run_forward(const T* P, const T* state_in, bool train, std::uint64_t seed,
                   MaskRows rows = {}) {
    mask_rows_ = rows;
    const idx B = B_, Tn = T_, N = B * Tn, GH = G * H, BH = B * H;
    in_dropped_.assign(L, 0);
    emb_dropped_ = train && drop.embedding > 0;
    w_dropped_ = train && drop.weight > 0;
    out_dropped_ = train && drop.output > 0;
    if (E > 0) {
      embedding_forward(P + off_emb_, E, ids_.data(), N, w(emb_));
      if (emb_dropped_) drop_embedding_rows(seed, w(emb_));
    }
    for (idx l = 0; l < L; ++l) {
      const T* Wih = P + off_wih_[l];
      const T* Whh = P + off_whh_[l];
      if (w_dropped_) Whh = drop_weights(l, Whh, seed);
      T* xp = w(xp_[l]);
      // Input projection for all Tn steps at once.
      if (l == 0 && E == 0) {
        onehot_forward(Wih, P + off_bih_[l], GH, V, ids_.data(), N, xp, w(wt_));
      } else {
        if (train && input_p(l) > 0) {
          const T* raw = l == 0 ? w(emb_) : w(hs_[l - 1]) + BH;
          apply_mask(input_p(l), drop.locked, seed,
                     l == 0 ? kInputStream : static_cast<std::uint64_t>(l), input_width(l), raw,
                     w(mask_[l]), w(din_[l]));
          in_dropped_[l] = 1;
        }
        const T* in = layer_input(l);
        const idx in_dim = l == 0 ? E : H;
        broadcast_rows(xp, N, GH, GH, P + off_bih_[l]);
        K_->gemm(false, true, N, GH, in_dim, in, in_dim, Wih, in_dim, T(1), xp, GH);
      }
      // The recurrence.
      T* hs = w(hs_[l]);
      T* cs = has_cell_state(cell) ? w(cs_[l]) : nullptr;
      copy_n(state_in + l * BH, BH, hs);
      if (cs) copy_n(state_in + (L + l) * BH, BH, cs);
      T* hp = w(hp_);
      T* aux = cell == CellKind::GRU ? w(aux_[l]) : nullptr;
      if (fused(B, Tn) && !dh_norms_) {  // gradient_flow() steps one at a time
        K_->recur_forward(cell, B, H, Tn, Whh, P + off_bhh_[l], xp, hs, cs, aux, hp, w(wpack_));
        continue;
      }
      // Packing pays off over several steps; one step (sampling) uses W_hh as is.
      const bool packed = Tn > 2;
      if (packed) K_->pack_b(true, Whh, H, GH, H, w(wpack_));  // op(B) = W_hh^T [H, GH]
      for (idx t = 0; t < Tn; ++t) {
        broadcast_rows(hp, B, GH, GH, P + off_bhh_[l]);
        if (packed)
          K_->gemm_packed(false, B, GH, H, hs + t * BH, H, w(wpack_), T(1), hp, GH);
        else
          K_->gemm(false, true, B, GH, H, hs + t * BH, H, Whh, H, T(1), hp, GH);
        StepIO<T> s = StepIO<T>::at(B, H, G, t, xp, hs, cs, aux);
        s.hp = hp;
        K_->cell_forward(cell, s);
      }
    }
    // Decoder on the top layer's outputs.
    if (out_dropped_)
      apply_mask(drop.output, drop.locked, seed, kOutputStream, H, w(hs_[L - 1]) + BH,
                 w(top_mask_), w(top_));
    const T* top = top_output();
    broadcast_rows(w(logits_), N, V, V, P + off_decb_);
    K_->gemm(false, true, N, V, H, top, H, P + off_decw_, H, T(1), w(logits_), V);
  }

  void write_state(T* state_out) {
    const idx BH = B_ * H;
    for (idx l = 0; l < L; ++l) {
      copy_n(w(hs_[l]) + T_ * BH, BH, state_out + l * BH);
      if (has_cell_state(cell)) copy_n(w(cs_[l]) + T_ * BH, BH, state_out + (L + l) * BH);
    }
  }

  // Expects ws logits to hold d(loss)/d(logits).
  void run_backward(const T* P, T* Gr, T* dstate) {
    const idx B = B_, Tn = T_, N = B * Tn, GH = G * H, BH = B * H;
    const T* dlogits = w(logits_);
    const T* top = top_output();
    T* dout = w(dout_);
    K_->gemm(true, false, V, H, N, dlogits, V, top, H, T(0), Gr + off_decw_, H);
    column_sums(dlogits, N, V, V, Gr + off_decb_, false);
    K_->gemm(false, false, N, H, V, dlogits, V, P + off_decw_, H, T(0), dout, H);
    if (out_dropped_) multiply(dout, w(top_mask_), N * H);
    T* dh = w(dh_);
    T* dc = w(dc_);
    for (idx l = L - 1; l >= 0; --l) {
      const T* Wih = P + off_wih_[l];
      const T* Whh = w_dropped_ ? w(weff_[l]) : P + off_whh_[l];
      T* xp = w(xp_[l]);
      T* hs = w(hs_[l]);
      T* cs = has_cell_state(cell) ? w(cs_[l]) : nullptr;
      T* dhp_all = has_separate_dhp(cell) ? w(dhp_) : xp;
      std::fill(dh, dh + BH, T(0));
      std::fill(dc, dc + BH, T(0));
      T* aux = cell == CellKind::GRU ? w(aux_[l]) : nullptr;
      if (fused(B, Tn) && !dh_norms_) {
        K_->recur_backward(cell, B, H, Tn, Whh, dout, xp, hs, cs, aux, dhp_all, dh, dc,
                           w(wpack_));
      } else {
        const bool packed = Tn > 2;
        if (packed) K_->pack_b(false, Whh, H, H, GH, w(wpack_));  // op(B) = W_hh [GH, H]
        for (idx t = Tn - 1; t >= 0; --t) {
          const T* dy = dout + t * BH;
#pragma omp simd
          for (idx i = 0; i < BH; ++i) dh[i] += dy[i];
          if (dh_norms_) {
            double ss = 0;
            for (idx i = 0; i < BH; ++i) ss += double(dh[i]) * double(dh[i]);
            dh_norms_[l * Tn + t] = std::sqrt(ss);
          }
          StepIO<T> s = StepIO<T>::at(B, H, G, t, xp, hs, cs, aux);
          s.dhp = dhp_all + t * B * GH;
          const bool direct = K_->cell_backward(cell, s, dh, dc);
          const T beta = direct ? T(1) : T(0);
          if (packed)
            K_->gemm_packed(false, B, H, GH, dhp_all + t * B * GH, GH, w(wpack_), beta, dh, H);
          else
            K_->gemm(false, false, B, H, GH, dhp_all + t * B * GH, GH, Whh, H, beta, dh, H);
        }
      }
      copy_n(dh, BH, dstate + l * BH);
      if (cs) copy_n(dc, BH, dstate + (L + l) * BH);
      // Weight gradients over all Tn steps at once.
      K_->gemm(true, false, GH, H, N, dhp_all, GH, hs, H, T(0), Gr + off_whh_[l], H);
      if (w_dropped_) multiply(Gr + off_whh_[l], w(wmask_[l]), GH * H);
      column_sums(dhp_all, N, GH, GH, Gr + off_bhh_[l], false);
      column_sums(xp, N, GH, GH, Gr + off_bih_[l], false);
      if (l == 0 && E == 0) {
        onehot_backward(xp, GH, V, ids_.data(), N, Gr + off_wih_[0], w(wt_));
        continue;
      }
      const T* in = layer_input(l);
      const idx in_dim = input_width(l);
      K_->gemm(true, false, GH, in_dim, N, xp, GH, in, in_dim, T(0), Gr + off_wih_[l], in_dim);
      // d(loss)/d(input of layer l): the outputs of layer l-1, or the embedding.
      K_->gemm(false, false, N, in_dim, GH, xp, GH, Wih, in_dim, T(0), dout, in_dim);
      if (in_dropped_[l]) multiply(dout, w(mask_[l]), N * in_dim);
      if (l == 0) {
        if (emb_dropped_) scale_rows_by_id(w(emb_mask_), dout, E);
        embedding_backward(dout, E, ids_.data(), N, V, Gr + off_emb_);
      }
    }
  }
};

}  // namespace pcr
