// The plain triple-loop matrix multiply, kept as the oracle for the packed
// kernels (same argument convention as gemm.hpp).
#pragma once

#include "common.hpp"

namespace pcr {

template <typename T>
void gemm_ref(bool ta, bool tb, idx M, idx N, idx K, const T* A, idx lda, const T* B,
              idx ldb, T beta, T* C, idx ldc) {
  for (idx i = 0; i < M; ++i)
    for (idx j = 0; j < N; ++j) {
      T acc = 0;
      for (idx k = 0; k < K; ++k)
        acc += (ta ? A[k * lda + i] : A[i * lda + k]) * (tb ? B[j * ldb + k] : B[k * ldb + j]);
      T& c = C[i * ldc + j];
      c = (beta == T(0) ? T(0) : beta * c) + acc;
    }
}

}  // namespace pcr
