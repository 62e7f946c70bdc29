"""Root stage `train_perceptual`: the trunks of lpips[digits-cnn] and latent-lpips[digits-ae] (params.yaml `perceptual`).

No human 2AFC data (BAPPS) exists offline and the official ImageNet / latent-VGG weights cannot be downloaded,
so both trunks are trained here, class-supervised (cross-entropy on the digit labels of the *training* split),
as the official latent VGG16-BN was trained by ImageNet classification: the pixel trunk on images in [-1, 1],
the latent trunk on the shared AutoencoderKL's scaled latent means (root stage train_autoencoder). The linear
heads are unit weights (common/perceptual.py). Neither trunk is, or is initialised from, the metric backbone
models/classifier (FID's feature space must not be the training loss's).

Outputs: models/perceptual/{pixel,latent} (weights.pt + meta.json: config, name, held-out accuracy) and
metrics/perceptual.json (times, accuracies, parameter counts, cost of one distance evaluation).
"""

import json
import sys
import time
from pathlib import Path

import torch

from common.autoencoder import encode, load_autoencoder
from common.config import RootConfig, load_config, resolve, to_dict
from common.data import load_split, to_model_range
from common.perceptual import LATENT, PIXEL, STAGE, fit_trunk, save_trunk
from common.tracking import log_run

NAMES = {PIXEL: "lpips[digits-cnn]", LATENT: "latent-lpips[digits-ae]"}


@torch.no_grad()
def to_latents(ae, x: torch.Tensor, scale: float, batch: int = 500) -> torch.Tensor:
    return torch.cat([encode(ae, x[i: i + batch], scale) for i in range(0, len(x), batch)])


def train_trunk(cfg, kind: str, x, y, xh, yh) -> dict:
    """One class-supervised trunk; saved to models/perceptual/<kind>; returns its facts."""
    pc = cfg.perceptual
    net = getattr(pc, kind)
    identity = {"perceptual": {kind: to_dict(net), "train": to_dict(pc.train)}, "data": to_dict(cfg.data),
                "input_shape": list(x.shape[1:])}
    trunk, facts, res = fit_trunk(net, pc.train, x, y, xh, yh, run_dir=resolve(cfg, cfg.paths.runs, "perceptual", kind),
                                  desc=f"{kind} trunk", identity=identity, files=[Path(__file__)])
    meta = {"name": NAMES[kind], "in_channels": int(x.shape[1]), "input_shape": list(x.shape[1:]),
            "net": to_dict(net), **facts,
            "objective": "cross-entropy on digit labels of the training split; heads = unit weights"}
    if res.is_main_process:
        # the saved meta holds only what a rerun reproduces (papers depend on models/perceptual)
        save_trunk(trunk, resolve(cfg, cfg.paths.models, "perceptual", kind), meta)
    return {**meta, "train_seconds": res.train_seconds, "history": res.history}


def main(argv=None):
    cfg = load_config(RootConfig, overrides=sys.argv[1:] if argv is None else argv)
    t0 = time.time()
    data = resolve(cfg, cfg.paths.data, "prepared")
    (x, y), (xh, yh) = load_split(data, "train"), load_split(data, "heldout")
    x, xh = to_model_range(x), to_model_range(xh)
    ae, ae_meta = load_autoencoder(cfg)
    s = ae_meta["scaling_factor"]
    out = {PIXEL: train_trunk(cfg, PIXEL, x, y, xh, yh),
           LATENT: train_trunk(cfg, LATENT, to_latents(ae, x, s), y, to_latents(ae, xh, s), yh)}
    summary = {k: {m: v[m] for m in ("name", "params", "heldout_accuracy", "train_seconds")} for k, v in out.items()}
    metrics = resolve(cfg, "metrics", "perceptual.json")
    metrics.parent.mkdir(exist_ok=True)
    metrics.write_text(json.dumps({"stage_seconds": time.time() - t0, **out}, indent=2))
    log_run(cfg, "shared", STAGE, {"perceptual": to_dict(cfg.perceptual)},
            {f"{k}_{m}": v[m] for k, v in summary.items() for m in ("heldout_accuracy", "train_seconds")})
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
