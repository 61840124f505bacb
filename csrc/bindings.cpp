// pybind11 module pycharrnn._core.
//
// Every entry point checks dtype, contiguity, alignment, writeability, shape
// and token ids before any kernel touches memory, and raises TypeError (wrong
// dtype) or ValueError (anything else) naming the argument. Arrays are never
// converted here: an array the C++ writes must be exactly right, so no write
// can land in a silent copy. The GIL is released while kernels run.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <sstream>

#include "gemm.hpp"
#include "model.hpp"
#include "optim.hpp"

namespace py = pybind11;
using pcr::idx;

namespace {

constexpr int kAligned = 0x0100;  // NPY_ARRAY_ALIGNED

std::string shape_str(const std::vector<idx>& s) {
  std::ostringstream o;
  o << "(";
  for (size_t i = 0; i < s.size(); ++i) o << (i ? ", " : "") << s[i];
  o << (s.size() == 1 ? ",)" : ")");
  return o.str();
}

std::vector<idx> shape_of(const py::array& a) {
  std::vector<idx> s;
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s.push_back(a.shape(i));
  return s;
}

template <typename T>
const char* type_name() {
  return std::is_same<T, float>::value          ? "float32"
         : std::is_same<T, double>::value       ? "float64"
         : std::is_same<T, std::int32_t>::value ? "int32"
                                                : "?";
}

template <typename T>
void check_array(const py::array& a, const char* name, const std::vector<idx>& shape,
                 bool writes) {
  if (!py::isinstance<py::array_t<T>>(a))
    throw py::type_error(std::string(name) + " must have dtype " + type_name<T>() +
                         ", got " + std::string(py::str(a.dtype())));
  if (shape_of(a) != shape)
    throw py::value_error(std::string(name) + " must have shape " + shape_str(shape) +
                          ", got " + shape_str(shape_of(a)));
  if (!(a.flags() & py::array::c_style))
    throw py::value_error(std::string(name) + " must be C-contiguous");
  if (!(a.flags() & kAligned)) throw py::value_error(std::string(name) + " must be aligned");
  if (writes && !a.writeable()) throw py::value_error(std::string(name) + " must be writeable");
}

template <typename T>
const T* in_ptr(const py::array& a, const char* name, const std::vector<idx>& shape) {
  check_array<T>(a, name, shape, false);
  return static_cast<const T*>(a.data());
}

template <typename T>
T* out_ptr(py::array& a, const char* name, const std::vector<idx>& shape) {
  check_array<T>(a, name, shape, true);
  return static_cast<T*>(a.mutable_data());
}

// Token ids: int32 [B, T] with 0 <= id < V. Returns (B, T).
std::pair<idx, idx> check_ids(const py::array& a, const char* name, idx V) {
  if (a.ndim() != 2) throw py::value_error(std::string(name) + " must be 2-D [batch, time]");
  const idx B = a.shape(0), Tn = a.shape(1);
  if (B < 1 || Tn < 1) throw py::value_error(std::string(name) + " must not be empty");
  const std::int32_t* p = in_ptr<std::int32_t>(a, name, {B, Tn});
  for (idx i = 0; i < B * Tn; ++i)
    if (p[i] < 0 || p[i] >= V) {
      std::ostringstream o;
      o << name << "[" << i / Tn << ", " << i % Tn << "] = " << p[i]
        << " is not a token id: ids must be in [0, " << V << ")";
      throw py::value_error(o.str());
    }
  return {B, Tn};
}

template <typename T>
void bind_model(py::module_& m, const char* cls) {
  using M = pcr::Model<T>;
  py::class_<M>(m, cls)
      .def(py::init([](int cell, idx V, idx E, idx H, idx L, double dropout) {
             if (cell < 0 || cell > 3) throw py::value_error("cell must be 0..3");
             if (V < 1) throw py::value_error("vocab_size must be >= 1");
             if (H < 1) throw py::value_error("hidden_size must be >= 1");
             if (L < 1) throw py::value_error("num_layers must be >= 1");
             if (E < 0) throw py::value_error("embedding_dim must be >= 0 (0: one-hot)");
             if (!(dropout >= 0.0 && dropout < 1.0))
               throw py::value_error("dropout must be in [0, 1)");
             return new M(static_cast<pcr::CellKind>(cell), V, E, H, L, dropout);
           }),
           py::arg("cell"), py::arg("vocab_size"), py::arg("embedding_dim"),
           py::arg("hidden_size"), py::arg("num_layers"), py::arg("dropout") = 0.0)
      .def_property_readonly("num_params", &M::num_params)
      .def_property_readonly("state_slots", &M::state_slots)
      .def("layout",
           [](const M& self) {
             py::list out;
             for (const auto& p : self.layout())
               out.append(py::make_tuple(p.name, py::tuple(py::cast(p.shape)), p.offset));
             return out;
           },
           "[(name, shape, offset)] of every parameter in the flat buffer")
      .def("forward",
           [](M& self, py::array params, py::array x, py::array state_in, py::array state_out,
              py::object logits, bool train, std::uint64_t seed) {
             const auto [B, Tn] = check_ids(x, "x", self.V);
             const std::vector<idx> ss{self.state_slots(), self.L, B, self.H};
             const T* P = in_ptr<T>(params, "params", {self.num_params()});
             const T* s0 = in_ptr<T>(state_in, "state_in", ss);
             T* s1 = out_ptr<T>(state_out, "state_out", ss);
             T* lo = nullptr;
             if (!logits.is_none()) {
               if (!py::isinstance<py::array>(logits))
                 throw py::type_error("logits must be a numpy array or None");
               py::array la = py::reinterpret_borrow<py::array>(logits);
               lo = out_ptr<T>(la, "logits", {B, Tn, self.V});
             }
             const auto* xp = static_cast<const std::int32_t*>(x.data());
             py::gil_scoped_release nogil;
             self.forward(P, xp, B, Tn, s0, s1, lo, train, seed);
           },
           py::arg("params"), py::arg("x"), py::arg("state_in"), py::arg("state_out"),
           py::arg("logits"), py::arg("train") = false, py::arg("seed") = 0)
      .def("loss",
           [](M& self, py::array params, py::array x, py::array y, py::array state_in,
              py::array state_out, bool train, std::uint64_t seed) {
             const auto [B, Tn] = check_ids(x, "x", self.V);
             const auto yB = check_ids(y, "y", self.V);
             if (yB.first != B || yB.second != Tn)
               throw py::value_error("y must have the same shape as x");
             const std::vector<idx> ss{self.state_slots(), self.L, B, self.H};
             const T* P = in_ptr<T>(params, "params", {self.num_params()});
             const T* s0 = in_ptr<T>(state_in, "state_in", ss);
             T* s1 = out_ptr<T>(state_out, "state_out", ss);
             const auto* xp = static_cast<const std::int32_t*>(x.data());
             const auto* yp = static_cast<const std::int32_t*>(y.data());
             py::gil_scoped_release nogil;
             return self.loss(P, xp, yp, B, Tn, s0, s1, train, seed);
           },
           py::arg("params"), py::arg("x"), py::arg("y"), py::arg("state_in"),
           py::arg("state_out"), py::arg("train") = false, py::arg("seed") = 0)
      .def("forward_backward",
           [](M& self, py::array params, py::array grads, py::array x, py::array y,
              py::array state_in, py::array state_out, py::array dstate, bool train,
              std::uint64_t seed) {
             const auto [B, Tn] = check_ids(x, "x", self.V);
             const auto yB = check_ids(y, "y", self.V);
             if (yB.first != B || yB.second != Tn)
               throw py::value_error("y must have the same shape as x");
             const std::vector<idx> ss{self.state_slots(), self.L, B, self.H};
             const T* P = in_ptr<T>(params, "params", {self.num_params()});
             T* Gr = out_ptr<T>(grads, "grads", {self.num_params()});
             const T* s0 = in_ptr<T>(state_in, "state_in", ss);
             T* s1 = out_ptr<T>(state_out, "state_out", ss);
             T* ds = out_ptr<T>(dstate, "dstate", ss);
             if (Gr == P) throw py::value_error("grads must not be params");
             const auto* xp = static_cast<const std::int32_t*>(x.data());
             const auto* yp = static_cast<const std::int32_t*>(y.data());
             py::gil_scoped_release nogil;
             return self.forward_backward(P, Gr, xp, yp, B, Tn, s0, s1, ds, train, seed);
           },
           py::arg("params"), py::arg("grads"), py::arg("x"), py::arg("y"),
           py::arg("state_in"), py::arg("state_out"), py::arg("dstate"),
           py::arg("train") = true, py::arg("seed") = 0);
}

template <typename T>
void adagrad(py::array params, py::array grads, py::array mem, double lr, double eps,
             double clip, double scale, bool eps_inside) {
  const idx n = params.size();
  T* p = out_ptr<T>(params, "params", {n});
  const T* g = in_ptr<T>(grads, "grads", {n});
  T* s = out_ptr<T>(mem, "mem", {n});
  py::gil_scoped_release nogil;
  pcr::adagrad_update<T>(p, g, s, n, static_cast<T>(lr), static_cast<T>(eps),
                         static_cast<T>(clip), static_cast<T>(scale), eps_inside);
}

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
  py::gil_scoped_release nogil;
  (reference ? pcr::gemm_ref<T> : pcr::gemm<T>)(ta, tb, M, N, K, a, A.shape(1), b,
                                                  B.shape(1), static_cast<T>(beta), c, N);
}

