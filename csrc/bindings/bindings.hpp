// The parts of the pybind11 module pycharrnn._core, one file per concern,
// and what they share. module.cpp creates the module and calls each part.
//
//   model.cpp     ModelF32 / ModelF64: construction, layout, forward, loss,
//                 forward_backward, trace, gradient_flow
//   training.cpp  their train_steps and optimizer_step
//   sampling.cpp  their sample and beam_search
//   optim.cpp     the optimizer updates of a flat buffer, sum_squares
//   kernels.cpp   gemm, threads, floating-point modes, instruction sets,
//                 build_info
//   cuda.cpp      the device kernels on host arrays (CUDA builds only)
//   device.cpp    DeviceModelF32 / F64, the model on a device (CUDA builds only)
//
// Every array is checked by checks.hpp before a kernel touches it, and the
// GIL is released while kernels run.
#pragma once

#include <pybind11/pybind11.h>

#include "model.hpp"

namespace pcr {
namespace bind {

namespace py = pybind11;

template <typename T>
using ModelClass = py::class_<pcr::Model<T>>;

void bind_model(py::module_& m);
template <typename T>
void def_training(ModelClass<T>& c);  // instantiated for float and double in training.cpp
template <typename T>
void def_sampling(ModelClass<T>& c);  // instantiated for float and double in sampling.cpp
void bind_optim(py::module_& m);
void bind_kernels(py::module_& m);
#if PYCHARRNN_HAVE_CUDA
void bind_cuda(py::module_& m);
void bind_device(py::module_& m);
#endif

}  // namespace bind
}  // namespace pcr
