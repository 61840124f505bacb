// Shared helpers: index type, thread count, small vector ops.
#pragma once

#include <algorithm>
#include <atomic>
#include <thread>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "threads.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef __linux__
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <climits>
#include <ctime>
#define PCR_HAVE_FUTEX 1
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#define PCR_HAVE_MXCSR 1
#endif

namespace pcr {

using idx = std::int64_t;  // every size and offset is 64-bit

// Threads used by every kernel: num_threads() (threads.hpp), a
// process-wide setting (not OpenMP's per-thread ICV), so a value set from
// one Python thread applies to kernels started from any other, read at the
// start of every parallel region.

// Subnormal floats (|x| below 1.2e-38 in float32, 2.2e-308 in float64) take
// a slow microcode path on some x86 CPUs; a model whose gates saturate and
// whose gradients shrink produces them (benchmarks/denormals.py: such a step
// took 4.9 times as long with IEEE subnormals on an AVX2-only AMD EPYC, 1.07
// times on an AVX-512 one). Kernels therefore flush subnormal results
// to zero and read subnormal inputs as zero (MXCSR FTZ and DAZ) while they
// run, on every thread; with set_flush_denormals(false) they run with both
// bits clear (IEEE subnormals). A process-wide setting, defined in
// dispatch.cpp.
bool flush_denormals();
void set_flush_denormals(bool on);

// Sets the kernels' mode on this thread for its lifetime. The calling
// thread gets its own mode back at the end. Worker threads are left in the
// caller's mode (`after`), not in whatever they held before: a new OpenMP
// thread inherits the mode of the thread that created it, which is the
// kernels' mode when the team is first formed inside a call.
class DenormalsGuard {
 public:
  DenormalsGuard() {
#ifdef PCR_HAVE_MXCSR
    restore_ = _mm_getcsr();
    outer_ = caller_slot();
    if (outer_ < 0) caller_slot() = static_cast<int>(restore_);  // the outermost call's
    enter();
#endif
  }
  explicit DenormalsGuard(unsigned after) {
#ifdef PCR_HAVE_MXCSR
    restore_ = after;
    enter();
#else
    (void)after;
#endif
  }
  ~DenormalsGuard() {
#ifdef PCR_HAVE_MXCSR
    if (outer_ != -2) caller_slot() = outer_;
    _mm_setcsr(restore_);
#endif
  }
  DenormalsGuard(const DenormalsGuard&) = delete;
  DenormalsGuard& operator=(const DenormalsGuard&) = delete;

  static unsigned current_mode() {
#ifdef PCR_HAVE_MXCSR
    return _mm_getcsr();
#else
    return 0;
#endif
  }

  // The mode of the caller of the outermost kernel on this thread (the
  // current mode outside any kernel call).
  static unsigned caller_mode() {
#ifdef PCR_HAVE_MXCSR
    const int c = caller_slot();
    return c >= 0 ? static_cast<unsigned>(c) : _mm_getcsr();
#else
    return 0;
#endif
  }

 private:
  unsigned restore_ = 0;
  int outer_ = -2;  // -2: a worker's guard (no caller to record)
  // Shared by every kernel build (not ISA code): one slot per thread.
  static int& caller_slot() {  // MXCSR fits in 16 bits; -1: not inside a call
    thread_local int c = -1;
    return c;
  }
#ifdef PCR_HAVE_MXCSR
  static void enter() {
    const unsigned bits = 0x8040u;  // FTZ (bit 15) | DAZ (bit 6)
    const unsigned csr = _mm_getcsr();
    _mm_setcsr(flush_denormals() ? (csr | bits) : (csr & ~bits));
  }
#endif
};

// Work (in multiply-adds or element updates) below which a loop stays serial:
// forking a team costs a few microseconds.
constexpr idx kParallelWork = 1 << 15;

// Helpers here are `static` (internal linkage): this header is compiled into
// kernel files built for different instruction sets, and a shared inline
// definition could otherwise be taken from a build the CPU cannot run.
static inline int threads_for(idx work) { return work < kParallelWork ? 1 : num_threads(); }

// Multiply-adds below which a matrix product stays on one thread.
constexpr idx kParallelGemm = 1 << 19;
static inline int threads_for_gemm(idx macs) {
  return macs < kParallelGemm ? 1 : num_threads();
}

// body(i) for i in [0, n), split statically over nt threads. With one
// thread no OpenMP region is entered at all (even a one-thread region costs
// a fraction of a microsecond, which adds up over the time steps).
template <typename F>
static inline void parallel_for(idx n, int nt, F&& body) {
  if (nt <= 1 || n <= 1) {
    for (idx i = 0; i < n; ++i) body(i);
    return;
  }
#ifdef _OPENMP
  const unsigned mode = DenormalsGuard::caller_mode();
#pragma omp parallel num_threads(nt)
  {
    DenormalsGuard guard(omp_get_thread_num() == 0 ? DenormalsGuard::current_mode() : mode);
#pragma omp for schedule(static)
    for (idx i = 0; i < n; ++i) body(i);
  }
#else
  for (idx i = 0; i < n; ++i) body(i);
#endif
}

// body(tid, nthreads) on a team of nt threads, or body(0, 1) inline.
template <typename F>
static inline void parallel_team(int nt, F&& body) {
  if (nt <= 1) {
    body(0, 1);
    return;
  }
#ifdef _OPENMP
  const unsigned mode = DenormalsGuard::caller_mode();
#pragma omp parallel num_threads(nt)
  {
    DenormalsGuard guard(omp_get_thread_num() == 0 ? DenormalsGuard::current_mode() : mode);
    body(omp_get_thread_num(), omp_get_num_threads());
  }
#else
  body(0, 1);
#endif
}

// A barrier for loops that wait once per time step inside one parallel
// region (recurrence.hpp, step.hpp): the team spins on a shared counter,
// about a tenth of a microsecond per wait on two cores, where OpenMP's own
// barrier took one to two. A thread that has spun kSpinWaits pauses (some
// tens of microseconds: longer than a time step's work is unbalanced) goes
// to sleep on a futex, so that when a team member has been descheduled by
// other load the waiters give their cores away instead of spinning or
// yielding in a loop (a yield gives the core to nobody when the other load
// is in another process of equal priority). One object per region;
// wait(nth) with the team's size.
struct SpinBarrier {
  static constexpr unsigned kSpinWaits = 8192;
  alignas(64) std::atomic<int> arrived{0};
  alignas(64) std::atomic<unsigned> generation{0};
  std::atomic<int> sleepers{0};
  // Where a region's loop ends early: set by one thread before it arrives
  // at the wait before `at`, read by all after that wait (which orders
  // them), so the whole team agrees. Atomic because a slow thread may still
  // be checking an earlier point when it is set; the point differs.
  std::atomic<idx> stop{-1};
  void stop_at(idx at) { stop.store(at, std::memory_order_relaxed); }
  bool stopped(idx at) const { return stop.load(std::memory_order_relaxed) == at; }

