// exp, tanh and sigmoid that the compiler can vectorize (float), without
// -ffast-math. libm's expf/tanhf are scalar calls; these are branch-free
// inline code, so `#pragma omp simd` loops over them run in vector
// registers. Accuracy (float): exp within 2 ulp over its range; tanh and
// sigmoid within a few ulp (relative), tested against double precision.
// double uses libm: float64 is the precision used for checks, not speed.
// Compiled inside pcr::PCR_ISA_NS like the other kernels. Every function is
// PCR_HD: the CUDA build compiles the same code for the device.
#pragma once

#include <math.h>

#include <cstdint>

#include "dispatch.hpp"

// PCR_HD: a function both backends compile (host and device under nvcc).
// PCR_SIMD*: OpenMP's vectorization hints, in host code only.
// Always inlined: the CPU loops that call them must stay vectorizable (a call
// left in a `#pragma omp simd` loop keeps it scalar).
#if defined(__CUDACC__)
#define PCR_HD __host__ __device__ __forceinline__
#elif defined(__GNUC__)
#define PCR_HD inline __attribute__((always_inline))
#else
#define PCR_HD inline
#endif
#define PCR_PRAGMA(x) _Pragma(#x)
#if defined(__CUDA_ARCH__)
#define PCR_SIMD
#define PCR_SIMD_MAX(v)
#define PCR_SIMD_SUM(v)
#else
#define PCR_SIMD PCR_PRAGMA(omp simd)
#define PCR_SIMD_MAX(v) PCR_PRAGMA(omp simd reduction(max : v))
#define PCR_SIMD_SUM(v) PCR_PRAGMA(omp simd reduction(+ : v))
#endif

namespace pcr {
namespace PCR_ISA_NS {

// e^x. Range reduction x = n ln2 + r, |r| <= ln2/2 (ln2 split in two parts
// so n*ln2 is exact), a degree-6 polynomial for e^r (the classic minimax
// coefficients of the Cephes library's expf), and 2^n built in the exponent
// bits. x is clamped to [-87.3, 88.7]: the result stays a normal float.
PCR_HD float bits_float(std::uint32_t b) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(b);
#else
  float f;
  __builtin_memcpy(&f, &b, 4);
  return f;
#endif
}

PCR_HD float exp_f(float x) {
  x = x < -87.33654f ? -87.33654f : (x > 88.72283f ? 88.72283f : x);
  const float fx = x * 1.44269504088896341f;
  const std::int32_t n = static_cast<std::int32_t>(fx + (fx >= 0.0f ? 0.5f : -0.5f));
  const float fn = static_cast<float>(n);
  float r = x - fn * 0.693359375f;
  r = r - fn * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  // 2^n as a float; n in [-126, 128) here. n = 128 would overflow the
  // exponent field, so scale by 2^(n-1) twice.
  const std::int32_t h = n >> 1;
  const std::uint32_t b1 = static_cast<std::uint32_t>(h + 127) << 23;
  const std::uint32_t b2 = static_cast<std::uint32_t>(n - h + 127) << 23;
  return p * bits_float(b1) * bits_float(b2);
}

// tanh: its odd Taylor polynomial to x^15 for |x| < 0.3 (truncation error
// < 1e-12 there), else 1 - 2 / (e^{2|x|} + 1) with the sign restored.
PCR_HD float tanh_f(float x) {
  const float ax = x < 0.0f ? -x : x;
  const float x2 = x * x;
  float p = -0.00145583438f;  // -929569/638512875: the x^15 coefficient
  p = p * x2 + 0.00359212804f;
  p = p * x2 + -0.00886323552f;
  p = p * x2 + 0.02186948854f;
  p = p * x2 + -0.05396825397f;
  p = p * x2 + 0.13333333333f;
  p = p * x2 + -0.33333333333f;
  const float small = x + x * x2 * p;
  const float e = exp_f(2.0f * (ax > 9.0f ? 9.0f : ax));
  float big = 1.0f - 2.0f / (e + 1.0f);
  big = x < 0.0f ? -big : big;
  return ax < 0.3f ? small : big;
}

PCR_HD float sigmoid_f(float x) { return 1.0f / (1.0f + exp_f(-x)); }

PCR_HD float exp_t(float x) { return exp_f(x); }
PCR_HD float tanh_t(float x) { return tanh_f(x); }
PCR_HD float sigmoid_t(float x) { return sigmoid_f(x); }
PCR_HD float log_t(float x) { return ::logf(x); }
#if defined(__CUDA_ARCH__)
PCR_HD float sqrt_t(float x) { return ::sqrtf(x); }
PCR_HD double sqrt_t(double x) { return ::sqrt(x); }
#else
PCR_HD float sqrt_t(float x) { return __builtin_sqrtf(x); }
PCR_HD double sqrt_t(double x) { return __builtin_sqrt(x); }
#endif
PCR_HD double exp_t(double x) { return ::exp(x); }
PCR_HD double tanh_t(double x) { return ::tanh(x); }
PCR_HD double sigmoid_t(double x) { return 1.0 / (1.0 + ::exp(-x)); }
PCR_HD double log_t(double x) { return ::log(x); }

}  // namespace PCR_ISA_NS
}  // namespace pcr
