"""Fuzz the C++ boundary in a child process (tests/fuzz_core.py): a crash,
a hang or an undocumented exception fails the test and names the call."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

FUZZ = Path(__file__).with_name("fuzz_core.py")


def _limit_memory():
    # A runaway allocation fails in the child instead of exhausting the
    # machine (not under AddressSanitizer, which reserves terabytes).
    if "asan" not in os.environ.get("LD_PRELOAD", ""):
        lim = 8 << 30
        resource.setrlimit(resource.RLIMIT_AS, (lim, lim))


def run_fuzz(tmp_path, examples: int, seed: int, timeout: float) -> dict:
    log = tmp_path / "fuzz.log"
    try:
        p = subprocess.run([sys.executable, str(FUZZ), "--examples", str(examples),
                            "--seed", str(seed), "--log", str(log)],
                           capture_output=True, text=True, timeout=timeout,
                           preexec_fn=_limit_memory)
    except subprocess.TimeoutExpired:
        last = log.read_text().splitlines()[-1:] if log.exists() else []
        pytest.fail(f"the fuzzer hung (seed {seed}); last call: {last}")
    if p.returncode != 0:
        last = log.read_text().splitlines()[-1:] if log.exists() else []
        how = f"signal {-p.returncode}" if p.returncode < 0 else f"exit {p.returncode}"
        pytest.fail(f"fuzzing failed ({how}, seed {seed}); last call: {last}\n"
                    f"{p.stdout[-3000:]}\n{p.stderr[-6000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def _check_summary(s: dict, examples: int):
    assert s["total"] >= examples
    for target, n in s["cases"].items():
        assert n > 0, target
        # Each target reached both the kernels and the argument checks.
        outcomes = {k.split(":")[1] for k in s["outcomes"] if k.startswith(target + ":")}
        assert "ok" in outcomes, (target, outcomes)
        assert outcomes - {"ok"}, (target, outcomes)


def test_fuzz_core_10000_cases(tmp_path):
    examples = int(os.environ.get("PYCHARRNN_FUZZ_EXAMPLES", "10000"))
    seed = int(os.environ.get("PYCHARRNN_FUZZ_SEED", "0"))
    s = run_fuzz(tmp_path, examples, seed, timeout=900)
    _check_summary(s, examples)
    print(f"fuzzed {s['total']} cases (seed {seed}): {s['outcomes']}")


@pytest.mark.slow
def test_fuzz_core_long_random_seed(tmp_path):
    examples = int(os.environ.get("PYCHARRNN_FUZZ_LONG", "100000"))
    seed = int.from_bytes(os.urandom(4), "little")
    s = run_fuzz(tmp_path, examples, seed, timeout=3600)
    _check_summary(s, examples)
    print(f"fuzzed {s['total']} cases (seed {seed})")
