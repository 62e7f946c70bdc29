"""The last step of every paper's report stage: write the report, then log the same numbers to MLflow.

Kept apart from common/report.py so that changing it reruns only the paper report stages.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Sequence

from .claims import Verdict, counts
from .config import repo_root, resolve
from .provenance import environment, git_commit, input_hashes
from .report import write_paper_report
from .tracking import log_rows, log_run


def provenance(cfg, inputs: Sequence[Path] = ()) -> Dict[str, object]:
    """Commit, input hashes and environment of a report; refuses a dirty tree outside the tiny profile.

    Call it before long work so a dirty tree fails fast (evaluate_base_model does).
    """
    root = repo_root()
    paths = [Path(p).resolve() for p in inputs if Path(p).exists()]
    rel = {str(p.relative_to(root)) if p.is_relative_to(root) else str(p): h
           for p, h in zip(paths, (input_hashes([p])[p.as_posix()] for p in paths))}
    return {"commit": git_commit(allow_dirty=cfg.profile == "tiny"), "inputs": rel, "environment": environment()}


def write_summary(path: Path, verdicts: List[Verdict], metrics: Dict[str, float]) -> None:
    """The paper's one small DVC metrics file: verdict counts and its headline numbers, so that `dvc metrics
    show` (and `dvc metrics diff` between experiments) reads one short row per paper; details stay in
    results.json."""
    headline = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
    path.write_text(json.dumps({"verdicts": {**counts(verdicts), "not counted": len(verdicts) - sum(
        counts(verdicts).values())}, "headline": headline}, indent=2))


def publish(cfg, paper: str, title: str, intro: str, verdicts: List[Verdict], sections: Sequence[str],
            protocol: Dict[str, object], params: dict, metrics: Dict[str, float], artifacts: Sequence[Path],
            inputs: Sequence[Path] = ()) -> Path:
    """Write reports/<paper>/ (and the index), then log verdict effects + `metrics`, report and artifacts."""
    # every report reads its results.json and claims.yaml
    default = (resolve(cfg, cfg.paths.reports, paper) / "results.json", repo_root() / "papers" / paper / "claims.yaml")
    prov = provenance(cfg, [*default, *inputs])
    path = write_paper_report(resolve(cfg, cfg.paths.reports), paper, title, intro, verdicts, sections, protocol,
                              prov)
    summary = {f"{v.id}.effect": v.effect for v in verdicts}
    summary.update({f"verdicts.{k.replace(' ', '_')}": n for k, n in counts(verdicts).items()})
    summary.update(metrics)
    write_summary(path.parent / "summary.json", verdicts, metrics)
    env = prov["environment"]
    log_run(cfg, paper, "report", params, summary, artifacts=[path, path.parent / "verdicts.json", *artifacts],
            tags={"verdicts": ", ".join(f"{v.id}={v.verdict}" for v in verdicts), "commit": prov["commit"],
                  "packages_digest": str(env.get("packages_digest")), "cpu": str(env.get("cpu_model")),
                  "cpu_flags": " ".join(env.get("cpu_flags", []))})
    results = default[0]
    rows = json.loads(results.read_text()).get("rows") if results.is_file() else None
    if isinstance(rows, list) and rows:  # every arm x seed x setting as a child run the MLflow UI can compare
        log_rows(cfg, paper, "results", rows, params, tags={"commit": prov["commit"]})
    return path
