// The device kernels on host arrays, for the parity tests (tests/test_cuda.py):
// cuda_cell_step, cuda_softmax_xent and cuda_adam, each as _f32 and _f64 (the
// arrays' dtype picks the name). Compiled only in a CUDA build.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "bindings/bindings.hpp"
#include "bindings/checks.hpp"
#include "cuda/cuda.hpp"

namespace pcr {
namespace bind {
namespace {

// An optional array's data (null for None), checked.
template <typename T>
T* opt(const py::object& o, const char* name, const std::vector<idx>& shape) {
  return optional_out<T>(o, name, shape).first;
}

template <typename T>
void cell_step(int kind, py::array gates, py::object hp, py::object dhp, py::array hprev,
               py::object h, py::object cprev, py::object c, py::object aux, py::object dh,
               py::object dc, bool backward) {
  if (kind < 0 || kind > 3) throw py::value_error("kind must be 0..3");
  if (!py::isinstance<py::array_t<T>>(gates)) throw py::type_error("dtype");
  const idx G = kind == 2 ? 3 : kind == 3 ? 4 : 1;
  const idx B = gates.ndim() == 2 ? gates.shape(0) : -1;
  const idx H = gates.ndim() == 2 ? gates.shape(1) / G : -1;
  if (B < 1 || H < 1 || gates.shape(1) != G * H) throw py::value_error("gates must be [B, G*H]");
  T* g = out_ptr<T>(gates, "gates", {B, G * H});
  const T* hv = in_ptr<T>(hprev, "hprev", {B, H});
  T* pp = opt<T>(hp, "hp", {B, G * H});
  T* qq = opt<T>(dhp, "dhp", {B, G * H});
  T* ho = opt<T>(h, "h", {B, H});
  T* cv = opt<T>(cprev, "cprev", {B, H});
  T* co = opt<T>(c, "c", {B, H});
  T* a = opt<T>(aux, "aux", {B, H});
  T* d = opt<T>(dh, "dh", {B, H});
  T* e = opt<T>(dc, "dc", {B, H});
  py::gil_scoped_release nogil;
  pcr::cuda::cell_step(kind, B, H, backward, g, pp, qq, hv, ho, cv, co, a, d, e);
}

template <typename T>
py::array_t<double> softmax_xent(py::array logits, py::array targets, bool grad) {
  if (!py::isinstance<py::array_t<T>>(logits)) throw py::type_error("dtype");
  if (logits.ndim() != 2) throw py::value_error("logits must be [N, V]");
  const idx N = logits.shape(0), V = logits.shape(1);
  T* z = out_ptr<T>(logits, "logits", {N, V});
  const auto* t = in_ptr<std::int32_t>(targets, "targets", {N});
  check_id_values(t, {N}, "targets", V);
  py::array_t<double> rows(static_cast<py::ssize_t>(N));
  double* rl = rows.mutable_data();
  {
    py::gil_scoped_release nogil;
    pcr::cuda::softmax_xent(z, N, V, t, grad, rl);
  }
  return rows;
}

template <typename T>
void adam(py::array p, py::array g, py::array mm, py::array v, py::object vmax, double lr,
          double b1, double b2, double eps, double scale, double clip, long step) {
  if (!py::isinstance<py::array_t<T>>(p)) throw py::type_error("dtype");
  if (step < 1) throw py::value_error("step must be >= 1");
  const idx n = p.size();
  T* pp = out_ptr<T>(p, "p", {n});
  const T* gg = in_ptr<T>(g, "g", {n});
  T* m1 = out_ptr<T>(mm, "m", {n});
  T* v1 = out_ptr<T>(v, "v", {n});
  T* x = opt<T>(vmax, "vmax", {n});
  py::gil_scoped_release nogil;
  pcr::cuda::adam(n, pp, gg, m1, v1, x, lr, b1, b2, eps, scale, clip, step);
}

template <typename T>
void def_cuda(py::module_& m, const std::string& sfx) {
  m.def(("cuda_cell_step" + sfx).c_str(), &cell_step<T>, py::arg("kind"), py::arg("gates"),
        py::arg("hp"), py::arg("dhp"), py::arg("hprev"), py::arg("h"), py::arg("cprev"),
        py::arg("c"), py::arg("aux"), py::arg("dh"), py::arg("dc"), py::arg("backward"),
        "One cell step (forward, or backward) of every unit on the device, in place on "
        "host arrays, as the CPU's cell kernels (for tests)");
  m.def(("cuda_softmax_xent" + sfx).c_str(), &softmax_xent<T>, py::arg("logits"),
        py::arg("targets"), py::arg("grad"),
        "Each row's cross-entropy on the device; with grad, logits become d(mean)/d logits");
  m.def(("cuda_adam" + sfx).c_str(), &adam<T>, py::arg("p"), py::arg("g"), py::arg("m"),
        py::arg("v"), py::arg("vmax"), py::arg("lr"), py::arg("b1"), py::arg("b2"),
        py::arg("eps"), py::arg("scale"), py::arg("clip"), py::arg("step"),
        "One Adam step on the device, in place on host arrays (for tests)");
}

}  // namespace

void bind_cuda(py::module_& m) {
  def_cuda<float>(m, "_f32");
  def_cuda<double>(m, "_f64");
}

}  // namespace bind
}  // namespace pcr
