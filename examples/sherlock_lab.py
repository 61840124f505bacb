"""The Sherlock lab: a vanilla RNN against a GRU on the same text.

Trains a one-layer tanh RNN and a one-layer GRU of the same hidden size on a
text (one-hot input, batches of 32 streams x 64 characters, Adam with lr 2e-3,
every gradient element clipped to [-5, 5], the last 10% of the text held out
for validation), prints a sample from each, plots both models' training and
validation curves in one figure, prints their final losses, and writes an
HTML report comparing them (curves, samples at three temperatures, the
units of each model along the held-out text, and the gradient flow of
each beside an untrained vanilla RNN's: the vanishing gradient).

    python examples/sherlock_lab.py ../shared/data/sherlock.txt
    python examples/sherlock_lab.py sherlock.txt --steps 3000 --hidden 256 --out lab

Writes OUT/rnn/ and OUT/gru/ (metrics.jsonl, the training checkpoints
latest.npz and best.npz, and the trained model.npz),
OUT/sherlock_curves.png (needs matplotlib: pip install "pycharrnn[plot]")
and OUT/sherlock_report.html (open it in a browser; also
``pycharrnn report --compare OUT/rnn OUT/gru --out report.html``).
The defaults take about 2-3 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import time
from pathlib import Path

import pycharrnn as pc
from pycharrnn.metrics import read_metrics
from pycharrnn.files import read_text

BATCH_SIZE = 32
SEQ_LENGTH = 64
LR = 2e-3
CLIP_VALUE = 5.0
VAL_FRACTION = 0.1
SAMPLE_LENGTH = 300
TEMPERATURE = 0.8
TRAIN_LOSS_LAST = 50  # the final train loss is the mean of this many last steps
MODELS = [("rnn", "RNN (tanh)", "rnn"), ("gru", "GRU", "gru")]
LN2 = math.log(2.0)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Train a vanilla RNN and a GRU on a text and "
                                            "compare their learning curves.")
    p.add_argument("text", help="a UTF-8 text file (e.g. the complete Sherlock Holmes)")
    p.add_argument("--steps", type=int, default=6000, help="training steps per model "
                   "(default 6000: about 2-3 minutes in all on 2 cores with --hidden 128)")
    p.add_argument("--hidden", type=int, default=128, help="hidden size of both models")
    p.add_argument("--out", default="sherlock_lab", help="output directory")
    p.add_argument("--threads", type=int, help="kernel threads (default: all cores)")
    p.add_argument("--seed", type=int, default=0, help="initialization and sampling seed")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the runs an earlier lab left in OUT (default: refuse)")
    args = p.parse_args(argv)
    if args.steps < 1:
        p.error("--steps must be >= 1")
    if args.hidden < 1:
        p.error("--hidden must be >= 1")
    return args


def train_one(key, label, cell, text, vocab, args, out: Path) -> dict:
    """Train one model, logging to OUT/KEY/metrics.jsonl; returns its results."""
    run_dir = out / key
    model = pc.CharRNN(vocab, hidden_size=args.hidden, num_layers=1, cell=cell,
                       nonlinearity="tanh", seed=args.seed)
    opt = pc.optim.Adam(model, lr=LR, clip_value=CLIP_VALUE)
    eval_every = max(1, math.ceil(args.steps / 10))
    log_every = max(1, args.steps // 20)
    t0 = time.perf_counter()

    def progress(trainer, event, m):
        if event == "step" and (m["step"] % log_every == 0 or m["step"] == 1):
            el = time.perf_counter() - t0
            chars = m["step"] * BATCH_SIZE * SEQ_LENGTH
            print(f"[{key}] step {m['step']:6d}/{args.steps}  loss {m['loss']:.3f} "
                  f"(ema {m['ema_loss']:.3f})  epoch {m['epoch']:.2f}  "
                  f"{chars / el:,.0f} chars/s  {el:5.1f}s", flush=True)
        elif event == "eval":
            print(f"[{key}] step {m['step']:6d}  validation loss {m['val_loss']:.3f} nats "
                  f"({m['val_bpc']:.3f} bits/char)", flush=True)

    print(f"\n== {label}: {model}", flush=True)
    if args.overwrite and run_dir.exists():
        shutil.rmtree(run_dir)
    # The run directory is the one `pycharrnn train` writes (run.json naming
    # the text file, metrics.jsonl, latest.npz, best.npz, curves.png).
    trainer = pc.Trainer(model, Path(args.text), batch_size=BATCH_SIZE, seq_length=SEQ_LENGTH,
                         optimizer=opt, val_fraction=VAL_FRACTION, eval_every=eval_every,
                         callbacks=[progress], run_dir=run_dir, progress=False)
    if key == MODELS[0][0]:
        print(f"{len(text):,} characters: {trainer.batches.ids.size:,} for training, "
              f"{trainer.val_ids.size:,} (the last {VAL_FRACTION:.0%}) for validation; "
              f"{len(vocab)} symbols; validation every {eval_every} steps", flush=True)
    trainer.run(steps=args.steps)  # ends with a validation at its last step
    val = trainer.val_history[-1]["val_loss"]
    seconds = time.perf_counter() - t0
    model.save(run_dir / "model.npz")
    recent = trainer.history[-TRAIN_LOSS_LAST:]
    train = sum(h["loss"] for h in recent) / len(recent)
    sample = model.sample(SAMPLE_LENGTH, temperature=TEMPERATURE, seed=args.seed)
    print(f"\n--- {label} sample ({SAMPLE_LENGTH} characters, temperature {TEMPERATURE}, "
          f"seed {args.seed}) ---\n{sample}\n--- end of sample ---", flush=True)
    return {"key": key, "label": label, "train": train, "n_recent": len(recent), "val": val,
            "seconds": seconds, "params": model.num_params, "run_dir": run_dir}


def main(argv=None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    if args.threads is not None:
        pc.set_num_threads(args.threads)
    text = read_text(args.text)  # UTF-8; CRLF -> LF; a leading BOM dropped
    vocab = pc.Vocab.from_text(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"pycharrnn {pc.__version__}, {pc.get_num_threads()} threads; {args.steps} steps "
          f"per model, hidden size {args.hidden}, batch {BATCH_SIZE} x {SEQ_LENGTH}, "
          f"Adam lr {LR:g}, clip_value {CLIP_VALUE:g}, seed {args.seed}", flush=True)

    results = [train_one(key, label, cell, text, vocab, args, out)
               for key, label, cell in MODELS]

    png = out / "sherlock_curves.png"
    try:
        from pycharrnn.plot import plot_curves

        runs = [(r["label"], *read_metrics(r["run_dir"])) for r in results]
        plot_curves(runs, png, window=100,
                    title=f"{Path(args.text).name}: RNN vs GRU, hidden {args.hidden}, "
                          f"batch {BATCH_SIZE}x{SEQ_LENGTH}, Adam {LR:g}")
        plotted = f"curves: {png}"
    except ImportError as e:
        plotted = f"no plot ({e})"

    from pycharrnn.report import write_report

    # The report reads the end of the held-out text with each model.
    report = write_report([r["run_dir"] for r in results], out / "sherlock_report.html",
                          text=text[-2000:], seed=args.seed)

    print(f"\n== results after {args.steps} steps (losses per character)")
    print(f"{'model':<12} {'params':>8}  {'train loss (mean of last steps)':>32}  "
          f"{'validation loss':>24}  {'time':>7}")
    for r in results:
        print(f"{r['label']:<12} {r['params']:>8,}  "
              f"{r['train']:.4f} nats {r['train'] / LN2:.4f} bits/char ({r['n_recent']:>3})  "
              f"{r['val']:.4f} nats {r['val'] / LN2:.4f} bits/char  {r['seconds']:6.1f}s")
    print(plotted)
    print(f"report: {report} (open it in a browser)")
    print(f"wall time {time.perf_counter() - start:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
