// Workspace planning: where every activation of one call lives in the
// model's one workspace, sized once per (B, Tn) and reused by every call of
// that shape (model.hpp owns the memory; this is only its layout).
#pragma once

#include <algorithm>
#include <vector>

#include "dispatch.hpp"
#include "dropout.hpp"
#include "memory.hpp"

namespace pcr {

// Offsets (elements of the workspace) for B rows of Tn steps; rows are
// time-major (r = t * B + b), GH = G * H, in_l the input width of layer l
// (E or V for layer 0, H above).
struct WorkspacePlan {
  // Per layer l:
  std::vector<idx> xp,  // [T, B, GH] W_ih x + b_ih; then the gates; then d(xp)
      hs,               // [T + 1, B, H] hidden states, row block 0: the initial state
      cs,               // [T + 1, B, H] LSTM cell states (else unused)
      aux,              // [T, B, H] GRU: W_hn h + b_hn (else unused)
      din,              // [T, B, in_l] with input/between dropout: the layer's input after it
      mask,             // [T, B, in_l] its mask, scaled by 1/(1-p)
      weff,             // [GH, H] with weight drop: W_hh after it
      wmask;            // [GH, H] its mask
  // Shared by the layers:
  idx emb = 0,       // [T, B, E] embedded input (E > 0)
      hp = 0,        // [B, GH] W_hh h + b_hh of one step
      dhp = 0,       // [T, B, GH] GRU: d(loss)/d(hp) (else the gates' memory is used)
      dh = 0,        // [B, H] d(loss)/d(h) carried back through time
      dc = 0,        // [B, H] d(loss)/d(c), LSTM
      logits = 0,    // [T, B, V] logits; then d(loss)/d(logits)
      dout = 0,      // [T, B, max(H, E)] d(loss)/d(a layer's output or input)
      wpack = 0,     // W_hh packed for the products, or the fused time loop's panels
      top = 0,       // [T, B, H] with output dropout: the top layer's output after it
      top_mask = 0,  // [T, B, H] its mask
      emb_mask = 0,  // [V] with embedding dropout: the mask of the table's rows
      wt = 0;        // one-hot input: W_ih_l0 transposed [V, GH] (and its gradient)
  idx size = 0;      // elements in all
};

// The plan of a model (cell, V, E, H, L, its regularisers) for B rows of Tn
// steps, whose packed weights take `packed` elements of `elem_bytes` bytes.
// Every block starts on a 16-element (64-byte for float) boundary. Refuses a
// workspace larger than the machine's memory (WorkspaceTooLarge).
inline WorkspacePlan plan_workspace(CellKind cell, idx V, idx E, idx H, idx L,
                                    const Dropouts& drop, idx B, idx Tn, idx packed,
                                    double elem_bytes) {
  // Sizes are products of caller-given extents: each is formed in double
  // and checked against the machine's memory below, so none can wrap.
  const double N = static_cast<double>(B) * Tn, GH = static_cast<double>(gate_count(cell)) * H,
               BH = static_cast<double>(B) * H;
  WorkspacePlan p;
  idx off = 0;
  double total = 0;  // elements, in floating point
  auto take = [&](double n) {
    const idx o = off;
    total += n + 16;
    if (total < 0x1p60) off += (static_cast<idx>(n) + 15) / 16 * 16;  // 64-byte steps
    return o;
  };
  for (auto* v : {&p.xp, &p.hs, &p.cs, &p.aux, &p.din, &p.mask, &p.weff, &p.wmask})
    v->assign(L, 0);
  for (idx l = 0; l < L; ++l) {
    p.xp[l] = take(N * GH);
    p.hs[l] = take((Tn + 1) * BH);
    if (has_cell_state(cell)) p.cs[l] = take((Tn + 1) * BH);
    if (cell == CellKind::GRU) p.aux[l] = take(N * H);
    if (drop.on_input(l, E > 0) > 0) {
      const idx in = l > 0 ? H : E;
      p.din[l] = take(N * in);
      p.mask[l] = take(N * in);
    }
    if (drop.weight > 0) {
      p.weff[l] = take(GH * H);
      p.wmask[l] = take(GH * H);
    }
  }
  if (drop.output > 0) {
    p.top = take(N * H);
    p.top_mask = take(N * H);
  }
  if (drop.embedding > 0) p.emb_mask = take(static_cast<double>(V));
  if (E > 0) p.emb = take(N * E);
  if (E == 0) p.wt = take(V * GH);
  p.hp = take(B * GH);
  if (has_separate_dhp(cell)) p.dhp = take(N * GH);
  p.dh = take(BH);
  p.dc = take(BH);
  p.logits = take(N * V);
  p.dout = take(N * std::max(H, E));
  p.wpack = take(static_cast<double>(packed));
  const double bytes = total * elem_bytes + N * 16.0;
  const double limit = physical_memory_bytes();
  if ((limit > 0 && bytes > limit) || total >= 0x1p60) throw WorkspaceTooLarge(bytes, limit, B, Tn);
  p.size = off;
  return p;
}

}  // namespace pcr
