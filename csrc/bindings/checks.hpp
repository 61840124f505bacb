// Every check the bindings make on what Python passes, in one place.
//
// Arrays are checked for dtype, shape, C order, alignment and (for what the
// C++ writes) writeability, and never converted: an array the C++ writes must
// be exactly right, so no write can land in a silent copy. A failed check
// raises TypeError (wrong dtype or type) or ValueError (anything else) naming
// the argument, before any kernel touches memory.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "common.hpp"
#include "dropout.hpp"

namespace pcr {
namespace bind {

namespace py = pybind11;

constexpr int kAligned = 0x0100;  // NPY_ARRAY_ALIGNED

// "(2, 3)", "(4,)": numbers joined with std::to_string, not an ostringstream. An
// iostream's locale machinery crashed (SIGSEGV in num_put) in a build on a GPU
// machine's image whose link gave the module its own copy of libstdc++'s
// iostreams; plain strings cannot.
inline std::string joined(const std::vector<idx>& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out;
}

inline std::string shape_str(const std::vector<idx>& s) {
  return "(" + joined(s) + (s.size() == 1 ? ",)" : ")");
}

inline std::vector<idx> shape_of(const py::array& a) {
  std::vector<idx> s;
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s.push_back(a.shape(i));
  return s;
}

template <typename T>
const char* type_name() {
  return std::is_same<T, float>::value          ? "float32"
         : std::is_same<T, double>::value       ? "float64"
         : std::is_same<T, std::int32_t>::value ? "int32"
         : std::is_same<T, std::uint8_t>::value ? "uint8"
                                                : "?";
}

// a: dtype T, exactly `shape`, C-contiguous, aligned, and writeable if `writes`.
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

// The data of an array the call reads / writes, checked.
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

// Whether the first array is float64 (the module functions that take either
// dtype dispatch on it; the float32 path then checks every dtype exactly).
inline bool is_f64(const py::array& a) { return py::isinstance<py::array_t<double>>(a); }

// Memory an array covers, for the overlap checks below.
struct Mem {
  const char* name;
  const void* p;
  idx bytes;
};
inline Mem mem(const py::array& a, const char* name) { return {name, a.data(), a.nbytes()}; }

// A flat buffer p [n] (null: none).
template <typename T>
Mem flat(const char* name, const T* p, idx n) {
  return {name, p, n * static_cast<idx>(sizeof(T))};
}

// An output array that may be None: its data (null for None) and the memory
// it covers (for check_disjoint).
template <typename T>
std::pair<T*, Mem> optional_out(const py::object& o, const char* name,
                                const std::vector<idx>& shape) {
  if (o.is_none()) return {nullptr, Mem{name, nullptr, 0}};
  if (!py::isinstance<py::array>(o))
    throw py::type_error(std::string(name) + " must be a numpy array or None");
  py::array a = py::reinterpret_borrow<py::array>(o);
  return {out_ptr<T>(a, name, shape), mem(a, name)};
}

// A flat buffer [n] that is None when the configuration does not use it
// (the optimizers' state); `needed`: None is refused.
template <typename T>
T* opt_buf(py::object a, const char* name, idx n, bool needed) {
  if (a.is_none()) {
    if (needed) throw py::value_error(std::string(name) + " is required");
    return nullptr;
  }
  if (!py::isinstance<py::array>(a))
    throw py::type_error(std::string(name) + " must be a numpy array or None");
  py::array arr = py::reinterpret_borrow<py::array>(a);
  return out_ptr<T>(arr, name, {n});
}

inline bool overlap(const Mem& a, const Mem& b) {
  if (a.bytes <= 0 || b.bytes <= 0) return false;
  const auto pa = reinterpret_cast<std::uintptr_t>(a.p), pb = reinterpret_cast<std::uintptr_t>(b.p);
  return pa < pb + static_cast<std::uintptr_t>(b.bytes) &&
         pb < pa + static_cast<std::uintptr_t>(a.bytes);
}

// What a call writes must share no memory with anything else it is given:
// kernels read inputs after writing outputs, so an overlap would give a
// silently wrong result. Null entries (optional buffers) are skipped.
inline void check_disjoint(std::initializer_list<Mem> writes, std::initializer_list<Mem> reads) {
  for (auto i = writes.begin(); i != writes.end(); ++i) {
    if (!i->p) continue;
    for (auto j = i + 1; j != writes.end(); ++j)
      if (j->p && overlap(*i, *j))
        throw py::value_error(std::string(i->name) + " and " + j->name +
                              " must not share memory");
    for (const Mem& r : reads)
      if (r.p && overlap(*i, r))
        throw py::value_error(std::string(i->name) + " and " + r.name +
                              " must not share memory");
  }
}

// state_in and state_out may be one array (the state is updated in place);
// any other overlap is refused.
inline Mem state_in_mem(const py::array& s0, const py::array& s1) {
  if (s0.data() == s1.data()) return {"state_in", nullptr, 0};
  return mem(s0, "state_in");
}

// Every id of p (C order, extents `shape`) in [0, V), or ValueError naming
// the first that is not: name[i, j, ...] = value.
inline void check_id_values(const std::int32_t* p, const std::vector<idx>& shape,
                            const char* name, idx V) {
  idx n = 1;
  for (idx s : shape) n *= s;
  for (idx i = 0; i < n; ++i)
    if (p[i] < 0 || p[i] >= V) {
      std::vector<idx> at(shape.size());
      for (size_t d = shape.size(), r = static_cast<size_t>(i); d-- > 0;) {
        at[d] = static_cast<idx>(r % static_cast<size_t>(shape[d]));
        r /= static_cast<size_t>(shape[d]);
      }
      throw py::value_error(std::string(name) + "[" + joined(at) + "] = " +
                            std::to_string(p[i]) + " is not a token id: ids must be in [0, " +
                            std::to_string(V) + ")");
    }
}

// Token ids: int32 [B, T] with 0 <= id < V. Returns (B, T).
inline std::pair<idx, idx> check_ids(const py::array& a, const char* name, idx V) {
  if (a.ndim() != 2) throw py::value_error(std::string(name) + " must be 2-D [batch, time]");
  const idx B = a.shape(0), Tn = a.shape(1);
  if (B < 1 || Tn < 1) throw py::value_error(std::string(name) + " must not be empty");
  check_id_values(in_ptr<std::int32_t>(a, name, {B, Tn}), {B, Tn}, name, V);
  return {B, Tn};
}

// x and y: token ids of the same shape [B, T]. Returns (B, T).
inline std::pair<idx, idx> check_xy(const py::array& x, const py::array& y, idx V) {
  const auto xs = check_ids(x, "x", V);
  const auto ys = check_ids(y, "y", V);
  if (xs != ys) throw py::value_error("y must have the same shape as x");
  return xs;
}

// Optional ids: None (no ids), or int32 [m] of token ids (m >= 1 unless
// empty is allowed), named `name` in errors.
inline std::vector<std::int32_t> id_list(const py::object& ids, idx V, const std::string& name,
                                         bool allow_empty) {
  std::vector<std::int32_t> out;
  if (ids.is_none()) return out;
  if (!py::isinstance<py::array>(ids))
    throw py::type_error(name + " must be a numpy array or None");
  py::array a = py::reinterpret_borrow<py::array>(ids);
  if (a.ndim() != 1 || (a.shape(0) < 1 && !allow_empty))
    throw py::value_error(name + (allow_empty ? " must be 1-D" : " must be 1-D and not empty"));
  const std::int32_t* p = in_ptr<std::int32_t>(a, name.c_str(), {a.shape(0)});
  for (idx i = 0; i < a.shape(0); ++i) {
    if (p[i] < 0 || p[i] >= V) throw py::value_error(name + " holds ids outside [0, vocab_size)");
    out.push_back(p[i]);
  }
  return out;
}

// Optional stop ids: None, or int32 [m] (m >= 1) of token ids.
inline std::vector<std::int32_t> stop_ids(const py::object& stop, idx V) {
  return id_list(stop, V, "stop", false);
}

// trace's outputs for x [B, Tn]: hidden [L, B, Tn, H], cell [L, B, Tn, H]
// (an array for an LSTM, else None), gates [L, B, Tn, G*H] (an array unless
// G == 1), logits [B, Tn, V]; `mems` what they cover, for check_disjoint.
template <typename T>
struct TraceOut {
  T *hidden, *cell, *gates, *logits;
  Mem mems[4];
};

template <typename T>
std::pair<T*, Mem> trace_out(const py::object& o, const char* name, bool wanted,
                             const std::vector<idx>& shape) {
  if (o.is_none() == wanted)
    throw py::value_error(std::string(name) + (wanted ? " must be an array" : " must be None") +
                          " for this cell");
  return optional_out<T>(o, name, shape);
}

template <typename T>
TraceOut<T> trace_outputs(idx L, idx H, idx G, idx V, bool lstm, idx B, idx Tn,
                          py::array& hidden, const py::object& cell, const py::object& gates,
                          py::array& logits) {
  TraceOut<T> o;
  o.hidden = out_ptr<T>(hidden, "hidden", {L, B, Tn, H});
  o.logits = out_ptr<T>(logits, "logits", {B, Tn, V});
  auto [ce, cm] = trace_out<T>(cell, "cell", lstm, {L, B, Tn, H});
  auto [ga, gm] = trace_out<T>(gates, "gates", G > 1, {L, B, Tn, G * H});
  o.cell = ce;
  o.gates = ga;
  o.mems[0] = mem(hidden, "hidden");
  o.mems[1] = mem(logits, "logits");
  o.mems[2] = cm;
  o.mems[3] = gm;
  return o;
}

// The regularisers' rates, each in [0, 1); input and embedding dropout only
// with an embedding.
inline pcr::Dropouts dropouts(idx E, double dropout, double input_dropout,
                              double output_dropout, double weight_drop,
                              double embedding_dropout, bool locked_dropout) {
  const std::pair<const char*, double> rates[] = {
      {"dropout", dropout}, {"input_dropout", input_dropout},
      {"output_dropout", output_dropout}, {"weight_drop", weight_drop},
      {"embedding_dropout", embedding_dropout}};
  for (const auto& [name, p] : rates)
    if (!(p >= 0.0 && p < 1.0)) throw py::value_error(std::string(name) + " must be in [0, 1)");
  if (E == 0 && input_dropout > 0)
    throw py::value_error("input_dropout needs an embedding (embedding_dim > 0)");
  if (E == 0 && embedding_dropout > 0)
    throw py::value_error("embedding_dropout needs an embedding (embedding_dim > 0)");
  pcr::Dropouts d;
  d.between = dropout;
  d.input = input_dropout;
  d.output = output_dropout;
  d.weight = weight_drop;
  d.embedding = embedding_dropout;
  d.locked = locked_dropout;
  return d;
}

}  // namespace bind
}  // namespace pcr
