"""K training steps in one C++ call (Trainer(steps_per_call=K)) against the
same steps made one by one from Python (steps_per_call=1): the same bits
in the parameters, optimizer state, carried state and metrics, for every
optimizer, clipping, schedule, cell and regulariser; chunks end where Python
is needed (validation, checkpoints, epoch ends, callbacks that are due)."""

import math

import numpy as np
import pytest

import pycharrnn as pc
from pycharrnn import optim
from pycharrnn.errors import TrainingDiverged
from pycharrnn.schedule import CosineWarmup, ReduceOnPlateau, StepDecay

TEXT = ("It was the best of times, it was the worst of times, it was the age of "
        "wisdom, it was the age of foolishness.\n") * 12


def make(cell="rnn", dtype="float32", layers=1, E=None, dropout=0.0, **model_kw):
    return pc.CharRNN(pc.Vocab.from_text(TEXT), hidden_size=24, num_layers=layers, cell=cell,
                      embedding_dim=E, dropout=dropout, dtype=dtype, seed=3, **model_kw)


OPTIMIZERS = {
    "sgd": lambda m: optim.SGD(m, lr=0.3, momentum=0.9, nesterov=True, weight_decay=1e-3,
                               clip_norm=1.0),
    "sgd-plain": lambda m: optim.SGD(m, lr=0.5, clip_value=0.05),
    "adagrad": lambda m: optim.AdaGrad(m, lr=0.1, eps=1e-8, clip_value=5.0,
                                       eps_inside_sqrt=True, lr_decay=0.01),
    "rmsprop": lambda m: optim.RMSProp(m, lr=2e-3, alpha=0.95, momentum=0.5, centered=True,
                                       clip_norm=0.5),
    "adam": lambda m: optim.Adam(m, lr=3e-3, amsgrad=True, weight_decay=1e-4,
                                 clip_norm=2.0, clip_value=0.5),
    "adamw": lambda m: optim.AdamW(m, lr=3e-3, weight_decay=0.1),
}


def train(steps_per_call, steps=90, opt="adam", schedule=None, batch_size=3, seq_length=11,
          callbacks=(), tmp=None, **model_kw):
    m = make(**model_kw)
    o = OPTIMIZERS[opt](m)
    sched = schedule(o.lr) if schedule else None
    tr = pc.Trainer(m, TEXT, batch_size=batch_size, seq_length=seq_length, optimizer=o,
                    schedule=sched, val_fraction=0.1, eval_every=25,
                    checkpoint_dir=tmp, checkpoint_every=40 if tmp else None,
                    steps_per_call=steps_per_call, callbacks=list(callbacks))
    done = tr.run(steps=steps)
    return tr, done


def assert_same(a, b):
    (ta, da), (tb, db) = a, b
    assert np.array_equal(ta.model.flat_params, tb.model.flat_params)
    for k, buf in ta.optimizer.buffers.items():
        assert np.array_equal(buf, tb.optimizer.buffers[k]), k
    assert ta.optimizer.step_count == tb.optimizer.step_count
    assert ta.optimizer.last_grad_norm == tb.optimizer.last_grad_norm
    assert ta.optimizer.lr == tb.optimizer.lr
    assert np.array_equal(ta.model.pack_state(ta.state, 3), tb.model.pack_state(tb.state, 3))
    assert _numbers(ta.history) == _numbers(tb.history) and ta.val_history == tb.val_history
    assert (ta.batches.epoch, ta.batches.position) == (tb.batches.epoch, tb.batches.position)
    assert ta.model.rng_state == tb.model.rng_state
    assert ta.step_count == tb.step_count and ta.ema_loss == tb.ema_loss
    assert _numbers(da) == _numbers(db)


def _numbers(metrics):
    """Step metrics without what measures the machine: the speed, and the
    CPU window a validation records once a second has passed since the last
    (on an AVX2 EPYC one run reached step 35's validation after 1 s, the
    other before)."""
    return [{k: v for k, v in m.items() if k not in ("chars_per_sec", "cpu")} for m in metrics]


@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
def test_every_optimizer_gives_the_same_bits(opt):
    assert_same(train(1, opt=opt), train(64, opt=opt))


@pytest.mark.parametrize("kw", [
    dict(cell="gru", layers=2, E=6),
    dict(cell="lstm", dtype="float64"),
    dict(cell="lstm", layers=2, dropout=0.3, E=5, input_dropout=0.1, output_dropout=0.2,
         weight_drop=0.25, locked_dropout=True),
    dict(cell="rnn", nonlinearity="relu", E=4, embedding_dropout=0.1),
])
def test_every_model_gives_the_same_bits(kw):
    assert_same(train(1, **kw), train(64, **kw))


@pytest.mark.parametrize("schedule", [
    lambda lr: StepDecay(lr, gamma=0.5, every=0.5, start=0.5),
    lambda lr: CosineWarmup(lr, warmup_steps=10, total_steps=80),
    lambda lr: ReduceOnPlateau(lr, factor=0.5, patience=0),
])
def test_schedules_give_the_same_bits(schedule):
    assert_same(train(1, schedule=schedule), train(64, schedule=schedule))


