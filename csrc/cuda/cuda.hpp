// Host entry points of the CUDA backend (kernels.cu), for the bindings.
// Present only in a build with -DPYCHARRNN_CUDA=ON (PYCHARRNN_HAVE_CUDA).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "../common.hpp"

namespace pcr {
namespace cuda {

// What the CUDA runtime reports: devices visible (0 where there is no GPU
// or no driver; error says why), their names, the runtime's version.
struct Info {
  int devices = 0;
  int runtime_version = 0;
  std::vector<std::string> names;
  std::string error;
};
Info info();

// One step of a cell on the device, on host arrays (copied in and out): the
// arguments of cells.hpp's cell_forward / cell_backward, row-major [B, ...];
// pointers a cell does not use may be null.
void cell_step(int kind, idx B, idx H, bool backward, float* gates, const float* hp, float* dhp,
               const float* hprev, float* h, const float* cprev, float* c, float* aux, float* dh,
               float* dc);
void cell_step(int kind, idx B, idx H, bool backward, double* gates, const double* hp,
               double* dhp, const double* hprev, double* h, const double* cprev, double* c,
               double* aux, double* dh, double* dc);
// loss.hpp's softmax_xent on the device: row_loss [N] per row.
void softmax_xent(float* logits, idx N, idx V, const std::int32_t* targets, bool grad,
                  double* row_loss);
void softmax_xent(double* logits, idx N, idx V, const std::int32_t* targets, bool grad,
                  double* row_loss);
// One Adam step (torch.optim.Adam; clip_value clip, scale from clip_norm).
void adam(idx n, float* p, const float* g, float* m, float* v, float* vmax, double lr, double b1,
          double b2, double eps, double scale, double clip, long step);
void adam(idx n, double* p, const double* g, double* m, double* v, double* vmax, double lr,
          double b1, double b2, double eps, double scale, double clip, long step);

}  // namespace cuda
}  // namespace pcr
