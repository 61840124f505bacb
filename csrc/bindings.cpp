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

#include "gemm_ref.hpp"
#include "model.hpp"
#include "sampling.hpp"
#include "train_loop.hpp"
#include "dispatch.hpp"
#if PYCHARRNN_HAVE_CUDA
#include "cuda/cuda.hpp"
#endif

namespace py = pybind11;
using pcr::idx;

namespace {

constexpr int kAligned = 0x0100;  // NPY_ARRAY_ALIGNED
constexpr int kMaxThreads = 1024;  // far beyond any useful count; more could exhaust the OS

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
         : std::is_same<T, std::uint8_t>::value ? "uint8"
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

// Memory an array covers, for the overlap checks below.
struct Mem {
  const char* name;
  const void* p;
  idx bytes;
};
Mem mem(const py::array& a, const char* name) { return {name, a.data(), a.nbytes()}; }

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

bool overlap(const Mem& a, const Mem& b) {
  if (a.bytes <= 0 || b.bytes <= 0) return false;
  const auto pa = reinterpret_cast<std::uintptr_t>(a.p), pb = reinterpret_cast<std::uintptr_t>(b.p);
  return pa < pb + static_cast<std::uintptr_t>(b.bytes) &&
         pb < pa + static_cast<std::uintptr_t>(a.bytes);
}

// What a call writes must share no memory with anything else it is given:
// kernels read inputs after writing outputs, so an overlap would give a
// silently wrong result. Null entries (optional buffers) are skipped.
void check_disjoint(std::initializer_list<Mem> writes, std::initializer_list<Mem> reads) {
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
Mem state_in_mem(const py::array& s0, const py::array& s1) {
  if (s0.data() == s1.data()) return {"state_in", nullptr, 0};
  return mem(s0, "state_in");
}

// Every id of p (C order, extents `shape`) in [0, V), or ValueError naming
// the first that is not: name[i, j, ...] = value.
void check_id_values(const std::int32_t* p, const std::vector<idx>& shape, const char* name,
                     idx V) {
  idx n = 1;
  for (idx s : shape) n *= s;
  for (idx i = 0; i < n; ++i)
    if (p[i] < 0 || p[i] >= V) {
      std::vector<idx> at(shape.size());
      for (size_t d = shape.size(), r = static_cast<size_t>(i); d-- > 0;) {
        at[d] = static_cast<idx>(r % static_cast<size_t>(shape[d]));
        r /= static_cast<size_t>(shape[d]);
      }
      std::ostringstream o;
      o << name << "[";
      for (size_t d = 0; d < at.size(); ++d) o << (d ? ", " : "") << at[d];
      o << "] = " << p[i] << " is not a token id: ids must be in [0, " << V << ")";
      throw py::value_error(o.str());
    }
}

// Token ids: int32 [B, T] with 0 <= id < V. Returns (B, T).
std::pair<idx, idx> check_ids(const py::array& a, const char* name, idx V) {
  if (a.ndim() != 2) throw py::value_error(std::string(name) + " must be 2-D [batch, time]");
  const idx B = a.shape(0), Tn = a.shape(1);
  if (B < 1 || Tn < 1) throw py::value_error(std::string(name) + " must not be empty");
  check_id_values(in_ptr<std::int32_t>(a, name, {B, Tn}), {B, Tn}, name, V);
  return {B, Tn};
}

// x and y: token ids of the same shape [B, T]. Returns (B, T).
std::pair<idx, idx> check_xy(const py::array& x, const py::array& y, idx V) {
  const auto xs = check_ids(x, "x", V);
  const auto ys = check_ids(y, "y", V);
  if (xs != ys) throw py::value_error("y must have the same shape as x");
  return xs;
}

// Optional stop ids: None, or int32 [m] (m >= 1) of token ids.
std::vector<std::int32_t> stop_ids(const py::object& stop, idx V) {
  std::vector<std::int32_t> out;
  if (stop.is_none()) return out;
  if (!py::isinstance<py::array>(stop)) throw py::type_error("stop must be a numpy array or None");
  py::array a = py::reinterpret_borrow<py::array>(stop);
  if (a.ndim() != 1 || a.shape(0) < 1) throw py::value_error("stop must be 1-D and not empty");
  const std::int32_t* p = in_ptr<std::int32_t>(a, "stop", {a.shape(0)});
  for (idx i = 0; i < a.shape(0); ++i) {
    if (p[i] < 0 || p[i] >= V) throw py::value_error("stop holds ids outside [0, vocab_size)");
    out.push_back(p[i]);
  }
  return out;
}

pcr::DrawOptions draw_options(double temperature, idx top_k, double top_p) {
  if (!(temperature >= 0) || !std::isfinite(temperature))
    throw py::value_error("temperature must be finite and >= 0");
  if (top_k < 0) throw py::value_error("top_k must be >= 0 (0: off)");
  if (!(top_p > 0 && top_p <= 1)) throw py::value_error("top_p must be in (0, 1]");
  return pcr::DrawOptions{temperature, top_k, top_p};
}

// Optimizer entry points: params, grads and state buffers are flat [n] of one
// dtype; an optional buffer is None when the configuration does not use it.
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

// An optimizer description from optim.py's Optimizer._fused_spec(): kind,
// step, hyper-parameters (missing ones: 0) and up to three buffers.
template <typename T>
pcr::OptSpec<T> opt_spec(const py::dict& d, idx n) {
  pcr::OptSpec<T> o;
  auto num = [&](const char* k) { return d.contains(k) ? d[k].cast<double>() : 0.0; };
  auto flag = [&](const char* k) { return d.contains(k) && d[k].cast<bool>(); };
  for (const char* k : {"kind", "step", "buffers"})
    if (!d.contains(k)) throw py::value_error(std::string("optimizer: no '") + k + "'");
  const int kind = d["kind"].cast<int>();
  if (kind < 0 || kind > 3) throw py::value_error("optimizer kind must be 0..3");
  o.kind = static_cast<pcr::OptKind>(kind);
  o.step = d["step"].cast<long long>();
  using S = pcr::OptSpec<T>;
  const std::pair<const char*, double S::*> reals[] = {
      {"clip_norm", &S::clip_norm}, {"clip_value", &S::clip_value},
      {"weight_decay", &S::weight_decay}, {"momentum", &S::momentum},
      {"dampening", &S::dampening}, {"lr_decay", &S::lr_decay}, {"eps", &S::eps},
      {"alpha", &S::alpha}, {"beta1", &S::beta1}, {"beta2", &S::beta2}};
  for (const auto& [key, field] : reals) o.*field = num(key);
  const std::pair<const char*, bool S::*> flags[] = {
      {"nesterov", &S::nesterov}, {"eps_inside", &S::eps_inside}, {"centered", &S::centered},
      {"decoupled", &S::decoupled}, {"amsgrad", &S::amsgrad}};
  for (const auto& [key, field] : flags) o.*field = flag(key);
  if (!(o.clip_norm >= 0) || !(o.clip_value >= 0) || !(o.weight_decay >= 0))
    throw py::value_error("clip_norm, clip_value and weight_decay must be >= 0");
  const bool needed[4][3] = {{o.momentum != 0, false, false},
                             {true, false, false},
                             {true, o.centered, o.momentum > 0},
                             {true, true, o.amsgrad}};
  py::list bufs = d["buffers"].cast<py::list>();
  if (bufs.size() != 3) throw py::value_error("optimizer buffers: a list of three");
  const char* names[3] = {"buffer 0", "buffer 1", "buffer 2"};
  T* ptrs[3];
  for (int i = 0; i < 3; ++i) ptrs[i] = opt_buf<T>(bufs[i], names[i], n, needed[kind][i]);
  o.buf0 = ptrs[0];
  o.buf1 = ptrs[1];
  o.buf2 = ptrs[2];
  if (o.kind == pcr::OptKind::ADAM && !(o.beta1 < 1 && o.beta2 < 1))
    throw py::value_error("betas must be < 1");
  return o;
}

template <typename T>
void bind_model(py::module_& m, const char* cls) {
  using M = pcr::Model<T>;
  py::class_<M>(m, cls,
                "The model in one precision: forward, loss and forward_backward over a flat "
                "parameter buffer the caller owns (pycharrnn.CharRNN wraps it).")
      .def(py::init([](int cell, idx V, idx E, idx H, idx L, double dropout, double input_dropout,
                       double output_dropout, double weight_drop, double embedding_dropout,
                       bool locked_dropout) {
             if (cell < 0 || cell > 3) throw py::value_error("cell must be 0..3");
             if (V < 1) throw py::value_error("vocab_size must be >= 1");
             if (H < 1) throw py::value_error("hidden_size must be >= 1");
             if (L < 1) throw py::value_error("num_layers must be >= 1");
             if (E < 0) throw py::value_error("embedding_dim must be >= 0 (0: one-hot)");
             const std::pair<const char*, double> rates[] = {
                 {"dropout", dropout}, {"input_dropout", input_dropout},
                 {"output_dropout", output_dropout}, {"weight_drop", weight_drop},
                 {"embedding_dropout", embedding_dropout}};
             for (const auto& [name, p] : rates)
               if (!(p >= 0.0 && p < 1.0))
                 throw py::value_error(std::string(name) + " must be in [0, 1)");
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
             return new M(static_cast<pcr::CellKind>(cell), V, E, H, L, d);
           }),
           py::arg("cell"), py::arg("vocab_size"), py::arg("embedding_dim"),
           py::arg("hidden_size"), py::arg("num_layers"), py::arg("dropout") = 0.0,
           py::kw_only(), py::arg("input_dropout") = 0.0, py::arg("output_dropout") = 0.0,
           py::arg("weight_drop") = 0.0, py::arg("embedding_dropout") = 0.0,
           py::arg("locked_dropout").noconvert() = false,
           "A model's layout and workspace (the parameters live in the caller's flat "
           "buffer). cell: 0 rnn-tanh, 1 rnn-relu, 2 gru, 3 lstm; embedding_dim 0: one-hot. "
           "Regularisers, all inverted and active only with train=True: dropout on the input "
           "of layers 1..L-1, input_dropout on the embedded input, output_dropout before the "
           "decoder (locked_dropout: these three draw one mask per sequence, shared by its "
           "steps), weight_drop (DropConnect on each weight_hh, one mask per call) and "
           "embedding_dropout (whole rows of the embedding table, one mask per call).")
      .def_property_readonly("num_params", &M::num_params, "length of the flat buffers")
      .def_property_readonly("state_slots", &M::state_slots,
                             "S of a state [S, L, B, H]: 2 for the LSTM (h, c), else 1")
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
             const auto [lo, lm] = optional_out<T>(logits, "logits", {B, Tn, self.V});
             check_disjoint({mem(state_out, "state_out"), lm},
                            {mem(params, "params"), mem(x, "x"),
                             state_in_mem(state_in, state_out)});
             const auto* xp = static_cast<const std::int32_t*>(x.data());
             py::gil_scoped_release nogil;
             pcr::DenormalsGuard flush;
             self.forward(P, xp, B, Tn, s0, s1, lo, train, seed);
           },
           py::arg("params"), py::arg("x"), py::arg("state_in"), py::arg("state_out"),
           py::arg("logits"), py::kw_only(), py::arg("train").noconvert() = false,
           py::arg("seed") = 0,
           "Forward pass: ids x [B, T] from state_in [S, L, B, H]; writes state_out and, "
           "unless it is None, logits [B, T, V]. train: the regularisers, with masks from seed.")
      .def("loss",
           [](M& self, py::array params, py::array x, py::array y, py::array state_in,
              py::array state_out, bool train, std::uint64_t seed, py::object stream_loss) {
             const auto [B, Tn] = check_xy(x, y, self.V);
             const std::vector<idx> ss{self.state_slots(), self.L, B, self.H};
             const T* P = in_ptr<T>(params, "params", {self.num_params()});
             const T* s0 = in_ptr<T>(state_in, "state_in", ss);
             T* s1 = out_ptr<T>(state_out, "state_out", ss);
             const auto [sl, sm] = optional_out<double>(stream_loss, "stream_loss", {B});
             check_disjoint({mem(state_out, "state_out"), sm},
                            {mem(params, "params"), mem(x, "x"), mem(y, "y"),
                             state_in_mem(state_in, state_out)});
             const auto* xp = static_cast<const std::int32_t*>(x.data());
             const auto* yp = static_cast<const std::int32_t*>(y.data());
             py::gil_scoped_release nogil;
             pcr::DenormalsGuard flush;
             return self.loss(P, xp, yp, B, Tn, s0, s1, train, seed, sl);
           },
           py::arg("params"), py::arg("x"), py::arg("y"), py::arg("state_in"),
           py::arg("state_out"), py::kw_only(), py::arg("train").noconvert() = false,
           py::arg("seed") = 0, py::arg("stream_loss") = py::none(),
           "Mean cross-entropy (nats) of predicting y [B, T] from x [B, T]; state_out "
           "receives the final state, stream_loss (float64 [B] or None) each row's sum.")
      .def("trace",
           [](M& self, py::array params, py::array x, py::array state_in, py::array state_out,
              py::array hidden, py::object cell, py::object gates, py::array logits) {
             const auto [B, Tn] = check_ids(x, "x", self.V);
             const std::vector<idx> ss{self.state_slots(), self.L, B, self.H};
             const idx GH = self.G * self.H;
             const T* P = in_ptr<T>(params, "params", {self.num_params()});
             const T* s0 = in_ptr<T>(state_in, "state_in", ss);
             T* s1 = out_ptr<T>(state_out, "state_out", ss);
             T* hi = out_ptr<T>(hidden, "hidden", {self.L, B, Tn, self.H});
             T* lo = out_ptr<T>(logits, "logits", {B, Tn, self.V});
             // cell: an array for an LSTM, else None; gates: an array unless G == 1.
             auto optional = [&](const py::object& o, const char* name, bool wanted,
                                 const std::vector<idx>& shape) {
               if (o.is_none() == wanted)
                 throw py::value_error(std::string(name) +
                                       (wanted ? " must be an array" : " must be None") +
                                       " for this cell");
               return optional_out<T>(o, name, shape);
             };
             auto [ce, cm] = optional(cell, "cell", self.state_slots() == 2,
                                      {self.L, B, Tn, self.H});
             auto [ga, gm] = optional(gates, "gates", self.G > 1, {self.L, B, Tn, GH});
             check_disjoint({mem(state_out, "state_out"), mem(hidden, "hidden"),
                             mem(logits, "logits"), cm, gm},
                            {mem(params, "params"), mem(x, "x"),
                             state_in_mem(state_in, state_out)});
             const auto* xp = static_cast<const std::int32_t*>(x.data());
             py::gil_scoped_release nogil;
             pcr::DenormalsGuard flush;
             self.trace(P, xp, B, Tn, s0, s1, hi, ce, ga, lo);
           },
           py::arg("params"), py::arg("x"), py::arg("state_in"), py::arg("state_out"),
           py::arg("hidden"), py::arg("cell"), py::arg("gates"), py::arg("logits"),
           "Evaluation-mode forward that keeps every step: hidden [L, B, T, H], cell "
           "[L, B, T, H] (LSTM, else None), gates [L, B, T, G*H] (GRU r,z,n; LSTM i,f,g,o; "
           "None for a vanilla RNN), logits [B, T, V]; state_out the final state.")
      .def("gradient_flow",
           [](M& self, py::array params, py::array grads, py::array x, py::array y,
              py::array state_in, py::array norms) {
             const auto [B, Tn] = check_xy(x, y, self.V);
             const std::vector<idx> ss{self.state_slots(), self.L, B, self.H};
             const T* P = in_ptr<T>(params, "params", {self.num_params()});
             T* Gr = out_ptr<T>(grads, "grads", {self.num_params()});
             const T* s0 = in_ptr<T>(state_in, "state_in", ss);
             double* no = out_ptr<double>(norms, "norms", {self.L, Tn});
             check_disjoint({mem(grads, "grads"), mem(norms, "norms")},
                            {mem(params, "params"), mem(x, "x"), mem(y, "y"),
                             mem(state_in, "state_in")});
             const auto* xp = static_cast<const std::int32_t*>(x.data());
             const auto* yp = static_cast<const std::int32_t*>(y.data());
             py::gil_scoped_release nogil;
             pcr::DenormalsGuard flush;
             return self.gradient_flow(P, Gr, xp, yp, B, Tn, s0, no);
           },
           py::arg("params"), py::arg("grads"), py::arg("x"), py::arg("y"),
           py::arg("state_in"), py::arg("norms"),
           "The loss of the last step only (mean over the B rows); grads receives its "
           "gradient and norms (float64 [L, T]) || d loss / d h_t || of every layer and step.")
      .def("forward_backward",
           [](M& self, py::array params, py::array grads, py::array x, py::array y,
              py::array state_in, py::array state_out, py::array dstate, bool train,
              std::uint64_t seed, idx first_row, idx total_rows) {
             const auto [B, Tn] = check_xy(x, y, self.V);
             if (total_rows < 0 || (total_rows == 0 && first_row != 0))
               throw py::value_error("total_rows must be >= 1 when first_row is given, got " +
                                     std::to_string(total_rows));
             if (total_rows != 0 && (first_row < 0 || first_row > total_rows - B))
               throw py::value_error("first_row=" + std::to_string(first_row) +
                                     " and total_rows=" + std::to_string(total_rows) +
                                     " do not hold the " + std::to_string(B) + " rows of x");
             const std::vector<idx> ss{self.state_slots(), self.L, B, self.H};
             const T* P = in_ptr<T>(params, "params", {self.num_params()});
             T* Gr = out_ptr<T>(grads, "grads", {self.num_params()});
             const T* s0 = in_ptr<T>(state_in, "state_in", ss);
             T* s1 = out_ptr<T>(state_out, "state_out", ss);
             T* ds = out_ptr<T>(dstate, "dstate", ss);
             check_disjoint({mem(grads, "grads"), mem(state_out, "state_out"),
                             mem(dstate, "dstate")},
                            {mem(params, "params"), mem(x, "x"), mem(y, "y"),
                             state_in_mem(state_in, state_out)});
             const auto* xp = static_cast<const std::int32_t*>(x.data());
             const auto* yp = static_cast<const std::int32_t*>(y.data());
             py::gil_scoped_release nogil;
             pcr::DenormalsGuard flush;
             return self.forward_backward(P, Gr, xp, yp, B, Tn, s0, s1, ds, train, seed,
                                          {first_row, total_rows});
           },
           py::arg("params"), py::arg("grads"), py::arg("x"), py::arg("y"),
           py::arg("state_in"), py::arg("state_out"), py::arg("dstate"), py::kw_only(),
           py::arg("train").noconvert() = true, py::arg("seed") = 0, py::arg("first_row") = 0,
           py::arg("total_rows") = 0,
           "Loss (mean nats) and every gradient: grads [num_params] (overwritten), "
           "dstate = d loss / d state_in; state_out receives the final state. "
           "first_row, total_rows: x holds these rows of a larger batch (data-parallel "
           "training), whose dropout masks they get; total_rows 0: x is the batch.")
      .def("sample",
           [](M& self, py::array params, py::array state, py::array logits, py::array out,
              double temperature, idx top_k, double top_p, std::uint64_t seed,
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
             std::int32_t* win = nullptr;
             if (m > 0) {
               if (!py::isinstance<py::array>(window))
                 throw py::type_error("window must be an int32 array [rows, len(stop)]");
               py::array wa = py::reinterpret_borrow<py::array>(window);
               win = out_ptr<std::int32_t>(wa, "window", {B, m});
             }
             check_disjoint({mem(state, "state"), mem(logits, "logits"), mem(out, "out"),
                             mem(live, "live"),
                             {"window", win, win ? B * m * idx(sizeof(std::int32_t)) : 0}},
                            {mem(params, "params")});
             py::gil_scoped_release nogil;
             pcr::DenormalsGuard flush;
             return pcr::sample_loop(self, P, st, lo, B, n, o, opts, seed, position,
                                     uniform_first, sid.data(), m, win, lv, feed_last);
           },
           py::arg("params"), py::arg("state"), py::arg("logits"), py::arg("out"),
           py::kw_only(), py::arg("temperature") = 1.0, py::arg("top_k") = 0,
           py::arg("top_p") = 1.0, py::arg("seed") = 0, py::arg("position") = 0,
           py::arg("uniform_first").noconvert() = false, py::arg("stop") = py::none(),
           py::arg("window") = py::none(), py::arg("live"),
           py::arg("feed_last").noconvert() = true,
           "Generate up to out.shape[1] ids for each row of out [B, n] in one call: draw "
           "from logits [B, V] (temperature, top_k, top_p; the uniform number of row b at "
           "position i of its sample is hash_uniform(seed, b, i)), feed the ids back "
           "through the model from state [S, L, B, H]. state and logits are updated to "
           "continue; stop (int32 ids), window [B, len(stop)] and live [B] (uint8) carry "
           "each row's stop matching; a stopped row's further ids are -1. Returns the "
           "steps made (fewer than n when every row stopped).")
      .def("train_steps",
           [](M& self, py::array params, py::array grads, py::array xs, py::array ys,
              py::array state, py::object seeds, py::array lrs, py::array losses,
              py::array norms, py::dict optimizer) {
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
             const std::uint64_t* sd = nullptr;
             if (!seeds.is_none()) {
               py::array sa = py::reinterpret_borrow<py::array>(seeds);
               if (!py::isinstance<py::array_t<std::uint64_t>>(sa))
                 throw py::type_error("seeds must be a uint64 array or None");
               if (sa.ndim() != 1 || sa.shape(0) != K || !(sa.flags() & py::array::c_style))
                 throw py::value_error("seeds must be a contiguous array [steps]");
               sd = static_cast<const std::uint64_t*>(sa.data());
             }
             for (idx k = 0; k < K; ++k)
               if (!(lr[k] >= 0) || !std::isfinite(lr[k]))
                 throw py::value_error("learning rates must be finite and >= 0");
             pcr::OptSpec<T> opt = opt_spec<T>(optimizer, n);
             const idx nb = n * idx(sizeof(T));
             check_disjoint({mem(params, "params"), mem(grads, "grads"), mem(state, "state"),
                             mem(losses, "losses"), mem(norms, "norms"),
                             {"buffer 0", opt.buf0, opt.buf0 ? nb : 0},
                             {"buffer 1", opt.buf1, opt.buf1 ? nb : 0},
                             {"buffer 2", opt.buf2, opt.buf2 ? nb : 0}},
                            {mem(xs, "xs"), mem(ys, "ys"), mem(lrs, "lrs")});
             pcr::StepStatus status;
             idx done;
             {
               py::gil_scoped_release nogil;
               pcr::DenormalsGuard flush;
               done = pcr::train_steps(self, P, Gr, opt, xp, yp, K, B, Tn, st, sd != nullptr,
                                       sd, lr, lo, no, &status);
             }
             return py::make_tuple(done, static_cast<int>(status));
           },
           py::arg("params"), py::arg("grads"), py::arg("xs"), py::arg("ys"), py::arg("state"),
           py::arg("seeds"), py::arg("lrs"), py::arg("losses"), py::arg("norms"),
           py::arg("optimizer"),
           "K training steps in one call (pycharrnn.Trainer's step, K times): chunk k is "
           "xs[k], ys[k] [K, B, T]; the state [S, L, B, H] is carried; seeds (uint64 [K], "
           "or None: no regularisers) and lrs (float64 [K]) per step; losses and norms "
           "(float64 [K]) receive each step's loss and pre-clip gradient norm. optimizer: "
           "a dict from Optimizer._fused_spec(). Returns (steps completed, status: 0 all "
           "done, 1 loss, 2 gradient norm, 3 parameters not finite).")
      .def("beam_search",
           [](M& self, py::array params, py::array logits, py::array state, idx length,
              idx beam_width, double length_penalty, py::object stop) {
             if (length < 0) throw py::value_error("length must be >= 0");
             if (beam_width < 1) throw py::value_error("beam_width must be >= 1");
             if (!std::isfinite(length_penalty))
               throw py::value_error("length_penalty must be finite");
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
                                static_cast<idx>(sid.size()), bp, &n, &score, &logp);
             }
             py::array_t<std::int32_t> found(static_cast<py::ssize_t>(n), bp);
             return py::make_tuple(found, score, logp);
           },
           py::arg("params"), py::arg("logits"), py::arg("state"), py::arg("length"),
           py::arg("beam_width"), py::kw_only(), py::arg("length_penalty") = 0.0,
           py::arg("stop") = py::none(),
           "Beam search from the logits [V] and state [S, L, 1, H] after a prime: (ids, "
           "score, log-probability) of the best continuation of at most length ids; "
           "score = log-probability / len ** length_penalty. stop (int32 ids) ends a "
           "hypothesis.");
}

