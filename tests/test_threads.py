"""The thread setting and the governor that picks each unit's team size
(csrc/threads.hpp): explicit settings are obeyed exactly, the usable cores
come from the affinity mask, the decision rule finds the faster team size in
made-up timings, and a team that changes size at every parallel region (and
ends regions early) gives the same bits as a fixed one, through resume too."""

import os
import subprocess
import sys
import warnings
from collections import Counter

import numpy as np
import pytest

import pycharrnn as pc
from pycharrnn import backend
from pycharrnn.backend import _core
from pycharrnn.evaluation import evaluate

TEXT = ("Whatever the team, the same bits: a sum split into the same pieces, "
        "added in the same order. ") * 40


@pytest.fixture
def auto_threads():
    """Auto mode for the test, the setting before it restored after."""
    before = None if backend.threads_auto() else pc.get_num_threads()
    pc.set_num_threads(None)
    yield
    _core._force_team_sizes([])
    pc.set_num_threads(before)


def _run(script, cwd, env=None):
    # Not from the checkout's root, where `import pycharrnn` finds the sources
    # instead of the installed package.
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       env={**os.environ, **(env or {})}, timeout=120, cwd=cwd)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_explicit_and_auto_settings(auto_threads):
    assert backend.threads_auto() and pc.build_info()["threads"] == "auto"
    assert pc.get_num_threads() == backend.usable_cores() >= 1
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        pc.set_num_threads(3)
    assert not backend.threads_auto() and pc.get_num_threads() == 3  # obeyed, and
    assert [str(w.message)[:4] for w in said] == (["n=3 "] if backend.usable_cores() < 3
                                                  else [])  # warned when too many
    assert pc.build_info()["threads"] == "explicit" and backend.thread_report() == {}
    pc.set_num_threads(None)
    assert backend.threads_auto()
    with pytest.raises(ValueError, match="number of threads"):
        pc.set_num_threads(0)


def test_omp_num_threads_is_an_explicit_setting(tmp_path):
    out = _run("import pycharrnn as pc; print(pc.get_num_threads(), pc.build_info()['threads'])",
               tmp_path, env={"OMP_NUM_THREADS": "3"})
    assert out == "3 explicit"


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no affinity masks here")
def test_usable_cores_follow_the_affinity_mask(tmp_path):
    out = _run("import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
               "import pycharrnn as pc; from pycharrnn import backend as b; "
               "print(b.usable_cores(), pc.get_num_threads())", tmp_path)
    assert out == "1 1"


def _sizes(seconds, units=3000):
    return _core._governor_simulate(seconds, units)


@pytest.mark.parametrize("seconds, best", [
    ([0.060, 0.033], 2),           # idle: two threads 1.8x faster
    ([0.065, 0.450], 1),           # one busy process on two cores: two threads 7x slower
    ([0.090, 0.092], 1),           # a tie under load goes to the smaller team
    ([0.20, 0.11, 0.08, 0.062, 0.061, 0.07, 0.09, 0.12], 5),  # a best in the middle
])
def test_the_decision_rule_settles_on_the_faster_size(seconds, best):
    sizes = _sizes(seconds)
    late = Counter(sizes[200:])
    top = late.most_common(1)[0][0]
    # The size it settles on is the best or within the 5% a probe must win by.
    assert seconds[top - 1] <= seconds[best - 1] * 1.05, late
    assert late[top] >= 0.97 * len(sizes[200:]), late


def test_probes_of_a_bad_size_cost_little():
    seconds = [0.065, 0.450]
    sizes = _sizes(seconds, 5000)
    # Probes are rare once settled (the wait doubles to 16 s) ...
    assert sizes[500:].count(2) <= 25
    # ... and cut at 1.5x the expected time of the window (at least 0.15 s),
    # the rest on one thread: time spent is within 3% of the best.
    cut = 1.5 * max(0.15, seconds[0])
    spent = sum(seconds[0] if s == 1 else min(seconds[1], cut) + seconds[0]
                for s in sizes[500:])
    assert spent <= 1.03 * seconds[0] * len(sizes[500:])


@pytest.mark.parametrize("seconds", [[0.33, 1.0], [0.14, 0.6]])  # beside 3 and 1 busy processes
def test_a_long_units_probe_is_abandoned_early_on_its_pace(seconds):
    # Each unit makes 40 num_threads() calls: a probe of two threads (3-4x
    # slower) is cut once its calls fall behind 1.5x the pace, plus a grace,
    # not after 1.5x a whole unit. The decisions are the same; the time lost
    # to the probes shrinks by more than half.
    units, best = 200, seconds[0] * 200
    plain, t_plain = _core._governor_simulate(seconds, units, total=True)
    paced, t_paced = _core._governor_simulate(seconds, units, calls=40, total=True)
    assert plain == paced and paced.count(2) >= 3
    assert t_paced - best < 0.5 * (t_plain - best)
    assert t_paced - best < 0.1 * paced.count(2)  # at most 0.1 s a probe


