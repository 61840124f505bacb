// The arguments of the generation loops (sample, beam_search), checked the
// same way for the CPU's model (sampling.cpp) and the device's (device.cpp).
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "bindings/checks.hpp"
#include "beam.hpp"
#include "draw.hpp"

namespace pcr {
namespace bind {

inline pcr::DrawOptions draw_options(double temperature, idx top_k, double top_p) {
  if (!(temperature >= 0) || !std::isfinite(temperature))
    throw py::value_error("temperature must be finite and >= 0");
  if (top_k < 0) throw py::value_error("top_k must be >= 0 (0: off)");
  if (!(top_p > 0 && top_p <= 1)) throw py::value_error("top_p must be in (0, 1]");
  return pcr::DrawOptions{temperature, top_k, top_p};
}

// The rows' windows of stop matching: int32 [B, m] when there are m > 0
// stop ids, else ignored (null).
inline std::int32_t* stop_window(const py::object& window, idx B, idx m) {
  if (m == 0) return nullptr;
  if (!py::isinstance<py::array>(window))
    throw py::type_error("window must be an int32 array [rows, len(stop)]");
  py::array wa = py::reinterpret_borrow<py::array>(window);
  return out_ptr<std::int32_t>(wa, "window", {B, m});
}

// sample's arrays: state [S, L, B, H], logits [B, V], out [B, n], live [B],
// window [B, m]; `params` (the CPU's flat parameters, or an empty Mem) must
// not share memory with what the loop writes.
template <typename T>
struct SampleArgs {
  idx B = 0, n = 0, m = 0;
  T* state = nullptr;
  T* logits = nullptr;
  std::int32_t* out = nullptr;
  std::uint8_t* live = nullptr;
  std::int32_t* window = nullptr;
  std::vector<std::int32_t> stop;
  pcr::DrawOptions o;
};

template <typename T>
SampleArgs<T> sample_args(idx S, idx L, idx H, idx V, py::array& state, py::array& logits,
                          py::array& out, double temperature, idx top_k, double top_p,
                          const py::object& stop, const py::object& window, py::array& live,
                          const Mem& params) {
  SampleArgs<T> a;
  if (out.ndim() != 2) throw py::value_error("out must be 2-D [rows, length]");
  a.B = out.shape(0);
  a.n = out.shape(1);
  if (a.B < 1) throw py::value_error("out must have at least one row");
  a.state = out_ptr<T>(state, "state", {S, L, a.B, H});
  a.logits = out_ptr<T>(logits, "logits", {a.B, V});
  a.out = out_ptr<std::int32_t>(out, "out", {a.B, a.n});
  a.live = out_ptr<std::uint8_t>(live, "live", {a.B});
  a.o = draw_options(temperature, top_k, top_p);
  a.stop = stop_ids(stop, V);
  a.m = static_cast<idx>(a.stop.size());
  a.window = stop_window(window, a.B, a.m);
  check_disjoint({mem(state, "state"), mem(logits, "logits"), mem(out, "out"),
                  mem(live, "live"), flat("window", a.window, a.window ? a.B * a.m : 0)},
                 {params});
  return a;
}

// beam_search's options and arrays: logits [V], state [S, L, 1, H].
template <typename T>
struct BeamArgs {
  const T* logits = nullptr;
  const T* state = nullptr;
  std::vector<std::int32_t> stop, context;
  pcr::Repeats rep;
};

template <typename T>
BeamArgs<T> beam_args(idx S, idx L, idx H, idx V, py::array& logits, py::array& state,
                      idx length, idx beam_width, double length_penalty,
                      const py::object& stop, const py::object& context,
                      idx no_repeat_ngram_size, double repetition_penalty,
                      idx penalty_ngram_size) {
  if (length < 0) throw py::value_error("length must be >= 0");
  if (beam_width < 1) throw py::value_error("beam_width must be >= 1");
  if (!std::isfinite(length_penalty)) throw py::value_error("length_penalty must be finite");
  if (no_repeat_ngram_size < 0) throw py::value_error("no_repeat_ngram_size must be >= 0");
  if (!(std::isfinite(repetition_penalty) && repetition_penalty > 0))
    throw py::value_error("repetition_penalty must be finite and > 0");
  if (penalty_ngram_size < 1) throw py::value_error("penalty_ngram_size must be >= 1");
  BeamArgs<T> a;
  a.context = id_list(context, V, "context", true);
  a.rep.context = a.context.data();
  a.rep.context_len = static_cast<idx>(a.context.size());
  a.rep.no_repeat = no_repeat_ngram_size;
  a.rep.penalty = repetition_penalty;
  a.rep.penalty_size = penalty_ngram_size;
  a.logits = in_ptr<T>(logits, "logits", {V});
  a.state = in_ptr<T>(state, "state", {S, L, 1, H});
  a.stop = stop_ids(stop, V);
  return a;
}

// Runs search(best, &len, &score, &logp) with the GIL released and returns
// (ids, score, log-probability) as beam_search gives them to Python.
template <typename Search>
py::tuple beam_result(idx length, Search&& search) {
  py::array_t<std::int32_t> best(static_cast<py::ssize_t>(length));
  std::int32_t* bp = best.mutable_data();
  idx n = 0;
  double score = 0, logp = 0;
  {
    py::gil_scoped_release nogil;
    search(bp, &n, &score, &logp);
  }
  py::array_t<std::int32_t> found(static_cast<py::ssize_t>(n), bp);
  return py::make_tuple(found, score, logp);
}

}  // namespace bind
}  // namespace pcr
