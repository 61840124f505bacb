// The optimizer dict the training entry points take (train_steps,
// optimizer_step): pycharrnn/optim.py's Optimizer._fused_spec(), checked and
// turned into an OptSpec (train_loop.hpp).
#pragma once

#include <string>
#include <utility>

#include "bindings/checks.hpp"
#include "train_loop.hpp"

namespace pcr {
namespace bind {

// The largest step a dict may give: far beyond any run, and the counts of
// the steps that follow it cannot overflow.
constexpr long long kMaxOptimizerStep = 1LL << 62;

// kind (0 SGD, 1 AdaGrad, 2 RMSProp, 3 Adam), step (updates made so far),
// hyper-parameters (missing ones: 0 / false) and "buffers", a list of three
// flat [n] arrays of dtype T or None: SGD momentum_buffer; AdaGrad sum;
// RMSProp square_avg, grad_avg, momentum_buffer; Adam exp_avg, exp_avg_sq,
// max_exp_avg_sq. Those the configuration uses are required and writeable.
// Without `buffers` (a device model, which holds its own) the list is not read.
template <typename T>
pcr::OptSpec<T> opt_spec(const py::dict& d, idx n, bool buffers = true) {
  pcr::OptSpec<T> o;
  auto num = [&](const char* k) { return d.contains(k) ? d[k].cast<double>() : 0.0; };
  auto flag = [&](const char* k) { return d.contains(k) && d[k].cast<bool>(); };
  for (const char* k : {"kind", "step", "buffers"})
    if (!d.contains(k) && (buffers || std::string(k) != "buffers"))
      throw py::value_error(std::string("optimizer: no '") + k + "'");
  const int kind = d["kind"].cast<int>();
  if (kind < 0 || kind > 3) throw py::value_error("optimizer kind must be 0..3");
  o.kind = static_cast<pcr::OptKind>(kind);
  o.step = d["step"].cast<long long>();
  if (o.step < 0 || o.step > kMaxOptimizerStep)
    throw py::value_error("optimizer step must be in [0, 2**62]");
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
  if (o.kind == pcr::OptKind::ADAM && !(o.beta1 < 1 && o.beta2 < 1))
    throw py::value_error("betas must be < 1");
  if (!buffers) return o;
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
  return o;
}

}  // namespace bind
}  // namespace pcr
