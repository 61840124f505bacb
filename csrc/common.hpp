// Shared helpers: index type, thread count, small vector ops.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace pcr {

using idx = std::int64_t;  // every size and offset is 64-bit

// Threads used by every kernel: a process-wide setting (not OpenMP's
// per-thread ICV), so a value set from one Python thread applies to kernels
// started from any other. Defined once, in kernels.cpp.
int num_threads();
void set_num_threads(int n);

// Work (in multiply-adds or element updates) below which a loop stays serial:
// forking a team costs a few microseconds.
constexpr idx kParallelWork = 1 << 15;

// Helpers here are `static` (internal linkage): this header is compiled into
// kernel files built for different instruction sets, and a shared inline
// definition could otherwise be taken from a build the CPU cannot run.
static inline int threads_for(idx work) { return work < kParallelWork ? 1 : num_threads(); }

// y[0:n] = x[0:n]
template <typename T>
static inline void copy_n(const T* x, idx n, T* y) {
  if (n > 0) std::memcpy(y, x, sizeof(T) * static_cast<size_t>(n));
}

// Rows of C[M, N] (row stride ldc) set to the vector b[N].
template <typename T>
static inline void broadcast_rows(T* C, idx M, idx N, idx ldc, const T* b) {
  const int nt = threads_for(M * N);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
  for (idx i = 0; i < M; ++i) copy_n(b, N, C + i * ldc);
}

// out[N] = (beta ? out : 0) + sum over rows of A[M, N] (row stride lda).
// Summed row by row in a fixed order, so the result does not depend on
// the number of threads (columns are split between threads).
template <typename T>
static inline void column_sums(const T* A, idx M, idx N, idx lda, T* out, bool accumulate) {
  const int nt = threads_for(M * N);
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
#ifdef _OPENMP
    const int tid = omp_get_thread_num(), nth = omp_get_num_threads();
#else
    const int tid = 0, nth = 1;
#endif
    const idx chunk = (N + nth - 1) / nth;
    const idx j0 = std::min(N, chunk * tid), j1 = std::min(N, j0 + chunk);
    if (!accumulate)
      for (idx j = j0; j < j1; ++j) out[j] = T(0);
    for (idx i = 0; i < M; ++i) {
      const T* a = A + i * lda;
#pragma omp simd
      for (idx j = j0; j < j1; ++j) out[j] += a[j];
    }
  }
}

}  // namespace pcr
