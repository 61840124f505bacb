// What the machine can hold: its physical memory, and the refusals of a
// model or a workspace larger than that, made before anything is allocated
// (the bindings turn TooLarge into Python's MemoryError).
#pragma once

#include <cstdio>
#include <stdexcept>
#include <string>
#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

#include "common.hpp"

namespace pcr {

// A request for more memory than the machine has.
struct TooLarge : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The workspace of a call with B rows of Tn steps.
struct WorkspaceTooLarge : TooLarge {
  WorkspaceTooLarge(double bytes, double limit, idx B, idx Tn)
      : TooLarge(message(bytes, limit, B, Tn)) {}
  static std::string message(double bytes, double limit, idx B, idx Tn) {
    char buf[256];
    std::snprintf(buf, sizeof buf,
                  "the workspace for batch %lld x length %lld needs %.1f GiB, more than this "
                  "machine's %.1f GiB of memory: use a smaller batch or shorter sequences",
                  static_cast<long long>(B), static_cast<long long>(Tn), bytes / 1073741824.0,
                  limit / 1073741824.0);
    return buf;
  }
};

// Physical memory in bytes (0 when unknown).
inline double physical_memory_bytes() {
#if defined(_SC_PHYS_PAGES) && defined(_SC_PAGE_SIZE)
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  if (pages > 0 && page > 0) return static_cast<double>(pages) * static_cast<double>(page);
#endif
  return 0.0;
}

// At most 2^48 parameters (a petabyte of float32), also where the size of
// physical memory is unknown: no offset computed from them can overflow.
constexpr idx kMaxParams = idx(1) << 48;

// Refuses a model of `count` parameters (counted in floating point, so that
// a huge request cannot wrap around) of `elem_bytes` each that the machine
// cannot hold or that exceeds kMaxParams.
inline void check_model_size(double count, double elem_bytes) {
  const double limit = physical_memory_bytes();
  if (count * elem_bytes > (limit > 0 ? limit : 0x1p62) ||
      count > static_cast<double>(kMaxParams)) {
    char buf[200];
    std::snprintf(buf, sizeof buf,
                  "a model of %.4g parameters needs %.1f GiB, more than this machine's "
                  "%.1f GiB of memory",
                  count, count * elem_bytes / 1073741824.0, limit / 1073741824.0);
    throw TooLarge(buf);
  }
}

}  // namespace pcr
