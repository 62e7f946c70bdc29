"""The arms x training seeds protocol of a paper that trains its own models: one loop, one record, one file.

A paper's train stage trains every arm (a method variant) once per training seed (the replication unit of the
verdicts, docs/verdicts.md), logs each (arm, seed) as an MLflow child run `train/arm=<arm>/seed=<seed>` with its
loss curve, and writes reports/<paper>/train.json for the evaluation and the report. Only the per-run training
is paper-specific (`train_one`); the loop order (seeds outer, arms inner: a killed stage has finished whole
seeds) and the record's shape are the same for every paper.
"""

from __future__ import annotations

import json
import time
from typing import Callable, Dict, List, Mapping, Optional, Sequence

from .atomic import atomic_file
from .config import resolve
from .tracking import log_run


def _numbers(run: Mapping) -> Dict[str, float]:
    return {k: v for k, v in run.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def train_arms(cfg, paper: str, arms: Sequence[str], train_one: Callable[[str, int], dict],
               params: Callable[[str], Mapping], extra: Optional[Mapping] = None) -> List[dict]:
    """Run `train_one(arm, seed)` for every seed in `cfg.train_seeds` and arm in `arms`; returns the records.

    Each record is a dict of facts (numbers go to MLflow as metrics) with an optional `history` list of
    {step, loss, ...} rows (the curve). `params(arm)` are the MLflow params of that arm's runs; `extra` is added
    to train.json beside `runs` and `train_seconds` (wall time of the whole loop).
    """
    runs, t0 = [], time.time()
    for seed in cfg.train_seeds:
        for arm in arms:
            run = train_one(arm, seed)
            runs.append(run)
            log_run(cfg, paper, "train", {"arm": arm, **params(arm)}, _numbers(run), seed=seed,
                    history=run.get("history", ()))
            print(json.dumps({k: v for k, v in run.items() if k != "history"}), flush=True)
    out = resolve(cfg, cfg.paths.reports, paper)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_file(out / "train.json") as tmp:  # a killed stage leaves no half-written output
        tmp.write_text(json.dumps({"runs": runs, "train_seconds": time.time() - t0, **(extra or {})}, indent=1))
    return runs