@pytest.mark.parametrize("seconds", [[0.33, 0.2], [0.2, 0.26], [0.08, 0.15], [0.05, 0.033]])
def test_the_pace_leaves_other_probes_alone(seconds):
    # A probe that wins, or loses by less than kAbandon, or a unit too short
    # to be paced, is judged as without the pace.
    assert (_core._governor_simulate(seconds, 300, calls=40)
            == _core._governor_simulate(seconds, 300))


def test_one_stalled_unit_does_not_end_a_probe():
    # Two threads 1.3x faster; the first probe's first unit waits a time
    # slice (3x its time). Judged over the window, the probe still wins at
    # once; judged by that unit alone it was abandoned and the next probe
    # came 2 s later (200 units).
    # (The first probe comes once one thread's units span a window, 0.15 s.)
    first = _core._governor_simulate([0.010, 0.0077], 600).index(2)
    scale = [1] * 600
    scale[first] = 3
    sizes = _core._governor_simulate([0.010, 0.0077], 600, scale=scale)
    assert sizes[first] == 2  # the first probe
    late = Counter(sizes[first + 30:first + 250])
    assert late[2] >= 0.9 * 220, late


def test_one_lucky_window_does_not_switch():
    # Beside other programs one thread's probe windows vary more than the
    # gap between the sizes: here one thread is 1.2x slower on the whole,
    # and half its units (in stretches of 30) are 10% faster than two
    # threads. Judged by one window it switched on a lucky one (two threads
    # 85% of the time after the start); needing three windows won in a row
    # (or one by 20%) keeps two threads.
    cycle = [1] * 30 + [0.6] * 30
    sizes = _core._governor_simulate([0.015, 0.010], 20000, scale=cycle, scale_size=1)
    late = Counter(sizes[300:])
    assert late[2] >= 0.95 * len(sizes[300:]), late


def test_a_size_whose_every_unit_bails_out_is_left():
    # Two threads fast at first (the estimate is made then), then 7x slower:
    # every unit on two threads bails out, and those bail-outs must count as
    # measurements of two threads, or the probe of one thread is judged
    # against the old estimate and loses for ever.
    sizes = _core._governor_simulate([0.060, 0.033], 3000, after=[0.065, 0.450],
                                     change_at=100)
    assert Counter(sizes[:100])[2] >= 80
    late = Counter(sizes[400:])
    assert late[1] >= 0.97 * len(sizes[400:]), late


def test_a_team_that_bails_out_at_every_short_unit_is_left_at_once():
    # Short units (blocks of sampled characters, 8 ms on one thread, 4 ms on
    # two) and then two threads 4x slower than one: every unit on two
    # threads bails out, each pair of bail-outs begins a probe and each lost
    # probe 0.2 s of units that are not measured. Judged against the
    # estimate from before the change (the current size's average did not
    # yet span a window), the probes of one thread lost for 2 s (200 units
    # here; traced: sampling with NumPy's products between the calls).
    sizes = _core._governor_simulate([0.008, 0.004], 2000, after=[0.008, 0.030],
                                     change_at=300)
    assert Counter(sizes[:300])[2] >= 270
    assert Counter(sizes[300:400])[2] <= 40, Counter(sizes[300:400])
    assert Counter(sizes[500:])[1] >= 0.97 * len(sizes[500:]), Counter(sizes[500:])


def test_no_probe_of_the_size_just_left_right_after_a_switch():
    # Two threads 7x slower than one from unit 100: once the team is down
    # to one thread there is no smaller size to try, and a probe of two
    # threads 0.5 s later only repeats the comparison just lost. The next
    # one comes after 2 s (about 30 units of 65 ms), as after a lost probe.
    sizes = _core._governor_simulate([0.060, 0.033], 600, after=[0.065, 0.450],
                                     change_at=100)
    first_one = next(i for i in range(100, 600) if sizes[i] == 1 and sizes[i + 1] == 1)
    settled = next(i for i in range(first_one, 600) if all(s == 1 for s in sizes[i:i + 5]))
    probes = [i for i in range(settled, 600) if sizes[i] == 2 and sizes[i - 1] == 1]
    assert probes and probes[0] - settled >= 25, (settled, probes[:3])


