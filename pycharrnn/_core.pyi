"""Type stub of pycharrnn._core, the compiled C++ core (csrc/bindings/).

Every array argument is checked before a kernel touches it (dtype, shape,
C order, alignment, writeability of outputs, no shared memory between what a
call writes and anything else it is given) and never converted. ModelF32
takes float32 arrays, ModelF64 float64 ones; token ids are int32. The GIL is
released while kernels run. tests/test_stub.py holds this file to the module.
"""

from typing import Any, Dict, Generic, List, Protocol, TypeVar

import numpy as np
from numpy.typing import NDArray

# The floating-point dtype of a model, or of the arrays of one call.
_F = TypeVar("_F", np.float32, np.float64)

# Not a class of the module: the methods ModelF32 and ModelF64 share, each
# over arrays of its own dtype.
class _Model(Generic[_F]):
    def __init__(self, cell: int, vocab_size: int, embedding_dim: int, hidden_size: int,
                 num_layers: int, dropout: float = 0.0, *, input_dropout: float = 0.0,
                 output_dropout: float = 0.0, weight_drop: float = 0.0,
                 embedding_dropout: float = 0.0, locked_dropout: bool = False) -> None:
        """A model's layout and workspace. cell: 0 rnn-tanh, 1 rnn-relu, 2 gru,
        3 lstm; embedding_dim 0: one-hot input; the regularisers' rates in [0, 1)."""
    @property
    def num_params(self) -> int:
        """Length of the flat buffers."""
    @property
    def state_slots(self) -> int:
        """S of a state [S, L, B, H]: 2 for the LSTM (h, c), else 1."""
    def layout(self) -> list[tuple[str, tuple[int, ...], int]]:
        """[(name, shape, offset)] of every parameter in the flat buffer."""
    def forward(self, params: NDArray[_F], x: NDArray[np.int32], state_in: NDArray[_F],
                state_out: NDArray[_F], logits: NDArray[_F] | None, *, train: bool = False,
                seed: int = 0, sampling: bool = False) -> None:
        """Ids x [B, T] from state_in [S, L, B, H]: state_out, and logits [B, T, V].
        sampling: a sample's context, on the team the model's sampling chose, untimed."""
    def loss(self, params: NDArray[_F], x: NDArray[np.int32], y: NDArray[np.int32],
             state_in: NDArray[_F], state_out: NDArray[_F], *, train: bool = False, seed: int = 0,
             stream_loss: NDArray[np.float64] | None = None) -> float:
        """Mean cross-entropy (nats) of y [B, T] from x; stream_loss [B]: each row's sum."""
    def trace(self, params: NDArray[_F], x: NDArray[np.int32], state_in: NDArray[_F],
              state_out: NDArray[_F], hidden: NDArray[_F], cell: NDArray[_F] | None,
              gates: NDArray[_F] | None, logits: NDArray[_F]) -> None:
        """Evaluation forward keeping every step: hidden and cell (LSTM) [L, B, T, H],
        gates [L, B, T, G*H] (GRU, LSTM), logits [B, T, V]."""
    def gradient_flow(self, params: NDArray[_F], grads: NDArray[_F], x: NDArray[np.int32],
                      y: NDArray[np.int32], state_in: NDArray[_F],
                      norms: NDArray[np.float64]) -> float:
        """The last step's loss; its gradient in grads, ||d loss / d h_t|| in norms [L, T]."""
    def forward_backward(self, params: NDArray[_F], grads: NDArray[_F], x: NDArray[np.int32],
                         y: NDArray[np.int32], state_in: NDArray[_F], state_out: NDArray[_F],
                         dstate: NDArray[_F], *, train: bool = True, seed: int = 0,
                         first_row: int = 0, total_rows: int = 0) -> float:
        """Loss and every gradient: grads [num_params], dstate = d loss / d state_in."""
    def sample(self, params: NDArray[_F], state: NDArray[_F], logits: NDArray[_F],
               out: NDArray[np.int32], *, temperature: float = 1.0, top_k: int = 0,
               top_p: float = 1.0, seed: int = 0, position: int = 0, uniform_first: bool = False,
               stop: NDArray[np.int32] | None = None, window: NDArray[np.int32] | None = None,
               live: NDArray[np.uint8], feed_last: bool = True) -> int:
        """Up to out.shape[1] ids for each row of out [B, n]; returns the steps made."""
    def train_steps(self, params: NDArray[_F], grads: NDArray[_F], xs: NDArray[np.int32],
                    ys: NDArray[np.int32], state: NDArray[_F], seeds: NDArray[np.uint64] | None,
                    lrs: NDArray[np.float64], losses: NDArray[np.float64],
                    norms: NDArray[np.float64], optimizer: dict[str, Any]) -> tuple[int, int]:
        """K training steps in one call: (steps completed, status 0 done, 1 loss,
        2 gradient norm, 3 parameters not finite)."""
    def optimizer_step(self, params: NDArray[_F], grads: NDArray[_F], optimizer: dict[str, Any],
                       lr: float, grad_norm: float) -> None:
        """One optimizer update of params in place, as Optimizer.step(grad_norm)
        makes it; optimizer is the dict train_steps takes (its step not changed)."""
    def beam_search(
        self, params: NDArray[_F], logits: NDArray[_F], state: NDArray[_F], length: int,
        beam_width: int, *, length_penalty: float = 0.0, stop: NDArray[np.int32] | None = None,
        context: NDArray[np.int32] | None = None, no_repeat_ngram_size: int = 0,
        repetition_penalty: float = 1.0, penalty_ngram_size: int = 1
    ) -> tuple[NDArray[np.int32], float, float]:
        """(ids, score, log-probability) of the best continuation of at most length ids."""