pcr::GradIn grad_in(double scale, double clip, double weight_decay) {
  if (!(scale >= 0) || !(clip >= 0) || !(weight_decay >= 0))
    throw py::value_error("scale, clip and weight_decay must be >= 0");
  pcr::GradIn g;
  g.scale = scale;
  g.clip = clip;
  g.weight_decay = weight_decay;
  return g;
}

template <typename T>
Mem flat(const char* name, const T* p, idx n) {
  return {name, p, n * static_cast<idx>(sizeof(T))};
}

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
  static void adagrad(py::array params, py::array grads, py::array mem, double clr, double eps,
                      bool eps_inside, double weight_decay, double scale, double clip) {
    const idx n = params.size();
    T* p = out_ptr<T>(params, "params", {n});
    const T* g = in_ptr<T>(grads, "grads", {n});
    T* s = out_ptr<T>(mem, "sum", {n});
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

bool is_f64(const py::array& a) { return py::isinstance<py::array_t<double>>(a); }

py::list isa_available() {
  py::list out;
  for (const char* const* n = pcr::isa_compiled(); *n; ++n)
    if (pcr::isa_supported(*n)) out.append(*n);
  return out;
}

}  // namespace

#if PYCHARRNN_HAVE_CUDA
// The device kernels on host arrays, for the parity tests (tests/test_cuda.py).
template <typename T>
void def_cuda(py::module_& m, const std::string& sfx) {
  auto opt = [](const py::object& o, const char* name, const std::vector<idx>& shape) {
    return optional_out<T>(o, name, shape).first;
  };
  m.def(("cuda_cell_step" + sfx).c_str(),
        [opt](int kind, py::array gates, py::object hp, py::object dhp, py::array hprev,
              py::object h, py::object cprev, py::object c, py::object aux, py::object dh,
              py::object dc, bool backward) {
          if (kind < 0 || kind > 3) throw py::value_error("kind must be 0..3");
          if (!py::isinstance<py::array_t<T>>(gates)) throw py::type_error("dtype");
          const idx G = kind == 2 ? 3 : kind == 3 ? 4 : 1;
          const idx B = gates.ndim() == 2 ? gates.shape(0) : -1;
          const idx H = gates.ndim() == 2 ? gates.shape(1) / G : -1;
          if (B < 1 || H < 1 || gates.shape(1) != G * H)
            throw py::value_error("gates must be [B, G*H]");
          T* g = out_ptr<T>(gates, "gates", {B, G * H});
          const T* hv = in_ptr<T>(hprev, "hprev", {B, H});
          T* pp = opt(hp, "hp", {B, G * H});
          T* qq = opt(dhp, "dhp", {B, G * H});
          T* ho = opt(h, "h", {B, H});
          T* cv = opt(cprev, "cprev", {B, H});
          T* co = opt(c, "c", {B, H});
          T* a = opt(aux, "aux", {B, H});
          T* d = opt(dh, "dh", {B, H});
          T* e = opt(dc, "dc", {B, H});
          py::gil_scoped_release nogil;
          pcr::cuda::cell_step(kind, B, H, backward, g, pp, qq, hv, ho, cv, co, a, d, e);
        },
        py::arg("kind"), py::arg("gates"), py::arg("hp"), py::arg("dhp"), py::arg("hprev"),
        py::arg("h"), py::arg("cprev"), py::arg("c"), py::arg("aux"), py::arg("dh"),
        py::arg("dc"), py::arg("backward"),
        "One cell step (forward, or backward) of every unit on the device, in place on "
        "host arrays, as the CPU's cell kernels (for tests)");
  m.def(("cuda_softmax_xent" + sfx).c_str(),
        [](py::array logits, py::array targets, bool grad) {
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
        },
        py::arg("logits"), py::arg("targets"), py::arg("grad"),
        "Each row's cross-entropy on the device; with grad, logits become d(mean)/d logits");
  m.def(("cuda_adam" + sfx).c_str(),
        [opt](py::array p, py::array g, py::array mm, py::array v, py::object vmax, double lr,
              double b1, double b2, double eps, double scale, double clip, long step) {
          if (!py::isinstance<py::array_t<T>>(p)) throw py::type_error("dtype");
          if (step < 1) throw py::value_error("step must be >= 1");
          const idx n = p.size();
          T* pp = out_ptr<T>(p, "p", {n});
          const T* gg = in_ptr<T>(g, "g", {n});
          T* m1 = out_ptr<T>(mm, "m", {n});
          T* v1 = out_ptr<T>(v, "v", {n});
          T* x = opt(vmax, "vmax", {n});
          py::gil_scoped_release nogil;
          pcr::cuda::adam(n, pp, gg, m1, v1, x, lr, b1, b2, eps, scale, clip, step);
        },
        py::arg("p"), py::arg("g"), py::arg("m"), py::arg("v"), py::arg("vmax"), py::arg("lr"),
        py::arg("b1"), py::arg("b2"), py::arg("eps"), py::arg("scale"), py::arg("clip"),
        py::arg("step"), "One Adam step on the device, in place on host arrays (for tests)");
}
#endif

