// The kernel table: the entry points every instruction-set build fills
// (isa_table.hpp, compiled once per set by isa_*.cpp) and the choice among
// them (dispatch.cpp), with the types in their signatures (CellKind, StepIO,
// GradIn). Shared by the ISA-independent code and every kernel build.
#pragma once

#include "common.hpp"

namespace pcr {

enum class CellKind : int { RNN_TANH = 0, RNN_RELU = 1, GRU = 2, LSTM = 3 };

static inline int gate_count(CellKind k) {
  return k == CellKind::GRU ? 3 : k == CellKind::LSTM ? 4 : 1;
}
static inline bool has_cell_state(CellKind k) { return k == CellKind::LSTM; }
static inline bool has_separate_dhp(CellKind k) { return k == CellKind::GRU; }
// Whether part of d(loss)/d(h_{t-1}) bypasses W_hh (the GRU's z * dh), so the
// product with W_hh adds to dh instead of overwriting it.
static inline bool has_direct_dh(CellKind k) { return k == CellKind::GRU; }

// Pointers for one time step of a layer, rows b = 0..B-1 contiguous.
// Storage per step (time-major rows r = t*B + b):
//   gates[r, G*H]  forward in: xp = W_ih x + b_ih; out: what backward needs
//                  (activated gates); backward overwrites it with d(loss)/d(xp)
//   dhp[r, G*H]    d(loss)/d(hp), hp = W_hh h + b_hh; the same memory as gates
//                  except for the GRU, whose n gate sees r * (W_hn h + b_hn)
//   aux[r, H]      GRU only: W_hn h + b_hn
template <typename T>
struct StepIO {
  idx B, H;
  T* gates;         // [B, G*H]
  const T* hp;      // [B, G*H] forward only
  const T* h_prev;  // [B, H]
  T* h;             // [B, H]  forward out
  const T* c_prev;  // [B, H]  LSTM
  T* c;             // [B, H]  LSTM (forward out; backward in)
  T* aux;           // [B, H]  GRU hn
  T* dhp;           // [B, G*H] backward out (GRU; else == gates)

  // Step t of a layer whose arrays hold every step: xp [Tn, B, G*H], hs and
  // cs [Tn + 1, B, H] (row 0: the initial state), aux [Tn, B, H]; cs and aux
  // may be null. hp (forward) and dhp (backward) are the caller's to set.
  static StepIO at(idx B, idx H, idx G, idx t, T* xp, T* hs, T* cs, T* aux) {
    const idx BH = B * H;
    return {B,       H,       xp + t * BH * G,
            nullptr, hs + t * BH, hs + (t + 1) * BH,
            cs ? cs + t * BH : nullptr, cs ? cs + (t + 1) * BH : nullptr,
            aux ? aux + t * BH : nullptr, nullptr};
  }
};

struct GradIn {
  double scale = 1.0, clip = 0.0, weight_decay = 0.0;
};

// The kernels compiled once per instruction set (isa_*.cpp); the loader
// picks the best the CPU supports. Shapes are written beside each kernel's
// definition in the headers it comes from.
template <typename T>
struct Kernels {
  const char* isa;
  void (*gemm)(bool ta, bool tb, idx M, idx N, idx K, const T* A, idx lda, const T* B, idx ldb,
               T beta, T* C, idx ldc);
  idx (*packed_b_size)(idx N, idx K);
  void (*pack_b)(bool tb, const T* B, idx ldb, idx N, idx K, T* packed);
  void (*gemm_packed)(bool ta, idx M, idx N, idx K, const T* A, idx lda, const T* packed,
                      T beta, T* C, idx ldc);
  // The fused time loop of one layer for B <= recur_max_batch (recurrence.hpp).
  idx recur_max_batch;
  idx (*recur_packed_size)(int G, idx H);
  void (*recur_forward)(CellKind kind, idx B, idx H, idx Tn, const T* Whh, const T* bhh, T* xp,
                        T* hs, T* cs, T* aux, T* hp, T* packed);
  void (*recur_backward)(CellKind kind, idx B, idx H, idx Tn, const T* Whh, const T* dout,
                         T* xp, T* hs, T* cs, T* aux, T* dhp_all, T* dh, T* dc,
                         T* packed);
  // One step of the whole model at B <= step_max_batch rows (step.hpp).
  idx step_max_batch;
  idx (*step_scratch_size)(int G, idx B, idx H, idx L);
  void (*step_forward)(CellKind kind, idx B, idx V, idx E, idx H, idx L,
                       const std::int32_t* ids, const T* emb, const T* const* Wih,
                       const T* const* Whh, const T* const* bih, const T* const* bhh,
                       const T* decw, const T* decb, T* h, T* c, T* logits, T* work);
  void (*cell_forward)(CellKind kind, const StepIO<T>& s);
  bool (*cell_backward)(CellKind kind, const StepIO<T>& s, T* dh, T* dc);
  double (*softmax_xent)(T* logits, idx N, idx V, const std::int32_t* targets, bool grad,
                         double* row_loss);
  void (*sgd)(T* p, const T* g, T* buf, idx n, const GradIn& gi, T lr, T momentum, T dampening,
              bool nesterov, bool first);
  void (*adagrad)(T* p, const T* g, T* sum, idx n, const GradIn& gi, T clr, T eps,
                  bool eps_inside);
  void (*rmsprop)(T* p, const T* g, T* sq, T* gavg, T* buf, idx n, const GradIn& gi, T lr,
                  T alpha, T eps, T momentum, bool centered);
  void (*adam)(T* p, const T* g, T* m, T* v, T* vmax, idx n, const GradIn& gi, T lr, T b1, T b2,
               T eps, double bc1, double bc2, bool decoupled, bool amsgrad);
  double (*sum_squares)(const T* g, idx n);
};

// The active kernel table (see dispatch.cpp).
const Kernels<float>& kernels_f32();
const Kernels<double>& kernels_f64();
template <typename T>
inline const Kernels<T>& kern();
template <>
inline const Kernels<float>& kern<float>() { return kernels_f32(); }
template <>
inline const Kernels<double>& kern<double>() { return kernels_f64(); }

// Which instruction sets this build has kernels for / the CPU runs / is in use.
const char* const* isa_compiled();  // null-terminated list
bool isa_supported(const char* name);
const char* isa_active();
bool set_isa(const char* name);  // false if not compiled or not supported

}  // namespace pcr
