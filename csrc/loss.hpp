// Fused softmax + cross-entropy over rows of logits, mean over rows.
// Compiled inside pcr::PCR_ISA_NS.
#pragma once

#include "fastmath.hpp"
#include "dispatch.hpp"

namespace pcr {
namespace PCR_ISA_NS {

// logits [N, V], targets [N]. Returns mean over rows of
//   logsumexp(logits[r]) - logits[r, targets[r]]   (nats)
// computed stably (max subtracted). With grad, logits are overwritten by
// d(loss)/d(logits) = (softmax(logits[r]) - onehot(targets[r])) / N.
// row_loss [N] is scratch; the rows are summed in order (in double), so the
// result does not depend on the thread count.
template <typename T>
double softmax_xent(T* logits, idx N, idx V, const std::int32_t* targets, bool grad,
                    double* row_loss) {
  const int nt = threads_for(N * V * 4);
  const T scale = T(1) / static_cast<T>(N);
  parallel_for(N, nt, [&](idx r) {
    T* z = logits + r * V;
    T m = z[0];
#pragma omp simd reduction(max : m)
    for (idx v = 1; v < V; ++v) m = z[v] > m ? z[v] : m;
    T sum = 0;
#pragma omp simd reduction(+ : sum)
    for (idx v = 0; v < V; ++v) sum += exp_t(z[v] - m);
    const T lse = m + log_t(sum);
    const idx y = targets[r];
    row_loss[r] = static_cast<double>(lse - z[y]);
    if (grad) {
      const T inv = scale / sum;
#pragma omp simd
      for (idx v = 0; v < V; ++v) z[v] = exp_t(z[v] - m) * inv;
      z[y] -= scale;
    }
  });
  double total = 0;
  for (idx r = 0; r < N; ++r) total += row_loss[r];
  return total / static_cast<double>(N);
}

}  // namespace PCR_ISA_NS
}  // namespace pcr
