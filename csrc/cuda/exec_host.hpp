// The host executor of device_model.hpp: "device" memory is host memory,
// a launch is a loop over its threads' indices, and the product is a plain
// column-major reference with cuBLAS's arguments. It exists so that the
// device model's orchestration, every functor it launches and the mapping of
// its row-major products onto cuBLAS are tested on any machine
// (tests/test_device.py), against the CPU's model. Not built for speed.
#pragma once

#include <cstring>
#include <vector>

#include "../common.hpp"

namespace pcr {
namespace dev_exec {

struct HostExec {
  template <typename T>
  struct Buffer {
    std::vector<T> v;
    T* data() { return v.data(); }
    const T* data() const { return v.data(); }
    idx size() const { return static_cast<idx>(v.size()); }
    void resize(idx n) {  // the contents are not kept
      v.assign(static_cast<size_t>(n), T());
    }
  };

  // Host memory the "device" copies from and to (page-locked on the GPU).
  template <typename T>
  struct HostBuffer {
    std::vector<T> v;
    T* data() { return v.data(); }
    T* begin() { return v.data(); }
    T* end() { return v.data() + v.size(); }
    T& operator[](idx i) { return v[static_cast<size_t>(i)]; }
    idx size() const { return static_cast<idx>(v.size()); }
    void resize(idx n) { v.assign(static_cast<size_t>(n), T()); }
  };

  template <typename F>
  void each(idx n, const F& f) {
    for (idx i = 0; i < n; ++i) f(i);
  }

  // C [m, n] (column-major, ldc) = alpha op(A) op(B) + beta C, as
  // cublas<t>gemm(handle, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc).
  // beta == 0 ignores C (cuBLAS does not read it then).
  template <typename T>
  void gemm_cm(bool ta, bool tb, idx m, idx n, idx k, T alpha, const T* A, idx lda, const T* B,
               idx ldb, T beta, T* C, idx ldc) {
    for (idx j = 0; j < n; ++j)
      for (idx i = 0; i < m; ++i) {
        T s = T(0);
        for (idx l = 0; l < k; ++l) {
          const T a = ta ? A[l + i * lda] : A[i + l * lda];
          const T b = tb ? B[j + l * ldb] : B[l + j * ldb];
          s += a * b;
        }
        T& c = C[i + j * ldc];
        c = beta == T(0) ? alpha * s : alpha * s + beta * c;
      }
  }

  void upload(void* dst, const void* src, size_t bytes) {
    if (bytes) std::memcpy(dst, src, bytes);
  }
  void download(void* dst, const void* src, size_t bytes) {
    if (bytes) std::memcpy(dst, src, bytes);
  }
  void copy(void* dst, const void* src, size_t bytes) {
    if (bytes) std::memmove(dst, src, bytes);
  }

  template <typename T>
  double sum_squares(const T* a, idx n) {
    double s = 0;
    for (idx i = 0; i < n; ++i) s += double(a[i]) * double(a[i]);
    return s;
  }
};

}  // namespace dev_exec
}  // namespace pcr
