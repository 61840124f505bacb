"""Run the pycharrnn benchmark matrix (pycharrnn vs PyTorch vs NumPy).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/run.py \
        [--quick] [--json benchmarks/results.json] [--markdown benchmarks/RESULTS.md]

The FULL matrix by default (several minutes); --quick for the short one. Run it
on an otherwise idle machine: OpenMP and OpenBLAS threads spin while they wait,
so any other load on the cores distorts multi-threaded numbers badly (rows
measured under such load are flagged in the table). The measuring is done by
the harness beside this file (benchmarks/harness.py), which times the
installed pycharrnn.
"""

import argparse
import sys
from pathlib import Path

import harness  # benchmarks/harness.py: this script's folder is first on sys.path
from pycharrnn.files import atomic_write


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--quick", action="store_true", help="the QUICK matrix instead of FULL")
    p.add_argument("--json", default=str(Path(__file__).with_name("results.json")),
                   help="where to write the results (default: %(default)s)")
    p.add_argument("--markdown", help="also write the table to this file")
    p.add_argument("--threads", type=int, help="default: the CPUs this process may use")
    p.add_argument("--repeats", type=int, help="default 3 (quick) / 5 (full)")
    p.add_argument("--seconds", type=float, help="per measurement; 0.3 (quick) / 1.0 (full)")
    p.add_argument("--data", help="a text file to train on (default: random ids, V=65)")
    p.add_argument("--idle-wait", type=float, help="longest wait for other load to end "
                   "before each measurement, s; 10 (quick) / 60 (full)")
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--no-numpy", action="store_true")
    p.add_argument("--check", action="store_true",
                   help="first verify that the NumPy baseline equals pycharrnn")
    a = p.parse_args(argv)
    if a.check:
        try:
            harness.check(verbose=True)
        except AssertionError as e:
            print(e, file=sys.stderr)
            return 1
        print("check passed: the NumPy baseline computes pycharrnn's loss, state, "
              "gradients and updates")
    impls = [i for i in harness.IMPLS if not (i == "torch" and a.no_torch)
             and not (i == "numpy" and a.no_numpy)]
    results = harness.run(
        harness.QUICK if a.quick else harness.FULL, threads=a.threads,
        repeats=a.repeats or (3 if a.quick else 5),
        seconds=a.seconds or (0.3 if a.quick else 1.0), json_path=a.json, impls=impls,
        data=a.data,
        idle_wait=a.idle_wait if a.idle_wait is not None else (10 if a.quick else 60))
    text = harness.format_markdown(results)
    print(text)
    if a.markdown:
        atomic_write(a.markdown, lambda f: f.write(text.encode()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
