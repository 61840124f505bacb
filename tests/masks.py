"""The dropout masks a training call draws, derived independently in NumPy
from the description in csrc/rng.hpp and csrc/dropout.hpp (hash_uniform, one
stream per kind of mask), for tests that rebuild a regularised call elsewhere (torch, NumPy)."""

from __future__ import annotations

from typing import Dict

import numpy as np

INPUT_STREAM, OUTPUT_STREAM, EMBEDDING_STREAM, WEIGHT_STREAM = 2**20, 2**20 + 1, 2**20 + 2, 2**21
_M = 2**64 - 1


def hash_uniform(seed: int, stream: int, index: np.ndarray) -> np.ndarray:
    """Uniform [0, 1) floats, one per index: splitmix64's finaliser of
    seed + golden * (stream + 1) + c * index, top 53 bits."""
    i = np.asarray(index, dtype=np.uint64)
    base = np.uint64((seed + 0x9E3779B97F4A7C15 * (stream + 1)) & _M)
    with np.errstate(over="ignore"):
        z = base + np.uint64(0xBF58476D1CE4E5B9) * i
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53


def _activation_mask(p: float, locked: bool, seed: int, stream: int, B: int, T: int,
                     width: int) -> np.ndarray:
    """[B, T, width], batch-first, scaled by 1 / (1 - p)."""
    if locked:
        u = hash_uniform(seed, stream, np.arange(B * width)).reshape(1, B, width)
        u = np.repeat(u, T, axis=0)
    else:
        u = hash_uniform(seed, stream, np.arange(T * B * width)).reshape(T, B, width)
    return np.where(u >= p, 1.0 / (1.0 - p), 0.0).transpose(1, 0, 2)


def dropout_masks(model, seed: int, B: int, T: int) -> Dict[str, np.ndarray]:
    """Every mask of ``model``'s training call with ``seed`` on a [B, T]
    batch: "in{l}" [B, T, width] on layer l's input, "out" [B, T, H],
    "w{l}" [G*H, H] on weight_hh_l{l}, "emb" [V] on the embedding's rows.
    Kinds that are off are absent."""
    H, L, E = model.hidden_size, model.num_layers, model.embedding_dim
    G = {"rnn": 1, "gru": 3, "lstm": 4}[model.cell]
    lk = model.locked_dropout
    masks: Dict[str, np.ndarray] = {}
    if E and model.embedding_dropout > 0:
        u = hash_uniform(seed, EMBEDDING_STREAM, np.arange(model.vocab_size))
        masks["emb"] = np.where(u >= model.embedding_dropout,
                                1.0 / (1.0 - model.embedding_dropout), 0.0)
    if E and model.input_dropout > 0:
        masks["in0"] = _activation_mask(model.input_dropout, lk, seed, INPUT_STREAM, B, T, E)
    for layer in range(1, L):
        if model.dropout > 0:
            masks[f"in{layer}"] = _activation_mask(model.dropout, lk, seed, layer, B, T, H)
    if model.output_dropout > 0:
        masks["out"] = _activation_mask(model.output_dropout, lk, seed, OUTPUT_STREAM, B, T, H)
    if model.weight_drop > 0:
        for layer in range(L):
            u = hash_uniform(seed, WEIGHT_STREAM + layer, np.arange(G * H * H))
            masks[f"w{layer}"] = np.where(u >= model.weight_drop,
                                          1.0 / (1.0 - model.weight_drop), 0.0
                                          ).reshape(G * H, H)
    return masks