def test_the_shapes_of_one_model_share_its_team_size():
    # A validation reads eight chunks of one shape and one of another per
    # pass. When two threads become the better size, the rare shape must
    # follow the model's decision, not wait for a probe window of its own.
    shapes = [0] * 8 + [1]
    sizes = _core._governor_simulate([0.065, 0.450], 2000, after=[0.060, 0.033],
                                     change_at=100, shapes=shapes)
    assert Counter(sizes[200:300])[2] >= 90  # the model has moved to two threads
    rare = [s for i, s in enumerate(sizes) if i >= 300 and shapes[i % 9] == 1]
    assert rare[0] == 2  # it follows at once
    # The rest are its probes of one thread: a window of at least 0.15 s is
    # three of its units, one probe per wait of the model's cadence.
    assert Counter(rare)[2] >= 0.93 * len(rare), Counter(rare)


def test_a_short_unit_that_stalls_now_and_then_leaves_the_probing_alone():
    # A validation pass: eight chunks of 40 ms and a 1 ms last chunk, which
    # beside other programs now and then waits a time slice (here 20x its
    # time). A load change is judged over a window of units, so the
    # stalls must not restart the probing of two threads (7x slower here):
    # 5,000 units are about 200 s, a probe every 16 s once settled.
    shapes = [0] * 8 + [1]
    scale = ([1] * 8 + [0.025]) * 4 + [1] * 8 + [0.5]
    sizes = _core._governor_simulate([0.040, 0.300], 6000, shapes=shapes, scale=scale)
    probes = sum(1 for a, b in zip(sizes[1000:], sizes[1001:]) if (a, b) == (1, 2))
    assert probes <= 16, probes
    # A real change of load is still seen: two threads become 1.8x faster.
    sizes = _core._governor_simulate([0.065, 0.450], 3000, after=[0.060, 0.033],
                                     change_at=1000, shapes=shapes, scale=scale)
    late = Counter(sizes[1300:])
    assert late[2] >= 0.97 * len(sizes[1300:]), late


def _phases(lengths, units):
    """One thread's time per unit beside two busy processes on two cores:
    a whole core for a while, then half of one (0.55x and 1.35x its mean),
    in phases of ``lengths`` units, over and over."""
    out, k = [], 0
    while len(out) < units:
        out += [0.55 if k % 2 == 0 else 1.35] * lengths[k % len(lengths)]
        k += 1
    return out[:units]


@pytest.mark.parametrize("lengths", [[12, 20, 8, 25, 15, 10, 30, 9], [10, 16, 24, 12, 8, 20],
                                     [6, 14, 9, 22, 12, 7, 18, 11]])
@pytest.mark.parametrize("two", [0.026, 0.030, 0.033])
def test_a_share_of_the_cores_that_comes_in_phases_leaves_the_probing_alone(lengths, two):
    # Sampled blocks of 25 ms on one thread, whose windows (0.15 s) run at
    # half or twice each other in turns; two threads are steady and no
    # faster. Judged one window against the first after a decision, the
    # phases were "changes of load", each a probe at once: 23-62 probes in
    # these ~110 s. The back-off allows 8-9 (0.2, 2.5, 10.5, 26.5 s, ...).
    sizes = _core._governor_simulate([0.025, two], 4000, scale=_phases(lengths, 4000),
                                     scale_size=1)
    starts = sum(1 for a, b in zip(sizes, sizes[1:]) if (a, b) == (1, 2))
    assert starts <= 12, starts


def test_a_load_that_leaves_is_seen_without_waiting_for_the_next_probe():
    # One thread at half a core and two threads far slower (a busy process
    # beside), settled on one thread with the wait at 16 s; then the other
    # program ends. One thread's windows twice as fast, two in a row, are
    # a change of load: a probe of two threads at once, which wins.
    sizes = _core._governor_simulate([0.130, 0.450], 1400, after=[0.060, 0.033],
                                     change_at=1000)
    assert Counter(sizes[900:1000])[1] >= 95
    assert Counter(sizes[1000:1050])[2] >= 35, sizes[1000:1050]


def test_a_rare_shape_slow_per_character_does_not_start_probes():
    # A validation pass on an idle machine: nine short chunks, then a last
    # chunk of one time step, with 12x the time per character of the full
    # chunks (whose estimate it inherits) and faster on one thread. Its
    # first unit ran past the inherited deadline, so it kept that estimate,
    # every unit of it bailed out, and each pair of them (one per pass)
    # started a probe of one thread: 39% of the full chunks ran on one
    # thread here (measured: 25 probes in 10 s of validation, at 0.75 of
    # two threads' speed). Once settled, the full chunks run on two threads
    # but for the rare probes of one (a wait of up to 16 s).
    shapes = [0] * 9 + [1]
    scale = [1] * 9 + [12]
    sizes = _core._governor_simulate([0.001, 0.0005], 100000, shapes=shapes, scale=scale,
                                     scale_size=2)
    full = Counter(s for i, s in enumerate(sizes) if i >= 5000 and shapes[i % 10] == 0)
    assert full[2] >= 0.97 * sum(full.values()), full


