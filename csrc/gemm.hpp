// Matrix multiply: C[M,N] = beta * C + op(A)[M,K] * op(B)[K,N], row-major.
//
// op(A)(i,k) = ta ? A[k*lda + i] : A[i*lda + k]       (A is [M,K] or [K,M])
// op(B)(k,j) = tb ? B[j*ldb + k] : B[k*ldb + j]       (B is [K,N] or [N,K])
// C(i,j)     = C[i*ldc + j]
// beta is 0 (C is overwritten; its old contents are never read) or any value.
//
// gemm_ref is the plain triple loop kept as the oracle. gemm packs blocks
// of A and B into contiguous panels and runs an MR x NR register-blocked
// micro-kernel (the layout of Goto and van de Geijn). Every element of C is
// summed over k in the same order whatever the thread count, so results are
// reproducible bit for bit at any number of threads.
#pragma once

#include <vector>

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

template <typename T>
struct Blocking;
template <>
struct Blocking<float> {
  static constexpr int MR = 6, NR = 16;
  static constexpr idx KC = 256, MC = 96, NC = 4096;
};
template <>
struct Blocking<double> {
  static constexpr int MR = 6, NR = 8;
  static constexpr idx KC = 256, MC = 96, NC = 2048;
};

// Micro-kernels: acc[MR*NR] = sum_k Ap[k*MR + i] * Bp[k*NR + j].
// On x86-64 Linux with GCC, clones for AVX-512, AVX2+FMA and the baseline
// are compiled and the loader picks one for the running CPU, so the default
// build stays portable. A native build compiles only one.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && \
    !PYCHARRNN_NATIVE_BUILD
#define PCR_KERNEL_CLONES __attribute__((target_clones("avx512f", "arch=haswell", "default")))
#define PCR_KERNEL_DISPATCH "runtime (avx512f, avx2+fma, baseline)"
#elif PYCHARRNN_NATIVE_BUILD
#define PCR_KERNEL_CLONES
#define PCR_KERNEL_DISPATCH "native"
#else
#define PCR_KERNEL_CLONES
#define PCR_KERNEL_DISPATCH "baseline"
#endif

// The accumulators are GCC/Clang vector-extension values of NR elements
// (64 bytes), which the compiler maps onto the widest registers of each clone.
#define PCR_DEFINE_KERNEL(NAME, T, MR, NR)                                          \
  PCR_KERNEL_CLONES __attribute__((noinline)) inline void NAME(                     \
      idx kc, const T* __restrict Ap, const T* __restrict Bp, T* __restrict acc) {  \
    typedef T vec __attribute__((vector_size(NR * sizeof(T))));                     \
    vec c[MR];                                                                      \
    for (int i = 0; i < MR; ++i) c[i] = vec{};                                      \
    for (idx k = 0; k < kc; ++k) {                                                  \
      vec b;                                                                        \
      std::memcpy(&b, Bp + k * NR, sizeof(vec));                                    \
      const T* a = Ap + k * MR;                                                     \
      for (int i = 0; i < MR; ++i) c[i] += a[i] * b;                                \
    }                                                                               \
    for (int i = 0; i < MR; ++i) std::memcpy(acc + i * NR, &c[i], sizeof(vec));     \
  }

PCR_DEFINE_KERNEL(micro_kernel_f32, float, 6, 16)
PCR_DEFINE_KERNEL(micro_kernel_f64, double, 6, 8)

inline void micro_kernel(idx kc, const float* Ap, const float* Bp, float* acc) {
  micro_kernel_f32(kc, Ap, Bp, acc);
}
inline void micro_kernel(idx kc, const double* Ap, const double* Bp, double* acc) {
  micro_kernel_f64(kc, Ap, Bp, acc);
}

namespace detail {

// Ap[kc][MR] for rows i0..i0+mr of op(A), columns p0..p0+kc; rows >= mr are 0.
template <typename T, int MR>
inline void pack_a(bool ta, const T* A, idx lda, idx i0, idx mr, idx p0, idx kc, T* Ap) {
  for (idx k = 0; k < kc; ++k) {
    T* dst = Ap + k * MR;
    for (idx i = 0; i < MR; ++i)
      dst[i] = i < mr ? (ta ? A[(p0 + k) * lda + i0 + i] : A[(i0 + i) * lda + p0 + k]) : T(0);
  }
}

// Bp[kc][NR] for columns j0..j0+nr of op(B), rows p0..p0+kc; columns >= nr are 0.
template <typename T, int NR>
inline void pack_b(bool tb, const T* B, idx ldb, idx j0, idx nr, idx p0, idx kc, T* Bp) {
  if (!tb && nr == NR) {
    for (idx k = 0; k < kc; ++k) copy_n(B + (p0 + k) * ldb + j0, NR, Bp + k * NR);
    return;
  }
  for (idx k = 0; k < kc; ++k) {
    T* dst = Bp + k * NR;
    for (idx j = 0; j < NR; ++j)
      dst[j] = j < nr ? (tb ? B[(j0 + j) * ldb + p0 + k] : B[(p0 + k) * ldb + j0 + j]) : T(0);
  }
}

template <typename T>
inline std::vector<T>& scratch(int which) {
  thread_local std::vector<T> bufs[3];
  return bufs[which];
}

template <typename T>
inline T* scratch_ptr(int which, idx n) {
  auto& v = scratch<T>(which);
  if (static_cast<idx>(v.size()) < n) v.resize(static_cast<size_t>(n));
  return v.data();
}

// M <= 4: the recurrent step at small batch. No packing of B (it would
// double the memory traffic of the weights); dot products or row updates.
template <typename T>
void gemm_small_m(bool ta, bool tb, idx M, idx N, idx K, const T* A, idx lda, const T* B,
                  idx ldb, T beta, T* C, idx ldc) {
  // Rows of op(A), made contiguous.
  T* a = scratch_ptr<T>(0, M * K);
  for (idx i = 0; i < M; ++i)
    for (idx k = 0; k < K; ++k) a[i * K + k] = ta ? A[k * lda + i] : A[i * lda + k];
  const int nt = threads_for(M * N * K);
  if (tb) {
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (idx j = 0; j < N; ++j) {
      const T* b = B + j * ldb;
      for (idx i = 0; i < M; ++i) {
        const T* ai = a + i * K;
        T acc = 0;
#pragma omp simd reduction(+ : acc)
        for (idx k = 0; k < K; ++k) acc += ai[k] * b[k];
        T& c = C[i * ldc + j];
        c = (beta == T(0) ? T(0) : beta * c) + acc;
      }
    }
  } else {
    const idx nchunk = std::max<idx>(1, std::min<idx>(nt, (N + 63) / 64));
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (idx ch = 0; ch < nchunk; ++ch) {
      const idx per = (N + nchunk - 1) / nchunk;
      const idx j0 = ch * per, j1 = std::min(N, j0 + per);
      for (idx i = 0; i < M; ++i) {
        T* c = C + i * ldc;
        if (beta == T(0))
          for (idx j = j0; j < j1; ++j) c[j] = T(0);
        else if (beta != T(1))
          for (idx j = j0; j < j1; ++j) c[j] *= beta;
        for (idx k = 0; k < K; ++k) {
          const T aik = a[i * K + k];
          const T* b = B + k * ldb;
#pragma omp simd
          for (idx j = j0; j < j1; ++j) c[j] += aik * b[j];
        }
      }
    }
  }
}

}  // namespace detail

