"""MLflow logging: sqlite store at the repository root, one experiment per paper.

The DVC metrics JSON written by each stage is the source of truth; the functions here send the
same numbers to MLflow (never recomputed). Only the main process logs. Writers are serialised by a
file lock beside the database, so two stages logging at once do not hit sqlite's
"database is locked" or the first-time schema migration race.

- `log_run`: one run (a stage's config as params, its metrics, optionally a loss history).
- `log_rows`: one parent run for a stage and one child run per results row, so that the MLflow UI
  compares baseline and method runs side by side under the same metric keys.
- `log_training`: one run per training (config, loss/lr curve, evaluations during training), for
  trainings that are not a stage of their own (CLIP runs of the data papers, fine-tuning runs).

Every experiment is tagged as a model-training experiment (MLflow 3 otherwise opens an experiment
in GenAI mode on an empty traces page) and described (`mlflow.note.content`): for a paper, its title
and claim from papers/<name>/README.md and the path of its report. Runs are named by stage, arm,
settings and seed, e.g. `train/arm=method/seed=1`.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from .config import RootConfig, repo_root
from .provenance import git_commit

# MLflow 3's experiment kind (the UI reads it to choose the GenAI or the model-training layout). mlflow
# 3.17 exports no Python constant for it: the key and values live in the UI bundle
# (mlflow/server/js: ExperimentKind.CUSTOM_MODEL_DEVELOPMENT = "custom_model_development", set through
# setExperimentTag(key "mlflow.experimentKind")) and as a literal in mlflow/demo/generators/traces.py.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND_TRAINING = "custom_model_development"
NOTE_TAG = "mlflow.note.content"  # = mlflow.utils.mlflow_tags.MLFLOW_RUN_NOTE; experiments use it too
PARENT_RUN_TAG = "mlflow.parentRunId"  # = mlflow.utils.mlflow_tags.MLFLOW_PARENT_RUN_ID

SHARED_DESCRIPTION = ("Shared root stages every paper builds on (datasets, base diffusion model, classifier, "
                      "scene CLIP, knowledge LM): one run per stage, with its training curve.")

# Row fields that describe WHICH run a results row is (logged as params, used in run names), even when
# numeric; every other numeric field is a result (a metric). `log_rows(settings=...)` adds to these.
SETTING_KEYS = ("stage", "arm", "group", "seed", "train_seed", "sample_seed", "nfe", "guidance", "gamma", "b",
                "w", "s", "t0", "window", "cutoff", "share", "dirty_share", "top_pct", "n_data", "size_index",
                "epochs", "from_epochs", "to_epochs", "samples", "budget", "fraction")

_NAME_VALUE_MAX = 40  # longer text fields are params but stay out of run names


def tracking_uri(cfg: Optional[RootConfig] = None) -> str:
    if cfg is not None and cfg.tracking.uri:
        return cfg.tracking.uri
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{repo_root() / 'mlflow.db'}"


def git_sha() -> str:
    """HEAD of the repository, with `-dirty` when tracked files differ from it ("unknown" without git).

    Kept for the code that imports it; the logic lives in `common.provenance.git_commit`.
    """
    return git_commit(allow_dirty=True)


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


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _param_value(v) -> str:
    if isinstance(v, (list, tuple)):
        v = json.dumps(v, default=str)
    return str(v)[:6000]


def _fmt(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


# --------------------------------------------------------------------------- naming and description
def run_label(stage: str, fields: Mapping[str, object] = ()) -> str:
    """Run name from the stage and the fields that identify the run: `stage[/sub-stage]/arm=../<k>=../seed=..`.

    `fields` are the run's setting fields (a results row's params, or arm/seed/settings of a training);
    None values and long texts are left out. E.g. run_label("train", {"arm": "method", "seed": 1}) ==
    "train/arm=method/seed=1".
    """
    fields = {k: v for k, v in dict(fields).items() if v is not None and not isinstance(v, (list, tuple, Mapping))}
    parts = [stage]
    sub = fields.pop("stage", None)
    if sub is not None and str(sub) != stage:
        parts.append(str(sub))
    seed = fields.pop("seed", None)
    if "arm" in fields:
        parts.append(f"arm={fields.pop('arm')}")
    parts += [f"{k}={_fmt(v)}" for k, v in fields.items() if len(_fmt(v)) <= _NAME_VALUE_MAX]
    if seed is not None:
        parts.append(f"seed={seed}")
    return "/".join(parts)[:250]


def _paragraphs(text: str) -> List[str]:
    return [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]


def experiment_description(experiment: str) -> str:
    """`mlflow.note.content` of an experiment (markdown).

    A paper (papers/<name>/README.md exists): its title line, its first paragraph -- and the next one
    when the first is only the citation (`**Paper.**`, `**Citation:**`), since that one states the idea
    and claim -- and the path of its report, reports/<name>/README.md. "shared": one line.
    """
    if experiment == "shared":
        return SHARED_DESCRIPTION
    try:
        readme = repo_root() / "papers" / experiment / "README.md"
    except Exception:  # no repository around (a store used from elsewhere)
        readme = None
    if readme is None or not readme.is_file():
        return f"Runs logged under `{experiment}`."
    paras = _paragraphs(readme.read_text(encoding="utf-8"))
    title = paras[0].lstrip("#").strip() if paras and paras[0].startswith("#") else experiment
    body = [p for p in paras if not p.startswith("#")]
    keep = body[:1]
    if keep and re.match(r"\*\*(Paper|Citation)\b", keep[0]) and len(body) > 1:
        keep.append(body[1])
    report = f"reports/{experiment}/README.md"
    note = "\n\n".join([f"# {title}", *keep, f"**Report:** [{report}]({report}) (in the repository)"])
    return note[:19000]


def experiment_tags(experiment: str) -> Dict[str, str]:
    """Tags every experiment gets (set at creation, and on existing experiments when they differ)."""
    return {EXPERIMENT_KIND_TAG: EXPERIMENT_KIND_TRAINING, NOTE_TAG: experiment_description(experiment)}


def dvc_stage_target() -> Optional[Tuple[str, str]]:
    """(experiment, stage) of the DVC stage running this process (`DVC_STAGE`, set by `dvc repro`), else None.

    papers/<name>/dvc.yaml:<stage> -> (<name>, <stage>); a root stage -> ("shared", <stage>).
    """
    addr = os.environ.get("DVC_STAGE")
    if not addr:
        return None
    path, _, stage = addr.rpartition(":")
    m = re.match(r"(?:.*/)?papers/([^/]+)/dvc\.yaml$", path)
    return (m.group(1) if m else "shared"), (stage or addr)


# --------------------------------------------------------------------------- store access
def _enabled(cfg: Optional[RootConfig]) -> bool:
    if cfg is not None and not cfg.tracking.enabled:
        return False
    return int(os.environ.get("RANK", "0")) == 0


class _Store:
    """The client and the writers' lock of one tracking store (use as a context manager)."""

    def __init__(self, cfg: Optional[RootConfig]):
        from filelock import FileLock
        from mlflow import MlflowClient

        self.uri = tracking_uri(cfg)
        self.dir = _store_dir(self.uri)
        self.lock = FileLock(str(self.dir / ".mlflow.lock"), timeout=600)
        self._client_cls = MlflowClient
        self.client = None

    def __enter__(self):
        self.lock.acquire()
        try:
            self.client = self._client_cls(tracking_uri=self.uri)
        except BaseException:
            self.lock.release()
            raise
        return self

    def __exit__(self, *exc):
        self.lock.release()

    def experiment_id(self, experiment: str) -> str:
        """Get or create `experiment`; make sure it carries the kind and description tags (idempotent)."""
        c = self.client
        wanted = experiment_tags(experiment)
        exp = c.get_experiment_by_name(experiment)
        if exp is None:
            return c.create_experiment(experiment, tags=wanted,
                                       artifact_location=(self.dir / "mlartifacts" / experiment).as_uri())
        if exp.lifecycle_stage == "deleted":
            c.restore_experiment(exp.experiment_id)
        for k, v in wanted.items():
            if exp.tags.get(k) != v:
                c.set_experiment_tag(exp.experiment_id, k, v)
        return exp.experiment_id

    def start(self, exp_id: str, run_name: str, tags: Mapping[str, str]) -> str:
        return self.client.create_run(exp_id, tags=dict(tags), run_name=run_name).info.run_id

    def log(self, run_id: str, params: Mapping[str, object] = (), metrics: Iterable[Tuple[str, float, int]] = ()):
        """Params (values made strings) and (key, value, step) metrics, in as few batches as MLflow allows."""
        from mlflow.entities import Metric, Param

        ps = [Param(k, _param_value(v)) for k, v in {metric_name(k): v for k, v in dict(params).items()}.items()]
        now = int(time.time() * 1000)
        ms = [Metric(metric_name(k), float(v), now, int(s)) for k, v, s in metrics]
        # MLflow's limits per batch: 100 params, 1000 metrics, 1000 entities in all
        if ps or ms:
            self.client.log_batch(run_id, params=ps[:100], metrics=ms[:900])
        for i in range(100, len(ps), 100):
            self.client.log_batch(run_id, params=ps[i : i + 100])
        for i in range(900, len(ms), 1000):
            self.client.log_batch(run_id, metrics=ms[i : i + 1000])

    def artifacts(self, run_id: str, paths: Iterable[Path]):
        for a in map(Path, paths):
            if a.is_dir():
                self.client.log_artifacts(run_id, str(a), artifact_path=a.name)
            elif a.is_file():
                self.client.log_artifact(run_id, str(a))

    def end(self, run_id: str, ok: bool = True):
        self.client.set_terminated(run_id, "FINISHED" if ok else "FAILED")