class ModelF32(_Model[np.float32]):
    """The model in float32 over a flat parameter buffer the caller owns."""

class ModelF64(_Model[np.float64]):
    """The model in float64 over a flat parameter buffer the caller owns."""

def sgd_update(params: NDArray[_F], grads: NDArray[_F], momentum_buffer: NDArray[_F] | None, *,
               lr: float, momentum: float, dampening: float, nesterov: bool, first: bool,
               weight_decay: float = 0.0, scale: float = 1.0, clip: float = 0.0) -> None:
    """torch.optim.SGD's update of the flat params in place."""

def adagrad_update(params: NDArray[_F], grads: NDArray[_F], sum: NDArray[_F], *, clr: float,
                   eps: float, eps_inside: bool, weight_decay: float = 0.0, scale: float = 1.0,
                   clip: float = 0.0) -> None:
    """torch.optim.Adagrad's update in place, clr the decayed learning rate."""

def rmsprop_update(params: NDArray[_F], grads: NDArray[_F], square_avg: NDArray[_F],
                   grad_avg: NDArray[_F] | None, momentum_buffer: NDArray[_F] | None, *, lr: float,
                   alpha: float, eps: float, momentum: float, centered: bool,
                   weight_decay: float = 0.0, scale: float = 1.0, clip: float = 0.0) -> None:
    """torch.optim.RMSprop's update in place."""

def adam_update(params: NDArray[_F], grads: NDArray[_F], exp_avg: NDArray[_F],
                exp_avg_sq: NDArray[_F], max_exp_avg_sq: NDArray[_F] | None, *, lr: float,
                beta1: float, beta2: float, eps: float, bias_correction1: float,
                bias_correction2: float, decoupled: bool, amsgrad: bool, weight_decay: float = 0.0,
                scale: float = 1.0, clip: float = 0.0) -> None:
    """torch.optim.Adam's (decoupled: AdamW's) update in place."""

def sum_squares(grads: NDArray[np.float32] | NDArray[np.float64]) -> float:
    """Sum of squares of a flat float array, in double."""

def gemm(A: NDArray[_F], B: NDArray[_F], C: NDArray[_F], *, ta: bool = False, tb: bool = False,
         beta: float = 0.0, reference: bool = False) -> None:
    """C = beta * C + op(A) op(B) for 2-D arrays of one dtype."""

def set_num_threads(n: int) -> None:
    """The number of threads every kernel uses (process-wide, 1..1024)."""

def get_num_threads() -> int:
    """The number of threads the kernels use (auto mode: the most they may use)."""

def set_threads_auto() -> None:
    """Let the governor choose each unit's team size, up to the usable cores (the default)."""

def threads_auto() -> bool:
    """Whether the team size is chosen at run time."""

def usable_cores() -> int:
    """CPUs this process may use (affinity mask and cgroup CPU quota)."""

def governor_stats() -> Dict[str, Dict[str, int]]:
    """Per kind of work (step, loss, sample): the governor's current team size
    (0: none yet), units timed, probes, switches, abandoned probes, bail-outs."""

