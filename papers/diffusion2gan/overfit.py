"""Stage `overfit`: the paper's Appendix B experiment (official overfitting_exp.py) on the shared latent space.

A random latent w ~ N(0, I) of the targets' shape is fitted by Adam (lr overfit.lr, overfit.steps steps) to
`num_targets` target latents under one distance at a time: plain LatentLPIPS, and E-LatentLPIPS with each
augmentation preset of overfit.presets (one augmentation draw per sample and step, the same for both inputs).
As the official script: the target is the first argument, add_l1_loss = overfit.l1 (False), and every
`monitor_every` steps the PLAIN LatentLPIPS of the fitted latent is recorded. We also record the latent MSE and the
PSNR of the decoded fitted latent against the target image (the official script prints the decoded MSE).

Targets: the first `num_targets` held-out real digits of classes 0, 1, 2, ... (one per class), encoded by the shared
autoencoder (scaled latent means; the official script uses 4 photos and `latent_dist.sample()`). Replication unit:
the seed of w's initialisation (overfit.seeds). Rows: `overfit_curve` (every monitored step) and, per preset p,
`overfit_<p>` with arm baseline (plain LatentLPIPS) / method (E-LatentLPIPS p) at the last step.
Writes reports/diffusion2gan/overfit.json and overfit_images.npz (decoded fits of the first seed).
"""

import time

import torch

from common.autoencoder import decode, encode, load_autoencoder
from common.config import resolve
from common.data import load_split, to_model_range
from common.eval_stage import EvalStage
from common.perceptual import latent_lpips
from papers.diffusion2gan import method
from papers.diffusion2gan.config import Diffusion2GANConfig
from papers.diffusion2gan.train import PAPER

PLAIN = "latent_lpips"


def targets(cfg, n: int):
    """(images [n, C, H, W] in [-1, 1], their labels): the first held-out digit of each class 0..n-1."""
    x, y = load_split(resolve(cfg, cfg.paths.data, "prepared"), "heldout")
    idx = [int((y == c).nonzero()[0]) for c in range(n)]
    return to_model_range(x[idx]), y[idx]


def distances(cfg) -> dict:
    """{variant: distance(target, latent, generator) [N]}: plain LatentLPIPS and E-LatentLPIPS per preset."""
    ov = cfg.overfit
    out = {PLAIN: latent_lpips(cfg, ensemble=False, l1=ov.l1)}
    out.update({p: latent_lpips(cfg, ensemble=True, preset=p, l1=ov.l1) for p in ov.presets})
    return out


def main(argv=None):
    stage = EvalStage.load(Diffusion2GANConfig, PAPER, argv)
    cfg, ov = stage.cfg, stage.cfg.overfit
    ae, meta = load_autoencoder(cfg)
    sf = meta["scaling_factor"]
    img, lab = targets(cfg, ov.num_targets)
    with torch.no_grad():
        z = encode(ae, img, sf)  # [n, 4, h, w]
    plain, dists, fits, seconds = latent_lpips(cfg, ensemble=False, l1=False), distances(cfg), {}, {}
    for seed in ov.seeds:
        for variant, dist in dists.items():
            def monitor(step, w, variant=variant, seed=seed):
                x = decode(ae, w, sf).clamp(-1, 1)
                mse_px = (x - img).pow(2).flatten(1).mean(1)
                stage.add(comparison="overfit_curve", arm=variant, seed=seed, step=step,
                          latent_lpips=float(plain(z, w).mean()), latent_mse=float((w - z).pow(2).mean()),
                          psnr=float((10 * torch.log10(4.0 / mse_px)).mean()))

            t0 = time.time()
            w = method.fit_latent(z, dist, ov.steps, ov.lr, torch.Generator().manual_seed(seed), monitor,
                                  ov.monitor_every)
            seconds[f"{variant}/{seed}"] = time.time() - t0
            last = stage.rows[-1]
            for p in ov.presets:
                if variant in (PLAIN, p):
                    stage.rows.append({**last, "comparison": f"overfit_{p}",
                                       "arm": "baseline" if variant == PLAIN else "method", "variant": variant})
            if seed == ov.seeds[0]:
                with torch.no_grad():
                    fits[variant] = decode(ae, w, sf).clamp(-1, 1).numpy()
    stage.write_arrays("overfit_images.npz", targets=img.numpy(), labels=lab.numpy(),
                       **{k: v for k, v in fits.items()})
    stage.write("overfit.json", variants=list(dists), fit_seconds=seconds, latent_shape=list(z.shape[1:]),
                distance_names={k: d.name for k, d in dists.items()})


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
