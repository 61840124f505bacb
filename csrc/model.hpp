// The whole model: input -> L recurrent layers -> decoder -> softmax + CE,
// forward and backward through time, on one flat parameter buffer and one
// workspace that is sized once per (B, T) and reused. This file only
// orchestrates: the parameters' layout, the order of the kernel calls, which
// masks a call applies. Where the activations live is workspace.hpp's plan,
// the masks are dropout.hpp's, the refusals of what memory cannot hold
// memory.hpp's.
//
// Callers (the bindings, bindings/) have checked every pointer, shape and
// token id. The heavy kernels come from the table of the instruction set in
// use (dispatch.hpp).
//
// The recurrent weights are packed into the GEMM's panel layout once per
// layer and call, and the panels are reused at every time step. Small
// batches (B <= the micro-kernel's rows) run the whole time loop of a layer
// in one parallel region (recurrence.hpp); larger ones step by step here.
// Both sum every element in the same order: the same bits either way.
#pragma once

#include <cmath>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "common.hpp"
#include "dispatch.hpp"
#include "dropout.hpp"
#include "embedding.hpp"
#include "memory.hpp"
#include "workspace.hpp"

namespace pcr {

struct ParamInfo {
  std::string name;
  std::vector<idx> shape;
  idx offset, size;
};

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
    check_model_size(count, sizeof(T));
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
      copy_n(w(plan_.logits) + r * V, V, out + (b * T_ + t) * V);
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
    const double loss = K_->softmax_xent(w(plan_.logits), B_ * T_, V, tgt_.data(), false,
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
        K_->softmax_xent(w(plan_.logits), B_ * T_, V, tgt_.data(), true, row_loss_.data());
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
        copy_n(w(plan_.hs[l]) + (src + B) * H, H, hidden + dst * H);
        if (cell_out) copy_n(w(plan_.cs[l]) + (src + B) * H, H, cell_out + dst * H);
        if (gates) copy_n(w(plan_.xp[l]) + src * GH, GH, gates + dst * GH);
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
    K_->softmax_xent(w(plan_.logits), B_ * T_, V, tgt_.data(), true, row_loss_.data());
    // d(mean over all B*Tn)/d logits -> d(mean over the last B)/d logits.
    T* d = w(plan_.logits);
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
    return w(plan_.logits);
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
  std::vector<T> ws_;               // the workspace: plan_.size elements, or more
  WorkspacePlan plan_;              // where each activation lives in it, for B_ x T_
  std::vector<std::int32_t> ids_, tgt_;  // time-major [Tn, B]
  std::vector<double> row_loss_;
  idx B_ = 0, T_ = 0;
  double* dh_norms_ = nullptr;  // gradient_flow(): [L, Tn] ||d loss / d h_t|| recorded
  // Which masks the last forward pass applied (its backward applies them too).
  std::vector<char> in_dropped_;
  bool out_dropped_ = false, emb_dropped_ = false, w_dropped_ = false;

  T* w(idx off) { return ws_.data() + off; }

  void prepare(idx B, idx Tn, const std::int32_t* x, const std::int32_t* y) {
    if (B != B_ || Tn != T_ || K_ != &kern<T>()) replan(B, Tn);
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

  // The workspace for B rows of Tn steps with the kernels in use (a refused
  // shape leaves the last plan in place).
  void replan(idx B, idx Tn) {
    const Kernels<T>& K = kern<T>();
    const idx gh = G * H;  // <= num_params: no overflow
    const idx packed = std::max({K.packed_b_size(gh, H), K.packed_b_size(H, gh),
                                 K.recur_packed_size(G, H)});
    plan_ = plan_workspace(cell, V, E, H, L, drop, B, Tn, packed, sizeof(T));
    K_ = &K;
    if (static_cast<idx>(ws_.size()) < plan_.size) {
      ws_.clear();
      ws_.shrink_to_fit();
      ws_.resize(static_cast<size_t>(plan_.size));
    }
    const double N = static_cast<double>(B) * Tn;
    ids_.resize(static_cast<size_t>(N));
    tgt_.resize(static_cast<size_t>(N));
    row_loss_.resize(static_cast<size_t>(N));
    B_ = B;
    T_ = Tn;
  }

  // Small batches over several steps run the fused time loop (recurrence.hpp).
  bool fused(idx B, idx Tn) const { return Tn > 2 && B <= K_->recur_max_batch; }

  // Dropout on the input of layer l (dropout.hpp), and that input's width.
  double input_p(idx l) const { return drop.on_input(l, E > 0); }
  idx input_width(idx l) const { return l > 0 ? H : E; }

  // Input of layer l (> 0, or 0 with an embedding), after its dropout if any.
  const T* layer_input(idx l) {
    if (in_dropped_[l]) return w(plan_.din[l]);
    return l == 0 ? w(plan_.emb) : w(plan_.hs[l - 1]) + B_ * H;
  }

  // Top layer's output, after its dropout if any.
  const T* top_output() {
    return out_dropped_ ? w(plan_.top) : w(plan_.hs[L - 1]) + B_ * H;
  }

  void run_forward(const T* P, const T* state_in, bool train, std::uint64_t seed,
                   MaskRows rows = {}) {
    const idx B = B_, Tn = T_, N = B * Tn, GH = G * H, BH = B * H;
    in_dropped_.assign(L, 0);
    emb_dropped_ = train && drop.embedding > 0;
    w_dropped_ = train && drop.weight > 0;
    out_dropped_ = train && drop.output > 0;
    if (E > 0) {
      embedding_forward(P + off_emb_, E, ids_.data(), N, w(plan_.emb));
      if (emb_dropped_)
        drop_embedding_rows(drop.embedding, seed, V, ids_.data(), N, E, w(plan_.emb_mask),
                            w(plan_.emb));
    }
    for (idx l = 0; l < L; ++l) {
      const T* Wih = P + off_wih_[l];
      const T* Whh = P + off_whh_[l];
      if (w_dropped_)
        Whh = drop_weights(drop.weight, seed, l, GH * H, Whh, w(plan_.wmask[l]), w(plan_.weff[l]));
      T* xp = w(plan_.xp[l]);
      // Input projection for all Tn steps at once.
      if (l == 0 && E == 0) {
        onehot_forward(Wih, P + off_bih_[l], GH, V, ids_.data(), N, xp, w(plan_.wt));
      } else {
        if (train && input_p(l) > 0) {
          const T* raw = l == 0 ? w(plan_.emb) : w(plan_.hs[l - 1]) + BH;
          apply_mask(input_p(l), drop.locked, seed,
                     l == 0 ? kInputStream : static_cast<std::uint64_t>(l), B, Tn,
                     input_width(l), rows, raw, w(plan_.mask[l]), w(plan_.din[l]));
          in_dropped_[l] = 1;
        }
        const T* in = layer_input(l);
        const idx in_dim = l == 0 ? E : H;
        broadcast_rows(xp, N, GH, GH, P + off_bih_[l]);
        K_->gemm(false, true, N, GH, in_dim, in, in_dim, Wih, in_dim, T(1), xp, GH);
      }
      // The recurrence.
      T* hs = w(plan_.hs[l]);
      T* cs = has_cell_state(cell) ? w(plan_.cs[l]) : nullptr;
      copy_n(state_in + l * BH, BH, hs);
      if (cs) copy_n(state_in + (L + l) * BH, BH, cs);
      T* hp = w(plan_.hp);
      T* aux = cell == CellKind::GRU ? w(plan_.aux[l]) : nullptr;
      if (fused(B, Tn) && !dh_norms_) {  // gradient_flow() steps one at a time
        K_->recur_forward(cell, B, H, Tn, Whh, P + off_bhh_[l], xp, hs, cs, aux, hp,
                          w(plan_.wpack));
        continue;
      }
      // Packing pays off over several steps; one step (sampling) uses W_hh as is.
      const bool packed = Tn > 2;
      if (packed) K_->pack_b(true, Whh, H, GH, H, w(plan_.wpack));  // op(B) = W_hh^T [H, GH]
      for (idx t = 0; t < Tn; ++t) {
        broadcast_rows(hp, B, GH, GH, P + off_bhh_[l]);
        if (packed)
          K_->gemm_packed(false, B, GH, H, hs + t * BH, H, w(plan_.wpack), T(1), hp, GH);
        else
          K_->gemm(false, true, B, GH, H, hs + t * BH, H, Whh, H, T(1), hp, GH);
        StepIO<T> s = StepIO<T>::at(B, H, G, t, xp, hs, cs, aux);
        s.hp = hp;
        K_->cell_forward(cell, s);
      }
    }
    // Decoder on the top layer's outputs.
    if (out_dropped_)
      apply_mask(drop.output, drop.locked, seed, kOutputStream, B, Tn, H, rows,
                 w(plan_.hs[L - 1]) + BH, w(plan_.top_mask), w(plan_.top));
    const T* top = top_output();
    broadcast_rows(w(plan_.logits), N, V, V, P + off_decb_);
    K_->gemm(false, true, N, V, H, top, H, P + off_decw_, H, T(1), w(plan_.logits), V);
  }

  void write_state(T* state_out) {
    const idx BH = B_ * H;
    for (idx l = 0; l < L; ++l) {
      copy_n(w(plan_.hs[l]) + T_ * BH, BH, state_out + l * BH);
      if (has_cell_state(cell)) copy_n(w(plan_.cs[l]) + T_ * BH, BH, state_out + (L + l) * BH);
    }
  }

  // Expects ws logits to hold d(loss)/d(logits).
  void run_backward(const T* P, T* Gr, T* dstate) {
    const idx B = B_, Tn = T_, N = B * Tn, GH = G * H, BH = B * H;
    const T* dlogits = w(plan_.logits);
    const T* top = top_output();
    T* dout = w(plan_.dout);
    K_->gemm(true, false, V, H, N, dlogits, V, top, H, T(0), Gr + off_decw_, H);
    column_sums(dlogits, N, V, V, Gr + off_decb_, false);
    K_->gemm(false, false, N, H, V, dlogits, V, P + off_decw_, H, T(0), dout, H);
    if (out_dropped_) multiply_by_mask(dout, w(plan_.top_mask), N * H);
    T* dh = w(plan_.dh);
    T* dc = w(plan_.dc);
    for (idx l = L - 1; l >= 0; --l) {
      const T* Wih = P + off_wih_[l];
      const T* Whh = w_dropped_ ? w(plan_.weff[l]) : P + off_whh_[l];
      T* xp = w(plan_.xp[l]);
      T* hs = w(plan_.hs[l]);
      T* cs = has_cell_state(cell) ? w(plan_.cs[l]) : nullptr;
      T* dhp_all = has_separate_dhp(cell) ? w(plan_.dhp) : xp;
      std::fill(dh, dh + BH, T(0));
      std::fill(dc, dc + BH, T(0));
      T* aux = cell == CellKind::GRU ? w(plan_.aux[l]) : nullptr;
      if (fused(B, Tn) && !dh_norms_) {
        K_->recur_backward(cell, B, H, Tn, Whh, dout, xp, hs, cs, aux, dhp_all, dh, dc,
                           w(plan_.wpack));
      } else {
        const bool packed = Tn > 2;
        if (packed) K_->pack_b(false, Whh, H, H, GH, w(plan_.wpack));  // op(B) = W_hh [GH, H]
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
            K_->gemm_packed(false, B, H, GH, dhp_all + t * B * GH, GH, w(plan_.wpack), beta, dh, H);
          else
            K_->gemm(false, false, B, H, GH, dhp_all + t * B * GH, GH, Whh, H, beta, dh, H);
        }
      }
      copy_n(dh, BH, dstate + l * BH);
      if (cs) copy_n(dc, BH, dstate + (L + l) * BH);
      // Weight gradients over all Tn steps at once.
      K_->gemm(true, false, GH, H, N, dhp_all, GH, hs, H, T(0), Gr + off_whh_[l], H);
      if (w_dropped_) multiply_by_mask(Gr + off_whh_[l], w(plan_.wmask[l]), GH * H);
      column_sums(dhp_all, N, GH, GH, Gr + off_bhh_[l], false);
      column_sums(xp, N, GH, GH, Gr + off_bih_[l], false);
      if (l == 0 && E == 0) {
        onehot_backward(xp, GH, V, ids_.data(), N, Gr + off_wih_[0], w(plan_.wt));
        continue;
      }
      const T* in = layer_input(l);
      const idx in_dim = input_width(l);
      K_->gemm(true, false, GH, in_dim, N, xp, GH, in, in_dim, T(0), Gr + off_wih_[l], in_dim);
      // d(loss)/d(input of layer l): the outputs of layer l-1, or the embedding.
      K_->gemm(false, false, N, in_dim, GH, xp, GH, Wih, in_dim, T(0), dout, in_dim);
      if (in_dropped_[l]) multiply_by_mask(dout, w(plan_.mask[l]), N * in_dim);
      if (l == 0) {
        if (emb_dropped_) scale_rows_by_id(w(plan_.emb_mask), ids_.data(), N, E, dout);
        embedding_backward(dout, E, ids_.data(), N, V, Gr + off_emb_);
      }
    }
  }
};

}  // namespace pcr