def _base_tags(cfg: Optional[RootConfig], seed) -> Dict[str, str]:
    """Provenance tags of every run, plus what mlflow.start_run would add (user, source name and type)."""
    from mlflow.tracking.context.registry import resolve_tags

    from .provenance import environment

    env = environment()  # which software and CPU produced the run; the full package list is in each report
    return resolve_tags({
        "git_sha": git_sha(),
        "packages_digest": str(env.get("packages_digest")),
        "cpu": f"{env.get('cpu_model')} ({' '.join(env.get('cpu_flags', []))})",
        "dvc_stage": os.environ.get("DVC_STAGE", "manual"),
        "dvc_exp": os.environ.get("DVC_EXP_NAME", ""),
        "profile": cfg.profile if cfg is not None else "unknown",
        "seed": str(seed if seed is not None else (cfg.seed if cfg is not None else "")),
    })


def _numeric_items(d: Mapping) -> Dict[str, float]:
    """The numeric entries of a (flattened) mapping; None and non-numbers dropped, NaN kept."""
    return {k: float(v) for k, v in _flatten(d).items() if _is_number(v)}


# --------------------------------------------------------------------------- one run
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
    """Log one run; returns its run id (None when tracking is disabled or not the main process).

    `history` rows ({step, loss, lr, ...}) become step metrics (the training curve). A run that is
    one arm of a comparison (`params["arm"]` or `tags["arm"]`) is named `run_name/arm=<arm>/seed=<seed>`.
    """
    if not _enabled(cfg):
        return None
    arm = (tags or {}).get("arm", params.get("arm") if isinstance(params, Mapping) else None)
    if arm is not None and not isinstance(arm, Mapping) and "/" not in run_name:
        run_name = run_label(run_name, {"arm": arm, "seed": seed})
    all_tags = {**_base_tags(cfg, seed), **(tags or {})}
    series = [(k, float(v), int(row["step"])) for row in history for k, v in row.items()
              if k != "step" and v is not None]
    finals = [(k, float(v), 0) for k, v in metrics.items() if v is not None and v == v]
    with _Store(cfg) as st:
        run_id = st.start(st.experiment_id(experiment), run_name, all_tags)
        ok = False
        try:
            st.log(run_id, _flatten(params), finals + series)
            st.artifacts(run_id, artifacts)
            ok = True
        finally:
            st.end(run_id, ok)
    return run_id


