// One instruction set's kernel table. Included by exactly one isa_*.cpp,
// which defines PCR_ISA_NS (the namespace that keeps every symbol of this
// build apart from the others) and PCR_ISA_NAME, and is compiled with that
// instruction set's flags.
#pragma once

#include "cells.hpp"
#include "gemm.hpp"
#include "loss.hpp"
#include "optim.hpp"
#include "recurrence.hpp"
#include "step.hpp"
#include "dispatch.hpp"

namespace pcr {
namespace PCR_ISA_NS {

// Filled field by field, by name, so that no entry can land in another's slot.
template <typename T>
Kernels<T> make_table() {
  Kernels<T> k{};
  k.isa = PCR_ISA_NAME;
  k.gemm = gemm<T>;
  k.packed_b_size = packed_b_size<T>;
  k.pack_b = pack_b<T>;
  k.gemm_packed = gemm_packed<T>;
  k.recur_max_batch = recur_max_batch<T>();
  k.recur_packed_size = recur_packed_size<T>;
  k.recur_forward = recur_forward<T>;
  k.recur_backward = recur_backward<T>;
  k.step_max_batch = kStepMaxBatch;
  k.step_scratch_size = step_scratch_size<T>;
  k.step_forward = step_forward<T>;
  k.cell_forward = cell_forward<T>;
  k.cell_backward = cell_backward<T>;
  k.softmax_xent = softmax_xent<T>;
  k.sgd = sgd_update<T>;
  k.adagrad = adagrad_update<T>;
  k.rmsprop = rmsprop_update<T>;
  k.adam = adam_update<T>;
  k.sum_squares = sum_squares<T>;
  return k;
}

template <typename T>
const Kernels<T>& table() {
  static const Kernels<T> k = make_table<T>();
  return k;
}

const Kernels<float>& table_f32() { return table<float>(); }
const Kernels<double>& table_f64() { return table<double>(); }

}  // namespace PCR_ISA_NS
}  // namespace pcr
