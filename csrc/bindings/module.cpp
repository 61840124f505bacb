// pybind11 module pycharrnn._core: the module and its parts (bindings.hpp).
#include <pybind11/pybind11.h>

#include "bindings/bindings.hpp"
#include "memory.hpp"

PYBIND11_MODULE(_core, m) {
  namespace py = pybind11;
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
  pcr::bind::bind_model(m);
  pcr::bind::bind_optim(m);
  pcr::bind::bind_kernels(m);
#if PYCHARRNN_HAVE_CUDA
  pcr::bind::bind_cuda(m);
  pcr::bind::bind_device(m);
#endif
}