# --------------------------------------------------------------------------- a results table
def _columns(rows: Sequence[Mapping], settings: Iterable[str]) -> Tuple[List[str], set]:
    """Column order (first appearance) and the set of metric columns: numeric in every row where set
    (None allowed) and not a setting field."""
    setting = set(SETTING_KEYS) | set(settings)
    order, seen, kinds = [], set(), {}
    for r in rows:
        for k, v in _flatten(r).items():
            if k not in seen:
                seen.add(k)
                order.append(k)
            if v is not None:
                kinds.setdefault(k, set()).add("num" if _is_number(v) else "other")
    metrics = {k for k in order if k not in setting and kinds.get(k) == {"num"}}
    return order, metrics


def log_rows(
    cfg: RootConfig,
    experiment: str,
    stage: str,
    rows: Sequence[Mapping],
    params: Optional[Mapping] = None,
    artifacts: Iterable[Path] = (),
    *,
    settings: Iterable[str] = (),
    tags: Optional[Mapping[str, str]] = None,
) -> Optional[str]:
    """Log a stage's results table: one parent run `stage` (with `params` and `artifacts`) and one child
    run per row (`mlflow.parentRunId`); returns the parent's run id (None when tracking is off).

    Per row: the setting fields (SETTING_KEYS plus `settings`: arm, seed, nfe, guidance, group, stage,
    ...) and every non-numeric field are params; the other numeric fields are metrics, named with
    `metric_name`. A column that is numeric in some rows and None in others is logged as NaN where None,
    so rows of every arm carry the same metric keys. Nested dicts are flattened (`a.b`). The child is
    named by `run_label` (e.g. `evaluate/sweep/arm=method/nfe=10/seed=1`). One lock, batched writes.
    """
    if not _enabled(cfg):
        return None
    rows = [dict(r) for r in rows]
    order, metric_cols = _columns(rows, settings)
    base = _base_tags(cfg, None)  # resolved once: the children differ only in seed, arm and parent
    with _Store(cfg) as st:
        exp_id = st.experiment_id(experiment)
        parent = st.start(exp_id, stage, {**base, "stage": stage, "rows": str(len(rows)), **(tags or {})})
        ok = False
        try:
            st.log(parent, _flatten(params or {}), [("rows", len(rows), 0)])
            st.artifacts(parent, artifacts)
            for row in rows:
                flat = _flatten(row)
                p = {k: flat[k] for k in order if k in flat and k not in metric_cols}  # flat: no dicts left
                p = {k: ("None" if v is None else v) for k, v in p.items()}
                m = [(k, float("nan") if flat.get(k) is None else float(flat[k]), 0) for k in order
                     if k in metric_cols]
                name_fields = {k: v for k, v in flat.items() if k in p and v is not None}
                child_tags = {**base, PARENT_RUN_TAG: parent, "stage": stage,
                              "seed": str(flat.get("seed", "")), **(tags or {})}
                if "arm" in flat:
                    child_tags["arm"] = str(flat["arm"])
                child = st.start(exp_id, run_label(stage, name_fields), child_tags)
                st.log(child, p, m)
                st.end(child)
            ok = True
        finally:
            st.end(parent, ok)
    return parent