template <typename T>
void gemm(bool ta, bool tb, idx M, idx N, idx K, const T* A, idx lda, const T* B, idx ldb,
          T beta, T* C, idx ldc) {
  using Bk = Blocking<T>;
  constexpr int MR = Bk::MR, NR = Bk::NR;
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    for (idx i = 0; i < M; ++i)
      for (idx j = 0; j < N; ++j) C[i * ldc + j] = beta == T(0) ? T(0) : beta * C[i * ldc + j];
    return;
  }
  if (M <= 4) {
    detail::gemm_small_m(ta, tb, M, N, K, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  const int nt = threads_for(M * N * K);
  for (idx jc = 0; jc < N; jc += Bk::NC) {
    const idx nc = std::min(Bk::NC, N - jc);
    const idx nb_panels = (nc + NR - 1) / NR;
    for (idx pc = 0; pc < K; pc += Bk::KC) {
      const idx kc = std::min(Bk::KC, K - pc);
      const bool first = pc == 0;
      T* Bp = detail::scratch_ptr<T>(1, nb_panels * kc * NR);
      const idx n_mblocks = (M + Bk::MC - 1) / Bk::MC;
      // Split the columns too when there are fewer row blocks than threads.
      const idx n_jchunks =
          std::max<idx>(1, std::min<idx>(nb_panels, (2 * nt + n_mblocks - 1) / n_mblocks));
      const idx panels_per_chunk = (nb_panels + n_jchunks - 1) / n_jchunks;
      const idx ntasks = n_mblocks * n_jchunks;
#pragma omp parallel num_threads(nt) if (nt > 1)
      {
#pragma omp for schedule(static)
        for (idx pb = 0; pb < nb_panels; ++pb)
          detail::pack_b<T, NR>(tb, B, ldb, jc + pb * NR, std::min<idx>(NR, nc - pb * NR), pc,
                                kc, Bp + pb * kc * NR);
        // (implicit barrier: Bp is complete)
        T* Ap = detail::scratch_ptr<T>(2, ((Bk::MC + MR - 1) / MR) * MR * kc);
        alignas(64) T acc[MR * NR];
        idx packed_mb = -1;
#pragma omp for schedule(static)
        for (idx task = 0; task < ntasks; ++task) {
          const idx mb = task / n_jchunks, jchunk = task % n_jchunks;
          const idx ic = mb * Bk::MC, mc = std::min(Bk::MC, M - ic);
          const idx na_panels = (mc + MR - 1) / MR;
          if (mb != packed_mb) {
            for (idx pa = 0; pa < na_panels; ++pa)
              detail::pack_a<T, MR>(ta, A, lda, ic + pa * MR, std::min<idx>(MR, mc - pa * MR),
                                    pc, kc, Ap + pa * kc * MR);
            packed_mb = mb;
          }
          const idx pb0 = jchunk * panels_per_chunk;
          const idx pb1 = std::min(nb_panels, pb0 + panels_per_chunk);
          for (idx pb = pb0; pb < pb1; ++pb) {
            const idx j0 = jc + pb * NR, nr = std::min<idx>(NR, nc - pb * NR);
            for (idx pa = 0; pa < na_panels; ++pa) {
              const idx i0 = ic + pa * MR, mr = std::min<idx>(MR, mc - pa * MR);
              micro_kernel(kc, Ap + pa * kc * MR, Bp + pb * kc * NR, acc);
              for (idx i = 0; i < mr; ++i) {
                T* c = C + (i0 + i) * ldc + j0;
                const T* s = acc + i * NR;
                if (!first)
                  for (idx j = 0; j < nr; ++j) c[j] += s[j];
                else if (beta == T(0))
                  for (idx j = 0; j < nr; ++j) c[j] = s[j];
                else
                  for (idx j = 0; j < nr; ++j) c[j] = beta * c[j] + s[j];
              }
            }
          }
        }
      }
    }
  }
}

}  // namespace pcr