PYBIND11_MODULE(_core, m) {
  m.doc() = "pycharrnn's C++ core: the model (ModelF32, ModelF64), the optimizer updates "
            "and the kernel-level entry points the tests use. Arrays are checked (dtype, "
            "shape, contiguity, overlaps) before any kernel touches them.";
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const pcr::TooLarge& e) {
      PyErr_SetString(PyExc_MemoryError, e.what());
    }
  });
  bind_model<float>(m, "ModelF32");
  bind_model<double>(m, "ModelF64");
  // Dispatch on the dtype of the first array (float64 or else float32; the
  // float32 path then checks every array's dtype exactly).
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
  m.def("set_num_threads", [](int n) {
    if (n < 1 || n > kMaxThreads)
      throw py::value_error("number of threads must be in [1, " + std::to_string(kMaxThreads) +
                            "], got " + std::to_string(n));
    pcr::set_num_threads(n);
  }, py::arg("n"), "the number of threads every kernel uses (process-wide)");
  m.def("get_num_threads", &pcr::num_threads, "the number of threads the kernels use");
  m.def("set_flush_denormals", &pcr::set_flush_denormals, py::arg("on").noconvert(),
        "whether kernels flush subnormal floats to zero while they run (x86)");
  m.def("get_flush_denormals", &pcr::flush_denormals,
        "whether kernels flush subnormal floats to zero");
  m.def("_thread_fp_modes",
        []() {
          // For the tests: each thread's floating-point mode (MXCSR on
          // x86, 0 elsewhere) in a plain team, outside any kernel.
          const int n = pcr::num_threads();
          std::vector<unsigned> modes(static_cast<size_t>(n), 0);
#ifdef _OPENMP
#pragma omp parallel num_threads(n)
          modes[static_cast<size_t>(omp_get_thread_num())] = pcr::DenormalsGuard::current_mode();
#else
          modes[0] = pcr::DenormalsGuard::current_mode();
#endif
          return modes;
        },
        "each OpenMP thread's floating-point mode outside any kernel (MXCSR on x86; "
        "for the tests)");
  m.def("isa", []() { return std::string(pcr::isa_active()); },
        "the instruction set whose kernels are in use");
  m.def("isa_available", &isa_available,
        "instruction sets compiled in and supported by this CPU, best first");
  m.def("set_isa", [](const std::string& name) {
    if (!pcr::set_isa(name.c_str()))
      throw py::value_error("instruction set '" + name + "' is not available here");
  }, py::arg("name"), "use the kernels of another instruction set (tests, comparisons)");
  m.def("build_info", []() {
    py::dict d;
#ifdef _OPENMP
    d["openmp"] = true;
    d["openmp_version"] = _OPENMP;
#else
    d["openmp"] = false;
#endif
    d["num_threads"] = pcr::num_threads();
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
  }, "how the core was built: openmp, num_threads, simd, native, sanitize, cuda (the CUDA "
     "backend compiled in; with it cuda_devices, the GPUs visible), compiler");
#if PYCHARRNN_HAVE_CUDA
  def_cuda<float>(m, "_f32");  // one name per dtype: the arrays' dtype picks it
  def_cuda<double>(m, "_f64");
#endif
}