# --------------------------------------------------------------------------- a training run
def log_training(
    cfg: Optional[RootConfig],
    experiment: str,
    stage: str,
    result,
    config: Mapping,
    *,
    metrics: Optional[Mapping[str, object]] = None,
    arm: Optional[str] = None,
    seed: Optional[int] = None,
    settings: Optional[Mapping[str, object]] = None,
    curve: Sequence[Mapping] = (),
    curve_step: Union[str, Callable[[Mapping], int]] = "step",
    tags: Optional[Mapping[str, str]] = None,
) -> Optional[str]:
    """Log one training as a run named `run_label(stage, {arm, **settings, seed})`; returns its id.

    `result`: a common.training.TrainResult (its loss/lr `history`, `steps`, `train_seconds`,
    `segment_seconds`, `resumed_from_step` are logged) or a plain list of history rows {step, ...}.
    `config` -> params (flattened; `settings`, arm and seed added). `curve`: evaluations during training,
    each row logged as step metrics at `row[curve_step]` (or `curve_step(row)`, e.g. epoch -> optimizer
    step). `metrics`: final numbers, logged at the last step (non-numeric values are ignored).
    `cfg` None: tracking on, store from MLFLOW_TRACKING_URI or the repository's mlflow.db.
    """
    if not _enabled(cfg):
        return None
    history = list(result) if isinstance(result, (list, tuple)) else list(result.history)
    last = int(getattr(result, "steps", 0) or max([int(h["step"]) for h in history] or [0]))
    finals = {}
    if not isinstance(result, (list, tuple)):
        finals.update({"train_seconds": result.train_seconds, "segment_seconds": result.segment_seconds,
                       "resumed_from_step": result.resumed_from_step, "steps": result.steps})
    finals.update(_numeric_items(metrics or {}))
    step_of = (lambda r: int(r[curve_step])) if isinstance(curve_step, str) else curve_step
    skip = {curve_step} if isinstance(curve_step, str) else set()
    series = [(k, v, int(h["step"])) for h in history for k, v in _numeric_items(h).items() if k != "step"]
    series += [(k, v, step_of(r)) for r in curve for k, v in _numeric_items(r).items() if k not in skip]
    series += [(k, v, last) for k, v in finals.items() if not math.isnan(v)]
    fields = {"arm": arm, **(settings or {}), "seed": seed}
    params = {**_flatten(config), **{k: v for k, v in fields.items() if v is not None}}
    all_tags = {**_base_tags(cfg, seed), "stage": stage, **({"arm": str(arm)} if arm is not None else {}),
                **(tags or {})}
    with _Store(cfg) as st:
        run_id = st.start(st.experiment_id(experiment), run_label(stage, fields), all_tags)
        ok = False
        try:
            st.log(run_id, params, series)
            ok = True
        finally:
            st.end(run_id, ok)
    return run_id
