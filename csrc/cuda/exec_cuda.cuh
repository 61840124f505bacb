// The CUDA executor of device_model.hpp: memory from cudaMalloc, one thread
// per index of a launch, products by cuBLAS. cuBLAS is loaded when the first
// model is made (dlopen), not linked: a CUDA build imports, and says why, on
// a machine without it. Its path: set_cublas_path (pycharrnn finds NVIDIA's
// wheel, nvidia-cublas), else the loader's search for libcublas.so.13.
#pragma once

#include <cuda_runtime.h>
#include <dlfcn.h>

#include <cstdlib>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "../common.hpp"
#include "device_api.hpp"

namespace pcr {
namespace dev_exec {

inline void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw std::runtime_error(std::string("CUDA: ") + what + ": " + cudaGetErrorString(e));
}

// The few entry points of cuBLAS's v2 C API used here (cublas_api.h):
// handles are pointers, cublasOperation_t N = 0 and T = 1, status 0 = success.
struct Cublas {
  using Create = int (*)(void**);
  using Destroy = int (*)(void*);
  using Sgemm = int (*)(void*, int, int, int, int, int, const float*, const float*, int,
                        const float*, int, const float*, float*, int);
  using Dgemm = int (*)(void*, int, int, int, int, int, const double*, const double*, int,
                        const double*, int, const double*, double*, int);
  Create create = nullptr;
  Destroy destroy = nullptr;
  Sgemm sgemm = nullptr;
  Dgemm dgemm = nullptr;
  std::string path, error;
};

std::string& cublas_path();  // device.cu
void count_alloc(long long bytes);  // device.cu: + allocated, - freed
const Cublas& cublas();      // loaded once; error says why when it could not be

// One block per 256 indices; the functor runs on the device.
template <typename F>
__global__ void each_kernel(idx n, F f) {
  const idx i = static_cast<idx>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) f(i);
}

template <typename T>
__global__ void sum_squares_kernel(const T* a, idx n, double* part) {
  __shared__ double s[256];
  double acc = 0;
  for (idx i = static_cast<idx>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<idx>(gridDim.x) * blockDim.x)
    acc += double(a[i]) * double(a[i]);
  s[threadIdx.x] = acc;
  __syncthreads();
  for (unsigned w = blockDim.x / 2; w > 0; w /= 2) {
    if (threadIdx.x < w) s[threadIdx.x] += s[threadIdx.x + w];
    __syncthreads();
  }
  if (threadIdx.x == 0) part[blockIdx.x] = s[0];
}

struct CudaExec {
  template <typename T>
  struct Buffer {
    T* d = nullptr;
    idx n = 0;
    Buffer() = default;
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;
    Buffer(Buffer&& o) noexcept : d(o.d), n(o.n) { o.d = nullptr; o.n = 0; }
    ~Buffer() { release(); }
    void release() {
      if (d) {
        cudaFree(d);
        count_alloc(-static_cast<long long>(bytes_of(n)));
      }
      d = nullptr;
      n = 0;
    }
    static size_t bytes_of(idx count) { return static_cast<size_t>(count > 0 ? count : 1) * sizeof(T); }
    T* data() { return d; }
    const T* data() const { return d; }
    idx size() const { return n; }
    void resize(idx count) {  // the contents are not kept
      if (count == n && d) return;
      release();
      const size_t bytes = bytes_of(count);
      const cudaError_t e = cudaMalloc(&d, bytes);
      if (e != cudaSuccess) {
        cudaGetLastError();
        d = nullptr;
        size_t free_b = 0, total_b = 0;
        cudaMemGetInfo(&free_b, &total_b);
        throw DeviceMemoryError("the GPU is out of memory: " + std::to_string(bytes >> 20) +
                                " MiB asked for, " + std::to_string(free_b >> 20) + " of " +
                                std::to_string(total_b >> 20) + " MiB free");
      }
      n = count;
      count_alloc(static_cast<long long>(bytes));
    }
  };

