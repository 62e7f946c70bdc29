"""Root stage `train_base_model`: the shared class-conditional epsilon-prediction DDPM.

Condition dropout (`base_model.train.cond_dropout`) trains the null class too, so classifier-free
guidance works. A snapshot of the EMA weights at `eval.weak_fraction` of the steps is kept as the
"weak model" the evaluation compares against. Checkpoints live in runs/base_model/checkpoints
(DVC `persist: true`): rerunning after an interruption resumes from the newest one.
The recipe itself (network, loss, loop) is common/diffusion_training.py, shared with papers that
retrain the same network.
"""

import json
import shutil
import sys
from pathlib import Path

from common.config import RootConfig, load_config, resolve, to_dict
from common.data import load_split, to_model_range
from common.diffusion_training import train_diffusion_model
from common.models import save_diffusion_model
from common.tracking import log_run


def main(argv=None):
    cfg = load_config(RootConfig, overrides=sys.argv[1:] if argv is None else argv)
    bm = cfg.base_model
    x, y = load_split(resolve(cfg, cfg.paths.data, "prepared"), "train")
    weak_step = max(1, round(bm.train.steps * bm.eval.weak_fraction))
    models, run_dir = resolve(cfg, cfg.paths.models), resolve(cfg, cfg.paths.runs, "base_model")
    weak_snapshot = run_dir / f"ema-step-{weak_step}"  # in the persistent run folder: survives a resume

    def snapshot(step, ema_model, schedule, meta):
        save_diffusion_model(ema_model, schedule.diffusers_config, weak_snapshot, {**meta, "step": step})

    run = train_diffusion_model(bm, cfg.data, to_model_range(x), y, run_dir, models / "base_model",
                                desc="base model", ema_snapshots=[weak_step], snapshot_fn=snapshot,
                                code_files=[Path(__file__)], extra_identity={"weak_step": weak_step})
    res = run.result
    if not res.is_main_process:
        return
    shutil.rmtree(models / "base_model_weak", ignore_errors=True)
    shutil.copytree(weak_snapshot, models / "base_model_weak")
    metrics = {"final_loss": res.history[-1]["loss"], "params": run.meta["params"], "train_seconds": run.seconds,
               "steps": res.steps, "weak_step": weak_step, "resumed_from": res.resumed_from or 0}
    resolve(cfg, "metrics").mkdir(exist_ok=True)
    resolve(cfg, "metrics", "base_model_train.json").write_text(json.dumps({**metrics, "history": res.history}, indent=2))
    log_run(cfg, "shared", "train_base_model", {"base_model": run.meta["config"], "data": to_dict(cfg.data)},
            metrics, seed=bm.train.seed, history=res.history)
    print(json.dumps(metrics))


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
