"""Stage `train`: fit the correction function r_phi on the simulated pairs (objective R3 of method.py).

common/training.py's loop (EMA, checkpoints in runs/residual_correction/checkpoints, resume, NaN
guard). Writes the EMA weights to runs/residual_correction/correction and reports/residual_correction/train.json: the loss
history and the gap ||x_0 - x_hat_0||^2 per NFE before and after the correction, on the training
pairs and on held-out images the correction never saw.
"""

import json
import sys
from pathlib import Path

import torch

from common.config import load_config, reading, require, resolve, to_dict
from common.models import build_unet, count_parameters
from common.seeding import seed_everything
from common.tracking import log_run
from common.training import fingerprint, save_model_atomic, train
from papers.residual_correction import method
from papers.residual_correction.config import ResidualCorrectionConfig
from papers.residual_correction.method import correct, residual_loss, unet_correction, zero_output_layer

PAPER = "residual_correction"


def build_correction(cfg: ResidualCorrectionConfig, resolution: int, channels: int):
    """r_phi: the `correction.unet` network with a zero output layer (identity correction at init)."""
    return zero_output_layer(build_unet(cfg.correction.unet, resolution, channels))


def load_correction(path: Path):
    """r_phi as written by this stage; missing or unreadable: a UserError naming the path and the stage `train`."""
    from diffusers import UNet2DModel

    path = require(path, f"papers/{PAPER}/dvc.yaml:train", marker="config.json")
    with reading(path, f"papers/{PAPER}/dvc.yaml:train"):
        return UNet2DModel.from_pretrained(str(path)).eval().requires_grad_(False)


@torch.no_grad()
def apply_correction(net, x_hat: torch.Tensor, nfe: int, batch_size: int = 500) -> torch.Tensor:
    """x_tilde_0 = x_hat_0 + r_phi(x_hat_0, N) (R2) for samples of an N-step sampler, batch by batch."""
    r = unet_correction(net)
    nfe = torch.full((len(x_hat),), int(nfe), dtype=torch.long)
    return torch.cat([correct(r, x_hat[b : b + batch_size], nfe[b : b + batch_size])
                      for b in range(0, len(x_hat), batch_size)])


def gap_before_after(net, pairs: dict, nfe_grid) -> dict:
    """Per NFE: mean squared gap per pixel without (before) and with (after) the correction."""
    out = {}
    for n in nfe_grid:
        sel = pairs["nfe"] == n
        x_hat, x0 = pairs["x_hat"][sel], pairs["x0"][sel]
        after = apply_correction(net, x_hat, int(n))
        out[int(n)] = {"before": float(((x0 - x_hat) ** 2).mean()), "after": float(((x0 - after) ** 2).mean())}
    return out


def fit_correction(cfg: ResidualCorrectionConfig, pairs: dict, run_dir: Path, identity_files=()):
    """Train r_phi on pairs['train'] with common.training.train; returns its TrainResult (EMA weights)."""
    seed_everything(cfg.correction.train.seed)
    x_hat = pairs["train"]["x_hat"]
    net = build_correction(cfg, x_hat.shape[-1], x_hat.shape[1])

    def loss_fn(model, xb, nb, x0b, gen):  # R3; no randomness
        return residual_loss(unet_correction(model), xb, nb, x0b)

    identity = {"correction": to_dict(cfg.correction), "simulate": to_dict(cfg.simulate),
                "sampler": to_dict(cfg.sampler)}
    run_id = fingerprint(identity, [Path(method.__file__), Path(__file__), *identity_files])
    data = (x_hat, pairs["train"]["nfe"], pairs["train"]["x0"])
    return train(net, loss_fn, data, cfg.correction.train, Path(run_dir) / "checkpoints", desc="correction",
                 run_fingerprint=run_id)


def main(argv=None):
    cfg = load_config(ResidualCorrectionConfig, paper=PAPER, overrides=sys.argv[1:] if argv is None else argv)
    run_dir = resolve(cfg, cfg.paths.runs, PAPER)
    simulate = f"papers/{PAPER}/dvc.yaml:simulate"
    pairs_path = require(run_dir / "pairs.pt", simulate)
    with reading(pairs_path, simulate):
        pairs = torch.load(pairs_path)
        nfe_grid = pairs["nfe_grid"]
    if nfe_grid != list(cfg.simulate.nfe):
        raise ValueError(f"{pairs_path} holds NFE {nfe_grid}, params say simulate.nfe = "
                         f"{list(cfg.simulate.nfe)}: rerun the stage `simulate`")
    res = fit_correction(cfg, pairs, run_dir, identity_files=[pairs_path])
    if not res.is_main_process:
        return
    net = res.model.eval()
    save_model_atomic(net, run_dir / "correction")
    gaps = {split: gap_before_after(net, pairs[split], cfg.simulate.nfe) for split in ("train", "heldout")}
    metrics = {"final_loss": res.history[-1]["loss"], "params": count_parameters(net), "steps": res.steps,
               "train_seconds": res.train_seconds, "resumed_from": res.resumed_from or 0,
               "resumed_from_step": res.resumed_from_step, "gap_mse": gaps,
               "base_model_step": pairs["base_model_step"]}
    reports = resolve(cfg, cfg.paths.reports, PAPER)  # small summary beside the report, tracked by git
    reports.mkdir(parents=True, exist_ok=True)
    (reports / "train.json").write_text(json.dumps({**metrics, "history": res.history}, indent=2))
    flat = {f"gap_mse.{s}.nfe{n}.{k}": v for s, g in gaps.items() for n, d in g.items() for k, v in d.items()}
    log_run(cfg, PAPER, "train", {"correction": to_dict(cfg.correction), "simulate": to_dict(cfg.simulate)},
            {k: v for k, v in metrics.items() if not isinstance(v, dict)} | flat, seed=cfg.correction.train.seed,
            history=res.history)
    print(json.dumps(metrics))


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