def _force_team_sizes(sizes: List[int]) -> None:
    """Tests: in auto mode every parallel region takes the next of these sizes."""

def _governor_simulate(seconds: List[float], units: int, after: List[float] = [],
                       change_at: int = 0, shapes: List[int] = [],
                       scale: List[float] = [], scale_size: int = 0, calls: int = 0,
                       total: bool = False) -> Any:
    """Tests: the team sizes the governor picks for made-up timings (with
    total: the sizes and the simulated seconds)."""

def _own_runnable_threads() -> int:
    """Tests: this process's threads running or waiting for a CPU now (0: unknown)."""

def set_flush_denormals(on: bool) -> None:
    """Whether kernels flush subnormal floats to zero while they run (x86)."""

def get_flush_denormals() -> bool:
    """Whether kernels flush subnormal floats to zero."""

def _thread_fp_modes() -> list[int]:
    """Each OpenMP thread's floating-point mode outside any kernel (for the tests)."""

def isa() -> str:
    """The instruction set whose kernels are in use."""

def isa_available() -> list[str]:
    """Instruction sets compiled in and supported by this CPU, best first."""

def set_isa(name: str) -> None:
    """Use the kernels of another instruction set."""

def build_info() -> dict[str, Any]:
    """How the core was built: openmp, num_threads, simd, native, sanitize, cuda, compiler."""

# Only in a build with the CUDA backend (build_info()["cuda"]): the device
# kernels on host arrays, for the tests, one function per dtype (the types
# below are not in the module: each gives a pair's signature).
_G = TypeVar("_G", np.float32, np.float64, contravariant=True)

class _CudaCellStep(Protocol[_G]):
    def __call__(self, kind: int, gates: NDArray[_G], hp: NDArray[_G] | None,
                 dhp: NDArray[_G] | None, hprev: NDArray[_G], h: NDArray[_G] | None,
                 cprev: NDArray[_G] | None, c: NDArray[_G] | None, aux: NDArray[_G] | None,
                 dh: NDArray[_G] | None, dc: NDArray[_G] | None, backward: bool) -> None:
        """One cell step of every unit on the device, in place on host arrays."""

class _CudaSoftmaxXent(Protocol[_G]):
    def __call__(self, logits: NDArray[_G], targets: NDArray[np.int32],
                 grad: bool) -> NDArray[np.float64]:
        """Each row's cross-entropy on the device; with grad, logits become the gradient."""

class _CudaAdam(Protocol[_G]):
    def __call__(self, p: NDArray[_G], g: NDArray[_G], m: NDArray[_G], v: NDArray[_G],
                 vmax: NDArray[_G] | None, lr: float, b1: float, b2: float, eps: float,
                 scale: float, clip: float, step: int) -> None:
        """One Adam step on the device, in place on host arrays."""

cuda_cell_step_f32: _CudaCellStep[np.float32]
cuda_cell_step_f64: _CudaCellStep[np.float64]
cuda_softmax_xent_f32: _CudaSoftmaxXent[np.float32]
cuda_softmax_xent_f64: _CudaSoftmaxXent[np.float64]
cuda_adam_f32: _CudaAdam[np.float32]
cuda_adam_f64: _CudaAdam[np.float64]

