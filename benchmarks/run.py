"""Run the pycharrnn benchmark matrix (pycharrnn vs PyTorch vs NumPy).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/run.py \
        [--quick] [--json benchmarks/results.json] [--markdown benchmarks/RESULTS.md]

The FULL matrix by default (several minutes); --quick for the short one. Run it
on an otherwise idle machine: OpenMP and OpenBLAS threads spin while they wait,
so any other load on the cores distorts multi-threaded numbers badly (rows
measured under such load are flagged in the table). All the work is done by
the harness beside this file (benchmarks/harness.py), which times the
installed pycharrnn.
"""

import argparse
import sys
from pathlib import Path

import harness  # benchmarks/harness.py: this script's folder is first on sys.path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--quick", action="store_true", help="the QUICK matrix instead of FULL")
    p.add_argument("--json", default=str(Path(__file__).with_name("results.json")),
                   help="where to write the results (default: %(default)s)")
    p.add_argument("--markdown", help="also write the table to this file")
    p.add_argument("--threads", type=int)
    p.add_argument("--repeats", type=int)
    p.add_argument("--seconds", type=float)
    p.add_argument("--data", help="a text file to train on (default: random ids, V=65)")
    p.add_argument("--idle-wait", type=float,
                   help="longest wait for other load to end before each measurement, s")
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--no-numpy", action="store_true")
    p.add_argument("--check", action="store_true",
                   help="first verify that the NumPy baseline equals pycharrnn")
    a = p.parse_args(argv)
    args = ["--quick" if a.quick else "--full", "--json", a.json]
    for flag in ("markdown", "threads", "repeats", "seconds", "data", "idle_wait"):
        if getattr(a, flag) is not None:
            args += ["--" + flag.replace("_", "-"), str(getattr(a, flag))]
    args += [f for f in ("--no-torch", "--no-numpy", "--check")
             if getattr(a, f[2:].replace("-", "_"))]
    return harness.main(args)


if __name__ == "__main__":
    sys.exit(main())
