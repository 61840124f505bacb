"""What a training run will hold in memory, and what this process can get:
checked before a run allocates its model or writes a file, so that a model
too large for the machine is refused in one line instead of ending in the
out-of-memory killer a minute later.

The count mirrors the compiled core: the parameters and their gradients (a
flat buffer each), the optimizer's state (buffers as large as the
parameters), and the workspace of a training call and of a validation call
(csrc/workspace.hpp's plan: per layer the gates, the hidden and cell states;
the logits, the embedded input) and the packed recurrent weights. It leaves
out what is small beside them (the text's ids, Python's own objects) and a
validation's own buffers (it streams through its chunks: the peak resident
memory of the runs in tests/test_memory.py did not grow with it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

from .config import GATES, ModelConfig

__all__ = ["Needs", "training_needs", "available", "check_training", "parameter_count"]

GiB = float(1 << 30)
#: Buffers as large as the parameters that each optimizer keeps, as
#: :func:`pycharrnn.optim.create` makes it (Adam's two moments; AdaGrad's and
#: RMSProp's square averages; SGD without momentum none).
OPTIMIZER_BUFFERS = {"sgd": 0, "adagrad": 1, "rmsprop": 1, "adam": 2, "adamw": 2}


def parameter_count(vocab_size: int, config: ModelConfig) -> int:
    """The number of parameters of a model of ``config`` on ``vocab_size``
    characters (csrc/model.hpp's count), without building it."""
    return config.parameters(vocab_size)


def workspace_elements(vocab_size: int, config: ModelConfig, B: int, T: int) -> int:
    """Elements of the core's workspace for a training call of B rows of T
    steps (csrc/workspace.hpp's plan_workspace, but for the packed weights;
    every block rounded up to 16)."""
    V, H, L, G = vocab_size, config.hidden_size, config.num_layers, GATES[config.cell]
    E = config.embedding_dim or 0
    N, GH = B * T, G * H
    n = 0
    for layer in range(L):
        n += N * GH + (T + 1) * B * H  # the gates; the hidden states
        n += (T + 1) * B * H if config.cell == "lstm" else 0
        n += N * H if config.cell == "gru" else 0
        p = config.dropout if layer > 0 else (config.input_dropout if E > 0 else 0.0)
        n += 2 * N * (H if layer > 0 else E) if p > 0 else 0
        n += 2 * GH * H if config.weight_drop > 0 else 0
    n += 2 * N * H if config.output_dropout > 0 else 0
    n += N * E if E > 0 else V * GH
    n += B * GH + (N * GH if config.cell == "gru" else 0) + 2 * B * H
    n += N * V + N * max(H, E)  # the logits; the gradient passed down
    return n + 16 * 40


@dataclass
class Needs:
    """Bytes a run will hold, by what holds them."""

    parts: Dict[str, float]

    @property
    def total(self) -> float:
        return sum(self.parts.values())

    def __str__(self) -> str:
        shown = ", ".join(f"{k} {v / GiB:.1f}" for k, v in self.parts.items() if v >= 0.05 * GiB)
        return f"{self.total / GiB:.1f} GiB" + (f" ({shown})" if shown else "")


def training_needs(vocab_size: int, config: ModelConfig, batch_size: int, seq_length: int,
                   optimizer: str = "adam") -> Needs:
    """What training a model of ``config`` on ``vocab_size`` characters with
    batches of ``batch_size`` x ``seq_length`` holds at its peak."""
    import numpy as np

    size = np.dtype(config.dtype).itemsize
    p = parameter_count(vocab_size, config) * size
    G, H, L = GATES[config.cell], config.hidden_size, config.num_layers
    packed = L * G * H * (H + 16)  # the recurrent weights packed for the products (at most)
    work = workspace_elements(vocab_size, config, batch_size, seq_length)
    return Needs({"parameters": float(p), "gradients": float(p),
                  "optimizer state": float(p * OPTIMIZER_BUFFERS.get(optimizer, 2)),
                  "workspace": float((work + packed) * size)})


def _read(path: str) -> Optional[str]:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _cgroup_room() -> Optional[float]:
    """Bytes left under this process's cgroup memory limit (the smallest on
    the way to the root; v2 memory.max less memory.current, v1
    memory.limit_in_bytes less memory.usage_in_bytes); None if no limit."""
    text = _read("/proc/self/cgroup")
    if not text:
        return None
    best: Optional[float] = None
    for line in text.splitlines():
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if controllers == "":
            roots, files = ["/sys/fs/cgroup"], ("memory.max", "memory.current")
        elif "memory" in controllers.split(","):
            roots, files = ["/sys/fs/cgroup/memory"], ("memory.limit_in_bytes",
                                                       "memory.usage_in_bytes")
        else:
            continue
        for root in roots:
            p = path.rstrip("/")
            while True:
                limit, used = (_read(os.path.join(root + p, f)) for f in files)
                if limit and used and limit != "max" and limit.isdigit() and used.isdigit():
                    room = float(limit) - float(used)
                    if float(limit) < 1 << 60 and (best is None or room < best):
                        best = room
                if not p:
                    break
                p = p[:p.rfind("/")]
    return best


def available() -> Tuple[Optional[float], str]:
    """Bytes this process can still be given, and what says so: the
    machine's available memory (/proc/meminfo's MemAvailable), or the
    cgroup's limit less what the cgroup already uses when that is less.
    (None, "") where neither can be read."""
    have: Optional[float] = None
    what = ""
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemAvailable:"):
            have, what = float(line.split()[1]) * 1024, "this machine has available"
    room = _cgroup_room()
    if room is not None and (have is None or room < have):
        have, what = max(room, 0.0), "this process's memory limit (cgroup) leaves"
    return have, what


def check_training(vocab_size: int, config: ModelConfig, batch_size: int, seq_length: int,
                   optimizer: str = "adam") -> Needs:
    """Raise MemoryError, naming what to shrink, when training this model
    needs more memory than this process can get; returns the needs."""
    needs = training_needs(vocab_size, config, batch_size, seq_length, optimizer)
    have, what = available()
    if have is not None and needs.total > have:
        raise MemoryError(
            f"this model needs about {needs} to train, more than the {have / GiB:.1f} GiB "
            f"{what}: use a smaller hidden_size ({config.hidden_size}), num_layers "
            f"({config.num_layers}) or batch_size ({batch_size})")
    return needs
