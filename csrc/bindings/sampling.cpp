// The generation loops of ModelF32 / ModelF64 (sampling.hpp): sample and
// beam_search, whole loops in one call with the GIL released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <vector>

#include "bindings/bindings.hpp"
#include "bindings/checks.hpp"
#include "sampling.hpp"

namespace pcr {
namespace bind {
namespace {

pcr::DrawOptions draw_options(double temperature, idx top_k, double top_p) {
  if (!(temperature >= 0) || !std::isfinite(temperature))
    throw py::value_error("temperature must be finite and >= 0");
  if (top_k < 0) throw py::value_error("top_k must be >= 0 (0: off)");
  if (!(top_p > 0 && top_p <= 1)) throw py::value_error("top_p must be in (0, 1]");
  return pcr::DrawOptions{temperature, top_k, top_p};
}

// The rows' windows of stop matching: int32 [B, m] when there are m > 0
// stop ids, else ignored (null).
std::int32_t* stop_window(const py::object& window, idx B, idx m) {
  if (m == 0) return nullptr;
  if (!py::isinstance<py::array>(window))
    throw py::type_error("window must be an int32 array [rows, len(stop)]");
  py::array wa = py::reinterpret_borrow<py::array>(window);
  return out_ptr<std::int32_t>(wa, "window", {B, m});
}

template <typename T>
void def_sample(ModelClass<T>& c) {
  c.def("sample",
        [](pcr::Model<T>& self, py::array params, py::array state, py::array logits,
           py::array out, double temperature, idx top_k, double top_p, std::uint64_t seed,
           std::uint64_t position, bool uniform_first, py::object stop, py::object window,
           py::array live, bool feed_last) {
          if (out.ndim() != 2) throw py::value_error("out must be 2-D [rows, length]");
          const idx B = out.shape(0), n = out.shape(1);
          if (B < 1) throw py::value_error("out must have at least one row");
          const std::vector<idx> ss{self.state_slots(), self.L, B, self.H};
          const T* P = in_ptr<T>(params, "params", {self.num_params()});
          T* st = out_ptr<T>(state, "state", ss);
          T* lo = out_ptr<T>(logits, "logits", {B, self.V});
          auto* o = out_ptr<std::int32_t>(out, "out", {B, n});
          auto* lv = out_ptr<std::uint8_t>(live, "live", {B});
          const auto opts = draw_options(temperature, top_k, top_p);
          const std::vector<std::int32_t> sid = stop_ids(stop, self.V);
          const idx m = static_cast<idx>(sid.size());
          std::int32_t* win = stop_window(window, B, m);
          check_disjoint({mem(state, "state"), mem(logits, "logits"), mem(out, "out"),
                          mem(live, "live"), flat("window", win, win ? B * m : 0)},
                         {mem(params, "params")});
          py::gil_scoped_release nogil;
          pcr::DenormalsGuard flush;
          return pcr::sample_loop(self, P, st, lo, B, n, o, opts, seed, position, uniform_first,
                                  sid.data(), m, win, lv, feed_last);
        },
        py::arg("params"), py::arg("state"), py::arg("logits"), py::arg("out"), py::kw_only(),
        py::arg("temperature") = 1.0, py::arg("top_k") = 0, py::arg("top_p") = 1.0,
        py::arg("seed") = 0, py::arg("position") = 0,
        py::arg("uniform_first").noconvert() = false, py::arg("stop") = py::none(),
        py::arg("window") = py::none(), py::arg("live"), py::arg("feed_last").noconvert() = true,
        "Generate up to out.shape[1] ids for each row of out [B, n] in one call: draw "
        "from logits [B, V] (temperature, top_k, top_p; the uniform number of row b at "
        "position i of its sample is hash_uniform(seed, b, i)), feed the ids back "
        "through the model from state [S, L, B, H]. state and logits are updated to "
        "continue; stop (int32 ids), window [B, len(stop)] and live [B] (uint8) carry "
        "each row's stop matching; a stopped row's further ids are -1. Returns the "
        "steps made (fewer than n when every row stopped).");
}

template <typename T>
void def_beam_search(ModelClass<T>& c) {
  c.def("beam_search",
        [](pcr::Model<T>& self, py::array params, py::array logits, py::array state, idx length,
           idx beam_width, double length_penalty, py::object stop, py::object context,
           idx no_repeat_ngram_size, double repetition_penalty, idx penalty_ngram_size) {
          if (length < 0) throw py::value_error("length must be >= 0");
          if (beam_width < 1) throw py::value_error("beam_width must be >= 1");
          if (!std::isfinite(length_penalty))
            throw py::value_error("length_penalty must be finite");
          if (no_repeat_ngram_size < 0)
            throw py::value_error("no_repeat_ngram_size must be >= 0");
          if (!(std::isfinite(repetition_penalty) && repetition_penalty > 0))
            throw py::value_error("repetition_penalty must be finite and > 0");
          if (penalty_ngram_size < 1) throw py::value_error("penalty_ngram_size must be >= 1");
          const std::vector<std::int32_t> ctx = id_list(context, self.V, "context", true);
          pcr::Repeats rep;
          rep.context = ctx.data();
          rep.context_len = static_cast<idx>(ctx.size());
          rep.no_repeat = no_repeat_ngram_size;
          rep.penalty = repetition_penalty;
          rep.penalty_size = penalty_ngram_size;
          const T* P = in_ptr<T>(params, "params", {self.num_params()});
          const T* lo = in_ptr<T>(logits, "logits", {self.V});
          const T* st = in_ptr<T>(state, "state", {self.state_slots(), self.L, 1, self.H});
          const std::vector<std::int32_t> sid = stop_ids(stop, self.V);
          py::array_t<std::int32_t> best(static_cast<py::ssize_t>(length));
          std::int32_t* bp = best.mutable_data();
          idx n = 0;
          double score = 0, logp = 0;
          {
            py::gil_scoped_release nogil;
            pcr::DenormalsGuard flush;
            pcr::beam_search(self, P, lo, st, length, beam_width, length_penalty, sid.data(),
                             static_cast<idx>(sid.size()), rep, bp, &n, &score, &logp);
          }
          py::array_t<std::int32_t> found(static_cast<py::ssize_t>(n), bp);
          return py::make_tuple(found, score, logp);
        },
        py::arg("params"), py::arg("logits"), py::arg("state"), py::arg("length"),
        py::arg("beam_width"), py::kw_only(), py::arg("length_penalty") = 0.0,
        py::arg("stop") = py::none(), py::arg("context") = py::none(),
        py::arg("no_repeat_ngram_size") = 0, py::arg("repetition_penalty") = 1.0,
        py::arg("penalty_ngram_size") = 1,
        "Beam search from the logits [V] and state [S, L, 1, H] after a prime: (ids, "
        "score, log-probability) of the best continuation of at most length ids; "
        "score = (log-probability - repetition penalties) / len ** length_penalty. stop "
        "(int32 ids) ends a hypothesis; context (int32 ids: what the model read) counts "
        "in the repetition control (see csrc/sampling.hpp, Repeats).");
}

}  // namespace

template <typename T>
void def_sampling(ModelClass<T>& c) {
  def_sample(c);
  def_beam_search(c);
}

template void def_sampling<float>(ModelClass<float>& c);
template void def_sampling<double>(ModelClass<double>& c);

}  // namespace bind
}  // namespace pcr
