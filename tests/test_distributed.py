"""Data-parallel training on MPI (pycharrnn.distributed): N ranks make the
steps one process makes with the whole batch.

The runs under mpiexec need mpi4py and an MPI launcher (``pip install
".[mpi]"`` brings both); without them those tests skip and the rest (the
row-sliced dropout, the error without mpi4py, the launcher detection) run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pytest

import pycharrnn as pc
from pycharrnn.data import Batches

import distributed_job as job
from conftest import find_mpiexec

HERE = Path(__file__).resolve().parent
JOB = HERE / "distributed_job.py"


MPIEXEC = find_mpiexec()
needs_mpi = pytest.mark.skipif(MPIEXEC is None, reason='needs mpi4py and mpiexec: '
                               'pip install ".[mpi]"')

F64 = dict(dtype="float64")
#: Configurations run on 2 ranks and alone (20 steps; validation every 10).
CONFIGS: List[Dict[str, Any]] = [
    # LSTM, 2 layers, embedding, dropout between layers and on the input,
    # Adam with norm clipping, a cosine schedule.
    dict(model=dict(cell="lstm", hidden_size=24, num_layers=2, embedding_dim=8, dropout=0.2,
                    input_dropout=0.1, **F64),
         optimizer="adam", opt=dict(lr=3e-3, clip_norm=0.5), cosine=True, steps=20),
    # GRU, one-hot, locked dropout on the output, weight drop; AdaGrad with value clipping.
    dict(model=dict(cell="gru", hidden_size=20, output_dropout=0.3, locked_dropout=True,
                    weight_drop=0.2, **F64),
         optimizer="adagrad", opt=dict(lr=0.05, clip_value=1.0), steps=20),
    # ReLU RNN, 3 layers; SGD with Nesterov momentum; RMSProp-free but value-clipped.
    dict(model=dict(cell="rnn", nonlinearity="relu", hidden_size=16, num_layers=3, **F64),
         optimizer="sgd", opt=dict(lr=0.05, momentum=0.9, nesterov=True, clip_value=2.0),
         steps=20),
    # float32: 1e-5.
    dict(model=dict(cell="lstm", hidden_size=24, num_layers=2, embedding_dim=8, dropout=0.1,
                    dtype="float32"),
         optimizer="rmsprop", opt=dict(lr=2e-3, centered=True, clip_norm=1.0), steps=20),
]


def _mpirun(n: int, jobs: List[Dict[str, Any]], tmp: Path, timeout: float = 240,
            check: bool = True) -> subprocess.CompletedProcess:
    """Run ``jobs`` on ``n`` ranks; rank 0 leaves tmp/out/<i>.npz."""
    (tmp / "out").mkdir(exist_ok=True)
    (tmp / "jobs.json").write_text(json.dumps(jobs))
    cmd = [MPIEXEC, "-n", str(n), sys.executable, "-m", "mpi4py", str(JOB),
           str(tmp / "jobs.json"), str(tmp / "out")]
    # cwd: not the checkout, whose pycharrnn/ has no compiled core.
    p = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"mpiexec -n {n} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


def _alone(cfg: Dict[str, Any]) -> Dict[str, np.ndarray]:
    pc.set_num_threads(1)
    return job.results(job.run(cfg))


def _tolerance(cfg) -> float:
    return 1e-5 if cfg["model"].get("dtype") == "float32" else 1e-12


def assert_same_run(got: Dict[str, np.ndarray], want: Dict[str, np.ndarray], tol: float,
                    what: str = "") -> None:
    """Every array within ``tol`` relative to its largest element."""
    assert set(k for k in got if k not in ("rank_steps", "threads")) == set(want), what
    for k, w in want.items():
        g = got[k]
        assert g.shape == w.shape, f"{what} {k}: shape {g.shape} vs {w.shape}"
        if w.size == 0:
            continue
        scale = max(float(np.abs(w).max()), 1e-30)
        err = float(np.abs(g.astype(np.float64) - w).max()) / scale
        assert err <= tol, f"{what} {k}: relative difference {err:.2e} > {tol:g}"


# ------------------------------------------------------------------ MPI runs
@needs_mpi
def test_two_ranks_make_the_steps_of_one_process(tmp_path):
    _mpirun(2, CONFIGS, tmp_path)
    for i, cfg in enumerate(CONFIGS):
        got = dict(np.load(tmp_path / "out" / f"{i}.npz"))
        assert got["rank_steps"].tolist() == [20, 20]
        assert int(got["threads"]) == 1
        want = _alone(cfg)
        assert want["val_loss"].size == 2  # validated at steps 10 and 20
        assert_same_run(got, want, _tolerance(cfg), what=f"config {i}")


@needs_mpi
def test_four_ranks_sharing_two_cores(tmp_path):
    cfgs = [CONFIGS[0], dict(CONFIGS[3], trainer=dict(batch_size=12))]
    _mpirun(4, cfgs, tmp_path)
    for i, cfg in enumerate(cfgs):
        got = dict(np.load(tmp_path / "out" / f"{i}.npz"))
        assert got["rank_steps"].tolist() == [20] * 4
        assert_same_run(got, _alone(cfg), _tolerance(cfg), what=f"config {i}")


@needs_mpi
def test_a_run_started_on_two_ranks_resumes_alone_and_on_four(tmp_path):
    """N ranks save the whole batch's state; M ranks (or one process) take
    their streams of it and go on as if nothing had changed."""
    cfg = dict(CONFIGS[0], trainer=dict(batch_size=12, checkpoint_every=5),
               checkpoint_dir=str(tmp_path / "run"), steps=20, until=10)
    _mpirun(2, [cfg], tmp_path)
    # only rank 0 wrote (the run directory's other files: run.json, metrics.jsonl, curves.png)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()
                  if p.suffix in (".npz", ".tmp")) == ["best.npz", "latest.npz"]
    for d in ("alone", "four"):
        shutil.copytree(tmp_path / "run", tmp_path / d)
    want = _alone(dict(cfg, checkpoint_dir=None, until=20))
    alone = _alone(dict(resume_from=str(tmp_path / "alone"), steps=20))
    assert_same_run(alone, want, 1e-12, "resumed alone")
    _mpirun(4, [dict(resume_from=str(tmp_path / "four"), steps=20)], tmp_path)
    four = dict(np.load(tmp_path / "out" / "0.npz"))
    assert_same_run(four, want, 1e-12, "resumed on 4 ranks")
    # What rank 0 wrote is what one process would have written.
    m, ts = pc.rundir.load_training(tmp_path / "four")
    assert ts.trainer["step"] == 20 and ts.state.shape[2] == 12
    np.testing.assert_allclose(ts.state, want["state"], rtol=0, atol=1e-12)


@needs_mpi
def test_a_stop_on_one_rank_stops_every_rank_after_the_next_step(tmp_path):
    cfgs = [dict(CONFIGS[1], stop_at=[1, 5], steps=50),
            dict(CONFIGS[1], seconds=0.3, steps=10**6)]
    _mpirun(2, cfgs, tmp_path)
    stopped = dict(np.load(tmp_path / "out" / "0.npz"))
    assert stopped["rank_steps"].tolist() == [6, 6]
    want = _alone(dict(CONFIGS[1], steps=6))
    assert_same_run(stopped, want, 1e-12, "stopped")
    timed = dict(np.load(tmp_path / "out" / "1.npz"))
    s = timed["rank_steps"].tolist()
    assert s[0] == s[1] and 1 <= s[0] < 10**6


@needs_mpi
def test_bad_setups_stop_every_rank_with_a_clear_error(tmp_path):
    p = _mpirun(3, [CONFIGS[1]], tmp_path, timeout=120, check=False)
    assert p.returncode != 0
    assert "batch_size=8 does not split over 3 ranks" in p.stderr
    p = _mpirun(2, [dict(CONFIGS[1], other_text_on=1)], tmp_path, timeout=120, check=False)
    assert p.returncode != 0
    assert "the ranks disagree on the training setup: data" in p.stderr


def _cli(tmp: Path, out: str, n: int = 0, extra: List[str] = (), timeout: float = 240):
    data = tmp / "text.txt"
    if not data.exists():
        data.write_text(job.TEXT, encoding="utf-8")
    cmd = ([MPIEXEC, "-n", str(n)] if n else []) + [
        sys.executable, "-m", "pycharrnn", "train", str(data), "--out", str(tmp / out),
        "--steps", "30", "--cell", "gru", "--hidden-size", "32", "--dtype", "float64",
        "--batch-size", "8", "--seq-length", "20", "--eval-every", "15",
        "--checkpoint-every", "10", "--dropout", "0.1", "--layers", "2",
        "--sample-length", "50", "--no-bar", "--log-every", "10", "--threads", "1"] + list(extra)
    return subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=timeout)


@needs_mpi
def test_command_line_under_mpiexec(tmp_path):
    alone = _cli(tmp_path, "alone")
    assert alone.returncode == 0, alone.stderr
    two = _cli(tmp_path, "two", n=2)
    assert two.returncode == 0, two.stderr
    # Rank 0 prints, once; the same numbers as alone.
    assert two.stdout.count("CharRNN(") == 1 and two.stdout.count("--- sample ---") == 1
    assert "2 ranks x 1 thread (4 of the 8 streams each)" in two.stdout
    def validations(out: str) -> List[str]:
        return [ln for ln in out.splitlines() if ln.startswith("step") and "validation" in ln]

    assert validations(two.stdout) == validations(alone.stdout)
    assert len(validations(alone.stdout)) == 2
    # Rank 0 writes the same files.
    names = sorted(p.name for p in (tmp_path / "alone").iterdir())
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == names
    a, b = pc.load(tmp_path / "alone"), pc.load(tmp_path / "two")
    assert np.abs(a.flat_params - b.flat_params).max() <= 1e-12 * np.abs(a.flat_params).max()
    lines = [(tmp_path / d / "metrics.jsonl").read_text().count("\n") for d in ("alone", "two")]
    assert lines[0] == lines[1] == 30 + 2
    # Resumed on 4 ranks to 40 steps: as alone.
    more = ["--steps", "40", "--resume"]
    r4 = subprocess.run([MPIEXEC, "-n", "4", sys.executable, "-m", "pycharrnn", "train",
                         "--out", str(tmp_path / "two"), "--quiet", "--threads", "1"] + more,
                        cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert r4.returncode == 0, r4.stderr
    r1 = subprocess.run([sys.executable, "-m", "pycharrnn", "train", "--out",
                         str(tmp_path / "alone"), "--quiet"] + more,
                        cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert r1.returncode == 0, r1.stderr
    a, b = pc.load(tmp_path / "alone"), pc.load(tmp_path / "two")
    assert np.abs(a.flat_params - b.flat_params).max() <= 1e-12 * np.abs(a.flat_params).max()


@needs_mpi
def test_command_line_error_on_one_rank_ends_the_job(tmp_path):
    (tmp_path / "taken").write_text("a file where the run directory should go")
    p = _cli(tmp_path, "taken", n=2, timeout=120)
    assert p.returncode != 0
    assert "pycharrnn: rank 0 of 2: error:" in p.stderr and "taken" in p.stderr


@needs_mpi
def test_batch_size_not_a_multiple_on_the_command_line(tmp_path):
    p = _cli(tmp_path, "odd", n=3, timeout=120)
    assert p.returncode != 0
    assert "error: --batch-size 8 does not split over 3 ranks" in p.stderr  # the flag, named
    assert not (tmp_path / "odd").exists()


# ------------------------------------------------------------- without MPI
def test_rows_give_each_row_its_dropout_mask_of_the_whole_batch():
    """forward_backward on rows first..first+b of a batch, with the same
    dropout seed, is that batch's forward_backward restricted to the rows:
    the mean of the parts' gradients is the whole batch's."""
    rng = np.random.default_rng(0)
    for kw in (dict(dropout=0.3, input_dropout=0.2, output_dropout=0.25, weight_drop=0.1),
               dict(dropout=0.3, output_dropout=0.4, locked_dropout=True)):
        m = pc.CharRNN(11, hidden_size=12, num_layers=2, cell="lstm", embedding_dim=5,
                       dtype="float64", seed=1, **kw)
        x, y = rng.integers(0, 11, (6, 9)), rng.integers(0, 11, (6, 9))
        s0 = m.initial_state(6)
        s0 = tuple(a + rng.normal(size=a.shape) * 0.3 for a in s0)
        r = m.rng_state
        whole, end = m.forward_backward(x, y, s0)
        g = m.flat_grads.copy()
        parts, acc = 0.0, np.zeros_like(g)
        for first in (0, 2, 4):
            m.rng_state = r
            loss, e = m.forward_backward(x[first:first + 2], y[first:first + 2],
                                         tuple(a[:, first:first + 2] for a in s0),
                                         rows=(first, 6))
            parts += loss / 3
            acc += m.flat_grads / 3
            np.testing.assert_allclose(e[0], end[0][:, first:first + 2], rtol=0, atol=1e-14)
        assert abs(parts - whole) <= 1e-14
        np.testing.assert_allclose(acc, g, rtol=0, atol=1e-14 * np.abs(g).max())
        # Without rows= the part draws another mask: the test can tell.
        m.rng_state = r
        m.forward_backward(x[2:4], y[2:4], tuple(a[:, 2:4] for a in s0))
        other = m.flat_grads.copy()
        m.rng_state = r
        m.forward_backward(x[2:4], y[2:4], tuple(a[:, 2:4] for a in s0), rows=(2, 6))
        assert np.abs(other - m.flat_grads).max() > 1e-6


def test_rows_out_of_the_batch_are_refused():
    m = pc.CharRNN(5, hidden_size=4, dtype="float64", dropout=0.0)
    x = np.zeros((2, 3), np.int32)
    for rows in ((5, 6), (-1, 6), (0, 1)):
        with pytest.raises(ValueError, match="do not hold the 2 rows of x"):
            m.forward_backward(x, x, rows=rows)


def test_batches_read_their_streams():
    ids = np.arange(1000, dtype=np.int32) % 50
    whole = Batches(ids, 8, 10)
    part = Batches(ids, 8, 10, rows=(2, 3))
    for _ in range(3):
        x, y, _ = whole.next()
        px, py, _ = part.next()
        np.testing.assert_array_equal(px, x[2:5])
        np.testing.assert_array_equal(py, y[2:5])
    with pytest.raises(ValueError, match="not streams of batch_size=8"):
        Batches(ids, 8, 10, rows=(6, 3))


def test_distributed_without_mpi4py_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # import mpi4py raises ImportError
    m = pc.CharRNN(pc.Vocab.from_text(job.TEXT), hidden_size=8)
    with pytest.raises(ImportError, match=r'pip install "pycharrnn\[mpi\]"'):
        pc.Trainer(m, job.TEXT, distributed=True)
    with pytest.raises(TypeError, match="distributed must be"):
        pc.Trainer(m, job.TEXT, distributed="yes")


def test_the_package_does_not_import_mpi4py(tmp_path):
    code = ("import sys, pycharrnn as pc\n"
            "m = pc.CharRNN(pc.Vocab.from_text('abcabc' * 50), hidden_size=8)\n"
            "pc.Trainer(m, 'abcabc' * 50, batch_size=2, seq_length=5).run(steps=2)\n"
            "from pycharrnn import cli\n"
            "cli.main(['info'])\n"
            "assert 'mpi4py' not in sys.modules, 'mpi4py imported'\n")
    p = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr


def test_launched_size_reads_the_launchers_variables(monkeypatch):
    from pycharrnn.distributed import launched_size

    for name in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert launched_size() == 1
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "4")
    assert launched_size() == 4
    monkeypatch.setenv("PMI_SIZE", "junk")
    assert launched_size() == 4


# ------------------------------------------------------ across a real network
def _ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)


@pytest.fixture
def two_hosts():
    """Two network namespaces joined by a veth pair: hosts A and B, each
    with its own interface and address, reachable from each other only
    through that link. Skips where namespaces cannot be made (not root, no
    iproute2, a container without the capability)."""
    if MPIEXEC is None:
        pytest.skip('needs mpi4py and mpiexec: pip install ".[mpi]"')
    version = subprocess.run([MPIEXEC, "--version"], capture_output=True, text=True,
                             timeout=60).stdout
    if "HYDRA" not in version:  # the launcher options below are hydra's (MPICH)
        pytest.skip("needs MPICH's mpiexec (hydra)")
    if shutil.which("ip") is None or os.geteuid() != 0:
        pytest.skip("needs iproute2 and root to make network namespaces")
    tag = f"pcr{os.getpid() % 100000}"
    net = f"10.{200 + os.getpid() % 50}.{os.getpid() % 250}"
    hosts = {"a": (f"{tag}a", f"{tag}va", f"{net}.1"), "b": (f"{tag}b", f"{tag}vb", f"{net}.2")}
    made = []
    try:
        for ns, _, _ in hosts.values():
            r = _ip("netns", "add", ns)
            if r.returncode:
                pytest.skip(f"cannot make a network namespace: {r.stderr.strip()}")
            made.append(ns)
        (na, va, ipa), (nb, vb, ipb) = hosts["a"], hosts["b"]
        steps = [("link", "add", va, "type", "veth", "peer", "name", vb),
                 ("link", "set", va, "netns", na), ("link", "set", vb, "netns", nb),
                 ("-n", na, "addr", "add", f"{ipa}/24", "dev", va),
                 ("-n", nb, "addr", "add", f"{ipb}/24", "dev", vb),
                 ("-n", na, "link", "set", va, "up"), ("-n", nb, "link", "set", vb, "up"),
                 ("-n", na, "link", "set", "lo", "up"), ("-n", nb, "link", "set", "lo", "up")]
        for s in steps:
            r = _ip(*s)
            if r.returncode:
                pytest.skip(f"cannot join the namespaces (ip {' '.join(s)}): {r.stderr.strip()}")
        yield hosts
    finally:
        for ns in made:
            _ip("netns", "del", ns)


def _tx_bytes(ns: str, dev: str) -> int:
    r = subprocess.run(["ip", "netns", "exec", ns, "cat",
                        f"/sys/class/net/{dev}/statistics/tx_bytes"],
                       capture_output=True, text=True, timeout=30, check=True)
    return int(r.stdout)


def test_two_hosts_joined_by_a_network(two_hosts, tmp_path):
    """Two ranks on two hosts (network namespaces: each its own network
    stack, linked by a veth pair), mpiexec started on host A and reaching
    host B through a launcher, as ssh would. MPI is told to use TCP: on one
    machine it would otherwise find the shared memory the namespaces still
    share. The gradients cross the link: host A sends at least one full
    gradient per step over it. The result is one process's."""
    (na, va, ipa), (nb, _, ipb) = two_hosts["a"], two_hosts["b"]
    launcher = tmp_path / "launch-into-namespace"
    launcher.write_text("#!/bin/sh\n"
                        "# Called as ssh would be: [options] HOST COMMAND...\n"
                        'while [ "${1#-}" != "$1" ]; do shift; done\n'
                        'host=$1; shift\n'
                        f'case "$host" in {ipa}) ns={na};; {ipb}) ns={nb};; '
                        '*) echo "unknown host $host" >&2; exit 1;; esac\n'
                        'exec ip netns exec "$ns" sh -c "$*"\n')
    launcher.chmod(0o755)
    cfg = CONFIGS[1]
    (tmp_path / "out").mkdir()
    (tmp_path / "jobs.json").write_text(json.dumps([cfg]))
    env = dict(os.environ, MPICH_CH4_NETMOD="ofi", FI_PROVIDER="tcp", UCX_TLS="tcp")
    before = _tx_bytes(na, va)
    p = subprocess.run(["ip", "netns", "exec", na, MPIEXEC, "-hosts", f"{ipa},{ipb}",
                        "-n", "2", "-ppn", "1", "-launcher", "ssh",
                        "-launcher-exec", str(launcher),
                        sys.executable, "-m", "mpi4py", str(JOB), str(tmp_path / "jobs.json"),
                        str(tmp_path / "out")],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stdout + p.stderr
    sent = _tx_bytes(na, va) - before
    got = dict(np.load(tmp_path / "out" / "0.npz"))
    assert got["rank_steps"].tolist() == [20, 20]
    assert_same_run(got, _alone(cfg), 1e-12, "across the link")
    grad_bytes = got["params"].nbytes
    assert sent >= 20 * grad_bytes, f"{sent:,} bytes crossed the link, < 20 x {grad_bytes:,}"
    print(f"{sent:,} bytes left host A over the link in 20 steps "
          f"({sent / (20 * grad_bytes):.2f} gradients a step)")
