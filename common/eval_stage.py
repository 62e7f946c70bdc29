"""The evaluation stage every paper shares: its `evaluate.py` is the protocol (which arms, seeds, settings).

`EvalStage.load` reads the config, seeds everything, starts the clock and makes the output folders;
`add` records one results row (arm x seed x setting: the unit of the report's statistics and of the
MLflow child runs) and prints it as a JSON line so a long run shows its progress; `write` stores
`results.json` with the rows, the wall time and the fields every report reads, in one atomic write
(a killed stage never leaves a half-written file that DVC would take for an output); `write_json` and
`write_arrays` write a paper's other outputs the same way, and `log` prints a progress line that is no row.
`sampling_fields` adds what a sampling paper on the shared base model reports: the metric key,
its real-vs-real floor at the compared sample count, the feature backbone, the reference set size,
the model-call count and the base model's step.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from .atomic import atomic_file
from .config import load_config, resolve
from .seeding import seed_everything


@dataclass
class EvalStage:
    cfg: Any
    paper: str
    out: Path                                   # reports/<paper>: results.json and samples/
    rows: List[Dict[str, Any]] = field(default_factory=list)
    t0: float = field(default_factory=time.time)

    @classmethod
    def load(cls, config_cls, paper: str, argv: Optional[Sequence[str]] = None, *, out: Optional[Path] = None):
        cfg = load_config(config_cls, paper=paper, overrides=sys.argv[1:] if argv is None else list(argv))
        seed_everything(cfg.seed)
        out = Path(out) if out is not None else resolve(cfg, cfg.paths.reports, paper)
        (out / "samples").mkdir(parents=True, exist_ok=True)
        return cls(cfg, paper, out)

    @property
    def samples(self) -> Path:
        return self.out / "samples"

    def add(self, **row) -> Dict[str, Any]:
        """One results row; printed as a JSON line (progress of a long evaluation)."""
        self.rows.append(row)
        return self.log(**row)

    @staticmethod
    def log(**entry) -> Dict[str, Any]:
        """Print `entry` as a JSON line without recording it as a row (a sweep point, an intermediate set)."""
        print(json.dumps(entry, default=float), flush=True)
        return entry

    def save_grid(self, images_uint8, name: str, n: Optional[int] = 100) -> None:
        """samples/<name>.png of the first `n` images (all with n=None: a class grid is already cut)."""
        from .report import save_grid

        save_grid(images_uint8[:n], self.samples / f"{name}.png")

    @property
    def seconds(self) -> float:
        return time.time() - self.t0

    def write(self, name: str = "results.json", **results) -> Path:
        """`results` + the rows and the wall time, written atomically to out/<name>."""
        return self.write_json(name, {**results, "rows": self.rows, "eval_seconds": self.seconds})

    def write_json(self, name: str, data: Any) -> Path:
        """`data` as JSON in out/<name> (a path relative to out), written atomically."""
        path = self.out / name
        text = json.dumps(data, indent=2, default=float)  # fails before anything is written
        with atomic_file(path) as tmp:
            tmp.write_text(text)
        return path

    def write_arrays(self, name: str, **arrays) -> Path:
        """numpy arrays in out/<name> (a compressed .npz, path relative to out), written atomically."""
        import numpy as np

        path = self.out / name
        with atomic_file(path) as tmp, open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
        return path


def sampling_fields(cfg, exp, num_samples: int) -> Dict[str, Any]:
    """The results fields of a sampling paper on the shared base model (common.experiment.BaseModelExperiment):
    metric key, real-vs-real floor at `num_samples` (the metric's resolution), backbone, reference set size,
    model calls and the base model's training step."""
    return {"metric": exp.scorer.key("fid"), "floors": exp.real_floor(cfg, num_samples),
            "floor_samples": num_samples, "backbone": exp.scorer.backbone,
            "num_reference": exp.scorer.num_reference, "model_calls": exp.model_calls,
            "base_model_step": exp.meta["step"]}
