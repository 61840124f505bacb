// Per-thread scratch buffers and the min / max of two indices, for the
// kernels. Compiled inside pcr::PCR_ISA_NS, as every kernel header is: an
// inline function compiled with one instruction set's flags must not be
// shared with another's build.
#pragma once

#include <cstdlib>

#include "common.hpp"

namespace pcr {
namespace PCR_ISA_NS {

inline idx mn(idx a, idx b) { return a < b ? a : b; }
inline idx mx(idx a, idx b) { return a > b ? a : b; }

// A per-thread scratch buffer that grows and is reused (no allocation once
// warm), 64-byte aligned.
template <typename T, int Which>
inline T* scratch(idx n) {
  struct Buf {
    T* p = nullptr;
    idx n = 0;
    ~Buf() { std::free(p); }
  };
  thread_local Buf buf;
  if (buf.n < n) {
    std::free(buf.p);
    const size_t bytes = (static_cast<size_t>(n) * sizeof(T) + 63) / 64 * 64;
    buf.p = static_cast<T*>(std::aligned_alloc(64, bytes));
    if (!buf.p) {
      buf.n = 0;
      return nullptr;
    }
    buf.n = n;
  }
  return buf.p;
}

}  // namespace PCR_ISA_NS
}  // namespace pcr
