"""The last step of every paper's report stage: write the report, then log the same numbers to MLflow.

Kept apart from common/report.py so that changing it reruns only the paper report stages.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Sequence

from .claims import Verdict
from .config import resolve
from .report import write_paper_report
from .tracking import git_sha, log_run


def sampling_protocol(cfg, res: dict, **items) -> Dict[str, object]:
    """Protocol card of a sampling paper on the shared base model: its results.json fields plus `items`."""
    return {"profile": cfg.profile, "base model": f"models/base_model (step {res['base_model_step']})", **items,
            "feature extractor": res["backbone"], "reference set": f"held-out split, {res['num_reference']} images",
            "model calls": f"{res['model_calls']:,}", "wall time (evaluate)": f"{res['eval_seconds']:.0f} s"}


def publish(cfg, paper: str, title: str, intro: str, verdicts: List[Verdict], sections: Sequence[str],
            protocol: Dict[str, object], params: dict, metrics: Dict[str, float], artifacts: Sequence[Path]) -> Path:
    """Write reports/<paper>/ (and the index), then log verdict effects + `metrics`, report and artifacts."""
    path = write_paper_report(resolve(cfg, cfg.paths.reports), paper, title, intro, verdicts, sections,
                              {**protocol, "git sha": git_sha()})
    summary = {f"{v.id}.effect": v.effect for v in verdicts}
    summary.update(metrics)
    log_run(cfg, paper, "report", params, summary, artifacts=[path, *artifacts],
            tags={"verdicts": ", ".join(f"{v.id}={v.verdict}" for v in verdicts)})
    return path
