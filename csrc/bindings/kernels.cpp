// The process-wide settings of the kernels and the kernel-level entry points
// the tests use: gemm, the thread count, the floating-point modes, the
// instruction set in use, and build_info.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "bindings/bindings.hpp"
#include "bindings/checks.hpp"
#include "dispatch.hpp"
#include "gemm_ref.hpp"
#if PYCHARRNN_HAVE_CUDA
#include "cuda/cuda.hpp"
#endif

namespace pcr {
namespace bind {
namespace {

constexpr int kMaxThreads = 1024;  // far beyond any useful count; more could exhaust the OS

// C = beta*C + op(A) op(B) for 2-D arrays; the kernel tests compare the
// packed kernel with the reference loop through this.
template <typename T>
void gemm_py(bool ta, bool tb, py::array A, py::array B, py::array C, double beta,
             bool reference) {
  if (A.ndim() != 2 || B.ndim() != 2 || C.ndim() != 2)
    throw py::value_error("A, B and C must be 2-D");
  const idx M = ta ? A.shape(1) : A.shape(0), K = ta ? A.shape(0) : A.shape(1);
  const idx N = tb ? B.shape(0) : B.shape(1);
  if ((tb ? B.shape(1) : B.shape(0)) != K) throw py::value_error("inner dimensions differ");
  const T* a = in_ptr<T>(A, "A", shape_of(A));
  const T* b = in_ptr<T>(B, "B", shape_of(B));
  T* c = out_ptr<T>(C, "C", {M, N});
  check_disjoint({mem(C, "C")}, {mem(A, "A"), mem(B, "B")});
  py::gil_scoped_release nogil;
  pcr::DenormalsGuard flush;
  (reference ? pcr::gemm_ref<T> : pcr::kern<T>().gemm)(ta, tb, M, N, K, a, A.shape(1), b,
                                                       B.shape(1), static_cast<T>(beta), c, N);
}

void def_gemm(py::module_& m) {
  m.def("gemm",
        [](py::array A, py::array B, py::array C, bool ta, bool tb, double beta,
           bool reference) {
          if (is_f64(C))
            gemm_py<double>(ta, tb, A, B, C, beta, reference);
          else
            gemm_py<float>(ta, tb, A, B, C, beta, reference);
        },
        py::arg("A"), py::arg("B"), py::arg("C"), py::kw_only(),
        py::arg("ta").noconvert() = false, py::arg("tb").noconvert() = false,
        py::arg("beta") = 0.0, py::arg("reference").noconvert() = false,
        "C = beta * C + op(A) op(B) (op: transposed when ta / tb) for 2-D arrays of one "
        "dtype; reference: the plain triple loop instead of the packed kernel.");
}

// For the tests: each thread's floating-point mode (MXCSR on x86, 0
// elsewhere) in a plain team, outside any kernel.
std::vector<unsigned> thread_fp_modes() {
  const int n = pcr::num_threads();
  std::vector<unsigned> modes(static_cast<size_t>(n), 0);
#ifdef _OPENMP
#pragma omp parallel num_threads(n)
  modes[static_cast<size_t>(omp_get_thread_num())] = pcr::DenormalsGuard::current_mode();
#else
  modes[0] = pcr::DenormalsGuard::current_mode();
#endif
  return modes;
}

void def_threads(py::module_& m) {
  m.def("set_num_threads", [](int n) {
    if (n < 1 || n > kMaxThreads)
      throw py::value_error("number of threads must be in [1, " + std::to_string(kMaxThreads) +
                            "], got " + std::to_string(n));
    pcr::set_num_threads(n);
  }, py::arg("n"), "the number of threads every kernel uses (process-wide)");
  m.def("set_threads_auto", &pcr::set_threads_auto,
        "let the governor choose each unit's team size, up to the usable cores (the default)");
  m.def("threads_auto", &pcr::threads_auto, "whether the team size is chosen at run time");
  m.def("usable_cores", &pcr::usable_cores,
        "CPUs this process may use (affinity mask and cgroup CPU quota)");
  m.def("get_num_threads", []() { return pcr::threads_auto() ? pcr::usable_cores() : pcr::num_threads(); },
        "the number of threads the kernels use (auto mode: the most they may use)");
  m.def("governor_stats", []() {
    py::dict d;
    const char* names[pcr::kSites] = {"step", "loss", "sample"};
    for (int i = 0; i < pcr::kSites; ++i) {
      const pcr::SiteStats st = pcr::site_stats(static_cast<pcr::Site>(i));
      py::dict e;
      e["threads"] = st.current;
      e["units"] = st.units;
      e["probes"] = st.probes;
      e["switches"] = st.switches;
      e["abandoned"] = st.abandoned;
      e["bailouts"] = st.bailouts;
      d[names[i]] = e;
    }
    return d;
  }, "per kind of work (step, loss, sample): the governor's current team size (0: none yet), "
     "units timed, probes, switches, abandoned probes and bail-outs (units cut short on a "
     "smaller team)");
  m.def("_force_team_sizes", &pcr::force_team_sizes, py::arg("sizes"),
        "tests: in auto mode every parallel region takes the next of these sizes in turn "
        "(empty: the governor again)");
  m.def("_governor_simulate",
        [](const std::vector<double>& seconds, int units, const std::vector<double>& after,
           int change_at, const std::vector<int>& shapes, const std::vector<double>& scale,
           int scale_size, int calls, bool total) -> py::object {
          double t = 0;
          std::vector<int> sizes = pcr::governor_simulate(seconds, units, after, change_at,
                                                          shapes, scale, scale_size, calls, &t);
          if (total) return py::make_tuple(sizes, t);
          return py::cast(sizes);
        },
        py::arg("seconds"), py::arg("units"),
        py::arg("after") = std::vector<double>{}, py::arg("change_at") = 0,
        py::arg("shapes") = std::vector<int>{}, py::arg("scale") = std::vector<double>{},
        py::arg("scale_size") = 0, py::arg("calls") = 0, py::arg("total") = false,
        "tests: the team sizes the governor picks for `units` equal units when one at "
        "n threads takes seconds[n - 1] (after[n - 1] from unit change_at on) times "
        "scale[i % len(scale)] (only at n == scale_size when that is > 0); unit i of shape "
        "shapes[i % len(shapes)] of one model; calls > 0: each unit makes that many "
        "num_threads() calls, evenly spread (probes are paced); total: (sizes, seconds)");
  m.def("_own_runnable_threads", &pcr::own_runnable_threads,
        "tests: this process's threads running or waiting for a CPU now (0: unknown); "
        "the first team size leaves them out of the machine's load");
  m.def("set_flush_denormals", &pcr::set_flush_denormals, py::arg("on").noconvert(),
        "whether kernels flush subnormal floats to zero while they run (x86)");
  m.def("get_flush_denormals", &pcr::flush_denormals,
        "whether kernels flush subnormal floats to zero");
  m.def("_thread_fp_modes", &thread_fp_modes,
        "each OpenMP thread's floating-point mode outside any kernel (MXCSR on x86; "
        "for the tests)");
}

py::list isa_available() {
  py::list out;
  for (const char* const* n = pcr::isa_compiled(); *n; ++n)
    if (pcr::isa_supported(*n)) out.append(*n);
  return out;
}

void def_isa(py::module_& m) {
  m.def("isa", []() { return std::string(pcr::isa_active()); },
        "the instruction set whose kernels are in use");
  m.def("isa_available", &isa_available,
        "instruction sets compiled in and supported by this CPU, best first");
  m.def("set_isa", [](const std::string& name) {
    if (!pcr::set_isa(name.c_str()))
      throw py::value_error("instruction set '" + name + "' is not available here");
  }, py::arg("name"), "use the kernels of another instruction set (tests, comparisons)");
}

py::dict build_info() {
  py::dict d;
#ifdef _OPENMP
  d["openmp"] = true;
  d["openmp_version"] = _OPENMP;
#else
  d["openmp"] = false;
#endif
  d["threads"] = pcr::threads_auto() ? "auto" : "explicit";
  d["num_threads"] = pcr::threads_auto() ? pcr::usable_cores() : pcr::num_threads();
  d["usable_cores"] = pcr::usable_cores();
  d["simd"] = pcr::isa_active();
  d["simd_available"] = isa_available();
  d["native"] = static_cast<bool>(PYCHARRNN_NATIVE_BUILD);
  d["sanitize"] = static_cast<bool>(PYCHARRNN_SANITIZE_BUILD);
#if PYCHARRNN_HAVE_CUDA
  const pcr::cuda::Info ci = pcr::cuda::info();
  d["cuda"] = true;
  d["cuda_runtime"] = ci.runtime_version;
  d["cuda_devices"] = ci.names;
  if (!ci.error.empty()) d["cuda_error"] = ci.error;
#else
  d["cuda"] = false;
#endif
  d["compiler"] = PYCHARRNN_COMPILER;
  return d;
}

}  // namespace

void bind_kernels(py::module_& m) {
  def_gemm(m);
  def_threads(m);
  def_isa(m);
  m.def("build_info", &build_info,
        "how the core was built: openmp, num_threads, simd, native, sanitize, cuda (the CUDA "
        "backend compiled in; with it cuda_devices, the GPUs visible), compiler");
}

}  // namespace bind
}  // namespace pcr