  void wait(int nth) {
    if (nth <= 1) return;
    const unsigned g = generation.load(std::memory_order_acquire);
    if (arrived.fetch_add(1, std::memory_order_acq_rel) == nth - 1) {
      arrived.store(0, std::memory_order_relaxed);
      generation.store(g + 1, std::memory_order_release);
      // No fence between the store and this load (a full fence on every wait
      // cost 2-3% at B=1): in the rare race where a waiter goes to sleep just
      // as the generation moves on and this load misses it, the waiter's
      // timed sleep (kSleepNs) ends the wait.
      if (sleepers.load(std::memory_order_relaxed) > 0) wake_all();
      return;
    }
    for (unsigned spins = 0; spins < kSpinWaits; ++spins) {
      if (generation.load(std::memory_order_acquire) != g) return;
#if defined(__x86_64__) || defined(__i386__)
      _mm_pause();
#endif
    }
    sleepers.fetch_add(1, std::memory_order_seq_cst);
    while (generation.load(std::memory_order_acquire) == g) sleep_while(g);
    sleepers.fetch_sub(1, std::memory_order_relaxed);
  }

 private:
#ifdef PCR_HAVE_FUTEX
  static constexpr long kSleepNs = 1000000;  // a sleep's longest: 1 ms
  void sleep_while(unsigned g) {  // returns at once if generation != g
    const timespec most{0, kSleepNs};
    syscall(SYS_futex, reinterpret_cast<unsigned*>(&generation), FUTEX_WAIT_PRIVATE, g, &most,
            nullptr, 0);
  }
  void wake_all() {
    syscall(SYS_futex, reinterpret_cast<unsigned*>(&generation), FUTEX_WAKE_PRIVATE, INT_MAX,
            nullptr, nullptr, 0);
  }
#else
  void sleep_while(unsigned) { std::this_thread::yield(); }
  void wake_all() {}
#endif
};
static_assert(sizeof(std::atomic<unsigned>) == sizeof(unsigned), "a futex word is 32 bits");

// [i0, i1) of n items for thread tid of nth (contiguous chunks).
static inline void chunk_of(idx n, int tid, int nth, idx* i0, idx* i1) {
  const idx per = (n + nth - 1) / nth;
  *i0 = per * tid < n ? per * tid : n;
  *i1 = *i0 + per < n ? *i0 + per : n;
}

// y[0:n] = x[0:n]
template <typename T>
static inline void copy_n(const T* x, idx n, T* y) {
  if (n > 0) std::memcpy(y, x, sizeof(T) * static_cast<size_t>(n));
}

// Rows of C[M, N] (row stride ldc) set to the vector b[N].
template <typename T>
static inline void broadcast_rows(T* C, idx M, idx N, idx ldc, const T* b) {
  parallel_for(M, threads_for(M * N), [&](idx i) { copy_n(b, N, C + i * ldc); });
}

// out[N] = (beta ? out : 0) + sum over rows of A[M, N] (row stride lda).
// Summed row by row in a fixed order, so the result does not depend on
// the number of threads (columns are split between threads).
template <typename T>
static inline void column_sums(const T* A, idx M, idx N, idx lda, T* out, bool accumulate) {
  parallel_team(threads_for(M * N), [&](int tid, int nth) {
    idx j0, j1;
    chunk_of(N, tid, nth, &j0, &j1);
    if (!accumulate)
      for (idx j = j0; j < j1; ++j) out[j] = T(0);
    for (idx i = 0; i < M; ++i) {
      const T* a = A + i * lda;
#pragma omp simd
      for (idx j = j0; j < j1; ++j) out[j] += a[j];
    }
  });
}

}  // namespace pcr
