// The counter-based random numbers: a uniform number in [0, 1) is a pure
// function of (seed, stream, index), so it needs no state, is the same at any
// thread count and in any order of use, and any element can be drawn alone.
// Dropout masks (dropout.hpp: one stream per kind of mask) and sampling
// (sampling.hpp: stream = the row) both draw from it.
#pragma once

#include <cstdint>

// Both backends compile it: the CUDA kernels draw the same masks and samples.
#if defined(__CUDACC__)
#define PCR_RNG_HD __host__ __device__ inline
#else
#define PCR_RNG_HD inline
#endif

namespace pcr {

// SplitMix64's finaliser of seed + golden-ratio * (stream + 1) + c * i; the
// top 53 bits as a double in [0, 1).
PCR_RNG_HD double hash_uniform(std::uint64_t seed, std::uint64_t stream, std::uint64_t i) {
  std::uint64_t z = seed + 0x9E3779B97F4A7C15ull * (stream + 1) + 0xBF58476D1CE4E5B9ull * i;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<double>(z >> 11) * (1.0 / 9007199254740992.0);
}

}  // namespace pcr
