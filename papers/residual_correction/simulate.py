"""Stage `simulate`: residual simulation, i.e. the pairs (x_0, x_hat_0) the correction is trained on.

For class-balanced real images of the train split (and a few held-out ones, for the validation gap):
x_T = DDIM inversion of x_0 with `simulate.inversion_steps` steps, then x_hat_0 = the N-step DDIM
sampler from x_T for every N in `simulate.nfe` (method.simulate_residuals). Writes
runs/residual_correction/pairs.pt and reports/residual_correction/simulate.json (the gap ||x_0 - x_hat_0||^2 per NFE, cost).
"""

import json
import sys
import time

import torch

from common.atomic import atomic_file
from common.config import load_config, resolve
from common.data import balanced_subset, load_split, to_model_range
from common.diffusion import unet_fn
from common.models import load_diffusion_model
from common.sampling import classifier_free_guidance
from common.seeding import seed_everything
from papers.residual_correction.config import ResidualCorrectionConfig
from papers.residual_correction.method import simulate_residuals

PAPER = "residual_correction"


def sampler_network(unet, num_classes: int, guidance_scale: float):
    """The network function the sampler calls: as in common.sampling.generate (guidance when w != 1)."""
    fn = unet_fn(unet)
    return classifier_free_guidance(fn, guidance_scale, num_classes) if num_classes else fn


def simulate_split(fn, schedule, x_uint8, labels, num_classes: int, cfg: ResidualCorrectionConfig, n: int) -> dict:
    """Pairs for `n` class-balanced images of one split (x_hat, nfe, x0: float32 tensors, NFE-major per batch)."""
    s, sp = cfg.simulate, cfg.sampler
    idx = balanced_subset(labels, n, int(labels.max()) + 1, s.seed)
    x0, y = to_model_range(x_uint8[idx]), labels[idx]
    parts = []
    for b in range(0, n, s.batch_size):
        c = y[b : b + s.batch_size] if num_classes else None
        parts.append(simulate_residuals(fn, schedule, x0[b : b + s.batch_size], c, s.nfe, s.inversion_steps,
                                        sp.spacing, sp.clip_x0))
        print(f"simulated {min(b + s.batch_size, n)}/{n}", flush=True)
    x_hat, nfe, x0_rep = (torch.cat(p) for p in zip(*parts))
    return {"x_hat": x_hat, "nfe": nfe, "x0": x0_rep}


def gap_by_nfe(pairs: dict, nfe_grid) -> dict:
    """Mean squared gap ||x_0 - x_hat_0||^2 per pixel, per NFE."""
    return {int(n): float(((pairs["x0"] - pairs["x_hat"])[pairs["nfe"] == n] ** 2).mean()) for n in nfe_grid}


def main(argv=None):
    cfg = load_config(ResidualCorrectionConfig, paper=PAPER, overrides=sys.argv[1:] if argv is None else argv)
    seed_everything(cfg.seed)
    t0 = time.time()
    unet, schedule, meta = load_diffusion_model(resolve(cfg, cfg.paths.models, "base_model"))
    num_classes = meta["num_classes"]
    fn = sampler_network(unet, num_classes, cfg.sampler.guidance_scale)
    data_dir = resolve(cfg, cfg.paths.data, "prepared")
    out = resolve(cfg, cfg.paths.runs, PAPER)
    out.mkdir(parents=True, exist_ok=True)
    s = cfg.simulate

    pairs = {"nfe_grid": list(s.nfe), "base_model_step": meta["step"]}
    for split, n in (("train", s.num_pairs), ("heldout", s.num_val)):
        x, y = load_split(data_dir, split)
        pairs[split] = simulate_split(fn, schedule, x, y, num_classes, cfg, n)
    with atomic_file(out / "pairs.pt") as tmp:
        torch.save(pairs, tmp)

    per_image = (s.inversion_steps + sum(s.nfe)) * (2 if cfg.sampler.guidance_scale != 1.0 and num_classes else 1)
    metrics = {"gap_mse": {split: gap_by_nfe(pairs[split], s.nfe) for split in ("train", "heldout")},
               "num_pairs": {split: int(len(pairs[split]["nfe"])) for split in ("train", "heldout")},
               "model_calls": (s.num_pairs + s.num_val) * per_image, "seconds": time.time() - t0,
               "base_model_step": meta["step"]}
    reports = resolve(cfg, cfg.paths.reports, PAPER)  # small summary beside the report, tracked by git
    reports.mkdir(parents=True, exist_ok=True)
    (reports / "simulate.json").write_text(json.dumps(metrics, indent=2))
    print(json.dumps(metrics))


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
