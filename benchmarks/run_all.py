"""Run the three benchmarks one after the other and write a JSON summary (benchmarks/results.json).

    python benchmarks/run_all.py                 # default sizes, writes benchmarks/results.json
    python benchmarks/run_all.py --quick         # seconds: checks the scripts, writes nothing
    python benchmarks/run_all.py --threads 1 base_model.train.batch_size=64 --out /tmp/r.json

Arguments other than --out are passed to every benchmark.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import bench_flops
import bench_sampling
import bench_training
from _common import machine, parse

BENCHMARKS = {"training": bench_training, "sampling": bench_sampling, "flops": bench_flops}
DEFAULT_OUT = Path(__file__).with_name("results.json")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, help=f"summary file (default: {DEFAULT_OUT.name}; none with --quick)")
    ours, rest = p.parse_known_args(argv)
    summary = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "argv": rest}
    for name, module in BENCHMARKS.items():
        t0 = time.perf_counter()
        args = parse(module, rest)
        summary[name] = module.run(args)
        summary[name]["wall_s"] = round(time.perf_counter() - t0, 1)
    summary["machine"] = machine()
    out = ours.out or (None if args.quick else DEFAULT_OUT)
    if out:
        out.write_text(json.dumps(summary, indent=2) + "\n")
        print(f"wrote {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
