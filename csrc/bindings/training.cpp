// The training entry points of ModelF32 / ModelF64 that run the optimizer
// in C++ (train_loop.hpp): train_steps (K whole steps in one call) and
// optimizer_step (one update), both taking the optimizer as the dict of
// optimizer_spec.hpp.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>

#include "bindings/bindings.hpp"
#include "bindings/checks.hpp"
#include "bindings/optimizer_spec.hpp"
#include "train_loop.hpp"

namespace pcr {
namespace bind {
namespace {

// seeds: None (no regularisers) or a contiguous uint64 array [K].
const std::uint64_t* step_seeds(const py::object& seeds, idx K) {
  if (seeds.is_none()) return nullptr;
  py::array sa = py::reinterpret_borrow<py::array>(seeds);
  if (!py::isinstance<py::array_t<std::uint64_t>>(sa))
    throw py::type_error("seeds must be a uint64 array or None");
  if (sa.ndim() != 1 || sa.shape(0) != K || !(sa.flags() & py::array::c_style))
    throw py::value_error("seeds must be a contiguous array [steps]");
  return static_cast<const std::uint64_t*>(sa.data());
}

template <typename T>
auto train_steps(pcr::Model<T>& self, py::array params, py::array grads, py::array xs,
                 py::array ys, py::array state, py::object seeds, py::array lrs,
                 py::array losses, py::array norms, py::dict optimizer) {
  if (xs.ndim() != 3) throw py::value_error("xs must be 3-D [steps, batch, time]");
  const idx K = xs.shape(0), B = xs.shape(1), Tn = xs.shape(2);
  if (K < 1 || B < 1 || Tn < 1) throw py::value_error("xs must not be empty");
  const idx n = self.num_params();
  T* P = out_ptr<T>(params, "params", {n});
  T* Gr = out_ptr<T>(grads, "grads", {n});
  const auto* xp = in_ptr<std::int32_t>(xs, "xs", {K, B, Tn});
  const auto* yp = in_ptr<std::int32_t>(ys, "ys", {K, B, Tn});
  check_id_values(xp, {K, B, Tn}, "xs", self.V);
  check_id_values(yp, {K, B, Tn}, "ys", self.V);
  T* st = out_ptr<T>(state, "state", {self.state_slots(), self.L, B, self.H});
  const double* lr = in_ptr<double>(lrs, "lrs", {K});
  double* lo = out_ptr<double>(losses, "losses", {K});
  double* no = out_ptr<double>(norms, "norms", {K});
  const std::uint64_t* sd = step_seeds(seeds, K);
  for (idx k = 0; k < K; ++k)
    if (!(lr[k] >= 0) || !std::isfinite(lr[k]))
      throw py::value_error("learning rates must be finite and >= 0");
  pcr::OptSpec<T> opt = opt_spec<T>(optimizer, n);
  check_disjoint({mem(params, "params"), mem(grads, "grads"), mem(state, "state"),
                  mem(losses, "losses"), mem(norms, "norms"), flat("buffer 0", opt.buf0, n),
                  flat("buffer 1", opt.buf1, n), flat("buffer 2", opt.buf2, n)},
                 {mem(xs, "xs"), mem(ys, "ys"), mem(lrs, "lrs")});
  pcr::StepStatus status;
  idx done;
  {
    py::gil_scoped_release nogil;
    pcr::DenormalsGuard flush;
    done = pcr::train_steps(self, P, Gr, opt, xp, yp, K, B, Tn, st, sd != nullptr, sd, lr, lo,
                            no, &status);
  }
  return py::make_tuple(done, static_cast<int>(status));
}

template <typename T>
void optimizer_step(pcr::Model<T>& self, py::array params, py::array grads, py::dict optimizer,
                    double lr, double grad_norm) {
  const idx n = self.num_params();
  T* P = out_ptr<T>(params, "params", {n});
  const T* G = in_ptr<T>(grads, "grads", {n});
  if (!(lr >= 0) || !std::isfinite(lr)) throw py::value_error("lr must be finite and >= 0");
  if (!(grad_norm >= 0) || !std::isfinite(grad_norm))
    throw py::value_error("grad_norm must be finite and >= 0");
  pcr::OptSpec<T> opt = opt_spec<T>(optimizer, n);
  check_disjoint({mem(params, "params"), flat("buffer 0", opt.buf0, n),
                  flat("buffer 1", opt.buf1, n), flat("buffer 2", opt.buf2, n)},
                 {mem(grads, "grads")});
  py::gil_scoped_release nogil;
  pcr::DenormalsGuard flush;
  pcr::optimizer_update(opt, P, G, n, lr, grad_norm);
}

}  // namespace

template <typename T>
void def_training(ModelClass<T>& c) {
  c.def("train_steps", &train_steps<T>, py::arg("params"), py::arg("grads"), py::arg("xs"),
        py::arg("ys"), py::arg("state"), py::arg("seeds"), py::arg("lrs"), py::arg("losses"),
        py::arg("norms"), py::arg("optimizer"),
        "K training steps in one call (pycharrnn.Trainer's step, K times): chunk k is "
        "xs[k], ys[k] [K, B, T]; the state [S, L, B, H] is carried; seeds (uint64 [K], "
        "or None: no regularisers) and lrs (float64 [K]) per step; losses and norms "
        "(float64 [K]) receive each step's loss and pre-clip gradient norm. optimizer: "
        "a dict from Optimizer._fused_spec(). Returns (steps completed, status: 0 all "
        "done, 1 loss, 2 gradient norm, 3 parameters not finite).");
  c.def("optimizer_step", &optimizer_step<T>, py::arg("params"), py::arg("grads"),
        py::arg("optimizer"), py::arg("lr"), py::arg("grad_norm"),
        "One optimizer update of the flat params [num_params] in place from grads, as "
        "Optimizer.step(grad_norm) makes it: optimizer is the dict train_steps takes "
        "(Optimizer._fused_spec(); its step counts the updates made before this one and "
        "is not changed), its buffers are updated in place; lr this update's learning "
        "rate; grad_norm the gradients' global 2-norm, which clip_norm scales by.");
}

template void def_training<float>(ModelClass<float>& c);
template void def_training<double>(ModelClass<double>& c);

}  // namespace bind
}  // namespace pcr
