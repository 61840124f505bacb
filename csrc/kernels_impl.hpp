// One instruction set's kernel table. Included by exactly one kernels_*.cpp,
// which defines PCR_ISA_NS (the namespace that keeps every symbol of this
// build apart from the others) and PCR_ISA_NAME, and is compiled with that
// instruction set's flags.
#pragma once

#include "cells.hpp"
#include "gemm.hpp"
#include "loss.hpp"
#include "optim.hpp"
#include "recurrence.hpp"
#include "types.hpp"

namespace pcr {
namespace PCR_ISA_NS {

template <typename T>
const Kernels<T>& table() {
  static const Kernels<T> k = {
      PCR_ISA_NAME,       gemm<T>,          packed_b_size<T>, pack_b<T>,
      gemm_packed<T>,     recur_max_batch<T>(), recur_packed_size<T>, recur_forward<T>,
      recur_backward<T>,  cell_forward<T>,  cell_backward<T>, softmax_xent<T>,
      sgd_update<T>,      adagrad_update<T>, rmsprop_update<T>, adam_update<T>,
      sum_squares<T>,
  };
  return k;
}

const Kernels<float>& table_f32() { return table<float>(); }
const Kernels<double>& table_f64() { return table<double>(); }

}  // namespace PCR_ISA_NS
}  // namespace pcr
