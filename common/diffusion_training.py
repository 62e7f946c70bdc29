"""Train one epsilon-prediction diffusion model on the prepared data: the shared base model and any
paper that retrains the same network with a changed loss (DDPM-IP's input perturbation, passed in
as a `noise_input` hook from papers/ddpm_ip/method.py) call this.

Kept apart from common/training.py (the generic Accelerate loop) so that a paper retraining a
diffusion model shares every line of the recipe with the base model except what the paper changes.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Optional, Sequence

import common.data
import common.diffusion
import common.models
import common.training

from .config import DataConfig, NetworkConfig, to_dict
from .diffusion import NoiseInput, NoiseSchedule, denoising_loss, unet_fn
from .models import build_unet, count_parameters, save_diffusion_model
from .seeding import seed_everything
from .training import TrainResult, fingerprint, train

_RECIPE_FILES = [Path(m.__file__) for m in (common.training, common.diffusion, common.models, common.data)]


@dataclasses.dataclass
class DiffusionRun:
    result: TrainResult
    meta: dict  # saved beside the weights (params, dataset, config, ...)
    seconds: float  # training wall time, total over resumed segments (TrainResult.train_seconds)
    schedule: NoiseSchedule


def train_diffusion_model(model_cfg: NetworkConfig, data_cfg: DataConfig, x, y, run_dir: Path, out_dir: Path, *,
                          noise_input: Optional[NoiseInput] = None, desc: str = "diffusion model",
                          ema_snapshots: Sequence[int] = (), snapshot_fn: Optional[Callable] = None,
                          code_files: Sequence[Path] = (), extra_identity: Optional[dict] = None,
                          extra_meta: Optional[dict] = None) -> DiffusionRun:
    """Train `model_cfg.unet` with the simple loss (DDPM eq. 14) on x in [-1, 1] and save the EMA
    weights to `out_dir` (only on the main process).

    `noise_input(eps, generator)` replaces the noise the network input is built from (see
    common.diffusion.denoising_loss; None: plain DDPM). The hook is code, so the caller names what it
    changes in `extra_identity` (e.g. DDPM-IP's gamma) and lists its source in `code_files`.
    Checkpoints go to run_dir/checkpoints and resume only under the same run identity: config, data,
    `extra_identity` and the source of the recipe plus `code_files` (the calling stage).
    `extra_meta` is saved beside the weights with the recipe's own metadata.
    `snapshot_fn(step, ema_model, schedule, meta)` is called at each step in `ema_snapshots`.
    """
    seed_everything(model_cfg.train.seed)
    unet = build_unet(model_cfg.unet, data_cfg.resolution, x.shape[1])
    schedule = NoiseSchedule.from_config(model_cfg.diffusion)
    null = model_cfg.unet.num_classes

    def loss_fn(model, xb, yb, gen):
        cond = yb if model_cfg.unet.num_classes else None
        return denoising_loss(unet_fn(model), schedule, xb, cond, gen, model_cfg.train.cond_dropout, null,
                              noise_input=noise_input)

    config = to_dict(model_cfg)
    meta = {"params": count_parameters(unet), "resolution": data_cfg.resolution, "dataset": data_cfg.name,
            "num_classes": model_cfg.unet.num_classes, "config": config, **(extra_meta or {})}
    identity = {"base_model": config, "data": dataclasses.asdict(data_cfg), **(extra_identity or {})}
    run_id = fingerprint(identity, [*code_files, *_RECIPE_FILES])

    def snapshot(step, ema_model):
        snapshot_fn(step, ema_model, schedule, meta)

    res = train(unet, loss_fn, (x, y), model_cfg.train, Path(run_dir) / "checkpoints", desc=desc,
                ema_snapshots=list(ema_snapshots), snapshot_fn=snapshot if snapshot_fn else None,
                run_fingerprint=run_id)
    seconds = res.train_seconds  # total over the segments of an interrupted-then-resumed run
    if res.is_main_process:
        save_diffusion_model(res.model, schedule.diffusers_config, out_dir, {**meta, "step": res.steps})
    return DiffusionRun(res, meta, seconds, schedule)