  // Page-locked host memory for what crosses to or from the device at each
  // step (the batch's ids, the rows-by-id index, the per-row losses): the
  // copy engine reads it directly instead of through a staging copy. Plain
  // memory where the driver refuses to lock more.
  template <typename T>
  struct HostBuffer {
    T* p = nullptr;
    idx n = 0;
    bool pinned = false;
    HostBuffer() = default;
    HostBuffer(const HostBuffer&) = delete;
    HostBuffer& operator=(const HostBuffer&) = delete;
    ~HostBuffer() { release(); }
    void release() {
      if (p) {
        if (pinned)
          cudaFreeHost(p);
        else
          std::free(p);
      }
      p = nullptr;
      n = 0;
    }
    void resize(idx count) {  // the contents are not kept
      if (count == n && p) return;
      release();
      const size_t bytes = static_cast<size_t>(count > 0 ? count : 1) * sizeof(T);
      void* q = nullptr;
      pinned = cudaMallocHost(&q, bytes) == cudaSuccess;
      if (!pinned) {
        cudaGetLastError();
        q = std::malloc(bytes);
        if (!q) throw std::bad_alloc();
      }
      p = static_cast<T*>(q);
      n = count;
    }
    T* data() { return p; }
    T* begin() { return p; }
    T* end() { return p + n; }
    T& operator[](idx i) { return p[i]; }
    idx size() const { return n; }
  };

  void* handle = nullptr;
  CudaExec() {
    int devices = 0;
    const cudaError_t e = cudaGetDeviceCount(&devices);
    if (e != cudaSuccess || devices == 0) {
      cudaGetLastError();
      throw std::runtime_error(std::string("CUDA: no usable device: ") +
                               (e != cudaSuccess ? cudaGetErrorString(e) : "none visible"));
    }
    const Cublas& c = cublas();
    if (!c.create) throw std::runtime_error("cuBLAS: " + c.error);
    if (c.create(&handle) != 0) throw std::runtime_error("cuBLAS: cublasCreate failed");
  }
  ~CudaExec() {
    if (handle) cublas().destroy(handle);
  }
  CudaExec(const CudaExec&) = delete;
  CudaExec& operator=(const CudaExec&) = delete;

  template <typename F>
  void each(idx n, const F& f) {
    if (n <= 0) return;
    const unsigned th = 256;
    each_kernel<F><<<static_cast<unsigned>((n + th - 1) / th), th>>>(n, f);
    check(cudaGetLastError(), "kernel launch");
  }

  void gemm_cm(bool ta, bool tb, idx m, idx n, idx k, float alpha, const float* A, idx lda,
               const float* B, idx ldb, float beta, float* C, idx ldc) {
    if (m == 0 || n == 0) return;
    if (cublas().sgemm(handle, ta, tb, int(m), int(n), int(k), &alpha, A, int(lda), B, int(ldb),
                       &beta, C, int(ldc)) != 0)
      throw std::runtime_error("cuBLAS: cublasSgemm failed");
  }
  void gemm_cm(bool ta, bool tb, idx m, idx n, idx k, double alpha, const double* A, idx lda,
               const double* B, idx ldb, double beta, double* C, idx ldc) {
    if (m == 0 || n == 0) return;
    if (cublas().dgemm(handle, ta, tb, int(m), int(n), int(k), &alpha, A, int(lda), B, int(ldb),
                       &beta, C, int(ldc)) != 0)
      throw std::runtime_error("cuBLAS: cublasDgemm failed");
  }

  void upload(void* dst, const void* src, size_t bytes) {
    if (bytes) check(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice), "copy to the GPU");
  }
  void download(void* dst, const void* src, size_t bytes) {
    if (bytes) check(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost), "copy from the GPU");
  }
  void copy(void* dst, const void* src, size_t bytes) {
    if (bytes) check(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice), "copy on the GPU");
  }

  // Per-block partial sums, added on the host in block order.
  static constexpr unsigned kSumBlocks = 512;
  Buffer<double> part_;  // the partial sums, made on first use
  std::vector<double> part_h_;
  template <typename T>
  double sum_squares(const T* a, idx n) {
    if (part_.size() != kSumBlocks) part_.resize(kSumBlocks);
    part_h_.resize(kSumBlocks);
    sum_squares_kernel<T><<<kSumBlocks, 256>>>(a, n, part_.data());
    check(cudaGetLastError(), "kernel launch");
    download(part_h_.data(), part_.data(), kSumBlocks * sizeof(double));
    double s = 0;
    for (double v : part_h_) s += v;
    return s;
  }
};

}  // namespace dev_exec
}  // namespace pcr
