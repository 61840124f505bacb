// Matrix multiply: C[M,N] = beta * C + op(A)[M,K] * op(B)[K,N], row-major.
//
// op(A)(i,k) = ta ? A[k*lda + i] : A[i*lda + k]       (A is [M,K] or [K,M])
// op(B)(k,j) = tb ? B[j*ldb + k] : B[k*ldb + j]       (B is [K,N] or [N,K])
// C(i,j)     = C[i*ldc + j]
// beta is 0 (C is overwritten; its old contents are never read) or any value.
//
// Blocks of A and B are packed into contiguous panels and an MR x NR
// register-blocked micro-kernel runs over them (the layout of Goto and van
// de Geijn). Every element of C is summed over k in the same order whatever
// the thread count, so results are reproducible bit for bit. This header is
// compiled once per instruction set (isa_*.cpp) inside the namespace
// pcr::PCR_ISA_NS; the blocking follows the vector registers available.
// The plain triple loop (gemm_ref.hpp) is the oracle the tests compare with.
#pragma once

#include <cstdlib>
#include <cstring>
#include <type_traits>
#if defined(__SSE__)
#include <xmmintrin.h>
#endif

#include "dispatch.hpp"
#include "scratch.hpp"

namespace pcr {
namespace PCR_ISA_NS {

template <typename T>
struct Blocking;
#if defined(__AVX512F__)
// 32 zmm registers: 12 rows x 2 vectors of accumulators.
template <>
struct Blocking<float> {
  static constexpr int MR = 12, NR = 32;
  static constexpr idx KC = 256, MC = 144, NC = 4096;
};
template <>
struct Blocking<double> {
  static constexpr int MR = 12, NR = 16;
  static constexpr idx KC = 256, MC = 144, NC = 2048;
};
#elif defined(__AVX2__)
// 16 ymm registers: 6 rows x 2 vectors of accumulators.
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
#else
// 16 xmm registers: 4 rows x 2 vectors of accumulators.
template <>
struct Blocking<float> {
  static constexpr int MR = 4, NR = 8;
  static constexpr idx KC = 256, MC = 96, NC = 4096;
};
template <>
struct Blocking<double> {
  static constexpr int MR = 4, NR = 4;
  static constexpr idx KC = 256, MC = 96, NC = 2048;
};
#endif

// Native vector width in bytes of this build.
#if defined(__AVX512F__)
constexpr int kVecBytes = 64;
#elif defined(__AVX2__)
constexpr int kVecBytes = 32;
#else
constexpr int kVecBytes = 16;
#endif

// Where a micro-kernel puts its R x NR result: out[i*ld + j] = result
// (mode kStore), += result (kAdd), or = beta * out + result (kScale).
template <typename T>
struct Out {
  enum Mode { kStore, kAdd, kScale };
  T* p;
  idx ld;
  Mode mode;
  T beta;
};

// out (+)= sum_k Ap[k*MR + i] * Bp[k*NR + j] for the first R rows of a
// packed panel. The R x NR accumulators are R x (NR / W) vector-extension
// values of the native width W, so the compiler keeps them all in registers
// (a vector wider than a register would be kept in memory).
template <typename T, int MR, int NR, int R>
__attribute__((noinline)) void micro_kernel(idx kc, const T* __restrict Ap,
                                            const T* __restrict Bp, const Out<T>& out) {
  constexpr int W = kVecBytes / static_cast<int>(sizeof(T));
  constexpr int NV = NR / W;
  static_assert(NR % W == 0, "NR must be a multiple of the vector width");
  // With few rows there are too few accumulators to hide the FMA latency,
  // so KS interleaved partial sums over k are kept and added at the end.
  constexpr int KS = R * NV >= 8 ? 1 : (R * NV >= 4 ? 2 : 4);
  typedef T vec __attribute__((vector_size(W * sizeof(T))));
  vec c[KS][R][NV];
  for (int s = 0; s < KS; ++s)
    for (int i = 0; i < R; ++i)
      for (int v = 0; v < NV; ++v) c[s][i][v] = vec{};
  idx k = 0;
  for (; k + KS <= kc; k += KS) {
    for (int s = 0; s < KS; ++s) {
      vec b[NV];
      for (int v = 0; v < NV; ++v)
        __builtin_memcpy(&b[v], Bp + (k + s) * NR + v * W, sizeof(vec));
      const T* a = Ap + (k + s) * MR;
      for (int i = 0; i < R; ++i) {
        const T ai = a[i];
        for (int v = 0; v < NV; ++v) c[s][i][v] += ai * b[v];
      }
    }
  }
  for (; k < kc; ++k) {
    vec b[NV];
    for (int v = 0; v < NV; ++v) __builtin_memcpy(&b[v], Bp + k * NR + v * W, sizeof(vec));
    const T* a = Ap + k * MR;
    for (int i = 0; i < R; ++i) {
      const T ai = a[i];
      for (int v = 0; v < NV; ++v) c[0][i][v] += ai * b[v];
    }
  }
  for (int s = 1; s < KS; ++s)
    for (int i = 0; i < R; ++i)
      for (int v = 0; v < NV; ++v) c[0][i][v] += c[s][i][v];
  for (int i = 0; i < R; ++i)
    for (int v = 0; v < NV; ++v) {
      T* o = out.p + i * out.ld + v * W;
      vec r = c[0][i][v];
      if (out.mode != Out<T>::kStore) {
        vec old;
        __builtin_memcpy(&old, o, sizeof(vec));
        r = out.mode == Out<T>::kAdd ? old + r : out.beta * old + r;
      }
      __builtin_memcpy(o, &r, sizeof(vec));
    }
}

template <typename T, int MR, int NR, int R = MR>
struct KernelFor {
  static void run(int rows, idx kc, const T* Ap, const T* Bp, const Out<T>& out) {
    if (rows == R)
      micro_kernel<T, MR, NR, R>(kc, Ap, Bp, out);
    else
      KernelFor<T, MR, NR, R - 1>::run(rows, kc, Ap, Bp, out);
  }
};
template <typename T, int MR, int NR>
struct KernelFor<T, MR, NR, 0> {
  static void run(int, idx, const T*, const T*, const Out<T>&) {}
};

// Ap[k * MR + i] = R[i * lda + k], i < mr, k < kc: rows of A transposed
// into a panel.
template <typename T, int MR>
inline void pack_rows(const T* R, idx lda, idx mr, idx kc, T* Ap) {
  for (idx i = 0; i < mr; ++i)
    for (idx k = 0; k < kc; ++k) Ap[k * MR + i] = R[i * lda + k];
}
#if defined(__SSE__)
// float: 4 x 4 blocks transposed in registers (the scalar loop above is a
// strided store per element, a visible share of a large product's time).
template <int MR>
inline void pack_rows_f32(const float* R, idx lda, idx mr, idx kc, float* Ap) {
  idx i = 0;
  for (; i + 4 <= mr; i += 4) {
    const float* r0 = R + i * lda;
    const float *r1 = r0 + lda, *r2 = r1 + lda, *r3 = r2 + lda;
    idx k = 0;
    for (; k + 4 <= kc; k += 4) {
      __m128 a = _mm_loadu_ps(r0 + k), b = _mm_loadu_ps(r1 + k), c = _mm_loadu_ps(r2 + k),
             d = _mm_loadu_ps(r3 + k);
      _MM_TRANSPOSE4_PS(a, b, c, d);
      _mm_storeu_ps(Ap + k * MR + i, a);
      _mm_storeu_ps(Ap + (k + 1) * MR + i, b);
      _mm_storeu_ps(Ap + (k + 2) * MR + i, c);
      _mm_storeu_ps(Ap + (k + 3) * MR + i, d);
    }
    for (; k < kc; ++k) {
      Ap[k * MR + i] = r0[k];
      Ap[k * MR + i + 1] = r1[k];
      Ap[k * MR + i + 2] = r2[k];
      Ap[k * MR + i + 3] = r3[k];
    }
  }
  pack_rows<float, MR>(R + i * lda, lda, mr - i, kc, Ap + i);  // the last rows
}
#endif

// Ap[kc][MR] for rows i0..i0+mr of op(A), columns p0..p0+kc. Rows >= mr
// are left unset: the micro-kernel for a partial panel reads only mr rows.
template <typename T, int MR>
inline void pack_a(bool ta, const T* A, idx lda, idx i0, idx mr, idx p0, idx kc, T* Ap) {
  if (ta) {
    for (idx k = 0; k < kc; ++k) {
      const T* src = A + (p0 + k) * lda + i0;
      T* dst = Ap + k * MR;
      for (idx i = 0; i < mr; ++i) dst[i] = src[i];
    }
    return;
  }
#if defined(__SSE__)
  if constexpr (std::is_same<T, float>::value) {
    pack_rows_f32<MR>(A + i0 * lda + p0, lda, mr, kc, Ap);
    return;
  }
#endif
  pack_rows<T, MR>(A + i0 * lda + p0, lda, mr, kc, Ap);
}

// The panels of one block of op(A): rows ic..ic+mc, columns p0..p0+kc, panel
// pa at Ap + pa * kc * MR. With A transposed each row of A (a column of
// op(A)) is read once, in order, for all the panels.
template <typename T, int MR>
inline void pack_a_block(bool ta, const T* A, idx lda, idx ic, idx mc, idx p0, idx kc, T* Ap) {
  const idx np = (mc + MR - 1) / MR;
  if (!ta) {
    for (idx pa = 0; pa < np; ++pa)
      pack_a<T, MR>(false, A, lda, ic + pa * MR, mn(MR, mc - pa * MR), p0, kc,
                    Ap + pa * kc * MR);
    return;
  }
  for (idx k = 0; k < kc; ++k) {
    const T* src = A + (p0 + k) * lda + ic;
    for (idx pa = 0; pa < np; ++pa) {
      const idx mr = mn(MR, mc - pa * MR);
      T* dst = Ap + pa * kc * MR + k * MR;
      for (idx i = 0; i < mr; ++i) dst[i] = src[pa * MR + i];
    }
  }
}

// Bp[kc][NR] for columns j0..j0+nr of op(B), rows p0..p0+kc; columns >= nr are 0.
template <typename T, int NR>
inline void pack_b_panel(bool tb, const T* B, idx ldb, idx j0, idx nr, idx p0, idx kc, T* Bp) {
  if (!tb && nr == NR) {
    for (idx k = 0; k < kc; ++k) __builtin_memcpy(Bp + k * NR, B + (p0 + k) * ldb + j0,
                                                  sizeof(T) * NR);
    return;
  }
  for (idx k = 0; k < kc; ++k) {
    T* dst = Bp + k * NR;
    for (idx j = 0; j < NR; ++j)
      dst[j] = j < nr ? (tb ? B[(j0 + j) * ldb + p0 + k] : B[(p0 + k) * ldb + j0 + j]) : T(0);
  }
}

template <typename T>
inline void store_tile(T* C, idx ldc, idx mr, idx nr, const T* acc, int NR, bool first,
                       T beta) {
  for (idx i = 0; i < mr; ++i) {
    T* c = C + i * ldc;
    const T* s = acc + i * NR;
    if (!first)
      for (idx j = 0; j < nr; ++j) c[j] += s[j];
    else if (beta == T(0))
      for (idx j = 0; j < nr; ++j) c[j] = s[j];
    else
      for (idx j = 0; j < nr; ++j) c[j] = beta * c[j] + s[j];
  }
}

// The macro-kernel for one K block: C[0:M, cols of panels] (+)= A[:, kc] * Bp,
// Bp holding nb_panels packed panels of kc x NR. The MR-row panels of A are
// split evenly into row blocks of at most MC rows, their count a multiple of
// the team's size where that is possible (128 rows in blocks of 96 and 32
// gave one of two threads three quarters of the work). Threads split (row block,
// column chunk) tasks; each packs its own A block. Every block starts on a
// multiple of MR, so each row sits in the same panel whatever the split.
template <typename T>
void macro_kernel(bool ta, idx M, idx N, const T* A, idx lda, idx pc, idx kc, const T* Bp,
                  idx panel_stride, bool first, T beta, T* C, idx ldc, int nt) {
  using Bk = Blocking<T>;
  constexpr int MR = Bk::MR, NR = Bk::NR;
  const idx nb_panels = (N + NR - 1) / NR;
  const idx na_total = (M + MR - 1) / MR, na_max = Bk::MC / MR;
  idx n_mblocks = (na_total + na_max - 1) / na_max;
  if (n_mblocks > 1) n_mblocks = mn(na_total, (n_mblocks + nt - 1) / nt * nt);
  const idx n_jchunks = mx(1, mn(nb_panels, (2 * nt + n_mblocks - 1) / n_mblocks));
  const idx per_chunk = (nb_panels + n_jchunks - 1) / n_jchunks;
  const idx ntasks = n_mblocks * n_jchunks;
  // First panel of row block mb: mb * na_total / n_mblocks without overflow.
  const idx q = na_total / n_mblocks, r = na_total % n_mblocks;
  auto block_start = [&](idx mb) { return mb * q + mb * r / n_mblocks; };
  parallel_team(nt, [&](int tid, int nth) {
    T* Ap = scratch<T, 0>(na_max * MR * Bk::KC);
    alignas(64) T acc[MR * NR];
    idx packed_mb = -1;  // a thread's tasks are consecutive: reuse its A block
    idx t0, t1;
    chunk_of(ntasks, tid, nth, &t0, &t1);
    for (idx task = t0; task < t1; ++task) {
      const idx mb = task / n_jchunks, jchunk = task % n_jchunks;
      const idx ic = block_start(mb) * MR;
      const idx mc = mn(M, block_start(mb + 1) * MR) - ic;
      const idx na_panels = (mc + MR - 1) / MR;
      if (mb != packed_mb) {
        pack_a_block<T, MR>(ta, A, lda, ic, mc, pc, kc, Ap);
        packed_mb = mb;
      }
      const idx pb0 = jchunk * per_chunk, pb1 = mn(nb_panels, pb0 + per_chunk);
      for (idx pb = pb0; pb < pb1; ++pb) {
        const idx j0 = pb * NR, nr = mn(NR, N - j0);
        for (idx pa = 0; pa < na_panels; ++pa) {
          const idx i0 = ic + pa * MR, mr = mn(MR, mc - pa * MR);
          const T* Bpan = Bp + pb * panel_stride;
          // Ask for the C tile now: the micro-kernel runs long enough for it
          // to arrive (a large C, say the weight gradients, is in memory).
          for (idx i = 0; i < mr; ++i) {
            __builtin_prefetch(C + (i0 + i) * ldc + j0, 1, 3);
            __builtin_prefetch(C + (i0 + i) * ldc + j0 + nr - 1, 1, 3);
          }
          if (nr == NR) {  // a whole tile: straight into C
            const auto mode = !first ? Out<T>::kAdd
                                     : beta == T(0) ? Out<T>::kStore : Out<T>::kScale;
            KernelFor<T, MR, NR>::run(static_cast<int>(mr), kc, Ap + pa * kc * MR, Bpan,
                                      Out<T>{C + i0 * ldc + j0, ldc, mode, beta});
          } else {
            KernelFor<T, MR, NR>::run(static_cast<int>(mr), kc, Ap + pa * kc * MR, Bpan,
                                      Out<T>{acc, NR, Out<T>::kStore, T(0)});
            store_tile(C + i0 * ldc + j0, ldc, mr, nr, acc, NR, first, beta);
          }
        }
      }
    }
  });
}

// out[r] = sum_k a[k] * b[r * ldb + k] for R rows of b: R independent
// vector sums, so the FMA latency is hidden (one sum at a time ran at a
// third of what the cache delivers). Each row's arithmetic is the same
// whatever R: lanes summed over k in order, the lanes added in order, the
// last K % W terms added in order.
//
// pf > 0: also prefetch, one cache line at a time, the same R rows pf
// elements further on (the caller's next group of rows). Without it the
// hardware prefetcher did not keep up with R interleaved rows a few lines
// long: weights read from memory (an lstm 512 x 3 holds 22 MB) streamed at
// three quarters of numpy's sgemv rate (15-22 against 20-28 GB/s).
template <typename T, int R>
inline void dot_rows(idx K, const T* a, const T* b, idx ldb, T* out, idx pf) {
  constexpr int W = kVecBytes / static_cast<int>(sizeof(T));
  constexpr idx kLine = 64 / static_cast<idx>(sizeof(T));  // elements per cache line
  typedef T vec __attribute__((vector_size(W * sizeof(T))));
  vec s[R];
  for (int r = 0; r < R; ++r) s[r] = vec{};
  idx k = 0;
  for (; k + W <= K; k += W) {
    vec av;
    __builtin_memcpy(&av, a + k, sizeof(vec));
    const bool fetch = pf > 0 && k % kLine == 0;
    for (int r = 0; r < R; ++r) {
      vec bv;
      __builtin_memcpy(&bv, b + r * ldb + k, sizeof(vec));
      if (fetch) __builtin_prefetch(b + pf + r * ldb + k, 0, 3);
      s[r] += av * bv;
    }
  }
  for (int r = 0; r < R; ++r) {
    T t = s[r][0];
    for (int l = 1; l < W; ++l) t += s[r][l];
    for (idx kk = k; kk < K; ++kk) t += a[kk] * b[r * ldb + kk];
    out[r] = t;
  }
}

// The largest M that gemm_small_m takes.
constexpr idx kSmallM = 4;

// M <= kSmallM (the recurrent step at small batch): no packing of B (it would
// double the memory traffic of the weights); dot products or row updates.
template <typename T>
void gemm_small_m(bool ta, bool tb, idx M, idx N, idx K, const T* A, idx lda, const T* B,
                  idx ldb, T beta, T* C, idx ldc) {
  T* a = scratch<T, 1>(M * K);
  for (idx i = 0; i < M; ++i)
    for (idx k = 0; k < K; ++k) a[i * K + k] = ta ? A[k * lda + i] : A[i * lda + k];
  // Bound by reading B once (N * K elements), which at these sizes comes
  // from L3 or memory: each core streams its share, so this goes parallel
  // at a far smaller size than a product that reuses its operands.
  const int nt = threads_for(N * K);
  if (tb) {
    constexpr idx G = 4;  // rows of B per task
    parallel_for((N + G - 1) / G, nt, [&](idx q) {
      const idx j0 = q * G, nj = mn(G, N - j0);
      const T* b = B + j0 * ldb;
      // The first row of A reads this group from memory; fetch the next.
      const idx pf_next = j0 + 2 * G <= N ? G * ldb : 0;
      T acc[G];
      for (idx i = 0; i < M; ++i) {
        const T* ai = a + i * K;
        const idx pf = i == 0 ? pf_next : 0;
        switch (nj) {
          case 4: dot_rows<T, 4>(K, ai, b, ldb, acc, pf); break;
          case 3: dot_rows<T, 3>(K, ai, b, ldb, acc, 0); break;
          case 2: dot_rows<T, 2>(K, ai, b, ldb, acc, 0); break;
          default: dot_rows<T, 1>(K, ai, b, ldb, acc, 0); break;
        }
        T* c = C + i * ldc + j0;
        for (idx r = 0; r < nj; ++r) c[r] = (beta == T(0) ? T(0) : beta * c[r]) + acc[r];
      }
    });
  } else {
    const idx nchunk = mx(1, mn(nt, (N + 63) / 64));
    parallel_for(nchunk, nt, [&](idx ch) {
      const idx per = (N + nchunk - 1) / nchunk;
      const idx j0 = ch * per, j1 = mn(N, j0 + per);
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
    });
  }
}

template <typename T>
void scale_c(idx M, idx N, T beta, T* C, idx ldc) {
  for (idx i = 0; i < M; ++i)
    for (idx j = 0; j < N; ++j) C[i * ldc + j] = beta == T(0) ? T(0) : beta * C[i * ldc + j];
}

template <typename T>
void gemm(bool ta, bool tb, idx M, idx N, idx K, const T* A, idx lda, const T* B, idx ldb,
          T beta, T* C, idx ldc) {
  using Bk = Blocking<T>;
  constexpr int NR = Bk::NR;
  if (M <= 0 || N <= 0) return;
  if (K <= 0) return scale_c(M, N, beta, C, ldc);
  if (M <= kSmallM) return gemm_small_m(ta, tb, M, N, K, A, lda, B, ldb, beta, C, ldc);
  const int nt = threads_for_gemm(M * N * K);
  for (idx jc = 0; jc < N; jc += Bk::NC) {
    const idx nc = mn(Bk::NC, N - jc);
    const idx nb_panels = (nc + NR - 1) / NR;
    for (idx pc = 0; pc < K; pc += Bk::KC) {
      const idx kc = mn(Bk::KC, K - pc);
      T* Bp = scratch<T, 2>(nb_panels * kc * NR);
      parallel_for(nb_panels, threads_for(nb_panels * kc * NR), [&](idx pb) {
        pack_b_panel<T, NR>(tb, B, ldb, jc + pb * NR, mn(NR, nc - pb * NR), pc, kc,
                            Bp + pb * kc * NR);
      });
      macro_kernel<T>(ta, M, nc, A, lda, pc, kc, Bp, kc * NR, pc == 0, beta, C + jc, ldc, nt);
    }
  }
}

// B packed once and used for many products (the recurrent weights over all
// time steps). Layout: for each K block p0 (KC rows), ceil(N/NR) panels of
// kc x NR, at offset p0 * Npad + panel * kc * NR, Npad = ceil(N/NR) * NR.
template <typename T>
idx packed_b_size(idx N, idx K) {
  constexpr int NR = Blocking<T>::NR;
  return (N + NR - 1) / NR * NR * K;
}

template <typename T>
void pack_b(bool tb, const T* B, idx ldb, idx N, idx K, T* packed) {
  using Bk = Blocking<T>;
  constexpr int NR = Bk::NR;
  const idx nb_panels = (N + NR - 1) / NR, npad = nb_panels * NR;
  const int nt = threads_for(N * K);
  for (idx pc = 0; pc < K; pc += Bk::KC) {
    const idx kc = mn(Bk::KC, K - pc);
    parallel_for(nb_panels, nt, [&](idx pb) {
      pack_b_panel<T, NR>(tb, B, ldb, pb * NR, mn(NR, N - pb * NR), pc, kc,
                          packed + pc * npad + pb * kc * NR);
    });
  }
}

// C = beta * C + op(A) * B with B from pack_b (same N, K).
template <typename T>
void gemm_packed(bool ta, idx M, idx N, idx K, const T* A, idx lda, const T* packed, T beta,
                 T* C, idx ldc) {
  using Bk = Blocking<T>;
  constexpr int NR = Bk::NR;
  if (M <= 0 || N <= 0) return;
  if (K <= 0) return scale_c(M, N, beta, C, ldc);
  const idx npad = (N + NR - 1) / NR * NR;
  const int nt = threads_for_gemm(M * N * K);
  for (idx pc = 0; pc < K; pc += Bk::KC) {
    const idx kc = mn(Bk::KC, K - pc);
    macro_kernel<T>(ta, M, N, A, lda, pc, kc, packed + pc * npad, kc * NR, pc == 0, beta, C,
                    ldc, nt);
  }
}

}  // namespace PCR_ISA_NS
}  // namespace pcr
