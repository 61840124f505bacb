// Optimizer updates over the flat parameter buffer, one fused loop each.
// Compiled inside pcr::PCR_ISA_NS.
//
// Semantics follow torch.optim's single-tensor implementations, operation
// for operation where it matters for rounding, so that float64 runs agree
// to ~1e-15 relative step by step. Every kernel reads the gradient as
//   g = clip(scale * grad, -clip, clip)      (clip <= 0: no clipping)
// (scale carries clipping by global norm), then adds weight decay, so grads
// are never modified. All buffers are [n]; p and the state are updated in
// place. Elements are independent, so any thread count gives the same bits.
#pragma once

#include <cstdlib>
#include <type_traits>

#include "dispatch.hpp"
#include "pointwise.hpp"
#include "scratch.hpp"

namespace pcr {
namespace PCR_ISA_NS {

// Every loop below is branch-free inside (the options are template
// arguments), so the compiler vectorizes it; threads take contiguous chunks.
template <typename F>
inline void parallel_chunks(idx n, F&& body) {
  parallel_team(threads_for(n * 4), [&](int tid, int nth) {
    idx i0, i1;
    chunk_of(n, tid, nth, &i0, &i1);
    body(i0, i1);
  });
}

// g = clip(scale * grad, -clip, clip) (+ wd * p). clip is +inf when off, so
// the selects never fire; NaN passes through (comparisons are false).

template <typename T>
inline T clip_bound(const GradIn& gi) {
  return gi.clip > 0 ? T(gi.clip) : T(__builtin_inf());
}

// Calls f(std::integral_constant<bool, b>) for a runtime bool b.
template <typename F>
inline void with_flag(bool b, F&& f) {
  if (b)
    f(std::true_type{});
  else
    f(std::false_type{});
}

// SGD with momentum / dampening / Nesterov (torch.optim.SGD):
//   g += wd * p
//   buf = first ? g : momentum * buf + (1 - dampening) * g
//   g = nesterov ? g + momentum * buf : buf          (momentum > 0)
//   p -= lr * g
template <typename T>
void sgd_update(T* p, const T* grad, T* buf, idx n, const GradIn& gi, T lr, T momentum,
                T dampening, bool nesterov, bool first) {
  const T scale = T(gi.scale), clip = clip_bound<T>(gi), wd = T(gi.weight_decay);
  const T damp1 = T(1) - dampening;
  with_flag(wd != T(0), [&](auto WD) {
    with_flag(momentum != T(0), [&](auto MOM) {
      parallel_chunks(n, [&](idx i0, idx i1) {
#pragma omp simd
        for (idx i = i0; i < i1; ++i) {
          T none = 0;  // the momentum buffer's stand-in without momentum (buf is null)
          sgd_element<T, MOM>(grad_in<T, WD>(grad[i], p[i], scale, clip, wd), p[i],
                              MOM ? buf[i] : none, lr, momentum, damp1, nesterov, first);
        }
      });
    });
  });
}

// AdaGrad:  g += wd * p;  sum += g * g
//   eps_inside (min-char-rnn):  p -= clr * g / sqrt(sum + eps)
//   otherwise (torch.optim):    p -= clr * g / (sqrt(sum) + eps)
// clr = lr / (1 + (step - 1) * lr_decay) is computed by the caller.
template <typename T>
void adagrad_update(T* p, const T* grad, T* mem, idx n, const GradIn& gi, T clr, T eps,
                    bool eps_inside) {
  const T scale = T(gi.scale), clip = clip_bound<T>(gi), wd = T(gi.weight_decay);
  with_flag(wd != T(0), [&](auto WD) {
    with_flag(eps_inside, [&](auto IN) {
      parallel_chunks(n, [&](idx i0, idx i1) {
#pragma omp simd
        for (idx i = i0; i < i1; ++i)
          adagrad_element<T, IN>(grad_in<T, WD>(grad[i], p[i], scale, clip, wd), p[i], mem[i],
                                 clr, eps);
      });
    });
  });
}

// RMSProp (torch.optim.RMSprop):
//   g += wd * p;  sq = alpha * sq + (1 - alpha) * g^2
//   centered: gavg += (1 - alpha) * (g - gavg);  avg = sqrt(sq - gavg^2) + eps
//   else:     avg = sqrt(sq) + eps
//   momentum > 0: buf = momentum * buf + g / avg;  p -= lr * buf
//   else:         p -= lr * g / avg
// gavg and buf may be null when unused.
template <typename T>
void rmsprop_update(T* p, const T* grad, T* sq, T* gavg, T* buf, idx n, const GradIn& gi, T lr,
                    T alpha, T eps, T momentum, bool centered) {
  const T scale = T(gi.scale), clip = clip_bound<T>(gi), wd = T(gi.weight_decay);
  const T a1 = T(1) - alpha;
  with_flag(wd != T(0), [&](auto WD) {
    with_flag(centered, [&](auto CEN) {
      with_flag(momentum > T(0), [&](auto MOM) {
        parallel_chunks(n, [&](idx i0, idx i1) {
#pragma omp simd
          for (idx i = i0; i < i1; ++i) {
            T none = 0, none2 = 0;  // stand-ins for the buffers a configuration lacks
            rmsprop_element<T, CEN, MOM>(grad_in<T, WD>(grad[i], p[i], scale, clip, wd), p[i],
                                         sq[i], CEN ? gavg[i] : none, MOM ? buf[i] : none2,
                                         lr, alpha, a1, eps, momentum);
          }
        });
      });
    });
  });
}

// Adam / AdamW (torch.optim.Adam, AdamW), bias-corrected:
//   AdamW: p *= 1 - lr * wd          Adam: g += wd * p
//   m += (1 - b1) * (g - m);  v = b2 * v + (1 - b2) * g^2
//   amsgrad: vmax = max(vmax, v), used in place of v
//   p -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps)
// bc1 = 1 - b1^step, bc2 = 1 - b2^step are computed by the caller in double.
template <typename T>
void adam_update(T* p, const T* grad, T* m, T* v, T* vmax, idx n, const GradIn& gi, T lr, T b1,
                 T b2, T eps, double bc1, double bc2, bool decoupled, bool amsgrad) {
  const T scale = T(gi.scale), clip = clip_bound<T>(gi), wd = T(gi.weight_decay);
  const T step_size = T(double(lr) / bc1);
  const T bc2_sqrt = T(__builtin_sqrt(bc2));
  const T decay = T(1) - lr * wd;
  const T one_b1 = T(1) - b1, one_b2 = T(1) - b2;
  with_flag(wd != T(0) && !decoupled, [&](auto L2) {
    with_flag(wd != T(0) && decoupled, [&](auto DEC) {
      with_flag(amsgrad, [&](auto AMS) {
        parallel_chunks(n, [&](idx i0, idx i1) {
#pragma omp simd
          for (idx i = i0; i < i1; ++i) {
            T none = 0;  // the stand-in for vmax without amsgrad (vmax is null)
            adam_element<T, DEC, AMS>(grad_in<T, L2>(grad[i], p[i], scale, clip, wd), p[i],
                                      m[i], v[i], AMS ? vmax[i] : none, step_size, b2, one_b1,
                                      one_b2, bc2_sqrt, eps, decay);
          }
        });
      });
    });
  });
}

// Sum of squares of scale-free gradients, in double, for clipping by norm.
// Chunks are summed in a fixed order, so the result does not depend on the
// thread count.
template <typename T>
double sum_squares(const T* g, idx n) {
  constexpr idx kChunk = 1 << 14;
  const idx nchunks = (n + kChunk - 1) / kChunk;
  double total = 0;
  // Partial sums per chunk, combined serially.
  double* part = scratch<double, 3>(nchunks > 0 ? nchunks : 1);
  if (!part) {
    for (idx i = 0; i < n; ++i) total += double(g[i]) * double(g[i]);
    return total;
  }
  parallel_for(nchunks, threads_for(n * 2), [&](idx c) {
    // Eight running sums (element i goes to sum i % 8), added up in a fixed
    // order: a vector loop whose result does not depend on the instruction
    // set (for float input every square is exact in double).
    typedef double d8 __attribute__((vector_size(64)));
    typedef T t8 __attribute__((vector_size(8 * sizeof(T))));
    d8 acc = {0, 0, 0, 0, 0, 0, 0, 0};
    idx i = c * kChunk;
    const idx i1 = mn(n, (c + 1) * kChunk);
    for (; i + 8 <= i1; i += 8) {
      t8 v;
      __builtin_memcpy(&v, g + i, sizeof v);
      const d8 d = __builtin_convertvector(v, d8);
      acc += d * d;
    }
    double s[8];
    for (int j = 0; j < 8; ++j) s[j] = acc[j];
    for (int j = 0; i < i1; ++i, ++j) {
      const double v = double(g[i]);
      s[j] += v * v;
    }
    part[c] = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
  });
  for (idx c = 0; c < nchunks; ++c) total += part[c];
  return total;
}

}  // namespace PCR_ISA_NS
}  // namespace pcr
