// Fused softmax + cross-entropy over rows of logits, mean over rows.
// Compiled inside pcr::PCR_ISA_NS.
#pragma once

#include "pointwise.hpp"
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
    row_loss[r] = softmax_xent_row(logits + r * V, V, idx(targets[r]), scale, grad);
  });
  double total = 0;
  for (idx r = 0; r < N; ++r) total += row_loss[r];
  return total / static_cast<double>(N);
}

}  // namespace PCR_ISA_NS
}  // namespace pcr
