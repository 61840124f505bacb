// ModelF32 / ModelF64: a model's layout and workspace over a flat parameter
// buffer the caller owns, and its forward and backward calls (the loops over
// many steps are in training.cpp and sampling.cpp).
#include <optional>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "bindings/bindings.hpp"
#include "bindings/checks.hpp"

namespace pcr {
namespace bind {
namespace {

template <typename T>
void def_init(ModelClass<T>& c) {
  c.def(py::init([](int cell, idx V, idx E, idx H, idx L, double dropout, double input_dropout,
                    double output_dropout, double weight_drop, double embedding_dropout,
                    bool locked_dropout) {
          if (cell < 0 || cell > 3) throw py::value_error("cell must be 0..3");
          if (V < 1) throw py::value_error("vocab_size must be >= 1");
          if (H < 1) throw py::value_error("hidden_size must be >= 1");
          if (L < 1) throw py::value_error("num_layers must be >= 1");
          if (E < 0) throw py::value_error("embedding_dim must be >= 0 (0: one-hot)");
          const pcr::Dropouts d = dropouts(E, dropout, input_dropout, output_dropout,
                                           weight_drop, embedding_dropout, locked_dropout);
          return new pcr::Model<T>(static_cast<pcr::CellKind>(cell), V, E, H, L, d);
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
        "embedding_dropout (whole rows of the embedding table, one mask per call).");
}

template <typename T>
void def_layout(ModelClass<T>& c) {
  using M = pcr::Model<T>;
  c.def_property_readonly("num_params", &M::num_params, "length of the flat buffers");
  c.def_property_readonly("state_slots", &M::state_slots,
                          "S of a state [S, L, B, H]: 2 for the LSTM (h, c), else 1");
  c.def("layout",
        [](const M& self) {
          py::list out;
          for (const auto& p : self.layout())
            out.append(py::make_tuple(p.name, py::tuple(py::cast(p.shape)), p.offset));
          return out;
        },
        "[(name, shape, offset)] of every parameter in the flat buffer");
}

// What forward, loss, trace, gradient_flow and forward_backward all take,
// checked in this order: the ids x [B, T] (and y [B, T] where the call has
// targets), params [num_params], state_in [S, L, B, H].
template <typename T>
struct Call {
  idx B = 0, Tn = 0;
  std::vector<idx> state_shape;  // [S, L, B, H]
  const T* params = nullptr;
  const std::int32_t* x = nullptr;
  const std::int32_t* y = nullptr;  // null without targets
  const T* state_in = nullptr;
};

template <typename T>
Call<T> model_call(const pcr::Model<T>& m, const py::array& params, const py::array& x,
                   const py::array* y, const py::array& state_in) {
  Call<T> c;
  std::tie(c.B, c.Tn) = y ? check_xy(x, *y, m.V) : check_ids(x, "x", m.V);
  c.state_shape = {m.state_slots(), m.L, c.B, m.H};
  c.params = in_ptr<T>(params, "params", {m.num_params()});
  c.state_in = in_ptr<T>(state_in, "state_in", c.state_shape);
  c.x = static_cast<const std::int32_t*>(x.data());
  if (y) c.y = static_cast<const std::int32_t*>(y->data());
  return c;
}

template <typename T>
void def_forward(ModelClass<T>& c) {
  c.def("forward",
        [](pcr::Model<T>& self, py::array params, py::array x, py::array state_in,
           py::array state_out, py::object logits, bool train, std::uint64_t seed,
           bool sampling) {
          const Call<T> a = model_call<T>(self, params, x, nullptr, state_in);
          T* s1 = out_ptr<T>(state_out, "state_out", a.state_shape);
          const auto [lo, lm] = optional_out<T>(logits, "logits", {a.B, a.Tn, self.V});
          check_disjoint({mem(state_out, "state_out"), lm},
                         {mem(params, "params"), mem(x, "x"), state_in_mem(state_in, state_out)});
          py::gil_scoped_release nogil;
          pcr::DenormalsGuard flush;
          std::optional<pcr::Governed> unit;
          if (sampling)
            unit.emplace(pcr::Governed::Follow{}, pcr::Site::SAMPLE, &self);
          else
            unit.emplace(pcr::Site::LOSS, &self, a.B * 4096 + a.Tn, double(a.B * a.Tn));
          self.forward(a.params, a.x, a.B, a.Tn, a.state_in, s1, lo, train, seed);
        },
        py::arg("params"), py::arg("x"), py::arg("state_in"), py::arg("state_out"),
        py::arg("logits"), py::kw_only(), py::arg("train").noconvert() = false,
        py::arg("seed") = 0, py::arg("sampling").noconvert() = false,
        "Forward pass: ids x [B, T] from state_in [S, L, B, H]; writes state_out and, "
        "unless it is None, logits [B, T, V]. train: the regularisers, with masks from seed. "
        "sampling: a sample's context, run on the team the model's sampling chose, untimed.");
}

template <typename T>
void def_loss(ModelClass<T>& c) {
  c.def("loss",
        [](pcr::Model<T>& self, py::array params, py::array x, py::array y, py::array state_in,
           py::array state_out, bool train, std::uint64_t seed, py::object stream_loss) {
          const Call<T> a = model_call<T>(self, params, x, &y, state_in);
          T* s1 = out_ptr<T>(state_out, "state_out", a.state_shape);
          const auto [sl, sm] = optional_out<double>(stream_loss, "stream_loss", {a.B});
          check_disjoint({mem(state_out, "state_out"), sm},
                         {mem(params, "params"), mem(x, "x"), mem(y, "y"),
                          state_in_mem(state_in, state_out)});
          py::gil_scoped_release nogil;
          pcr::DenormalsGuard flush;
          pcr::Governed unit(pcr::Site::LOSS, &self, a.B * 4096 + a.Tn, double(a.B * a.Tn));
          return self.loss(a.params, a.x, a.y, a.B, a.Tn, a.state_in, s1, train, seed, sl);
        },
        py::arg("params"), py::arg("x"), py::arg("y"), py::arg("state_in"),
        py::arg("state_out"), py::kw_only(), py::arg("train").noconvert() = false,
        py::arg("seed") = 0, py::arg("stream_loss") = py::none(),
        "Mean cross-entropy (nats) of predicting y [B, T] from x [B, T]; state_out "
        "receives the final state, stream_loss (float64 [B] or None) each row's sum.");
}

template <typename T>
void def_trace(ModelClass<T>& c) {
  c.def("trace",
        [](pcr::Model<T>& self, py::array params, py::array x, py::array state_in,
           py::array state_out, py::array hidden, py::object cell, py::object gates,
           py::array logits) {
          const Call<T> a = model_call<T>(self, params, x, nullptr, state_in);
          const idx B = a.B, Tn = a.Tn;
          T* s1 = out_ptr<T>(state_out, "state_out", a.state_shape);
          const auto o = trace_outputs<T>(self.L, self.H, self.G, self.V,
                                          self.state_slots() == 2, B, Tn, hidden, cell, gates,
                                          logits);
          check_disjoint({mem(state_out, "state_out"), o.mems[0], o.mems[1], o.mems[2],
                          o.mems[3]},
                         {mem(params, "params"), mem(x, "x"), state_in_mem(state_in, state_out)});
          py::gil_scoped_release nogil;
          pcr::DenormalsGuard flush;
          self.trace(a.params, a.x, B, Tn, a.state_in, s1, o.hidden, o.cell, o.gates, o.logits);
        },
        py::arg("params"), py::arg("x"), py::arg("state_in"), py::arg("state_out"),
        py::arg("hidden"), py::arg("cell"), py::arg("gates"), py::arg("logits"),
        "Evaluation-mode forward that keeps every step: hidden [L, B, T, H], cell "
        "[L, B, T, H] (LSTM, else None), gates [L, B, T, G*H] (GRU r,z,n; LSTM i,f,g,o; "
        "None for a vanilla RNN), logits [B, T, V]; state_out the final state.");
}

template <typename T>
void def_gradient_flow(ModelClass<T>& c) {
  c.def("gradient_flow",
        [](pcr::Model<T>& self, py::array params, py::array grads, py::array x, py::array y,
           py::array state_in, py::array norms) {
          const Call<T> a = model_call<T>(self, params, x, &y, state_in);
          T* Gr = out_ptr<T>(grads, "grads", {self.num_params()});
          double* no = out_ptr<double>(norms, "norms", {self.L, a.Tn});
          check_disjoint({mem(grads, "grads"), mem(norms, "norms")},
                         {mem(params, "params"), mem(x, "x"), mem(y, "y"),
                          mem(state_in, "state_in")});
          py::gil_scoped_release nogil;
          pcr::DenormalsGuard flush;
          return self.gradient_flow(a.params, Gr, a.x, a.y, a.B, a.Tn, a.state_in, no);
        },
        py::arg("params"), py::arg("grads"), py::arg("x"), py::arg("y"), py::arg("state_in"),
        py::arg("norms"),
        "The loss of the last step only (mean over the B rows); grads receives its "
        "gradient and norms (float64 [L, T]) || d loss / d h_t || of every layer and step.");
}

// x holds rows first_row.. of a batch of total_rows (0: x is the batch).
void check_rows(idx first_row, idx total_rows, idx B) {
  if (total_rows < 0 || (total_rows == 0 && first_row != 0))
    throw py::value_error("total_rows must be >= 1 when first_row is given, got " +
                          std::to_string(total_rows));
  if (total_rows != 0 && (first_row < 0 || first_row > total_rows - B))
    throw py::value_error("first_row=" + std::to_string(first_row) + " and total_rows=" +
                          std::to_string(total_rows) + " do not hold the " + std::to_string(B) +
                          " rows of x");
}

template <typename T>
void def_forward_backward(ModelClass<T>& c) {
  c.def("forward_backward",
        [](pcr::Model<T>& self, py::array params, py::array grads, py::array x, py::array y,
           py::array state_in, py::array state_out, py::array dstate, bool train,
           std::uint64_t seed, idx first_row, idx total_rows) {
          const Call<T> a = model_call<T>(self, params, x, &y, state_in);
          check_rows(first_row, total_rows, a.B);
          T* Gr = out_ptr<T>(grads, "grads", {self.num_params()});
          T* s1 = out_ptr<T>(state_out, "state_out", a.state_shape);
          T* ds = out_ptr<T>(dstate, "dstate", a.state_shape);
          check_disjoint({mem(grads, "grads"), mem(state_out, "state_out"), mem(dstate, "dstate")},
                         {mem(params, "params"), mem(x, "x"), mem(y, "y"),
                          state_in_mem(state_in, state_out)});
          py::gil_scoped_release nogil;
          pcr::DenormalsGuard flush;
          pcr::Governed unit(pcr::Site::STEP, &self, a.B * 4096 + a.Tn, double(a.B * a.Tn));
          return self.forward_backward(a.params, Gr, a.x, a.y, a.B, a.Tn, a.state_in, s1, ds,
                                       train, seed, {first_row, total_rows});
        },
        py::arg("params"), py::arg("grads"), py::arg("x"), py::arg("y"), py::arg("state_in"),
        py::arg("state_out"), py::arg("dstate"), py::kw_only(),
        py::arg("train").noconvert() = true, py::arg("seed") = 0, py::arg("first_row") = 0,
        py::arg("total_rows") = 0,
        "Loss (mean nats) and every gradient: grads [num_params] (overwritten), "
        "dstate = d loss / d state_in; state_out receives the final state. "
        "first_row, total_rows: x holds these rows of a larger batch (data-parallel "
        "training), whose dropout masks they get; total_rows 0: x is the batch.");
}

template <typename T>
void bind_model_class(py::module_& m, const char* name) {
  ModelClass<T> c(m, name,
                  "The model in one precision: forward, loss and forward_backward over a flat "
                  "parameter buffer the caller owns (pycharrnn.CharRNN wraps it).");
  def_init(c);
  def_layout(c);
  def_forward(c);
  def_loss(c);
  def_trace(c);
  def_gradient_flow(c);
  def_forward_backward(c);
  def_sampling(c);
  def_training(c);
}

}  // namespace

void bind_model(py::module_& m) {
  bind_model_class<float>(m, "ModelF32");
  bind_model_class<double>(m, "ModelF64");
}

}  // namespace bind
}  // namespace pcr
