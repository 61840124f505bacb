// The optimizer updates of a flat parameter buffer as module functions
// (sgd_update, adagrad_update, rmsprop_update, adam_update: one fused loop
// each, optim.hpp) and sum_squares. Each takes float32 or float64 arrays,
// dispatching on the dtype of params.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "bindings/bindings.hpp"
#include "bindings/checks.hpp"
#include "dispatch.hpp"

namespace pcr {
namespace bind {
namespace {

pcr::GradIn grad_in(double scale, double clip, double weight_decay) {
  if (!(scale >= 0) || !(clip >= 0) || !(weight_decay >= 0))
    throw py::value_error("scale, clip and weight_decay must be >= 0");
  pcr::GradIn g;
  g.scale = scale;
  g.clip = clip;
  g.weight_decay = weight_decay;
  return g;
}

// The updates in one precision: params, grads and the buffers flat [n].
template <typename T>
struct Opt {
  static void sgd(py::array params, py::array grads, py::object buf, double lr, double momentum,
                  double dampening, bool nesterov, bool first, double weight_decay,
                  double scale, double clip) {
    const idx n = params.size();
    T* p = out_ptr<T>(params, "params", {n});
    const T* g = in_ptr<T>(grads, "grads", {n});
    T* b = opt_buf<T>(buf, "momentum_buffer", n, momentum != 0);
    check_disjoint({flat("params", p, n), flat("momentum_buffer", b, n)},
                   {flat("grads", g, n)});
    const auto gi = grad_in(scale, clip, weight_decay);
    py::gil_scoped_release nogil;
    pcr::DenormalsGuard flush;
    pcr::kern<T>().sgd(p, g, b, n, gi, T(lr), T(momentum), T(dampening), nesterov, first);
  }
  static void adagrad(py::array params, py::array grads, py::array sum, double clr, double eps,
                      bool eps_inside, double weight_decay, double scale, double clip) {
    const idx n = params.size();
    T* p = out_ptr<T>(params, "params", {n});
    const T* g = in_ptr<T>(grads, "grads", {n});
    T* s = out_ptr<T>(sum, "sum", {n});
    check_disjoint({flat("params", p, n), flat("sum", s, n)}, {flat("grads", g, n)});
    const auto gi = grad_in(scale, clip, weight_decay);
    py::gil_scoped_release nogil;
    pcr::DenormalsGuard flush;
    pcr::kern<T>().adagrad(p, g, s, n, gi, T(clr), T(eps), eps_inside);
  }
  static void rmsprop(py::array params, py::array grads, py::array sq, py::object gavg,
                      py::object buf, double lr, double alpha, double eps, double momentum,
                      bool centered, double weight_decay, double scale, double clip) {
    const idx n = params.size();
    T* p = out_ptr<T>(params, "params", {n});
    const T* g = in_ptr<T>(grads, "grads", {n});
    T* s = out_ptr<T>(sq, "square_avg", {n});
    T* ga = opt_buf<T>(gavg, "grad_avg", n, centered);
    T* b = opt_buf<T>(buf, "momentum_buffer", n, momentum > 0);
    check_disjoint({flat("params", p, n), flat("square_avg", s, n), flat("grad_avg", ga, n),
                    flat("momentum_buffer", b, n)},
                   {flat("grads", g, n)});
    const auto gi = grad_in(scale, clip, weight_decay);
    py::gil_scoped_release nogil;
    pcr::DenormalsGuard flush;
    pcr::kern<T>().rmsprop(p, g, s, ga, b, n, gi, T(lr), T(alpha), T(eps), T(momentum),
                           centered);
  }
  static void adam(py::array params, py::array grads, py::array m, py::array v, py::object vmax,
                   double lr, double beta1, double beta2, double eps, double bc1, double bc2,
                   bool decoupled, bool amsgrad, double weight_decay, double scale,
                   double clip) {
    const idx n = params.size();
    T* p = out_ptr<T>(params, "params", {n});
    const T* g = in_ptr<T>(grads, "grads", {n});
    T* mp = out_ptr<T>(m, "exp_avg", {n});
    T* vp = out_ptr<T>(v, "exp_avg_sq", {n});
    T* vm = opt_buf<T>(vmax, "max_exp_avg_sq", n, amsgrad);
    check_disjoint({flat("params", p, n), flat("exp_avg", mp, n), flat("exp_avg_sq", vp, n),
                    flat("max_exp_avg_sq", vm, n)},
                   {flat("grads", g, n)});
    if (!(bc1 > 0) || !(bc2 > 0)) throw py::value_error("bias corrections must be > 0");
    const auto gi = grad_in(scale, clip, weight_decay);
    py::gil_scoped_release nogil;
    pcr::DenormalsGuard flush;
    pcr::kern<T>().adam(p, g, mp, vp, vm, n, gi, T(lr), T(beta1), T(beta2), T(eps), bc1, bc2,
                        decoupled, amsgrad);
  }
  static double sum_squares(py::array grads) {
    const idx n = grads.size();
    const T* g = in_ptr<T>(grads, "grads", {n});
    py::gil_scoped_release nogil;
    pcr::DenormalsGuard flush;
    return pcr::kern<T>().sum_squares(g, n);
  }
};

}  // namespace

// Each dispatches on the dtype of the first array (float64 or else float32;
// the float32 path then checks every array's dtype exactly).
void bind_optim(py::module_& m) {
  m.def("sgd_update",
        [](py::array params, py::array grads, py::object buf, double lr, double momentum,
           double dampening, bool nesterov, bool first, double weight_decay, double scale,
           double clip) {
          (is_f64(params) ? Opt<double>::sgd : Opt<float>::sgd)(
              params, grads, buf, lr, momentum, dampening, nesterov, first, weight_decay, scale,
              clip);
        },
        py::arg("params"), py::arg("grads"), py::arg("momentum_buffer"), py::kw_only(),
        py::arg("lr"), py::arg("momentum"), py::arg("dampening"),
        py::arg("nesterov").noconvert(), py::arg("first").noconvert(),
        py::arg("weight_decay") = 0.0, py::arg("scale") = 1.0, py::arg("clip") = 0.0,
        "torch.optim.SGD's update of the flat params in place (momentum_buffer: None "
        "without momentum; first: the first step, which fills it). The gradient is "
        "multiplied by scale, clipped to [-clip, clip] when clip > 0, weight decay added.");
  m.def("adagrad_update",
        [](py::array params, py::array grads, py::array sum, double clr, double eps,
           bool eps_inside, double weight_decay, double scale, double clip) {
          (is_f64(params) ? Opt<double>::adagrad : Opt<float>::adagrad)(
              params, grads, sum, clr, eps, eps_inside, weight_decay, scale, clip);
        },
        py::arg("params"), py::arg("grads"), py::arg("sum"), py::kw_only(), py::arg("clr"),
        py::arg("eps"), py::arg("eps_inside").noconvert(), py::arg("weight_decay") = 0.0,
        py::arg("scale") = 1.0, py::arg("clip") = 0.0,
        "torch.optim.Adagrad's update in place, with the learning rate clr already decayed; "
        "eps_inside: eps under the square root (min-char-rnn's form). scale, clip and "
        "weight_decay as sgd_update.");
  m.def("rmsprop_update",
        [](py::array params, py::array grads, py::array sq, py::object gavg, py::object buf,
           double lr, double alpha, double eps, double momentum, bool centered,
           double weight_decay, double scale, double clip) {
          (is_f64(params) ? Opt<double>::rmsprop : Opt<float>::rmsprop)(
              params, grads, sq, gavg, buf, lr, alpha, eps, momentum, centered, weight_decay,
              scale, clip);
        },
        py::arg("params"), py::arg("grads"), py::arg("square_avg"), py::arg("grad_avg"),
        py::arg("momentum_buffer"), py::kw_only(), py::arg("lr"), py::arg("alpha"),
        py::arg("eps"), py::arg("momentum"), py::arg("centered").noconvert(),
        py::arg("weight_decay") = 0.0, py::arg("scale") = 1.0, py::arg("clip") = 0.0,
        "torch.optim.RMSprop's update in place (grad_avg: None unless centered; "
        "momentum_buffer: None without momentum). scale, clip and weight_decay as "
        "sgd_update.");
  m.def("adam_update",
        [](py::array params, py::array grads, py::array m_, py::array v, py::object vmax,
           double lr, double beta1, double beta2, double eps, double bc1, double bc2,
           bool decoupled, bool amsgrad, double weight_decay, double scale, double clip) {
          (is_f64(params) ? Opt<double>::adam : Opt<float>::adam)(
              params, grads, m_, v, vmax, lr, beta1, beta2, eps, bc1, bc2, decoupled, amsgrad,
              weight_decay, scale, clip);
        },
        py::arg("params"), py::arg("grads"), py::arg("exp_avg"), py::arg("exp_avg_sq"),
        py::arg("max_exp_avg_sq"), py::kw_only(), py::arg("lr"), py::arg("beta1"),
        py::arg("beta2"), py::arg("eps"), py::arg("bias_correction1"),
        py::arg("bias_correction2"), py::arg("decoupled").noconvert(),
        py::arg("amsgrad").noconvert(), py::arg("weight_decay") = 0.0,
        py::arg("scale") = 1.0, py::arg("clip") = 0.0,
        "torch.optim.Adam's update in place (decoupled: AdamW's weight decay; "
        "max_exp_avg_sq: None unless amsgrad; bias_correction1/2: 1 - beta**step). "
        "scale, clip and weight_decay as sgd_update.");
  m.def("sum_squares",
        [](py::array grads) {
          return is_f64(grads) ? Opt<double>::sum_squares(grads)
                               : Opt<float>::sum_squares(grads);
        },
        py::arg("grads"), "sum of squares of a flat float array, in double");
}

}  // namespace bind
}  // namespace pcr
