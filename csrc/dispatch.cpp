// Kernel dispatch (the thread setting is threads.cpp's).
//
// isa_base.cpp is always built. On x86-64 with GCC or Clang,
// isa_avx2.cpp (AVX2 + FMA) and isa_avx512.cpp (AVX-512 F/BW/DQ/VL)
// are built too, and the best set the CPU supports is chosen when the
// module loads; PYCHARRNN_ISA=base|avx2|avx512 in the environment, or
// set_isa(), picks another (for tests and comparisons).
#include <atomic>
#include <cstdlib>
#include <cstring>

#include "dispatch.hpp"

namespace pcr {

namespace base {
const Kernels<float>& table_f32();
const Kernels<double>& table_f64();
}  // namespace base
#if PCR_HAVE_ISA_BUILDS
namespace avx2 {
const Kernels<float>& table_f32();
const Kernels<double>& table_f64();
}  // namespace avx2
namespace avx512 {
const Kernels<float>& table_f32();
const Kernels<double>& table_f64();
}  // namespace avx512
#endif

namespace {

struct Tables {
  const char* name;
  const Kernels<float>* f32;
  const Kernels<double>* f64;
};

const char* const kCompiled[] = {
#if PCR_HAVE_ISA_BUILDS
    "avx512", "avx2",
#endif
    "base", nullptr};

bool supported(const char* name) {
  if (std::strcmp(name, "base") == 0) return true;
#if PCR_HAVE_ISA_BUILDS
  __builtin_cpu_init();
  if (std::strcmp(name, "avx2") == 0)
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (std::strcmp(name, "avx512") == 0)
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
  return false;
}

Tables tables_for(const char* name) {
#if PCR_HAVE_ISA_BUILDS
  if (std::strcmp(name, "avx512") == 0)
    return {"avx512", &avx512::table_f32(), &avx512::table_f64()};
  if (std::strcmp(name, "avx2") == 0) return {"avx2", &avx2::table_f32(), &avx2::table_f64()};
#endif
  (void)name;
  return {"base", &base::table_f32(), &base::table_f64()};
}

std::atomic<const Kernels<float>*> g_f32{nullptr};
std::atomic<const Kernels<double>*> g_f64{nullptr};

void init_once() {
  if (g_f32.load()) return;
  const char* env = std::getenv("PYCHARRNN_ISA");
  if (env && *env && set_isa(env)) return;
  for (const char* const* n = kCompiled; *n; ++n)
    if (supported(*n) && set_isa(*n)) return;
}

}  // namespace

static std::atomic<bool> g_flush_denormals{true};
bool flush_denormals() { return g_flush_denormals.load(std::memory_order_relaxed); }
void set_flush_denormals(bool on) { g_flush_denormals.store(on); }


const char* const* isa_compiled() { return kCompiled; }

bool isa_supported(const char* name) {
  for (const char* const* n = kCompiled; *n; ++n)
    if (std::strcmp(*n, name) == 0) return supported(name);
  return false;
}

bool set_isa(const char* name) {
  if (!isa_supported(name)) return false;
  const Tables t = tables_for(name);
  g_f32.store(t.f32);
  g_f64.store(t.f64);
  return true;
}

const char* isa_active() {
  init_once();
  return g_f32.load()->isa;
}

const Kernels<float>& kernels_f32() {
  init_once();
  return *g_f32.load(std::memory_order_acquire);
}

const Kernels<double>& kernels_f64() {
  init_once();
  return *g_f64.load(std::memory_order_acquire);
}

}  // namespace pcr
