"""MLflow logging: sqlite store at the repository root, one experiment per paper.

The DVC metrics JSON written by each stage is the source of truth; `log_run` sends the same
numbers to MLflow (never recomputed). Only the main process logs. Writers are serialised by a
file lock beside the database, so two stages logging at once do not hit sqlite's
"database is locked" or the first-time schema migration race.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Dict, Iterable, Mapping, Optional

from .config import RootConfig, repo_root


def tracking_uri(cfg: Optional[RootConfig] = None) -> str:
    if cfg is not None and cfg.tracking.uri:
        return cfg.tracking.uri
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{repo_root() / 'mlflow.db'}"


def git_sha() -> str:
    """HEAD of the repository, with `-dirty` when tracked files differ from it."""
    try:
        root = repo_root()
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        sha = out.stdout.strip() or "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError, ValueError):
        return "unknown"


def _store_dir(uri: str) -> Path:
    """Folder of the sqlite store (artifacts and the writers' lock live beside it)."""
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///"):]).parent
    return repo_root()


def metric_name(key: str) -> str:
    """MLflow forbids brackets: `fid[mnist-classifier]` is logged as `fid.mnist-classifier`."""
    return key.replace("[", ".").replace("]", "")


def _flatten(d: Mapping, prefix: str = "") -> Dict[str, object]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def log_run(
    cfg: RootConfig,
    experiment: str,
    run_name: str,
    params: Mapping,
    metrics: Mapping[str, float],
    *,
    seed: Optional[int] = None,
    history: Iterable[Mapping] = (),
    artifacts: Iterable[Path] = (),
    tags: Optional[Mapping[str, str]] = None,
) -> Optional[str]:
    """Log one run; returns its run id (None when tracking is disabled or not the main process)."""
    if not cfg.tracking.enabled or int(os.environ.get("RANK", "0")) != 0:
        return None
    import mlflow
    from filelock import FileLock

    uri = tracking_uri(cfg)
    store = _store_dir(uri)
    with FileLock(str(store / ".mlflow.lock"), timeout=600):
        mlflow.set_tracking_uri(uri)
        exp = mlflow.get_experiment_by_name(experiment)
        exp_id = exp.experiment_id if exp else mlflow.create_experiment(
            experiment, artifact_location=(store / "mlartifacts" / experiment).as_uri()
        )
        all_tags = {
            "git_sha": git_sha(),
            "dvc_stage": os.environ.get("DVC_STAGE", "manual"),
            "dvc_exp": os.environ.get("DVC_EXP_NAME", ""),
            "profile": cfg.profile,
            "seed": str(cfg.seed if seed is None else seed),
            **(tags or {}),
        }
        with mlflow.start_run(experiment_id=exp_id, run_name=run_name, tags=all_tags) as run:
            flat = {k: str(v)[:6000] for k, v in _flatten(params).items()}
            keys = list(flat)
            for i in range(0, len(keys), 90):
                mlflow.log_params({k: flat[k] for k in keys[i : i + 90]})
            finite = {metric_name(k): float(v) for k, v in metrics.items() if v is not None and v == v}
            if finite:
                mlflow.log_metrics(finite)
            for row in history:
                step = int(row["step"])
                mlflow.log_metrics({metric_name(k): float(v) for k, v in row.items() if k != "step"}, step=step)
            for a in artifacts:
                a = Path(a)
                if a.is_dir():
                    mlflow.log_artifacts(str(a), artifact_path=a.name)
                elif a.is_file():
                    mlflow.log_artifact(str(a))
            return run.info.run_id
