// DeviceModelF32 / DeviceModelF64 (CUDA builds): a model whose parameters,
// gradients and optimizer state live on a device (cuda/device_model.hpp).
// executor "cuda" runs it on the GPU; "host" runs the same code on the CPU
// (cuda/exec_host.hpp), which is how the tests check it without a GPU. The
// methods are ModelF32's, less the flat buffers: set_params / get_params /
// get_grads / get_optimizer_buffer move them in and out.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <string>
#include <vector>

#include "bindings/bindings.hpp"
#include "bindings/checks.hpp"
#include "bindings/generation.hpp"
#include "bindings/optimizer_spec.hpp"
#include "cuda/device_api.hpp"
#include "cuda/exec_cuda_path.hpp"

namespace pcr {
namespace bind {
namespace {

template <typename T>
struct DeviceModel {
  std::unique_ptr<pcr::Model<T>> shape;  // the layout and its checks (no workspace is made)
  std::unique_ptr<pcr::DeviceModelAPI<T>> dev;
  std::string executor;
  idx n = 0;
  std::vector<idx> state_shape(idx B) const {
    return {shape->state_slots(), shape->L, B, shape->H};
  }
};

template <typename T>
DeviceModel<T>* make(int cell, idx V, idx E, idx H, idx L, double dropout, double input_dropout,
                     double output_dropout, double weight_drop, double embedding_dropout,
                     bool locked_dropout, const std::string& executor) {
  if (cell < 0 || cell > 3) throw py::value_error("cell must be 0..3");
  if (V < 1 || H < 1 || L < 1 || E < 0)
    throw py::value_error("vocab_size, hidden_size and num_layers must be >= 1, "
                          "embedding_dim >= 0");
  if (executor != "cuda" && executor != "host")
    throw py::value_error("executor must be 'cuda' or 'host', got '" + executor + "'");
  const pcr::Dropouts d = dropouts(E, dropout, input_dropout, output_dropout, weight_drop,
                                   embedding_dropout, locked_dropout);
  auto out = std::make_unique<DeviceModel<T>>();
  out->shape = std::make_unique<pcr::Model<T>>(static_cast<pcr::CellKind>(cell), V, E, H, L, d);
  std::vector<idx> offsets;
  for (const auto& p : out->shape->layout()) offsets.push_back(p.offset);
  const auto kind = static_cast<pcr::CellKind>(cell);
  if (executor == "host") {
    out->dev = pcr::make_host_device_model<T>(kind, V, E, H, L, d, offsets);
  } else {
    py::gil_scoped_release nogil;
    out->dev = pcr::make_cuda_device_model<T>(kind, V, E, H, L, d, offsets);
  }
  out->executor = executor;
  out->n = out->shape->num_params();
  return out.release();
}

template <typename T>
void def_device(py::module_& m, const char* name) {
  using D = DeviceModel<T>;
  py::class_<D> c(m, name,
                  "A model on a device: its parameters, gradients and optimizer state live "
                  "there; executor 'cuda' (the GPU) or 'host' (the same code on the CPU, "
                  "for tests).");
  c.def(py::init(&make<T>), py::arg("cell"), py::arg("vocab_size"), py::arg("embedding_dim"),
        py::arg("hidden_size"), py::arg("num_layers"), py::arg("dropout") = 0.0, py::kw_only(),
        py::arg("input_dropout") = 0.0, py::arg("output_dropout") = 0.0,
        py::arg("weight_drop") = 0.0, py::arg("embedding_dropout") = 0.0,
        py::arg("locked_dropout").noconvert() = false, py::arg("executor") = "cuda");
  c.def_property_readonly("num_params", [](const D& s) { return s.n; });
  c.def_property_readonly("state_slots", [](const D& s) { return s.shape->state_slots(); });
  c.def_readonly("executor", &D::executor);
  c.def("layout", [](const D& s) {
    py::list out;
    for (const auto& p : s.shape->layout())
      out.append(py::make_tuple(p.name, py::tuple(py::cast(p.shape)), p.offset));
    return out;
  });
  c.def("set_params", [](D& s, py::array a) {
    const T* p = in_ptr<T>(a, "params", {s.n});
    py::gil_scoped_release nogil;
    s.dev->set_params(p);
  }, py::arg("params"), "Copies params [num_params] to the device.");
  c.def("get_params", [](D& s, py::array a) {
    T* p = out_ptr<T>(a, "params", {s.n});
    py::gil_scoped_release nogil;
    s.dev->get_params(p);
  }, py::arg("out"), "Copies the device's parameters into out [num_params].");
  c.def("get_grads", [](D& s, py::array a) {
    T* p = out_ptr<T>(a, "grads", {s.n});
    py::gil_scoped_release nogil;
    s.dev->get_grads(p);
  }, py::arg("out"), "Copies the last gradients into out [num_params].");
  auto slot = [](int k) {
    if (k < 0 || k > 2) throw py::value_error("optimizer buffer must be 0, 1 or 2");
  };
  c.def("has_optimizer_buffer", [slot](const D& s, int k) {
    slot(k);
    return s.dev->has_opt_buffer(k);
  }, py::arg("k"));
  c.def("set_optimizer_buffer", [slot](D& s, int k, py::array a) {
    slot(k);
    const T* p = in_ptr<T>(a, "buffer", {s.n});
    py::gil_scoped_release nogil;
    s.dev->set_opt_buffer(k, p);
  }, py::arg("k"), py::arg("buffer"));
  c.def("get_optimizer_buffer", [slot](D& s, int k, py::array a) {
    slot(k);
    T* p = out_ptr<T>(a, "out", {s.n});
    py::gil_scoped_release nogil;
    s.dev->get_opt_buffer(k, p);
  }, py::arg("k"), py::arg("out"),
     "Optimizer buffer k (as the CPU's optimizer dict orders them) into out.");
  c.def("forward", [](D& s, py::array x, py::array s0, py::array s1, py::object logits,
                      bool train, std::uint64_t seed) {
    const auto [B, Tn] = check_ids(x, "x", s.shape->V);
    const T* a = in_ptr<T>(s0, "state_in", s.state_shape(B));
    T* b = out_ptr<T>(s1, "state_out", s.state_shape(B));
    T* lo = optional_out<T>(logits, "logits", {B, Tn, s.shape->V}).first;
    const auto* xp = static_cast<const std::int32_t*>(x.data());
    py::gil_scoped_release nogil;
    s.dev->forward(xp, B, Tn, a, b, lo, train, seed);
  }, py::arg("x"), py::arg("state_in"), py::arg("state_out"), py::arg("logits"), py::kw_only(),
     py::arg("train").noconvert() = false, py::arg("seed") = 0);
  c.def("loss", [](D& s, py::array x, py::array y, py::array s0, py::array s1, bool train,
                   std::uint64_t seed, py::object stream_loss) {
    const auto [B, Tn] = check_xy(x, y, s.shape->V);
    const T* a = in_ptr<T>(s0, "state_in", s.state_shape(B));
    T* b = out_ptr<T>(s1, "state_out", s.state_shape(B));
    double* sl = optional_out<double>(stream_loss, "stream_loss", {B}).first;
    const auto* xp = static_cast<const std::int32_t*>(x.data());
    const auto* yp = static_cast<const std::int32_t*>(y.data());
    py::gil_scoped_release nogil;
    return s.dev->loss(xp, yp, B, Tn, a, b, train, seed, sl);
  }, py::arg("x"), py::arg("y"), py::arg("state_in"), py::arg("state_out"), py::kw_only(),
     py::arg("train").noconvert() = false, py::arg("seed") = 0,
     py::arg("stream_loss") = py::none());
  c.def("forward_backward", [](D& s, py::array x, py::array y, py::array s0, py::array s1,
                               py::array ds, bool train, std::uint64_t seed, idx first_row,
                               idx total_rows) {
    const auto [B, Tn] = check_xy(x, y, s.shape->V);
    if (total_rows < 0 || (total_rows != 0 && (first_row < 0 || first_row > total_rows - B)) ||
        (total_rows == 0 && first_row != 0))
      throw py::value_error("first_row and total_rows must hold the rows of x");
    const T* a = in_ptr<T>(s0, "state_in", s.state_shape(B));
    T* b = out_ptr<T>(s1, "state_out", s.state_shape(B));
    T* d = out_ptr<T>(ds, "dstate", s.state_shape(B));
    const auto* xp = static_cast<const std::int32_t*>(x.data());
    const auto* yp = static_cast<const std::int32_t*>(y.data());
    py::gil_scoped_release nogil;
    return s.dev->forward_backward(xp, yp, B, Tn, a, b, d, train, seed, {first_row, total_rows});
  }, py::arg("x"), py::arg("y"), py::arg("state_in"), py::arg("state_out"), py::arg("dstate"),
     py::kw_only(), py::arg("train").noconvert() = true, py::arg("seed") = 0,
     py::arg("first_row") = 0, py::arg("total_rows") = 0);
  c.def("grad_sum_squares", [](D& s) {
    py::gil_scoped_release nogil;
    return s.dev->grad_sum_squares();
  });
  c.def("optimizer_step", [](D& s, py::dict optimizer, double lr, double grad_norm) {
    if (!(lr >= 0) || !std::isfinite(lr)) throw py::value_error("lr must be finite and >= 0");
    if (!(grad_norm >= 0) || !std::isfinite(grad_norm))
      throw py::value_error("grad_norm must be finite and >= 0");
    pcr::OptSpec<T> o = opt_spec<T>(optimizer, s.n, false);
    py::gil_scoped_release nogil;
    s.dev->optimizer_update(o, lr, grad_norm);
  }, py::arg("optimizer"), py::arg("lr"), py::arg("grad_norm"),
     "One update as ModelF32.optimizer_step, on the device's buffers (the dict's "
     "buffers are not read).");
  c.def("train_steps", [](D& s, py::array xs, py::array ys, py::array state, py::object seeds,
                          py::array lrs, py::array losses, py::array norms, py::dict optimizer) {
    if (xs.ndim() != 3) throw py::value_error("xs must be 3-D [steps, batch, time]");
    const idx K = xs.shape(0), B = xs.shape(1), Tn = xs.shape(2);
    if (K < 1 || B < 1 || Tn < 1) throw py::value_error("xs must not be empty");
    const auto* xp = in_ptr<std::int32_t>(xs, "xs", {K, B, Tn});
    const auto* yp = in_ptr<std::int32_t>(ys, "ys", {K, B, Tn});
    check_id_values(xp, {K, B, Tn}, "xs", s.shape->V);
    check_id_values(yp, {K, B, Tn}, "ys", s.shape->V);
    T* st = out_ptr<T>(state, "state", s.state_shape(B));
    const double* lr = in_ptr<double>(lrs, "lrs", {K});
    double* lo = out_ptr<double>(losses, "losses", {K});
    double* no = out_ptr<double>(norms, "norms", {K});
    const std::uint64_t* sd = nullptr;
    if (!seeds.is_none()) {
      py::array sa = py::reinterpret_borrow<py::array>(seeds);
      sd = in_ptr<std::uint64_t>(sa, "seeds", {K});
    }
    for (idx k = 0; k < K; ++k)
      if (!(lr[k] >= 0) || !std::isfinite(lr[k]))
        throw py::value_error("learning rates must be finite and >= 0");
    pcr::OptSpec<T> o = opt_spec<T>(optimizer, s.n, false);
    pcr::StepStatus status;
    idx done;
    {
      py::gil_scoped_release nogil;
      done = s.dev->train_steps(o, xp, yp, K, B, Tn, st, sd != nullptr, sd, lr, lo, no, &status);
    }
    return py::make_tuple(done, static_cast<int>(status));
  }, py::arg("xs"), py::arg("ys"), py::arg("state"), py::arg("seeds"), py::arg("lrs"),
     py::arg("losses"), py::arg("norms"), py::arg("optimizer"),
     "K training steps on the device, as ModelF32.train_steps.");
  c.def("sample", [](D& s, py::array state, py::array logits, py::array out,
                     double temperature, idx top_k, double top_p, std::uint64_t seed,
                     std::uint64_t position, bool uniform_first, py::object stop,
                     py::object window, py::array live, bool feed_last) {
    const auto& M = *s.shape;
    auto a = sample_args<T>(M.state_slots(), M.L, M.H, M.V, state, logits, out, temperature,
                            top_k, top_p, stop, window, live, Mem{"params", nullptr, 0});
    py::gil_scoped_release nogil;
    return s.dev->sample(a.state, a.logits, a.B, a.n, a.out, a.o, seed, position, uniform_first,
                         a.stop.data(), a.m, a.window, a.live, feed_last);
  }, py::arg("state"), py::arg("logits"), py::arg("out"), py::kw_only(),
     py::arg("temperature") = 1.0, py::arg("top_k") = 0, py::arg("top_p") = 1.0,
     py::arg("seed") = 0, py::arg("position") = 0, py::arg("uniform_first").noconvert() = false,
     py::arg("stop") = py::none(), py::arg("window") = py::none(), py::arg("live"),
     py::arg("feed_last").noconvert() = true,
     "The sampling loop as ModelF32.sample, with the model, the draws and the stop "
     "matching on the device.");
  c.def("beam_search", [](D& s, py::array logits, py::array state, idx length, idx beam_width,
                          double length_penalty, py::object stop, py::object context,
                          idx no_repeat_ngram_size, double repetition_penalty,
                          idx penalty_ngram_size) {
    const auto& M = *s.shape;
    auto a = beam_args<T>(M.state_slots(), M.L, M.H, M.V, logits, state, length, beam_width,
                          length_penalty, stop, context, no_repeat_ngram_size,
                          repetition_penalty, penalty_ngram_size);
    return beam_result(length, [&](std::int32_t* best, idx* n, double* score, double* logp) {
      s.dev->beam_search(a.logits, a.state, length, beam_width, length_penalty, a.stop.data(),
                         static_cast<idx>(a.stop.size()), a.rep, best, n, score, logp);
    });
  }, py::arg("logits"), py::arg("state"), py::arg("length"), py::arg("beam_width"),
     py::kw_only(), py::arg("length_penalty") = 0.0, py::arg("stop") = py::none(),
     py::arg("context") = py::none(), py::arg("no_repeat_ngram_size") = 0,
     py::arg("repetition_penalty") = 1.0, py::arg("penalty_ngram_size") = 1,
     "Beam search as ModelF32.beam_search, the hypotheses' states and steps on the device.");
  c.def("trace", [](D& s, py::array x, py::array s0, py::array s1, py::array hidden,
                    py::object cell, py::object gates, py::array logits) {
    const auto& M = *s.shape;
    const auto [B, Tn] = check_ids(x, "x", M.V);
    const T* a = in_ptr<T>(s0, "state_in", s.state_shape(B));
    T* b = out_ptr<T>(s1, "state_out", s.state_shape(B));
    const auto o = trace_outputs<T>(M.L, M.H, M.G, M.V, M.state_slots() == 2, B, Tn, hidden,
                                    cell, gates, logits);
    check_disjoint({mem(s1, "state_out"), o.mems[0], o.mems[1], o.mems[2], o.mems[3]},
                   {mem(x, "x"), state_in_mem(s0, s1)});
    const auto* xp = static_cast<const std::int32_t*>(x.data());
    py::gil_scoped_release nogil;
    s.dev->trace(xp, B, Tn, a, b, o.hidden, o.cell, o.gates, o.logits);
  }, py::arg("x"), py::arg("state_in"), py::arg("state_out"), py::arg("hidden"),
     py::arg("cell"), py::arg("gates"), py::arg("logits"), "As ModelF32.trace, on the device.");
  c.def("gradient_flow", [](D& s, py::array x, py::array y, py::array s0, py::array norms) {
    const auto& M = *s.shape;
    const auto [B, Tn] = check_xy(x, y, M.V);
    const T* a = in_ptr<T>(s0, "state_in", s.state_shape(B));
    double* no = out_ptr<double>(norms, "norms", {M.L, Tn});
    check_disjoint({mem(norms, "norms")}, {mem(x, "x"), mem(y, "y"), mem(s0, "state_in")});
    const auto* xp = static_cast<const std::int32_t*>(x.data());
    const auto* yp = static_cast<const std::int32_t*>(y.data());
    py::gil_scoped_release nogil;
    return s.dev->gradient_flow(xp, yp, B, Tn, a, no);
  }, py::arg("x"), py::arg("y"), py::arg("state_in"), py::arg("norms"),
     "As ModelF32.gradient_flow, on the device; the model's gradients are left as they are.");
}

}  // namespace

void bind_device(py::module_& m) {
  def_device<float>(m, "DeviceModelF32");
  def_device<double>(m, "DeviceModelF64");
  m.def("cuda_set_cublas_path", [](const std::string& p) { pcr::dev_exec::set_cublas_path(p); },
        py::arg("path"),
        "Where to load cuBLAS from (libcublas.so.13), before the first device model.");
  m.def("cuda_memory", [](bool reset_peak) { return pcr::dev_exec::device_memory(reset_peak); },
        py::arg("reset_peak") = false,
        "(bytes the device models hold on the GPU now, the most they held since the last "
        "reset).");
  m.def("cuda_cublas", [] { return pcr::dev_exec::cublas_status(); },
        "(path loaded from or '', why not) of cuBLAS, loading it if need be.");
}

}  // namespace bind
}  // namespace pcr
