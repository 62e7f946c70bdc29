"""Shared helpers of the benchmarks: the base-model setup, threads, timing and reporting.

Every benchmark builds the network of the root `params.yaml` `base_model` section (with the
profile it names, `cpu` by default) through `common.config.load_config(RootConfig)` and
`common.models.build_unet`, on CPU with a fixed thread count, and times ours against a
plain diffusers reference *in the same process, one after the other*, so the ratios are
comparable even when absolute numbers drift with machine load.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Callable, List, Sequence

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python benchmarks/x.py` without an installed package
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from common.config import RootConfig, load_config  # noqa: E402
from common.models import build_unet, count_parameters  # noqa: E402

GRAYSCALE = {"mnist", "digits"}  # data.name values with 1 channel (common/data.py sources)


def parser(doc: str) -> argparse.ArgumentParser:
    """The arguments every benchmark takes; scripts add their own sizes."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch intra-op threads (default: all cores)")
    p.add_argument("--quick", action="store_true",
                   help="profile=tiny and tiny sizes: checks that the script runs in seconds, times nothing useful")
    p.add_argument("--json", type=Path, help="also write the result dict to this file")
    p.add_argument("overrides", nargs="*", help="config overrides, e.g. base_model.train.batch_size=64")
    return p


@dataclasses.dataclass
class Setup:
    """The base model as the root stage builds it, plus the data shape."""

    cfg: RootConfig
    channels: int
    resolution: int

    @property
    def bm(self):
        return self.cfg.base_model

    @property
    def shape(self):
        return (self.channels, self.resolution, self.resolution)

    def unet(self, seed: int = 0, **unet_changes):
        """A freshly initialised UNet (seeded); `unet_changes` edit the UNetConfig, e.g. num_classes=0."""
        torch.manual_seed(seed)
        return build_unet(dataclasses.replace(self.bm.unet, **unet_changes), self.resolution, self.channels)

    def random_data(self, n: int, seed: int = 0):
        """(images in [-1, 1], labels) of the training data's shape; the content does not affect speed."""
        g = torch.Generator().manual_seed(seed)
        x = torch.rand((n, *self.shape), generator=g) * 2 - 1
        y = torch.randint(0, max(self.bm.unet.num_classes, 1), (n,), generator=g)
        return x, y


def setup(args) -> Setup:
    """Fix the thread count and load the configuration (root params.yaml + overrides)."""
    torch.set_num_threads(args.threads)
    overrides = (["profile=tiny"] if args.quick else []) + list(args.overrides)
    cfg = load_config(RootConfig, overrides=overrides, root=ROOT)
    ch = 1 if cfg.data.name in GRAYSCALE else 3
    return Setup(cfg, ch, cfg.data.resolution)


def clone(model: torch.nn.Module) -> torch.nn.Module:
    """An independent copy with the same initial weights (ours and the reference start equal)."""
    return copy.deepcopy(model)


def best_times(fns: Sequence[Callable[[], object]], repeats: int, warmup: int = 1) -> List[float]:
    """Best wall time in seconds of each fn over `repeats` runs, after `warmup` untimed runs.

    The runs are interleaved (a, b, a, b, ...), so load from another process hits all of them.
    """
    for _ in range(warmup):
        for fn in fns:
            fn()
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t0)
    return best


def best_time(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    return best_times([fn], repeats, warmup)[0]


def machine() -> dict:
    """Where the numbers were measured."""
    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "diffusers": __import__("diffusers").__version__, "python": platform.python_version()}


def model_info(s: Setup, unet) -> dict:
    u = s.bm.unet
    return {"profile": s.cfg.profile, "data": s.cfg.data.name, "shape": list(s.shape),
            "block_out_channels": list(u.block_out_channels), "num_classes": u.num_classes,
            "params": count_parameters(unet)}


def _lines(d: dict, prefix: str = ""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _lines(v, f"{prefix}{k}.")
        else:
            yield f"  {prefix}{k} = {v}"


def rounded(obj, digits: int = 4):
    """Floats to `digits` significant digits, recursively: a small, diffable results file."""
    if isinstance(obj, float):
        return float(f"{obj:.{digits}g}")
    if isinstance(obj, dict):
        return {k: rounded(v, digits) for k, v in obj.items()}
    return [rounded(v, digits) for v in obj] if isinstance(obj, list) else obj


def report(name: str, result: dict, args) -> dict:
    """Print `result` as `key.sub = value` lines under a title, write it to `--json` if given; return it rounded."""
    result = rounded({**result, "load_avg_1m_after": os.getloadavg()[0]})  # > threads: another process ran
    print(f"== {name}", *_lines(result), sep="\n", flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


def parse(module, argv=None) -> argparse.Namespace:
    """The arguments of a benchmark module: the shared ones plus its `add_args(parser)`."""
    p = parser(module.__doc__)
    module.add_args(p)
    return p.parse_args(argv)
