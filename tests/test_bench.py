"""The benchmark harness (benchmarks/harness.py in the checkout, not installed)
timing the installed pycharrnn: fast checks, no wall-clock assertions."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

import pycharrnn as pc
from pycharrnn.reference import NumpyCharRNN

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import harness  # noqa: E402  (benchmarks/harness.py)

HAS_TORCH = importlib.util.find_spec("torch") is not None


def test_numpy_baseline_equals_pycharrnn():
    errors = harness.check()
    assert len(errors) == 6  # rnn / gru / lstm x one-hot (AdaGrad) / embedding (Adam)
    assert max(errors.values()) < 1e-6


def test_numpy_baseline_float32_close_to_pycharrnn():
    V, H, L, B, T = 13, 16, 2, 2, 6
    rng = np.random.default_rng(3)
    x, y = rng.integers(0, V, (2, B, T)).astype(np.int32)
    m = pc.CharRNN(V, H, L, "lstm", embedding_dim=4, seed=2)
    ref = NumpyCharRNN("lstm", V, H, L, 4, dtype=np.float32)  # the benchmark's baseline
    for name, a in m.state_dict().items():
        ref.p[name][...] = a
    l1, _ = m.forward_backward(x, y)
    l2, _ = ref.forward_backward(x, y, ref.initial_state(B))
    assert ref.flat.dtype == np.float32
    assert abs(l1 - l2) < 1e-5 * abs(l2)
    for k in ref.g:
        np.testing.assert_allclose(m.grads[k], ref.g[k], rtol=1e-3, atol=1e-5, err_msg=k)


def test_numpy_sampling_gives_ids():
    ref = NumpyCharRNN("gru", 9, 8, 2, 3)
    ids = ref.sample_ids(20, prime=np.array([1, 2, 3]), seed=0)
    assert ids.shape == (20,) and ids.min() >= 0 and ids.max() < 9
    np.testing.assert_array_equal(ids, ref.sample_ids(20, prime=np.array([1, 2, 3]), seed=0))


def test_flops_per_char_by_hand():
    # min-char-rnn: one-hot (gather, 0) + recurrent 2*100*100 + decoder 2*100*65
    assert harness.flops_per_char(harness.MIN_CHAR_RNN) == 3 * (20_000 + 13_000)
    # lab LSTM: layer 0 2*4*512*(100+512), layers 1-2 2*4*512*1024, decoder 2*512*65
    lab = harness.Config("train", "lstm", 512, 3, 100, 32, 50)
    fwd = 2_506_752 + 2 * 4_194_304 + 66_560
    assert harness.flops_per_char(lab) == 3 * fwd
    assert harness.flops_per_char(harness.Config("sample", "lstm", 512, 3, 100, 1, 1)) == fwd
    # GRU one-hot, 2 layers: layer 0 recurrent only 2*3*8*8, layer 1 2*3*8*16, decoder 2*8*5
    assert harness.flops_per_char(harness.Config("train", "gru", 8, 2, None, 1, 1, V=5)) == \
        3 * (384 + 768 + 80)


def _fake_results():
    row = {"task": "train", "cell": "gru", "H": 128, "L": 1, "E": None, "B": 1, "T": 50,
           "V": 65, "opt": "adam", "scaling": True, "memory": True, "name": "small",
           "threads": 2, "flops_per_char": 1.0e6,
           "chars_per_s": {"pycharrnn": 123456.7, "torch": 61728.3},
           "runs": {}, "errors": {}, "background_load": 0.5,
           "gflops": {"pycharrnn": 123.4567, "torch": 61.7},
           "ratio_vs_torch": 2.0, "ratio_vs_numpy": None, "pct_sgemm": 61.2,
           "chars_per_s_1thread": 70000.0, "speedup_1_to_n": 1.7636,
           "peak_mib": {"pycharrnn": 3.25, "torch": 40.0}}
    sample = dict(row, task="sample", E=100, T=1, scaling=False, memory=False,
                  background_load=0.0, peak_mib={}, speedup_1_to_n=None,
                  chars_per_s={"pycharrnn": 5000.0, "numpy": 1000.0}, ratio_vs_torch=None,
                  ratio_vs_numpy=5.0)
    meta = {"date": "2024-01-01T00:00:00", "cpu": "Test CPU", "cpu_count": 2,
            "build_info": {"simd": "avx2"}, "pycharrnn": "0.1.0", "numpy": "2.0",
            "torch": "2.1", "python": "3.11", "threads": 2, "repeats": 3, "seconds": 0.5,
            "data": "random ids", "sgemm": {"2": {"1024": 190.0, "2048": 201.5}}}
    return {"meta": meta, "rows": [row, sample]}


def test_format_markdown():
    text = harness.format_markdown(_fake_results())
    lines = text.splitlines()
    table = [ln for ln in lines if ln.startswith("| ")]
    assert len(table) == 3  # header + 2 rows
    header, first, second = table
    assert "pycharrnn chars/s" in header and "% SGEMM" in header and "speedup" in header
    cells = [c.strip() for c in first.strip("|").split("|")]
    assert cells[:9] == ["train (!)", "gru", "128", "1", "one-hot", "1", "50", "adam", "2"]
    assert cells[9:] == ["123,457", "61,728", "-", "2.00x", "-", "123.46", "61.2%",
                         "3.2 / 40.0", "1.76x"]
    cells = [c.strip() for c in second.strip("|").split("|")]
    assert cells[0] == "sample" and cells[4] == "100" and cells[11] == "1,000"
    assert cells[12] == "-" and cells[13] == "5.00x" and cells[16] == "-"
    assert "Test CPU" in text and "2048^3 201.5" in text and "'simd': 'avx2'" in text
    assert "2*G*H*(in_k + H)" in text  # the FLOP formula
    assert "0.50 cores" in text  # the loaded row is listed


def _check_row(row, impls):
    for impl in impls:
        assert row["chars_per_s"][impl] > 0
        assert row["gflops"][impl] > 0
        assert row["peak_mib"][impl] > 0
    assert row["flops_per_char"] > 0 and row["pct_sgemm"] > 0
    assert row["speedup_1_to_n"] > 0 and row["chars_per_s_1thread"] > 0
    assert not row["errors"]


def test_end_to_end_tiny(tmp_path):
    cfg = harness.Config("train", "rnn", 16, 1, None, 2, 8, scaling=True, memory=True)
    sample = harness.Config("sample", "lstm", 16, 2, 4, 1, 1)
    out = tmp_path / "r.json"
    logged = []
    results = harness.run([cfg, sample], threads=2, repeats=1, seconds=0.05, json_path=str(out),
                        impls=("pycharrnn", "numpy"), sgemm_sizes=(64,), idle_wait=0,
                        log=logged.append)
    # SGEMM is measured at both ends of the run (each thread count), the best kept.
    sg = [m for m in logged if m.startswith("SGEMM")]
    assert [m.split(",")[1].split(":")[0].strip() for m in sg] == ["start"] * 2 + ["end"] * 2
    rates = [float(m.split("64^3 ")[1].split()[0]) for m in sg if m.startswith("SGEMM 2 ")]
    # (the log prints one decimal)
    assert abs(results["meta"]["sgemm"]["2"]["64"] - max(rates)) <= 0.05 + 1e-9
    assert json.loads(out.read_text())["rows"][0]["task"] == "train"
    train, samp = results["rows"]
    _check_row(train, ["pycharrnn", "numpy"])
    assert train["ratio_vs_numpy"] > 0 and train["ratio_vs_torch"] is None
    assert samp["chars_per_s"]["pycharrnn"] > 0 and samp["chars_per_s"]["numpy"] > 0
    assert results["meta"]["sgemm"]["2"]["64"] > 0
    text = harness.format_markdown(results)
    assert text.count("\n| train") == 1 and "| sample" in text


@pytest.mark.torch
@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")
def test_end_to_end_with_torch():
    cfg = harness.Config("train", "gru", 8, 1, 4, 2, 5, opt="adagrad")
    results = harness.run([cfg], threads=1, repeats=1, seconds=0.05, impls=("pycharrnn", "torch"),
                        sgemm_sizes=(64,), idle_wait=0, log=lambda msg: None)
    row = results["rows"][0]
    assert not row["errors"]
    assert row["chars_per_s"]["torch"] > 0 and row["ratio_vs_torch"] > 0
    assert results["meta"]["torch"]


def test_recipe_spread_options_and_table():
    # benchmarks/recipe_spread.py: a level's flags are the level's values, and
    # the table marks the old level, the rule's pick and the best.
    import recipe_spread as rs
    from pycharrnn.recipes import REGULARISATION

    opts = rs.level_options("strong", 1)
    flags = dict(zip(opts[0:8:2], opts[1:8:2]))
    strong = REGULARISATION["strong"]
    assert flags == {"--dropout": "0", "--input-dropout": f"{strong['input_dropout']:g}",
                     "--output-dropout": f"{strong['output_dropout']:g}",
                     "--weight-drop": f"{strong['weight_drop']:g}"}
    assert opts[-1] == "--locked-dropout" and "--locked-dropout" not in rs.level_options("none", 2)
    assert rs.level_options("strong", 2)[1] == f"{strong['dropout']:g}"
    model = "CharRNN(gru, V=78, embedding 64, 1x512, dropout=0.0, float32, 932814 params)"
    row = {"text": "t", "chars": 200_000, "budget": 180.0, "row": "3min", "window_val": 1.0,
           "train_ema": 1.0, "model": model}
    rows = [dict(row, level="none", final_val=1.6, epochs=30.0, old=True),  # exposure 155
            dict(row, level="moderate", final_val=1.3, epochs=29.0, old=False),
            dict(row, level="strong", final_val=1.31, epochs=29.0, old=False)]
    lines = rs.table(rows).splitlines()
    assert lines[2].endswith("| 155.5 | old |") and lines[3].endswith("| best |")
    assert lines[4].endswith("| rule |") and "| gru 1x512 |" in lines[4]
    few = [dict(r, epochs=1.0) for r in rows]  # exposure 5.2: no dropout
    assert rs.table(few).splitlines()[2].endswith("| old, rule |")
    # "best" within one machine: a faster one's row does not take it from
    # the rows of another (nor from those that recorded none, "?").
    fast = dict(rows[1], final_val=1.2, machine="CPU (family 26, model 2)")
    lines = rs.table(rows + [fast]).splitlines()
    assert lines[3].startswith("| ? |") and lines[3].endswith("| best |")
    assert lines[5].startswith("| CPU (family 26, model 2) |") and lines[5].endswith("best |")
    # A variant's own dropout is named, and it is not the rule's pick.
    more = dict(rows[2], flags="--output-dropout 0.5", final_val=1.4,
                command="pycharrnn train t.txt --output-dropout 0.3 --output-dropout 0.5")
    line = rs.table(rows + [more]).splitlines()[-1]
    assert "| gru 1x512, output dropout 0.5 | strong |" in line and line.endswith("|  |")
    # A second seed is its own model label (quality.train_run's seed 0 unnamed).
    seeded = dict(rows[2], command="pycharrnn train t.txt --seed 0 --lr 4e-3 --seed 1")
    assert rs.model_of(seeded) == "gru 1x512 lr 4e-3 seed 1"
    assert rs.model_of(dict(seeded, command="pycharrnn train t.txt --seed 0")) == "gru 1x512"


def test_recipe_spread_pairs_more_dropout_by_risen_and_gap():
    # --pairs: the measurement behind pycharrnn.fit.DROPOUT_GAP. A flag given
    # twice counts as the command line reads it (the last), a 1-layer
    # model's "dropout" is none, and other machines and models do not pair.
    import recipe_spread as rs

    model = "CharRNN(lstm, V=65, embedding 64, 2x512, dropout=0.25, float32, 3 params)"
    base = {"text": "t", "budget": 3600.0, "model": model, "machine": "A", "flags": ""}
    strong = dict(base, level="strong", command="pycharrnn train t.txt --time 3600",
                  final_val=1.354, best_val=1.353, train_ema=1.15)
    od5 = dict(strong, command=strong["command"] + " --output-dropout 0.3 --output-dropout 0.5",
               final_val=1.367, best_val=1.366, train_ema=1.19)
    assert rs.dropout_of(od5) == dict(rs.dropout_of(strong), output_dropout=0.5)
    gru = dict(strong, model=model.replace("lstm", "gru").replace("2x512", "1x512"))
    assert rs.dropout_of(gru)["dropout"] == 0.0
    risen = dict(base, level="none", command="pycharrnn train t.txt", final_val=1.65,
                 best_val=1.39, train_ema=0.34)
    moderate = dict(risen, level="moderate", final_val=1.31, best_val=1.31, train_ema=1.1)
    elsewhere = dict(od5, machine="B")
    out = rs.pairs([strong, od5, risen, moderate, elsewhere])
    lines = out.splitlines()
    # none -> moderate, strong, od5; moderate -> strong, od5; strong -> od5
    assert len([x for x in lines if x.startswith("| t |")]) == 6
    assert "| 0.20 | no | 1.3540 | 1.3670 | +0.0130 |" in out
    assert "- risen: more dropout better in 3, worse in 0" in lines
    assert "- gap <= DROPOUT_GAP: more dropout better in 0, worse in 3" in lines
    # A run without --lr trained at its row's rate, which its recipe line
    # records: it pairs with --lr of that rate, not of another.
    gru = "CharRNN(gru, V=65, embedding 64, 1x768, float32, 3 params)"
    auto = dict(base, model=gru, level="none", command="pycharrnn train t.txt --time 3600",
                line="recipe 15min-gru: gru 1x768, adamw lr 0.002 weight decay 0.1",
                final_val=1.341, best_val=1.340, train_ema=1.09)
    old = dict(auto, level="moderate", line="recipe 15min: adamw lr 0.003", flags="--lr 2e-3",
               command=auto["command"] + " --cell gru --lr 2e-3", final_val=1.410)
    assert rs.lr_of(auto) == 0.002 and rs.lr_of(old) == 0.002 and rs.same_lr(auto, old)
    assert "| gru 1x768 | none | in 0.1 out 0.25 wd 0.2 | 0.25 | no | 1.3410 | 1.4100 |" \
        in rs.pairs([auto, old])
    faster = dict(old, command=auto["command"] + " --lr 3e-3 --lr 4e-3")
    assert rs.lr_of(faster) == 0.004 and not rs.same_lr(auto, faster)
    assert not [x for x in rs.pairs([auto, faster]).splitlines() if x.startswith("| t |")]
    assert rs.same_lr(strong, od5) and not rs.same_lr(strong, faster)
    # Runs of two seeds do not pair: a seed moves the result as much as a
    # change of dropout. Their own seed's runs still do.
    seeded = [dict(r, command=r["command"] + " --seed 1") for r in (strong, od5)]
    assert rs.seed_of(seeded[0]) == 1 and rs.seed_of(strong) == 0
    assert not [x for x in rs.pairs([strong, seeded[1]]).splitlines() if x.startswith("| t |")]
    assert "| 0.20 | no | 1.3540 | 1.3670 | +0.0130 |" in rs.pairs(seeded)


def test_quality_markdown_names_the_machine():
    # benchmarks/quality.py: the table's header says which CPU its numbers
    # came from (the one recorded in quality.json when redrawn from it).
    import quality

    r = {"name": "3min", "final_val": 1.44, "best_val": 1.43, "train_ema": 1.3, "steps": 10,
         "epochs": 1.0, "chars_per_sec": 1000.0, "window_val": 1.5, "curve": [(1.0, 1.44)]}
    text = quality.markdown({"t.txt": [r]}, ["cmd"], "2026-01-01",
                            "CPU X (family 1, model 2)")
    assert " on CPU X (family 1, model 2) (" in text.splitlines()[2]
    assert " on " + harness.machine() + " (" in quality.markdown({"t.txt": [r]}, ["cmd"])


def test_contention_merge_pools_repeats_and_lists_wide_cells(tmp_path):
    # benchmarks/contention.py --merge: two runs' repeats pooled cell by cell,
    # the medians taken again, and a cell whose repeats span more than 1.25x
    # named below its table.
    import contention as ct

    def run(train, date):
        return {"samples": {"train": {"idle": train}}, "skipped": [], "failed": [],
                "cpu": "cpu", "cores": 2, "repeats": len(train["pc-1"]), "seconds": 2.0,
                "warmup": 3.0, "date": date, "baseline": None}

    a = run({"pc-default": [10.0, 20.0], "pc-1": [5.0, 5.0], "pc-all": [9.0, 11.0]}, "d1")
    b = run({"pc-default": [12.0], "pc-1": [5.5], "pc-all": [10.0], "torch-default": [1.0]}, "d2")
    res = ct.merge([a, b])
    assert res["samples"]["train"]["idle"]["pc-default"] == [10.0, 20.0, 12.0]
    assert res["median"]["train"]["idle"] == {"pc-default": 12.0, "pc-1": 5.0, "pc-all": 10.0,
                                              "torch-default": 1.0}
    assert res["repeats"] == "1-3" and res["date"] == "d1 and d2" and res["merged"] == 2
    # Per-repeat ratios against the better of 1 thread and all threads in the
    # same repeat (from the samples, for results that did not keep them):
    # 10/9, 20/11 and 12/10; a result that kept its own wins over its samples.
    assert res["paired"]["train"]["idle"]["pc-default"] == pytest.approx([10 / 9, 20 / 11, 1.2])
    assert ct.paired_of(dict(a, paired={"train": {"idle": {"pc-default": [0.5]}}})) == \
        {"train": {"idle": {"pc-default": [0.5]}}}
    assert ct.paired_of(dict(a, failed=["repeat 1 idle pc-1: crashed"])) == {}
    assert ct._paired({"pc-default": {"train": 2.0}, "pc-all": {"train": 4.0}}, "train") == {}
    text = ct.markdown(res)
    assert "| idle | 12.00 | 5.00 | 10.00 | 1.20 | 1.20 |" in text
    wide = next(line for line in text.splitlines() if line.startswith("Repeats spanning"))
    assert "idle pc-default (10.00 to 20.00)" in wide and "pc-all" not in wide  # 11/9 < 1.25
    out = tmp_path / "m.json"
    for i, r in enumerate((a, b)):
        (tmp_path / f"{i}.json").write_text(json.dumps(r))
    assert ct.main(["--merge", str(tmp_path / "0.json"), str(tmp_path / "1.json"),
                    "--json", str(out)]) == 0
    assert json.loads(out.read_text())["median"]["train"]["idle"]["pc-default"] == 12.0
    with pytest.raises(ValueError):
        ct.merge([])


def test_contention_windows_summary_and_a_short_trace(tmp_path):
    # benchmarks/contention.py --windows: each process's speed after the
    # warm-up is the work of the windows that began then over their time (a
    # window of one slow call weighs by its length), and a process with a
    # window under a tenth of the implementation's median window is counted
    # as one that collapsed.
    import contention as ct

    def run(impl, rates, starts=(0.0, 0.5, 1.0, 1.5)):
        return {"row": "python x2", "impl": impl,
                "windows": [[r, None, "", t, 0.5] for r, t in zip(rates, starts)]}

    res = {"task": "sample", "width": 0.5, "runs": [
        run("pc-all", [9.0, 28.0, 30.0, 28.0]),
        # a collapse: its third window's one call took 5 s
        run("pc-all", [27.0, 2.0, 1.0], starts=(0.0, 0.5, 1.0)),
        run("pc-default", [20.0, 22.0, 24.0, 20.0]),
    ]}
    res["runs"][1]["windows"][2][4] = 5.0
    text = ct.windows_summary(res, after=1.0)
    lines = {line.split()[2]: line for line in text.splitlines()[1:]}
    assert "29 1 " in lines["pc-all"] and "1 of 2 with a window under a tenth" in lines["pc-all"]
    assert "22 " in lines["pc-default"] and "0 of 1" in lines["pc-default"]
    assert "CPU seconds" not in text  # windows without the CPU columns
    # With them: the calling thread's CPU seconds and the other threads' per
    # second of the windows after the warm-up.
    cpu = {"task": "sample", "width": 0.5, "runs": [{"row": "idle", "impl": "pc-default",
           "windows": [[20.0, 1, "", 0.0, 0.5, 0.9, 0.4], [20.0, 1, "", 1.0, 0.5, 0.75, 0.5]]}]}
    assert "calling thread 1.00, other threads 0.50" in ct.windows_summary(cpu, after=1.0)
    # A real run: the idle row, one thread and the default, fresh processes.
    out = tmp_path / "w.json"
    assert ct.main(["--windows", "sample", "--rows", "idle", "--impls", "pc-default,pc-1",
                    "--repeats", "1", "--seconds", "1", "--warmup", "0.5",
                    "--json", str(out)]) == 0
    runs = json.loads(out.read_text())["runs"]
    assert sorted(r["impl"] for r in runs) == ["pc-1", "pc-default"]
    for r in runs:
        assert len(r["windows"]) >= 2 and all(w[0] > 0 for w in r["windows"])
        # the calling thread's CPU time is part of the process's
        assert all(0 <= w[6] <= w[5] + 1e-3 for w in r["windows"])
        team = {w[1] for w in r["windows"]}
        assert team == {None} if r["impl"] == "pc-1" else team <= {1, 2, 3, 4, 5, 6, 7, 8}
