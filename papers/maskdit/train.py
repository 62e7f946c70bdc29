"""Stage `train`: MaskDiT per training seed at the training cost of `cost_step` steps of the shared DiT baseline.

Equal cost is defined by FLOPs, deterministically: one optimizer step of each network (forward + backward at
the training batch) is counted with torch's FlopCounterMode on the meta device (`step_flops`), and the masked
phase gets as many steps as fit in cost_step x FLOPs(DiT step) after the unmask tuning's share:

    masked_steps = floor((cost_step F_DiT - unmask.steps F_MaskDiT(r=0)) / F_MaskDiT(r))

Per training seed s (the replication unit; the DiT baseline of the same seed is the root stage train_dit's):
  mae-seed<s>-masked     L_DSM + mae_coef L_MAE at mask ratio r, masked_steps steps
  mae-seed<s>            the same run continued by unmask tuning (r = 0, lr x unmask.lr_scale, unmask.steps steps),
                         from the masked phase's last raw (non-EMA) weights like the official finetune
                         (it loads ckpt['model']); fresh AdamW as there, the EMA restarted at those weights
  mae-seed<s>-ablation   its EMA snapshot at ablation_steps = floor(masked_steps x ablation_fraction)
  nomae-seed<s>-ablation L_DSM alone at mask ratio r, ablation_steps steps (claim: without MAE, FID is worse;
                         compared with mae-seed<s>-ablation, so the ablation costs a fraction of a full run)
Same seed = same initial encoder/decoder weights, data order, sigma/noise/mask draws in both arms.
Models: models/maskdit/<name>; checkpoints: runs/maskdit/<name>/checkpoints (resumable).
Writes reports/maskdit/train.json (steps, FLOPs, time, loss curves).
"""

import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from common.config import ConfigError, load_config, resolve, to_dict
from common.data import load_split, to_model_range
from common.dit import count_parameters, dit_net, flops_per_step, read_dir_state, train_snapshots, write_dir_state
from common.edm import EDM, edm_loss
from common.seeding import seed_everything
from common.stages import train_dit
from common.tracking import log_run
from common.training import list_checkpoints
from papers.maskdit import method
from papers.maskdit.config import MaskDiTConfig

PAPER = "maskdit"
HERE = Path(__file__).parent


def build(cfg, channels: int, mae: bool = True, meta: bool = False) -> method.MaskDiT:
    """MaskDiT with the DiT baseline's encoder and the configured decoder, for `channels`-channel images."""
    return method.build_maskdit(cfg.dit.net, cfg.decoder, cfg.data.resolution, channels, mae=mae, meta=meta)


PHASES = ("masked", "tuned", "ablation")


def model_dir(cfg, arm: str, seed: int, phase: str) -> Path:
    """models/maskdit/<arm>-seed<s>[-masked | -ablation] (module docstring); phase "tuned" has no suffix."""
    return resolve(cfg, cfg.paths.models, PAPER, f"{arm}-seed{seed}" + ("" if phase == "tuned" else f"-{phase}"))


def load(cfg, arm: str, seed: int, phase: str, channels: int) -> method.MaskDiT:
    """A trained MaskDiT in eval mode (made by this stage)."""
    model = build(cfg, channels, mae=arm == "mae")
    return read_dir_state(model, model_dir(cfg, arm, seed, phase), f"papers/{PAPER}/dvc.yaml:train").eval()


def step_flops(cfg, channels: int) -> dict:
    """Training FLOPs of one optimizer step (forward + backward, batch dit.train.batch_size) of the DiT baseline,
    MaskDiT at mask ratio r and MaskDiT at r = 0, counted on meta tensors (shapes only)."""
    edm, n, res = EDM.from_config(cfg.dit.edm), cfg.dit.train.batch_size, cfg.data.resolution
    x, y = torch.zeros(n, channels, res, res, device="meta"), torch.zeros(n, dtype=torch.long, device="meta")
    dit, mdit = train_dit.build(cfg, channels, meta=True), build(cfg, channels, meta=True)
    pre = edm.preconditioner()

    def maskdit(r):
        return lambda: method.maskdit_loss(mdit, edm, x, y, torch.Generator(), r, cfg.mae_coef, 0.0, pre).total

    return {"dit": flops_per_step(lambda: edm_loss(dit_net(dit), edm, x, y, torch.Generator(), 0.0, 0, pre)),
            "masked": flops_per_step(maskdit(cfg.mask_ratio)), "unmasked": flops_per_step(maskdit(0.0))}


