"""Root stage `train_base_model`: the shared class-conditional epsilon-prediction DDPM.

Condition dropout (`base_model.train.cond_dropout`) trains the null class too, so classifier-free
guidance works. A snapshot of the EMA weights at `eval.weak_fraction` of the steps is kept as the
"weak model" the evaluation compares against. Checkpoints live in runs/base_model/checkpoints
(DVC `persist: true`): rerunning after an interruption resumes from the newest one.
"""

import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path

import common.data
import common.diffusion
import common.models
import common.training

from common.config import RootConfig, load_config, resolve, to_dict
from common.data import load_split, to_model_range
from common.diffusion import NoiseSchedule, denoising_loss, unet_fn
from common.models import build_unet, count_parameters, save_diffusion_model
from common.seeding import seed_everything
from common.tracking import log_run
from common.training import fingerprint, train


def main(argv=None):
    cfg = load_config(RootConfig, overrides=sys.argv[1:] if argv is None else argv)
    bm = cfg.base_model
    seed_everything(bm.train.seed)
    x, y = load_split(resolve(cfg, cfg.paths.data, "prepared"), "train")
    x = to_model_range(x)
    unet = build_unet(bm.unet, cfg.data.resolution, x.shape[1])
    schedule = NoiseSchedule.from_config(bm.diffusion)
    null = bm.unet.num_classes

    def loss_fn(model, xb, yb, gen):
        cond = yb if bm.unet.num_classes else None
        return denoising_loss(unet_fn(model), schedule, xb, cond, gen, bm.train.cond_dropout, null)

    meta = {"params": count_parameters(unet), "resolution": cfg.data.resolution, "dataset": cfg.data.name,
            "num_classes": bm.unet.num_classes, "config": to_dict(cfg)["base_model"]}
    weak_step = max(1, round(bm.train.steps * bm.eval.weak_fraction))
    models, run_dir = resolve(cfg, cfg.paths.models), resolve(cfg, cfg.paths.runs, "base_model")
    weak_snapshot = run_dir / f"ema-step-{weak_step}"  # in the persistent run folder: survives a resume

    def snapshot(step, ema_model):
        save_diffusion_model(ema_model, schedule.diffusers_config, weak_snapshot, {**meta, "step": step})

    run_id = fingerprint({"base_model": meta["config"], "data": dataclasses.asdict(cfg.data), "weak_step": weak_step},
                         [Path(__file__), *(Path(m.__file__) for m in (common.training, common.diffusion,
                                                                     common.models, common.data))])
    t0 = time.time()
    res = train(unet, loss_fn, (x, y), bm.train, run_dir / "checkpoints", desc="base model",
                ema_snapshots=[weak_step], snapshot_fn=snapshot, run_fingerprint=run_id)
    seconds = time.time() - t0
    if not res.is_main_process:
        return
    save_diffusion_model(res.model, schedule.diffusers_config, models / "base_model", {**meta, "step": res.steps})
    shutil.rmtree(models / "base_model_weak", ignore_errors=True)
    shutil.copytree(weak_snapshot, models / "base_model_weak")
    metrics = {"final_loss": res.history[-1]["loss"], "params": meta["params"], "train_seconds": seconds,
               "steps": res.steps, "weak_step": weak_step, "resumed_from": res.resumed_from or 0}
    resolve(cfg, "metrics").mkdir(exist_ok=True)
    resolve(cfg, "metrics", "base_model_train.json").write_text(json.dumps({**metrics, "history": res.history}, indent=2))
    log_run(cfg, "shared", "train_base_model", {"base_model": meta["config"], "data": dataclasses.asdict(cfg.data)},
            metrics, seed=bm.train.seed, history=res.history)
    print(json.dumps(metrics))


if __name__ == "__main__":
    main()
