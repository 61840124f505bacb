// What an optimizer update needs to know (pycharrnn/optim.py's spec dict,
// checked by bindings/optimizer_spec.hpp), and why a run of K training steps
// ended early: shared by the CPU's loop (train_loop.hpp) and the device's
// (cuda/device_model.hpp).
#pragma once

namespace pcr {

enum class OptKind : int { SGD = 0, ADAGRAD = 1, RMSPROP = 2, ADAM = 3 };

// An optimizer of pycharrnn.optim with its buffers ([n] each, null when the
// configuration has none) and the number of updates it has made.
template <typename T>
struct OptSpec {
  OptKind kind = OptKind::SGD;
  double clip_norm = 0;   // 0: off
  double clip_value = 0;  // 0: off
  double weight_decay = 0;
  // SGD
  double momentum = 0, dampening = 0;
  bool nesterov = false;
  // AdaGrad
  double lr_decay = 0, eps = 0;
  bool eps_inside = false;
  // RMSProp (also momentum, eps)
  double alpha = 0;
  bool centered = false;
  // Adam / AdamW (also eps)
  double beta1 = 0, beta2 = 0;
  bool decoupled = false, amsgrad = false;
  T *buf0 = nullptr, *buf1 = nullptr, *buf2 = nullptr;  // see optimizer_update()
  long long step = 0;  // updates made so far
};

// Why a run of steps ended before its K steps.
enum class StepStatus : int { OK = 0, LOSS = 1, GRAD_NORM = 2, PARAMS = 3 };

}  // namespace pcr