def masked_steps(cfg, flops: dict) -> int:
    """Steps of the masked phase so that masked phase + unmask tuning cost cost_step DiT steps (module docstring)."""
    budget = cfg.cost_step * flops["dit"] - cfg.unmask.steps * flops["unmasked"]
    steps = int(budget // flops["masked"])
    if steps < 1:
        raise ConfigError(f"papers/{PAPER}/params.yaml: unmask.steps = {cfg.unmask.steps} uses up the budget of "
                          f"cost_step = {cfg.cost_step} DiT steps: lower it or raise cost_step")
    return steps


def ablation_steps(cfg, steps: int) -> int:
    """Steps of the MAE ablation (both arms compared there): floor(masked_steps x ablation_fraction), at least 1."""
    return max(1, min(steps, int(steps * cfg.ablation_fraction)))


def check_cost_step(cfg) -> None:
    """cost_step and eval.dit_steps must be DiT models the root stage train_dit keeps (a snapshot or its last step)."""
    kept = {*cfg.dit.snapshots, cfg.dit.train.steps}
    bad = [s for s in (cfg.cost_step, *cfg.eval.dit_steps) if s not in kept]
    if bad:
        raise ConfigError(f"papers/{PAPER}/params.yaml: cost_step / eval.dit_steps {bad} are not DiT models kept by "
                          f"train_dit (params.yaml dit.snapshots {list(cfg.dit.snapshots)} or dit.train.steps "
                          f"{cfg.dit.train.steps}): add them to dit.snapshots")


def train_phase(cfg, model, x, y, train_cfg, name: str, ratio: float, coef: float, identity: dict, snapshots=()):
    """One training phase of one MaskDiT (common.training through common.dit.train_snapshots)."""
    edm = EDM.from_config(cfg.dit.edm)
    pre = edm.preconditioner()

    def loss_fn(m, xb, yb, gen):
        return method.maskdit_loss(m, edm, xb, yb, gen, ratio, coef, train_cfg.cond_dropout, pre).total

    return train_snapshots(model, loss_fn, x, y, train_cfg, resolve(cfg, cfg.paths.runs, PAPER, name), identity,
                           [Path(__file__), Path(method.__file__)], snapshots, desc=f"{PAPER} {name}")


def train_seed(cfg, x, y, seed: int, steps: int, flops: dict) -> list:
    """Both arms for one training seed, and unmask tuning of the MAE arm; returns one record per saved model."""
    abl = ablation_steps(cfg, steps)
    base = {"net": to_dict(cfg.dit.net), "decoder": to_dict(cfg.decoder), "edm": to_dict(cfg.dit.edm),
            "data": to_dict(cfg.data), "mask_ratio": cfg.mask_ratio}
    seed_everything(seed)
    mae_cfg = replace(cfg.dit.train, steps=steps, seed=seed)
    identity = {**base, "mae_coef": cfg.mae_coef, "train": to_dict(mae_cfg)}
    res, snaps = train_phase(cfg, build(cfg, x.shape[1]), x, y, mae_cfg, f"mae-seed{seed}-masked", cfg.mask_ratio,
                             cfg.mae_coef, identity, snapshots=[abl])
    masked = _save(cfg, res.model, res, "mae", seed, "masked", steps * flops["masked"])
    snapshot = read_dir_state(build(cfg, x.shape[1]), snaps[abl], PAPER) if abl in snaps else res.model
    records = [masked, _save(cfg, snapshot, res, "mae", seed, "ablation", abl * flops["masked"], steps=abl)]
    tune_cfg = replace(cfg.dit.train, steps=cfg.unmask.steps, lr=cfg.dit.train.lr * cfg.unmask.lr_scale,
                       warmup_steps=0, ema_decay=cfg.unmask.ema_decay, seed=seed)
    raw = raw_weights(build(cfg, x.shape[1]), resolve(cfg, cfg.paths.runs, PAPER, f"mae-seed{seed}-masked"))
    res, _ = train_phase(cfg, raw, x, y, tune_cfg, f"mae-seed{seed}-unmask", 0.0, cfg.mae_coef,
                         {**identity, "tune": to_dict(tune_cfg)})
    records.append(_save(cfg, res.model, res, "mae", seed, "tuned",
                         steps * flops["masked"] + cfg.unmask.steps * flops["unmasked"], prior=masked))
    seed_everything(seed)
    nomae_cfg = replace(cfg.dit.train, steps=abl, seed=seed)
    res, _ = train_phase(cfg, build(cfg, x.shape[1], mae=False), x, y, nomae_cfg, f"nomae-seed{seed}-ablation",
                         cfg.mask_ratio, 0.0, {**base, "mae_coef": 0.0, "train": to_dict(nomae_cfg)})
    records.append(_save(cfg, res.model, res, "nomae", seed, "ablation", abl * flops["masked"]))
    return records


def raw_weights(model, run_dir: Path):
    """`model` with the raw (non-EMA) weights of the last checkpoint in run_dir/checkpoints (accelerate's
    model.safetensors): the weights the masked phase was training, which unmask tuning continues."""
    from safetensors.torch import load_file

    last = list_checkpoints(Path(run_dir) / "checkpoints")[-1]
    model.load_state_dict(load_file(str(last / "model.safetensors")))
    return model


def _save(cfg, model, res, arm, seed, phase, train_flops, prior=None, steps=None) -> dict:
    """Write one trained model (EMA weights) with its facts; returns its record for train.json."""
    history = res.history if steps is None else [e for e in res.history if e["step"] <= steps]
    rec = {"arm": arm, "train_seed": seed, "phase": phase, "tuned": phase == "tuned", "steps": steps or res.steps,
           "mae_coef": cfg.mae_coef if arm == "mae" else 0.0,
           "train_flops": train_flops, "seconds": res.train_seconds + (prior["seconds"] if prior else 0.0),
           "phase_seconds": res.train_seconds, "resumed_from": res.resumed_from_step,
           "params": count_parameters(model), "final_loss": history[-1]["loss"], "history": history}
    if res.is_main_process:
        write_dir_state(model, model_dir(cfg, arm, seed, phase), {k: v for k, v in rec.items() if k != "history"})
    return rec


def main(argv=None):
    cfg = load_config(MaskDiTConfig, paper=PAPER, overrides=sys.argv[1:] if argv is None else argv)
    check_cost_step(cfg)
    x, y = load_split(resolve(cfg, cfg.paths.data, "prepared"), "train")
    x = to_model_range(x)
    flops = step_flops(cfg, x.shape[1])
    steps = masked_steps(cfg, flops)
    t0, runs = time.time(), []
    for seed in cfg.dit.train_seeds:
        for rec in train_seed(cfg, x, y, seed, steps, flops):
            runs.append(rec)
            name = f"{rec['arm']}-{rec['phase']}"
            log_run(cfg, PAPER, "train", {"arm": name, "mask_ratio": cfg.mask_ratio, "mae_coef": rec["mae_coef"],
                                          "decoder": to_dict(cfg.decoder), "dit": to_dict(cfg.dit.net)},
                    {k: v for k, v in rec.items() if isinstance(v, (int, float))}, seed=seed, history=rec["history"])
            print(json.dumps({k: v for k, v in rec.items() if k != "history"}), flush=True)
    out = resolve(cfg, cfg.paths.reports, PAPER)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train.json").write_text(json.dumps({
        "flops_per_step": flops, "masked_steps": steps, "ablation_steps": ablation_steps(cfg, steps),
        "cost_step": cfg.cost_step,
        "cost_flops": cfg.cost_step * flops["dit"], "train_seconds": time.time() - t0, "runs": runs}, indent=2))


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
