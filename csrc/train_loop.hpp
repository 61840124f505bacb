// K consecutive training steps in one call: for each step the forward pass,
// BPTT, the gradient norm, clipping and the optimizer update, with the state
// carried to the next chunk. It does exactly what pycharrnn.Trainer.step
// does from Python, call for call and in the same arithmetic (the same
// kernels, the same double-precision factors), so K steps here give the same
// bits as K steps there (tests/test_train_loop.py).
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "model.hpp"
#include "opt_spec.hpp"

namespace pcr {

// One update of optim.py's Optimizer.step(grad_norm): step += 1, the scale
// of clipping by norm, then the kernel. Buffers: SGD momentum_buffer; AdaGrad
// sum; RMSProp square_avg, grad_avg, momentum_buffer; Adam exp_avg,
// exp_avg_sq, max_exp_avg_sq.
template <typename T>
void optimizer_update(OptSpec<T>& o, T* p, const T* g, idx n, double lr, double grad_norm) {
  const Kernels<T>& K = kern<T>();
  o.step += 1;
  GradIn gi;
  if (o.clip_norm > 0) {
    const double coef = o.clip_norm / (grad_norm + 1e-6);
    if (coef < 1.0) gi.scale = coef;
  }
  gi.clip = o.clip_value;
  gi.weight_decay = o.weight_decay;
  switch (o.kind) {
    case OptKind::SGD:
      K.sgd(p, g, o.buf0, n, gi, T(lr), T(o.momentum), T(o.dampening), o.nesterov, o.step == 1);
      break;
    case OptKind::ADAGRAD: {
      const double clr = lr / (1 + static_cast<double>(o.step - 1) * o.lr_decay);
      K.adagrad(p, g, o.buf0, n, gi, T(clr), T(o.eps), o.eps_inside);
      break;
    }
    case OptKind::RMSPROP:
      K.rmsprop(p, g, o.buf0, o.buf1, o.buf2, n, gi, T(lr), T(o.alpha), T(o.eps), T(o.momentum),
                o.centered);
      break;
    case OptKind::ADAM: {
      const double t = static_cast<double>(o.step);
      K.adam(p, g, o.buf0, o.buf1, o.buf2, n, gi, T(lr), T(o.beta1), T(o.beta2), T(o.eps),
             1 - std::pow(o.beta1, t), 1 - std::pow(o.beta2, t), o.decoupled, o.amsgrad);
      break;
    }
  }
}

// K steps over xs, ys [K, B, Tn] (chunk k: xs + k * B * Tn). state [S, L, B,
// H] is the carried state: on return the state after the last completed step
// (a failed step leaves it as it was). seeds [K]: each step's dropout seed
// (train: whether the regularisers are on). lrs [K]: each step's learning
// rate. losses, norms [K]: each completed step's loss and gradient norm (a
// failed step's value too). Returns the steps completed; *status says why it
// stopped early (the loss or the gradient norm of step k not finite: step k
// made no update; the parameters not finite after the update of step k).
template <typename T>
idx train_steps(Model<T>& model, T* P, T* G, OptSpec<T>& opt, const std::int32_t* xs,
                const std::int32_t* ys, idx K, idx B, idx Tn, T* state, bool train,
                const std::uint64_t* seeds, const double* lrs, double* losses, double* norms,
                StepStatus* status) {
  const Kernels<T>& kt = kern<T>();
  const idx n = model.num_params(), ns = model.state_slots() * model.L * B * model.H;
  std::vector<T> next(static_cast<size_t>(ns)), dstate(static_cast<size_t>(ns));
  *status = StepStatus::OK;
  for (idx k = 0; k < K; ++k) {
    Governed unit(Site::STEP, &model, B * 4096 + Tn, static_cast<double>(B * Tn));
    const double loss =
        model.forward_backward(P, G, xs + k * B * Tn, ys + k * B * Tn, B, Tn, state,
                               next.data(), dstate.data(), train, train ? seeds[k] : 0);
    losses[k] = loss;
    if (!std::isfinite(loss)) {
      *status = StepStatus::LOSS;
      return k;
    }
    const double norm = std::sqrt(kt.sum_squares(G, n));
    norms[k] = norm;
    if (!std::isfinite(norm)) {
      *status = StepStatus::GRAD_NORM;
      return k;
    }
    optimizer_update(opt, P, G, n, lrs[k], norm);
    if (!std::isfinite(kt.sum_squares(P, n))) {
      *status = StepStatus::PARAMS;
      return k;
    }
    std::copy(next.begin(), next.end(), state);
  }
  return K;
}

}  // namespace pcr
