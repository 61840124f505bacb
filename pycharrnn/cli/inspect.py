"""The commands that look at a run or at this machine: ``eval``
(:func:`pycharrnn.evaluation.evaluate`), ``info`` (:func:`pycharrnn.rundir.describe`,
:func:`pycharrnn.build_info`), ``plot`` (:func:`pycharrnn.plot.plot_run`),
``report`` (:func:`pycharrnn.report.write_report`) and ``bench``
(:func:`pycharrnn.speed.measure`)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from ..words import plural
from .args import DEFAULTS, Help, fail, number

__all__ = ["add", "COMMANDS"]


def add(sub: Any) -> None:
    p = sub.add_parser("eval", help="the loss of a model on its run's validation text or on "
                                    "any text", formatter_class=Help,
                       description="The mean cross-entropy of predicting each character "
                                   "from all before it, read as one pass with the state "
                                   "carried (as the validation loss during training), in "
                                   "nats and bits per character.")
    p.add_argument("checkpoint", help="a checkpoint file, or a run directory (its latest.npz)")
    p.add_argument("text", nargs="?",
                   help="a UTF-8 text file (default: the run's validation text, the tail "
                        "of its data that training held out)")
    p.add_argument("--drop-unknown", action="store_true",
                   help="leave out characters of TEXT that are not in the vocabulary "
                        "(default: an error naming the first)")
    p.add_argument("--batch-size", type=number(int, 1),
                   help="streams read side by side (default: the run's batch size, else "
                        f"{DEFAULTS['batch_size']})")
    p.add_argument("--seq-length", type=number(int, 1),
                   help=f"characters per chunk (default: the run's, else "
                        f"{DEFAULTS['seq_length']})")
    p.add_argument("--json", action="store_true", help="print the result as JSON")

    p = sub.add_parser("export", help="write a model in a format other programs read",
                       formatter_class=Help,
                       description="safetensors: the parameters by PyTorch's names (a "
                                   "TorchCharRNN's load_state_dict takes them), the config "
                                   "and vocabulary in the metadata; pycharrnn sample and "
                                   "pycharrnn.load read the file back. onnx: a graph of "
                                   "ONNX's RNN/GRU/LSTM operators for onnxruntime and other "
                                   "ONNX runtimes, float32: int64 ids [batch, time] and the "
                                   "initial state h0 (and c0 for an LSTM) [layers, batch, "
                                   "hidden] in, logits and the final state h_n (c_n) out, "
                                   "the config and vocabulary in the metadata (needs: pip "
                                   "install \"pycharrnn[onnx]\").")
    p.add_argument("checkpoint", help="a checkpoint file, or a run directory (its latest.npz)")
    p.add_argument("--format", choices=["safetensors", "onnx"], default="safetensors",
                   help="the file's format (default: safetensors)")
    p.add_argument("--out", required=True, help="the file to write")

    p = sub.add_parser("info", help="build information, or a checkpoint's configuration",
                       formatter_class=Help)
    p.add_argument("checkpoint", nargs="?", help="a checkpoint file or a run directory")

    p = sub.add_parser("plot", help="draw a run directory's training curves (PNG)",
                       formatter_class=Help)
    p.add_argument("run_dir", help="a run directory (its metrics.jsonl)")
    p.add_argument("--out", help="PNG file (default: RUN_DIR/curves.png)")

    _add_report(sub)

    p = sub.add_parser("bench", help="how fast this machine trains and samples (a few "
                                     "seconds; benchmarks/ has the comparisons with PyTorch "
                                     "and NumPy)", formatter_class=Help)
    p.add_argument("--threads", type=number(int, 1, 1024),
                   help="kernel threads (default: all cores)")
    p.add_argument("--seconds", type=number(float, 0, lo_open=True), default=1.0,
                   help="per measurement")
    p.add_argument("--json", help="also write the results to this file")


def _add_report(sub: Any) -> None:
    p = sub.add_parser("report", formatter_class=Help,
                       help="an HTML report on a run: curves, samples, units, gradient flow",
                       description="Write one self-contained HTML file (no server, no "
                                   "network) on a run, or on several side by side: loss "
                                   "curves in bits/char, samples at several temperatures, a "
                                   "text coloured by any unit's activation with the model's "
                                   "top-5 next characters under the pointer and the units "
                                   "that follow quotes, line position, ..., and the "
                                   "gradient flow beside a vanilla RNN's.")
    p.add_argument("run", nargs="?", help="a run directory or training checkpoint")
    p.add_argument("--compare", nargs="+", metavar="RUN",
                   help="more runs, side by side (pycharrnn report --compare RUN_A RUN_B)")
    p.add_argument("--out", required=True, help="the HTML file to write")
    p.add_argument("--text", help="a UTF-8 text file for the unit view (default: the end "
                                  "of each run's training text)")
    p.add_argument("--temperatures", type=number(float, 0, lo_open=True), nargs="+",
                   default=[0.5, 0.8, 1.0], help="of the samples")
    p.add_argument("--sample-length", type=number(int, 1), default=300,
                   help="characters of each sample")
    p.add_argument("--trace-chars", type=number(int, 2), default=1500,
                   help="characters of the text in the unit view")
    p.add_argument("--seed", type=number(int, 0), default=0, help="of the samples")


def evaluate_command(args: argparse.Namespace) -> int:
    from ..data import load_text, text_to_ids
    from ..evaluation import evaluate
    from ..progress import Bar
    from ..rundir import read_checkpoint, validation_ids

    if args.text is not None:
        model, header, path = read_checkpoint(args.checkpoint)
        text = load_text(args.text)
        try:
            ids = text_to_ids(model, text, str(args.text), compact=True,
                              unknown="drop" if args.drop_unknown else "error")
        except ValueError as e:
            raise ValueError(f"{e} (--drop-unknown leaves such characters out)") from None
        source = what = str(args.text)
    else:
        model, header, path, ids, what = validation_ids(args.checkpoint)
        source = what
    t = (header.get("extra") or {}).get("trainer") or {}
    with Bar("evaluating") as bar:
        loss = evaluate(model, ids,
                        args.batch_size or t.get("batch_size", DEFAULTS["batch_size"]),
                        args.seq_length or t.get("seq_length", DEFAULTS["seq_length"]),
                        progress=bar)
    result = {"checkpoint": str(path), "step": t.get("step"), "text": source,
              "characters": int(ids.size), "predicted": int(ids.size - 1),
              "loss": loss, "bits_per_char": loss / math.log(2)}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        step = f" (step {t['step']})" if t else ""
        print(f"{loss:.4f} nats/char ({loss / math.log(2):.4f} bits/char): {path}{step} on "
              f"{what}, {plural(ids.size - 1, 'character')} predicted")
    return 0


def export(args: argparse.Namespace) -> int:
    import pycharrnn as pc

    model = pc.load(args.checkpoint)
    out = model.export(args.out, format=args.format)
    print(f"wrote {out} ({args.format}, {plural(model.num_params, 'parameter')}, "
          f"{out.stat().st_size / 1e6:.1f} MB)")
    return 0


def info(args: argparse.Namespace) -> int:
    import pycharrnn as pc
    from ..rundir import describe

    out = {"version": pc.__version__, **pc.build_info()} if args.checkpoint is None else \
        describe(args.checkpoint)
    print(json.dumps(out, indent=2))
    return 0


def plot(args: argparse.Namespace) -> int:
    from ..plot import plot_run

    print(plot_run(args.run_dir, args.out))
    return 0


def report(args: argparse.Namespace) -> int:
    from ..files import read_text
    from ..report import write_report

    runs = ([args.run] if args.run else []) + (args.compare or [])
    if not runs:
        fail("give a RUN_DIR, or --compare RUN_A RUN_B")
        return 2
    text = read_text(args.text) if args.text is not None else None
    out = write_report(runs, args.out, text, temperatures=args.temperatures,
                       sample_length=args.sample_length, trace_chars=args.trace_chars,
                       seed=args.seed)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB); open it in a browser")
    return 0


def bench(args: argparse.Namespace) -> int:
    import pycharrnn as pc
    from ..files import atomic_write
    from ..speed import measure

    if args.threads is not None:
        from ..backend import set_num_threads
        set_num_threads(args.threads)
    result = measure(args.seconds)
    print(f"pycharrnn {pc.__version__}, {plural(result['threads'], 'thread')}, "
          f"{result['simd']}, {result['compiler']}")
    print(f"{'workload':<26} {'B x T':>8} {'train chars/s':>14} {'sample chars/s':>15}")
    for r in result["results"]:
        print(f"{r['workload']:<26} {r['batch']:>3} x {r['seq_length']:<3} "
              f"{r['train_chars_per_sec']:>14,.0f} {r['sample_chars_per_sec']:>15,.0f}")
    if args.json:
        data = json.dumps(result, indent=2).encode()
        atomic_write(args.json, lambda f: f.write(data))
    return 0


#: The commands of this module by name.
COMMANDS = {"eval": evaluate_command, "export": export, "info": info, "plot": plot,
            "report": report, "bench": bench}