def _trainer(tmp_path, cell):
    vocab = pc.Vocab.from_text(TEXT)
    # Big enough that the recurrence, the products and the updates run on a
    # team (csrc/recurrence.hpp's kParallelRecur, gemm's kParallelGemm).
    m = pc.CharRNN(vocab, hidden_size=64, num_layers=2, cell=cell, embedding_dim=16,
                   dropout=0.1, seed=7)
    return pc.Trainer(m, TEXT, batch_size=8, seq_length=48, optimizer=pc.optim.Adam(m, lr=3e-3),
                      eval_every=6, checkpoint_dir=tmp_path, checkpoint_every=5,
                      progress=False, stop_on_signals=False)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_a_team_that_changes_size_gives_the_same_bits_and_resumes(tmp_path, cell,
                                                                   auto_threads):
    pc.set_num_threads(1)
    fixed = _trainer(tmp_path / "fixed", cell)
    fixed.run(steps=16)
    text = fixed.model.sample(200, seed=3)

    pc.set_num_threads(None)
    _core._force_team_sizes([3, 1, 2, 2, 4, 1, 3])  # 4 > cores: the barrier's waits sleep
    part = _trainer(tmp_path / "part", cell)
    part.run(steps=10)
    _core._force_team_sizes([2, 3, 1])
    back = pc.Trainer.resume(tmp_path / "part", TEXT)
    back.run(until_step=16)
    assert np.array_equal(back.model.flat_params, fixed.model.flat_params)
    assert [h["loss"] for h in back.history] == [h["loss"] for h in fixed.history]
    # The interrupted run also validated at its end (step 10); the rest agree.
    assert [v for v in back.val_history if v["step"] != 10] == fixed.val_history
    assert back.model.sample(200, seed=3) == text


def test_the_governor_reports_what_it_timed(auto_threads):
    m = pc.CharRNN(40, hidden_size=96, num_layers=1, cell="gru", embedding_dim=16, seed=1)
    ids = np.random.default_rng(0).integers(0, 40, 5000).astype(np.int32)
    before = backend.thread_report()["loss"]["units"]
    evaluate(m, ids)
    rep = backend.thread_report()
    assert rep["loss"]["units"] > before
    assert 1 <= rep["loss"]["threads"] <= backend.usable_cores()


def test_a_samples_context_is_not_timed_as_work_of_its_own(auto_threads):
    # The prime (a few characters, once per sample) runs on the team the
    # model's sampling chose; timed as a kind of work of its own, its probes
    # of another team size lasted hundreds of samples (threads.hpp, Follow).
    m = pc.CharRNN(40, hidden_size=96, num_layers=1, cell="gru", embedding_dim=16, seed=1)
    prime = np.arange(8, dtype=np.int32)
    m.sample_ids(50, prime=prime, seed=1)
    before = backend.thread_report()
    for _ in range(5):
        m.sample_ids(50, prime=prime, seed=1)
    rep = backend.thread_report()
    assert rep["sample"]["units"] == before["sample"]["units"] + 5
    assert rep["loss"]["units"] == before["loss"]["units"]
    auto = m.sample_ids(50, prime=prime, seed=1)
    pc.set_num_threads(1)
    assert np.array_equal(auto, m.sample_ids(50, prime=prime, seed=1))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/task is Linux's")
def test_this_process_threads_are_not_counted_as_other_load():
    # The first team size subtracts this process's own running threads from
    # the machine's (a pool still spinning after its last call is not another
    # program's load). Two threads that hash without the GIL are always
    # running or waiting for a CPU, so they are counted as this process's.
    import hashlib
    import threading
    import time

    data = b"x" * (1 << 24)
    stop = threading.Event()
    started = threading.Barrier(3)

    def spin():
        started.wait()
        while not stop.is_set():
            hashlib.sha256(data).digest()

    threads = [threading.Thread(target=spin) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        started.wait()
        counts = []
        for _ in range(50):  # the hashing threads take the GIL between hashes: let them
            time.sleep(0.002)
            counts.append(_core._own_runnable_threads())
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert max(counts) >= 3  # this thread and the two hashing ones
    alone = _core._own_runnable_threads()
    assert 1 <= alone <= max(counts)