# Only in a build with the CUDA backend: the model on a device
# (csrc/cuda/device_model.hpp), executor "cuda" (the GPU) or "host" (the same
# code on the CPU, for tests). ModelF32's methods less the flat buffers,
# which stay in the device's memory.
class _DeviceModel(Generic[_F]):
    def __init__(self, cell: int, vocab_size: int, embedding_dim: int, hidden_size: int,
                 num_layers: int, dropout: float = 0.0, *, input_dropout: float = 0.0,
                 output_dropout: float = 0.0, weight_drop: float = 0.0,
                 embedding_dropout: float = 0.0, locked_dropout: bool = False,
                 executor: str = "cuda") -> None:
        """A model on a device, its parameters zero (see set_params)."""
    @property
    def num_params(self) -> int:
        """Length of the flat buffers."""
    @property
    def state_slots(self) -> int:
        """S of a state [S, L, B, H]."""
    @property
    def executor(self) -> str:
        """Where the device model runs: "cuda" or "host"."""
    def layout(self) -> list[tuple[str, tuple[int, ...], int]]:
        """[(name, shape, offset)], as the CPU model's."""
    def set_params(self, params: NDArray[_F]) -> None:
        """Copy params [num_params] to the device."""
    def get_params(self, out: NDArray[_F]) -> None:
        """The device's parameters into out."""
    def get_grads(self, out: NDArray[_F]) -> None:
        """The last gradients into out."""
    def has_optimizer_buffer(self, k: int) -> bool:
        """Whether optimizer buffer k (0..2) exists on the device."""
    def set_optimizer_buffer(self, k: int, buffer: NDArray[_F]) -> None:
        """Copy an optimizer buffer (the CPU dict's order) to the device."""
    def get_optimizer_buffer(self, k: int, out: NDArray[_F]) -> None:
        """Optimizer buffer k into out."""
    def forward(self, x: NDArray[np.int32], state_in: NDArray[_F], state_out: NDArray[_F],
                logits: NDArray[_F] | None, *, train: bool = False, seed: int = 0) -> None:
        """As ModelF32.forward."""
    def loss(self, x: NDArray[np.int32], y: NDArray[np.int32], state_in: NDArray[_F],
             state_out: NDArray[_F], *, train: bool = False, seed: int = 0,
             stream_loss: NDArray[np.float64] | None = None) -> float:
        """As ModelF32.loss."""
    def forward_backward(self, x: NDArray[np.int32], y: NDArray[np.int32],
                         state_in: NDArray[_F], state_out: NDArray[_F], dstate: NDArray[_F], *,
                         train: bool = True, seed: int = 0, first_row: int = 0,
                         total_rows: int = 0) -> float:
        """As ModelF32.forward_backward; the gradients stay on the device."""
    def grad_sum_squares(self) -> float:
        """Sum of squares of the gradients, in double."""
    def optimizer_step(self, optimizer: dict[str, Any], lr: float, grad_norm: float) -> None:
        """One update on the device's buffers (the dict's buffers are not read)."""
    def train_steps(self, xs: NDArray[np.int32], ys: NDArray[np.int32], state: NDArray[_F],
                    seeds: NDArray[np.uint64] | None, lrs: NDArray[np.float64],
                    losses: NDArray[np.float64], norms: NDArray[np.float64],
                    optimizer: dict[str, Any]) -> tuple[int, int]:
        """K training steps on the device, as ModelF32.train_steps."""
    def sample(self, state: NDArray[_F], logits: NDArray[_F], out: NDArray[np.int32], *,
               temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, seed: int = 0,
               position: int = 0, uniform_first: bool = False,
               stop: NDArray[np.int32] | None = None, window: NDArray[np.int32] | None = None,
               live: NDArray[np.uint8], feed_last: bool = True) -> int:
        """The sampling loop on the device, as ModelF32.sample."""
    def beam_search(
        self, logits: NDArray[_F], state: NDArray[_F], length: int, beam_width: int, *,
        length_penalty: float = 0.0, stop: NDArray[np.int32] | None = None,
        context: NDArray[np.int32] | None = None, no_repeat_ngram_size: int = 0,
        repetition_penalty: float = 1.0, penalty_ngram_size: int = 1
    ) -> tuple[NDArray[np.int32], float, float]:
        """Beam search, the states and steps on the device, as ModelF32.beam_search."""
    def trace(self, x: NDArray[np.int32], state_in: NDArray[_F], state_out: NDArray[_F],
              hidden: NDArray[_F], cell: NDArray[_F] | None, gates: NDArray[_F] | None,
              logits: NDArray[_F]) -> None:
        """As ModelF32.trace, on the device."""
    def gradient_flow(self, x: NDArray[np.int32], y: NDArray[np.int32], state_in: NDArray[_F],
                      norms: NDArray[np.float64]) -> float:
        """As ModelF32.gradient_flow; the device's gradients are left as they are."""

class DeviceModelF32(_DeviceModel[np.float32]):
    """The model on a device in float32."""

class DeviceModelF64(_DeviceModel[np.float64]):
    """The model on a device in float64."""

def cuda_set_cublas_path(path: str) -> None:
    """Where to load cuBLAS from, before the first device model."""

def cuda_cublas() -> tuple[str, str]:
    """(the path cuBLAS was loaded from or '', why it could not be)."""

def cuda_memory(reset_peak: bool = False) -> tuple[int, int]:
    """(bytes the device models hold now, the most they held since the last reset)."""
