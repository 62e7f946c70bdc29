"""One data experiment = one CLIP trained on a subset of scenes, then scored: cached and resumable.

The data papers train many small CLIPs that differ only in their training pairs (a filtered subset,
a pool mix, a curated sample) or budget; a paper that changes the objective (CatLIP: the image tower
alone with a loss over caption labels) passes its model builder, loss, targets and evaluation to the
same `run_clip`. `run_clip` gives each a folder under the paper's persistent
runs directory: checkpoints (resume after a kill), the score card after training, and score cards at
intermediate budgets (`eval_samples`, e.g. after each epoch for QQT's repetition curves), written
as they are computed so a resumed run does not lose them. A finished run with the same fingerprint
(configuration + subset + code) is read back instead of retrained.

That read-back is a deliberate cache of finished work, shared by the reruns of a paper's stage:
`dvc repro --force` of a stage built on `run_clip` (dfn, qqt_data_filtering, scaling_down_clip,
ssl_data_curation, catlip experiment stages) reruns the stage but NOT its finished CLIPs -- they are
read back from runs/<paper>/.../<name>/result.json, train_seconds included (the time of the run that
trained them). To retrain them, delete the run folders (or runs/<paper>) before the repro; a changed
configuration, subset or code (the fingerprint) retrains by itself. Below the cache, training itself
follows common.training: an interrupted run resumes, a finished one without result.json retrains.

A CLIP that is actually trained (not read back) is also logged to MLflow as one run with its loss
curve and its intermediate score cards (`common.tracking.log_training`): to `tracking_cfg`/`experiment`
when given, else, inside `dvc repro`, to the paper of the running DVC stage (tracking settings from
params.yaml); outside DVC without `tracking_cfg` nothing is logged.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

import common.clip
import common.training
from common.clip import build_clip, clip_loss, evaluate_clip, train_clip
from common.scenes import Scenes
from common.tracking import dvc_stage_target, log_training
from common.training import fingerprint, resume_step


def subset_digest(scenes: Scenes) -> str:
    """Identity of a training set: its captions and image bytes."""
    h = hashlib.sha256("\n".join(scenes.captions).encode())
    h.update(scenes.images.numpy().tobytes())
    return h.hexdigest()[:16]


def run_clip(name: str, train_set: Scenes, spec, t, *, seed: int, run_dir: Path, tok, probe: Scenes, test: Scenes,
             samples: Optional[int] = None, eval_samples: Sequence[int] = (), extra: Optional[dict] = None,
             evaluate: Callable = evaluate_clip, build: Optional[Callable[[int], torch.nn.Module]] = None,
             loss: Callable = clip_loss, targets: Optional[torch.Tensor] = None, code_files: Sequence[Path] = (),
             keep_history: bool = False, tracking_cfg=None, experiment: Optional[str] = None) -> dict:
    """Train a CLIP (`spec`, `t` with seed and `samples` samples seen) on `train_set`; return its score card.

    The result dict holds the final metrics plus `train_seconds`, `samples_seen`, `n_train`,
    `resumed_from` and, if `eval_samples` is given, `curve`: [{samples_seen, **metrics}] at those budgets
    (multiples of the batch). `train_seconds` is the training wall time, summed over the segments of a
    run that was interrupted and resumed (`resumed_from`: the step it resumed from, None if it was not).
    `keep_history`: also the training loop's loss/lr `history`.
    `tracking_cfg` (a RootConfig) and `experiment`: where a trained run is logged (module docstring).

    What is trained, by default open_clip's CLIP with its contrastive loss, is an argument:
    `build(seed)` returns the fresh model (default `common.clip.build_clip(spec, tok, seed)`);
    `loss(model, images_u8, y, generator)` is its loss on a batch, where y holds the batch's caption
    tokens or, when `targets` ([N, ...], one row per pair of `train_set`) is given, its rows of
    `targets` (an image-only objective); `evaluate(model, tok, probe, test, context_length)` is the
    score card. `code_files`: the source defining a non-default objective (part of the fingerprint).
    """
    from dataclasses import asdict, replace

    t = replace(t, seed=seed)
    samples = samples or t.samples
    folder = Path(run_dir) / name
    conf = {"name": name, "model": asdict(spec), "train": asdict(t), "samples": samples,
            "eval_samples": list(eval_samples), "data": subset_digest(train_set), "extra": extra or {}}
    if targets is not None:
        conf["targets"] = {"shape": list(targets.shape),
                           "digest": hashlib.sha256(targets.numpy().tobytes()).hexdigest()[:16]}
    fp = fingerprint(conf, [Path(common.clip.__file__), Path(common.training.__file__), Path(__file__),
                            *map(Path, code_files)])
    done = folder / "result.json"
    if done.is_file():
        res = json.loads(done.read_text())
        if res.get("fingerprint") == fp:
            return res
    folder.mkdir(parents=True, exist_ok=True)
    curve_file = folder / "curve.json"
    curve = json.loads(curve_file.read_text()) if curve_file.is_file() else {}
    if curve.get("fingerprint") != fp:
        curve = {"fingerprint": fp, "points": []}
    # keep only the score cards of steps the training will not pass again: none when it starts from
    # scratch (a finished run is retrained), those up to its last checkpoint when it resumes
    kept = resume_step(folder / "checkpoints", fp) * t.batch_size
    curve["points"] = [p for p in curve["points"] if p["samples_seen"] <= kept]
    steps_at = {max(1, int(round(s / t.batch_size))): s for s in eval_samples}

    def snapshot(step, model):
        m = evaluate(model.eval(), tok, probe, test, spec.context_length)
        model.train()
        curve["points"].append({"samples_seen": step * t.batch_size, **m})
        curve_file.write_text(json.dumps(curve))

    model = build_clip(spec, tok, seed) if build is None else build(seed)
    res = train_clip(model, tok, train_set, t, folder / "checkpoints", context_length=spec.context_length,
                     desc=name, run_fingerprint=fp, samples=samples, loss_fn=loss, targets=targets,
                     ema_snapshots=sorted(steps_at), snapshot_fn=snapshot if steps_at else None)
    metrics = evaluate(res.model.eval(), tok, probe, test, spec.context_length)
    out = {"name": name, "seed": seed, "fingerprint": fp, "n_train": len(train_set),
           "samples_seen": res.steps * t.batch_size, "train_seconds": res.train_seconds,
           "resumed_from": res.resumed_from, **(extra or {}), **metrics}
    if keep_history:
        out["history"] = res.history
    if steps_at:
        out["curve"] = sorted(curve["points"], key=lambda p: p["samples_seen"])
    done.write_text(json.dumps(out, indent=2))
    log_clip_run(out, conf, res, t.batch_size, tracking_cfg=tracking_cfg, experiment=experiment)
    return out


def log_clip_run(out: dict, conf: dict, res, batch_size: int, *, tracking_cfg=None,
                 experiment: Optional[str] = None) -> Optional[str]:
    """Log one trained CLIP run to MLflow (see the module docstring for where); returns the run id or None.

    Run `<stage>/clip=<name>/seed=<seed>`: `conf` as params, the loop's loss/lr history and the
    intermediate score cards (`out["curve"]`, at step samples_seen / batch) as step metrics, the final
    score card, train_seconds and resumed_from_step at the last step.
    """
    target = dvc_stage_target()
    if tracking_cfg is None:
        if target is None:
            return None  # outside `dvc repro` (tests, notebooks) and not asked to
        from common.config import RootConfig, load_config

        tracking_cfg = load_config(RootConfig)
    experiment = experiment or (target[0] if target else "clip_runs")
    stage = target[1] if target else "run_clip"
    final = {k: v for k, v in out.items() if k not in ("seed", "resumed_from", "curve")}
    return log_training(tracking_cfg, experiment, stage, res, conf, metrics=final, seed=out["seed"],
                        settings={"clip": out["name"]}, curve=out.get("curve", ()),
                        curve_step=lambda p: p["samples_seen"] // batch_size, tags={"fingerprint": out["fingerprint"]})


def error(metrics: dict, key: str = "zero_shot_mean") -> float:
    """1 - accuracy: the 'error' of scaling-law fits."""
    return 1.0 - float(metrics[key])


def top_fraction(scores: np.ndarray, fraction: float) -> np.ndarray:
    """Indices of the top `fraction` of `scores`: exactly round(fraction * N) items, ties broken by index.

    DataComp's `apply_filter` keeps score >= the score at position n of the descending order, i.e.
    n + 1 items plus ties; we keep exactly n so that subsets of equal fraction have equal size.
    """
    n = int(round(fraction * len(scores)))
    order = np.lexsort((np.arange(len(scores)), -np.asarray(scores, dtype=np.float64)))
    return np.sort(order[:n])
