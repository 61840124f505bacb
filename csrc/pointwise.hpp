// The pointwise math of the model, written once for both backends: one
// unit of each cell forward and backward, one row of the fused softmax and
// cross-entropy, one element of each optimizer's update. The CPU kernels
// (cells.hpp, loss.hpp, optim.hpp) call these inside their vectorized loops;
// the CUDA kernels (cuda/) call the same functions, one per thread, so the
// CPU tests exercise the arithmetic the GPU runs. Compiled inside
// pcr::PCR_ISA_NS (one namespace per instruction set, and "cuda").
#pragma once

#include "fastmath.hpp"

namespace pcr {
namespace PCR_ISA_NS {

// ------------------------------------------------------------------ cells
// Forward of one unit. x*: W_ih x + b_ih of the gate, h*: W_hh h + b_hh.
template <typename T>
PCR_HD T rnn_tanh_forward(T x, T h) {
  return tanh_t(x + h);
}

template <typename T>
PCR_HD T rnn_relu_forward(T x, T h) {
  const T a = x + h;
  return a > T(0) ? a : T(0);
}

// GRU (PyTorch's): r, z, n and the new h from the previous hprev.
template <typename T>
PCR_HD void gru_forward(T xr, T xz, T xn, T hr, T hz, T hn, T hprev, T& r, T& z, T& n, T& h) {
  r = sigmoid_t(xr + hr);
  z = sigmoid_t(xz + hz);
  n = tanh_t(xn + r * hn);
  h = (T(1) - z) * n + z * hprev;
}

// LSTM (gates i, f, g, o): the new c and h from the previous cprev.
template <typename T>
PCR_HD void lstm_forward(T ai, T af, T ag, T ao, T cprev, T& i, T& f, T& g, T& o, T& c, T& h) {
  i = sigmoid_t(ai);
  f = sigmoid_t(af);
  g = tanh_t(ag);
  o = sigmoid_t(ao);
  c = f * cprev + i * g;
  h = o * tanh_t(c);
}

// Backward of one unit, from the stored forward values and dh = d loss / d h.
// RNN: d loss / d (pre-activation), from the output h.
template <typename T>
PCR_HD T rnn_tanh_backward(T dh, T h) {
  return dh * (T(1) - h * h);
}

template <typename T>
PCR_HD T rnn_relu_backward(T dh, T h) {
  return h > T(0) ? dh : T(0);
}

// GRU: d loss / d of the gates' pre-activations (dar, daz, dan: W_ih side;
// the W_hh side of n is dan * r) and the direct part of d loss / d hprev.
template <typename T>
PCR_HD void gru_backward(T r, T z, T n, T hn, T hprev, T dh, T& dar, T& daz, T& dan,
                         T& dhprev) {
  dan = dh * (T(1) - z) * (T(1) - n * n);
  daz = dh * (hprev - n) * z * (T(1) - z);
  dar = dan * hn * r * (T(1) - r);
  dhprev = dh * z;
}

// LSTM: dc is d loss / d c from the step after on entry, d loss / d cprev on
// exit; di..do the gates' pre-activations.
template <typename T>
PCR_HD void lstm_backward(T i, T f, T g, T o, T c, T cprev, T dh, T& dc, T& di, T& df, T& dg,
                          T& d_o) {
  const T tc = tanh_t(c);
  const T dcj = dc + dh * o * (T(1) - tc * tc);
  di = dcj * g * i * (T(1) - i);
  df = dcj * cprev * f * (T(1) - f);
  dg = dcj * i * (T(1) - g * g);
  d_o = dh * tc * o * (T(1) - o);
  dc = dcj * f;
}

// The same at unit j of one row, on the layout of a step (dispatch.hpp's
// StepIO, from the row's start): g [G*H] holds the gates' W_ih parts on entry
// and the activated gates on exit, hp [G*H] the W_hh parts, aux the GRU's
// W_hn h + b_hn. The CPU's loops (cells.hpp) and the CUDA kernels call these.
template <typename T>
PCR_HD void gru_forward_at(T* g, const T* hp, const T* hprev, T* h, T* aux, idx H, idx j) {
  T r, z, n, hj;
  gru_forward(g[j], g[H + j], g[2 * H + j], hp[j], hp[H + j], hp[2 * H + j], hprev[j], r, z, n,
              hj);
  aux[j] = hp[2 * H + j];
  g[j] = r;
  g[H + j] = z;
  g[2 * H + j] = n;
  h[j] = hj;
}

template <typename T>
PCR_HD void lstm_forward_at(T* g, const T* hp, const T* cprev, T* c, T* h, idx H, idx j) {
  T i, f, gg, o, cj, hj;
  lstm_forward(g[j] + hp[j], g[H + j] + hp[H + j], g[2 * H + j] + hp[2 * H + j],
               g[3 * H + j] + hp[3 * H + j], cprev[j], i, f, gg, o, cj, hj);
  g[j] = i;
  g[H + j] = f;
  g[2 * H + j] = gg;
  g[3 * H + j] = o;
  c[j] = cj;
  h[j] = hj;
}

// Backward at unit j: g becomes d loss / d xp; the GRU's dhp [G*H]
// d loss / d hp and dh[j] the direct part of d loss / d hprev; the LSTM's
// dc[j] d loss / d cprev (d loss / d c of this step on entry).
template <typename T>
PCR_HD void gru_backward_at(T* g, T* dhp, const T* aux, const T* hprev, T* dh, idx H, idx j) {
  const T r = g[j];
  T dar, daz, dan, dprev;
  gru_backward(r, g[H + j], g[2 * H + j], aux[j], hprev[j], dh[j], dar, daz, dan, dprev);
  g[j] = dhp[j] = dar;
  g[H + j] = dhp[H + j] = daz;
  g[2 * H + j] = dan;
  dhp[2 * H + j] = dan * r;
  dh[j] = dprev;
}

template <typename T>
PCR_HD void lstm_backward_at(T* g, const T* c, const T* cprev, const T* dh, T* dc, idx H,
                             idx j) {
  T dcj = dc[j], di, df, dg, d_o;
  lstm_backward(g[j], g[H + j], g[2 * H + j], g[3 * H + j], c[j], cprev[j], dh[j], dcj, di, df,
                dg, d_o);
  g[j] = di;
  g[H + j] = df;
  g[2 * H + j] = dg;
  g[3 * H + j] = d_o;
  dc[j] = dcj;
}

// ------------------------------------------------------------------- loss
// One row of logits z[V] with target y: returns its cross-entropy; with
// grad, z becomes d(mean loss)/d z = (softmax(z) - onehot(y)) * scale.
template <typename T>
PCR_HD double softmax_xent_row(T* z, idx V, idx y, T scale, bool grad) {
  T m = z[0];
  PCR_SIMD_MAX(m)
  for (idx v = 1; v < V; ++v) m = z[v] > m ? z[v] : m;
  T sum = 0;
  PCR_SIMD_SUM(sum)
  for (idx v = 0; v < V; ++v) sum += exp_t(z[v] - m);
  const T lse = m + log_t(sum);
  const double loss = static_cast<double>(lse - z[y]);
  if (grad) {
    const T inv = scale / sum;
    PCR_SIMD
    for (idx v = 0; v < V; ++v) z[v] = exp_t(z[v] - m) * inv;
    z[y] -= scale;
  }
  return loss;
}

// ------------------------------------------------------------- optimizers
// The gradient an update sees: scaled (clipping by norm), clipped to
// [-clip, clip] (clip = inf: none), plus an L2 term wd * p with WD.
template <typename T, bool WD>
PCR_HD T grad_in(T grad, T p, T scale, T clip, T wd) {
  T g = grad * scale;
  g = g > clip ? clip : (g < -clip ? -clip : g);
  if (WD) g += wd * p;
  return g;
}

// Each returns nothing and updates p and its state in place (torch.optim's
// rules; `first`: SGD's first step with momentum takes buf = g).
template <typename T, bool MOM>
PCR_HD void sgd_element(T g, T& p, T& buf, T lr, T momentum, T damp1, bool nesterov,
                        bool first) {
  if (MOM) {
    const T b = first ? g : momentum * buf + damp1 * g;
    buf = b;
    g = nesterov ? g + momentum * b : b;
  }
  p -= lr * g;
}

template <typename T, bool EPS_INSIDE>
PCR_HD void adagrad_element(T g, T& p, T& mem, T clr, T eps) {
  const T m = mem + g * g;
  mem = m;
  const T den = EPS_INSIDE ? sqrt_t(m + eps) : sqrt_t(m) + eps;
  p -= clr * (g / den);
}

template <typename T, bool CENTERED, bool MOM>
PCR_HD void rmsprop_element(T g, T& p, T& sq, T& gavg, T& buf, T lr, T alpha, T a1, T eps,
                            T momentum) {
  const T s = sq * alpha + a1 * g * g;
  sq = s;
  T avg;
  if (CENTERED) {
    const T ga = gavg + (g - gavg) * a1;
    gavg = ga;
    avg = sqrt_t(s - ga * ga) + eps;
  } else {
    avg = sqrt_t(s) + eps;
  }
  if (MOM) {
    const T b = momentum * buf + g / avg;
    buf = b;
    p -= lr * b;
  } else {
    p -= lr * (g / avg);
  }
}

// Adam / AdamW (DECOUPLED: p *= 1 - lr * wd first); step_size = lr / bc1.
template <typename T, bool DECOUPLED, bool AMSGRAD>
PCR_HD void adam_element(T g, T& p, T& m, T& v, T& vmax, T step_size, T b2, T one_b1,
                         T one_b2, T bc2_sqrt, T eps, T decay) {
  T pi = p;
  if (DECOUPLED) pi *= decay;
  const T mi = m + (g - m) * one_b1;
  const T vi = v * b2 + g * g * one_b2;
  m = mi;
  v = vi;
  T vv = vi;
  if (AMSGRAD) {
    vv = vmax > vi ? vmax : vi;
    vmax = vv;
  }
  p = pi - step_size * (mi / (sqrt_t(vv) / bc2_sqrt + eps));
}

}  // namespace PCR_ISA_NS
}  // namespace pcr
