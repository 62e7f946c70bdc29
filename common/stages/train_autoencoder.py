"""Root stage `train_autoencoder`: the shared small AutoencoderKL on MNIST 16x16 (params.yaml `autoencoder`).

L1 reconstruction + `kl_weight` x KL (common.autoencoder.vae_loss), trained with common.training.train
(Accelerate, resumable checkpoints in runs/autoencoder, EMA). After training: the latent scaling factor
(1 / std of the training latents) and the held-out reconstruction PSNR / SSIM (scikit-image; images in
[0, 1]) go to models/autoencoder/meta.json and metrics/autoencoder.json.
"""

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from common.autoencoder import STAGE, build_autoencoder, encode, save_autoencoder, vae_loss
from common.config import RootConfig, load_config, resolve, to_dict
from common.data import load_split, to_model_range
from common.models import count_parameters
from common.seeding import seed_everything
from common.tracking import log_run
from common.training import fingerprint, train


@torch.no_grad()
def latent_scale(ae, x: torch.Tensor, batch: int = 500) -> float:
    """1 / std of the latent means of x (the scaling factor that gives the latents unit scale)."""
    z = torch.cat([ae.encode(x[i: i + batch]).latent_dist.mean for i in range(0, len(x), batch)])
    return float(1.0 / z.std())


@torch.no_grad()
def reconstruction_scores(ae, x: torch.Tensor, scaling_factor: float, batch: int = 500) -> dict:
    """Mean PSNR / SSIM (scikit-image, data range 1) and L1 of deterministic reconstructions D(mean q(z|x))."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    from common.autoencoder import decode

    rec = torch.cat([decode(ae, encode(ae, x[i: i + batch], scaling_factor), scaling_factor)
                     for i in range(0, len(x), batch)]).clamp(-1, 1)
    a, b = ((x + 1) / 2).numpy(), ((rec + 1) / 2).numpy()
    psnr = [peak_signal_noise_ratio(u, v, data_range=1.0) for u, v in zip(a, b)]
    ssim = [structural_similarity(u[0], v[0], data_range=1.0, win_size=7) for u, v in zip(a, b)]
    return {"psnr": float(np.mean(psnr)), "ssim": float(np.mean(ssim)), "l1": float((rec - x).abs().mean())}


def main(argv=None):
    cfg = load_config(RootConfig, overrides=sys.argv[1:] if argv is None else argv)
    ac = cfg.autoencoder
    seed_everything(ac.train.seed)
    data = resolve(cfg, cfg.paths.data, "prepared")
    x, y = load_split(data, "train")
    x = to_model_range(x)
    ae = build_autoencoder(ac.net, x.shape[1], cfg.data.resolution)

    def loss_fn(m, xb, yb, gen):
        return vae_loss(m, xb, gen, ac.kl_weight)

    identity = {"autoencoder": to_dict(ac), "data": to_dict(cfg.data)}
    t0 = time.time()
    res = train(ae, loss_fn, [x, y], ac.train, resolve(cfg, cfg.paths.runs, "autoencoder", "checkpoints"),
                desc="AutoencoderKL", run_fingerprint=fingerprint(identity, [Path(__file__)]))
    ae = res.model.eval()
    scale = latent_scale(ae, x)
    xh = to_model_range(load_split(data, "heldout")[0])
    scores = reconstruction_scores(ae, xh, scale)
    with torch.no_grad():
        latent_shape = list(encode(ae, xh[:1], scale).shape[1:])
    meta = {"scaling_factor": scale, "latent_shape": latent_shape, "params": count_parameters(ae),
            "heldout": scores, "steps": res.steps,
            "final_loss": res.history[-1]["loss"], "resolution": cfg.data.resolution, "dataset": cfg.data.name,
            "config": to_dict(ac)}
    if res.is_main_process:
        save_autoencoder(ae, resolve(cfg, cfg.paths.models, "autoencoder"), meta)
        out = resolve(cfg, "metrics", "autoencoder.json")
        out.parent.mkdir(exist_ok=True)
        # the saved model's meta holds only what a rerun reproduces (papers depend on models/autoencoder)
        out.write_text(json.dumps({**meta, "train_seconds": res.train_seconds, "stage_seconds": time.time() - t0,
                                   "history": res.history}, indent=2))
        log_run(cfg, "shared", STAGE, identity, {"psnr": scores["psnr"], "ssim": scores["ssim"],
                                                 "train_seconds": res.train_seconds}, history=res.history)
    print(json.dumps({k: v for k, v in meta.items() if k != "config"}), flush=True)


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