bool is_f64(const py::array& a) { return py::isinstance<py::array_t<double>>(a); }

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "pycharrnn C++ kernels";
  bind_model<float>(m, "ModelF32");
  bind_model<double>(m, "ModelF64");
  m.def("adagrad_update",
        [](py::array params, py::array grads, py::array mem, double lr, double eps,
           double clip, double scale, bool eps_inside) {
          if (is_f64(params))
            adagrad<double>(params, grads, mem, lr, eps, clip, scale, eps_inside);
          else
            adagrad<float>(params, grads, mem, lr, eps, clip, scale, eps_inside);
        },
        py::arg("params"), py::arg("grads"), py::arg("mem"), py::arg("lr"), py::arg("eps"),
        py::arg("clip"), py::arg("scale") = 1.0, py::arg("eps_inside") = true,
        "AdaGrad over flat buffers; gradients scaled by scale, then clipped to "
        "[-clip, clip] (clip <= 0: none)");
  m.def("gemm",
        [](bool ta, bool tb, py::array A, py::array B, py::array C, double beta,
           bool reference) {
          if (is_f64(C))
            gemm_py<double>(ta, tb, A, B, C, beta, reference);
          else
            gemm_py<float>(ta, tb, A, B, C, beta, reference);
        },
        py::arg("ta"), py::arg("tb"), py::arg("A"), py::arg("B"), py::arg("C"),
        py::arg("beta") = 0.0, py::arg("reference") = false);
  m.def("set_num_threads", [](int n) {
    if (n < 1) throw py::value_error("number of threads must be >= 1");
    pcr::set_num_threads(n);
  });
  m.def("get_num_threads", &pcr::num_threads);
  m.def("build_info", []() {
    py::dict d;
#ifdef _OPENMP
    d["openmp"] = true;
    d["openmp_version"] = _OPENMP;
#else
    d["openmp"] = false;
#endif
    d["num_threads"] = pcr::num_threads();
    d["simd"] = PCR_KERNEL_DISPATCH;
    d["native"] = static_cast<bool>(PYCHARRNN_NATIVE_BUILD);
    d["cuda"] = false;
    d["compiler"] = PYCHARRNN_COMPILER;
    return d;
  });
}
