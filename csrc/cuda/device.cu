// The device model on the GPU: device_model.hpp on the CUDA executor
// (exec_cuda.cuh), and the loading of cuBLAS.
#define PCR_ISA_NS cuda_ns
#include "device_model.hpp"

#include <atomic>

#include "device_api.hpp"
#include "exec_cuda.cuh"
#include "exec_cuda_path.hpp"

namespace pcr {
namespace dev_exec {

std::string& cublas_path() {
  static std::string path;
  return path;
}

const Cublas& cublas() {
  static const Cublas c = [] {
    Cublas out;
    std::vector<std::string> tries;
    if (!cublas_path().empty()) tries.push_back(cublas_path());
    tries.push_back("libcublas.so.13");
    std::string why;
    for (const std::string& p : tries) {
      void* lib = dlopen(p.c_str(), RTLD_NOW | RTLD_LOCAL);
      if (!lib) {
        const char* e = dlerror();
        why += (why.empty() ? "" : "; ") + std::string(e ? e : p.c_str());
        continue;
      }
      out.create = reinterpret_cast<Cublas::Create>(dlsym(lib, "cublasCreate_v2"));
      out.destroy = reinterpret_cast<Cublas::Destroy>(dlsym(lib, "cublasDestroy_v2"));
      out.sgemm = reinterpret_cast<Cublas::Sgemm>(dlsym(lib, "cublasSgemm_v2"));
      out.dgemm = reinterpret_cast<Cublas::Dgemm>(dlsym(lib, "cublasDgemm_v2"));
      if (out.create && out.destroy && out.sgemm && out.dgemm) {
        out.path = p;
        return out;
      }
      out = Cublas();
      why += (why.empty() ? "" : "; ") + p + " lacks the cublas*_v2 entry points";
    }
    out.error = "cuBLAS 13 was not found (" + why +
                "); install NVIDIA's wheel: pip install nvidia-cublas";
    return out;
  }();
  return c;
}

void set_cublas_path(const std::string& path) { cublas_path() = path; }

namespace {
std::atomic<long long> live_bytes{0}, peak_bytes{0};
}

void count_alloc(long long bytes) {
  const long long now = live_bytes += bytes;
  long long peak = peak_bytes.load();
  while (now > peak && !peak_bytes.compare_exchange_weak(peak, now)) {
  }
}

std::pair<size_t, size_t> device_memory(bool reset_peak) {
  const long long now = live_bytes.load();
  const long long peak = reset_peak ? peak_bytes.exchange(now) : peak_bytes.load();
  return {static_cast<size_t>(now), static_cast<size_t>(peak)};
}

std::pair<std::string, std::string> cublas_status() {
  const Cublas& c = cublas();
  return {c.path, c.error};
}

}  // namespace dev_exec

template <typename T>
std::unique_ptr<DeviceModelAPI<T>> make_cuda_device_model(CellKind cell, idx V, idx E, idx H,
                                                          idx L, const Dropouts& drop,
                                                          const std::vector<idx>& offsets) {
  using Exec = dev_exec::CudaExec;
  using M = cuda_ns::dev::DeviceModel<T, Exec>;
  return std::make_unique<DeviceModelImpl<T, M, Exec>>(cell, V, E, H, L, drop, offsets);
}

template std::unique_ptr<DeviceModelAPI<float>> make_cuda_device_model<float>(
    CellKind, idx, idx, idx, idx, const Dropouts&, const std::vector<idx>&);
template std::unique_ptr<DeviceModelAPI<double>> make_cuda_device_model<double>(
    CellKind, idx, idx, idx, idx, const Dropouts&, const std::vector<idx>&);

}  // namespace pcr
