// Where cuBLAS is loaded from (cuda/device.cu), for the bindings: a plain
// C++ header, so that code compiled without nvcc can set and read it.
#pragma once

#include <cstddef>
#include <string>
#include <utility>

namespace pcr {
namespace dev_exec {

// The path to try first (before the loader's search for libcublas.so.13);
// effective until the first device model loads cuBLAS.
void set_cublas_path(const std::string& path);
// (the path cuBLAS was loaded from, or "" and why it could not be).
std::pair<std::string, std::string> cublas_status();
// (bytes the device models' buffers hold now, the most since the last reset).
std::pair<size_t, size_t> device_memory(bool reset_peak);

}  // namespace dev_exec
}  // namespace pcr