def test_checkpoints_and_epoch_ends_give_the_same_bits(tmp_path):
    # 90 steps of 3 x 11 over about 1.1K characters: several epochs, a
    # validation every 25 steps, a checkpoint every 40.
    a = train(1, tmp=tmp_path / "a")
    b = train(64, tmp=tmp_path / "b")
    assert_same(a, b)
    assert a[0].batches.epoch >= 2
    for name in ("latest.npz", "best.npz"):
        ra, rb = pc.load(tmp_path / "a" / name), pc.load(tmp_path / "b" / name)
        assert np.array_equal(ra.flat_params, rb.flat_params)


def test_the_steps_really_run_in_few_calls(monkeypatch):
    m = make()
    calls = []
    inner = m.backend.core

    class Counting:
        def __getattr__(self, name):
            return getattr(inner, name)

        def train_steps(self, params, grads, xs, *rest):
            calls.append(xs.shape[0])
            return inner.train_steps(params, grads, xs, *rest)

    monkeypatch.setattr(m.backend, "core", Counting())
    tr = pc.Trainer(m, TEXT, batch_size=2, seq_length=10, val_fraction=0.0, steps_per_call=16)
    tr.run(steps=100)
    assert sum(calls) >= 95 and max(calls) <= 16 and len(calls) < 20
    calls.clear()
    tr.steps_per_call = 1
    tr.run(steps=10)
    assert calls == []


def test_a_plain_callback_sees_every_step_as_it_happens():
    seen = []

    def cb(tr, event, m):
        if event == "step":
            seen.append((m["step"], tr.step_count, tr.model.flat_params.copy()))

    tr, _ = train(64, steps=30, callbacks=[cb])
    assert [s for s, _, _ in seen] == list(range(1, 31))
    assert all(s == now for s, now, _ in seen)  # called right after its step


class Recorder:
    batched_steps = True

    def __init__(self, every):
        self.every, self.steps, self.params = every, [], {}

    def due(self, step):
        return step % self.every == 0

    def __call__(self, tr, event, m):
        if event == "step":
            self.steps.append(m["step"])
            if self.due(m["step"]):
                assert tr.step_count == m["step"]
                self.params[m["step"]] = tr.model.flat_params.copy()


def test_a_batched_callback_gets_every_step_and_its_due_steps_on_time():
    fused, plain = Recorder(7), Recorder(7)
    a = train(64, steps=50, callbacks=[fused])
    b = train(1, steps=50, callbacks=[plain])
    assert_same(a, b)
    assert fused.steps == list(range(1, 51))
    assert sorted(fused.params) == [7, 14, 21, 28, 35, 42, 49]
    for s, p in fused.params.items():
        assert np.array_equal(p, plain.params[s])


@pytest.mark.parametrize("steps_per_call", [1, 64])
def test_divergence_is_reported_at_the_same_step(steps_per_call):
    m = make()
    o = optim.SGD(m, lr=1e25)
    tr = pc.Trainer(m, TEXT, batch_size=3, seq_length=11, optimizer=o, val_fraction=0.0,
                    steps_per_call=steps_per_call)
    with pytest.raises(TrainingDiverged) as e:
        tr.run(steps=50)
    test_divergence_is_reported_at_the_same_step.seen.append(
        (str(e.value), tr.step_count, o.step_count, tr.batches.position, len(tr.history),
         np.nan_to_num(m.flat_params, nan=7.0, posinf=8.0, neginf=9.0).tobytes()))
    if len(test_divergence_is_reported_at_the_same_step.seen) == 2:
        first, second = test_divergence_is_reported_at_the_same_step.seen
        assert first == second


test_divergence_is_reported_at_the_same_step.seen = []


def test_steps_per_call_is_checked():
    with pytest.raises(ValueError, match="steps_per_call"):
        pc.Trainer(make(), TEXT, batch_size=2, seq_length=10, steps_per_call=0)


def test_train_steps_checks_its_arrays():
    m = make()
    o = optim.Adam(m)
    xs = np.zeros((2, 1, 5), np.int32)
    st = m.pack_state(None, 1)
    args = [m.flat_params, m.flat_grads, xs, xs.copy(), st, None, np.full(2, 1e-3),
            np.empty(2), np.empty(2)]
    spec = o.spec()
    spec["buffers"] = [spec["buffers"][0], None, None]  # Adam needs exp_avg_sq
    with pytest.raises(ValueError, match="buffer 1 is required"):
        m.backend.core.train_steps(*args, spec)
    bad = xs.copy()
    bad[1, 0, 2] = m.vocab_size
    with pytest.raises(ValueError, match=r"xs\[1, 0, 2\] = \d+ is not a token id"):
        m.backend.core.train_steps(m.flat_params, m.flat_grads, bad, *args[3:], o.spec())
    with pytest.raises(ValueError, match="share memory"):
        m.backend.core.train_steps(m.flat_params, m.flat_params, *args[2:], o.spec())
    lrs = np.array([1e-3, math.nan])
    with pytest.raises(ValueError, match="learning rates"):
        m.backend.core.train_steps(*args[:6], lrs, *args[7:], o.spec())


def test_a_subclassed_optimizer_steps_from_python(monkeypatch):
    # Its own update must run: the C++ loop only knows the built-in ones.
    calls = []

    class Counted(optim.Adam):
        def step(self, grad_norm=None):
            super().step(grad_norm)
            calls.append(self.step_count)

    m = make()
    tr = pc.Trainer(m, TEXT, batch_size=2, seq_length=10, optimizer=Counted(m),
                    val_fraction=0.0, steps_per_call=64)
    tr.run(steps=20)
    assert calls == list(range(1, 21))
    assert optim.Adam(m).fusable and not Counted(m).fusable
