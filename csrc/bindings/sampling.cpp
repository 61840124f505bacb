// The generation loops of ModelF32 / ModelF64 (sampling.hpp): sample and
// beam_search, whole loops in one call with the GIL released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <vector>

#include "bindings/bindings.hpp"
#include "bindings/checks.hpp"
#include "bindings/generation.hpp"
#include "sampling.hpp"

namespace pcr {
namespace bind {
namespace {

template <typename T>
void def_sample(ModelClass<T>& c) {
  c.def("sample",
        [](pcr::Model<T>& self, py::array params, py::array state, py::array logits,
           py::array out, double temperature, idx top_k, double top_p, std::uint64_t seed,
           std::uint64_t position, bool uniform_first, py::object stop, py::object window,
           py::array live, bool feed_last) {
          const T* P = in_ptr<T>(params, "params", {self.num_params()});
          auto a = sample_args<T>(self.state_slots(), self.L, self.H, self.V, state, logits, out,
                                  temperature, top_k, top_p, stop, window, live,
                                  mem(params, "params"));
          py::gil_scoped_release nogil;
          pcr::DenormalsGuard flush;
          return pcr::sample_loop(self, P, a.state, a.logits, a.B, a.n, a.out, a.o, seed,
                                  position, uniform_first, a.stop.data(), a.m, a.window, a.live,
                                  feed_last);
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
          const T* P = in_ptr<T>(params, "params", {self.num_params()});
          auto a = beam_args<T>(self.state_slots(), self.L, self.H, self.V, logits, state, length,
                                beam_width, length_penalty, stop, context, no_repeat_ngram_size,
                                repetition_penalty, penalty_ngram_size);
          return beam_result(length, [&](std::int32_t* best, idx* n, double* score,
                                         double* logp) {
            pcr::DenormalsGuard flush;
            pcr::beam_search(self, P, a.logits, a.state, length, beam_width, length_penalty,
                             a.stop.data(), static_cast<idx>(a.stop.size()), a.rep, best, n,
                             score, logp);
          });
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
