"""Stage `train`: the three autoencoders (method.ARMS) per training seed, on the shared train patches.

  vae          diffusers AutoencoderKL (common.autoencoder.build_autoencoder, `vae` section)
  litevae      the same AutoencoderKL with its encoder replaced by LiteVAE's wavelet encoder (method.litevae)
  litevae_smc  litevae with the decoder's GroupNorm + Conv pairs replaced by SMC (method.smc_surgery)
Every arm has the same decoder, loss (method.litevae_loss, Eq. 5, LPIPS = lpips[patches-cnn]), data, steps,
batch, optimiser and schedule; for a training seed the batches and the posterior draws are the same in every arm
(common.training: data order and per-step generators from the seed). Final EMA weights go to
models/litevae/<arm>-seed<s>; runs resume from runs/litevae/<arm>-seed<s>/checkpoints.
Writes reports/litevae/train.json (via common.arms.train_arms: MLflow child runs train/arm=<a>/seed=<s>).
"""

import sys
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

import torch

from common.arms import train_arms
from common.autoencoder import build_autoencoder
from common.config import ConfigError, load_config, resolve, to_dict
from common.data import to_model_range
from common.dit import read_dir_state, write_dir_state
from common.image_patches import load_patches
from common.models import count_parameters
from common.seeding import seed_everything
from common.training import fingerprint, train
from papers.litevae import method
from papers.litevae.config import LiteVAEConfig, UNetSpecConfig

PAPER = "litevae"
STAGE = f"papers/{PAPER}/dvc.yaml:train"


def spec(u: UNetSpecConfig) -> method.UNetSpec:
    return method.UNetSpec(u.channels, list(u.mult), u.blocks, u.groups)


def build_encoder(cfg, in_channels: int = 3) -> method.LiteVAEEncoder:
    e = cfg.encoder
    return method.LiteVAEEncoder(in_channels, cfg.vae.latent_channels, e.levels, spec(e.extractor), spec(e.aggregator))


def build_model(cfg, arm: str, meta: bool = False, in_channels: int = 3):
    """The arm's AutoencoderKL-shaped model (module docstring); `meta`: on the meta device (parameter counts)."""
    if arm not in method.ARMS:
        raise ConfigError(f"papers/{PAPER}/params.yaml: arm {arm!r} is not among {list(method.ARMS)}")
    if len(cfg.vae.block_out_channels) - 1 != cfg.encoder.levels:
        raise ConfigError(f"papers/{PAPER}/params.yaml: the VAE halves {len(cfg.vae.block_out_channels) - 1} times, "
                          f"LiteVAE {cfg.encoder.levels} times: the arms need one latent shape")
    ae = build_autoencoder(cfg.vae, in_channels, cfg.image_size, meta=meta)
    if arm == "vae":
        return ae
    with torch.device("meta") if meta else nullcontext():
        ae = method.litevae(ae, build_encoder(cfg, in_channels))
    if arm == "litevae_smc":
        method.smc_surgery(ae.decoder)
    return ae


def latent_shape(cfg) -> list:
    s = cfg.image_size // 2 ** cfg.encoder.levels
    return [cfg.vae.latent_channels, s, s]


def encoder_of(ae) -> torch.nn.Module:
    """The encoder the paper counts: the VAE's Encoder + quant_conv, or LiteVAE's wavelet encoder."""
    return ae.encoder if ae.quant_conv is None else torch.nn.Sequential(ae.encoder, ae.quant_conv)


def loss_weights(cfg) -> method.LossWeights:
    w = cfg.loss
    return method.LossWeights(w.lpips, w.kl, w.wave, w.gauss, w.gauss_sigma, w.gauss_kernel, cfg.encoder.levels)


class Trainee(torch.nn.Module):
    """The autoencoder and its frozen LPIPS distance in one module, so both follow the model to the device."""

    def __init__(self, ae, dist, weights: method.LossWeights):
        super().__init__()
        self.ae, self.dist, self.weights = ae, dist.requires_grad_(False), weights

    def forward(self, x, generator):
        return method.litevae_loss(self.ae, self.dist, x, generator, self.weights)


def model_dir(cfg, arm: str, seed: int) -> Path:
    return resolve(cfg, cfg.paths.models, PAPER, f"{arm}-seed{seed}")


def load_model(cfg, arm: str, seed: int):
    """The trained arm (EMA weights), eval mode, frozen."""
    return read_dir_state(build_model(cfg, arm), model_dir(cfg, arm, seed), STAGE).eval().requires_grad_(False)


def train_patches(cfg) -> torch.Tensor:
    x = to_model_range(load_patches(cfg, "train").images)
    if x.shape[-1] != cfg.image_size:
        raise ConfigError(f"papers/{PAPER}/params.yaml: image_size {cfg.image_size} but the patches are "
                          f"{x.shape[-1]} px (root patches.size)")
    return x


def train_arm(cfg, arm: str, seed: int, x: torch.Tensor, dist) -> dict:
    seed_everything(seed)
    tc = replace(cfg.train, seed=seed)
    ae = build_model(cfg, arm)
    model, parts = Trainee(ae, dist, loss_weights(cfg)), []

    def loss_fn(m, xb, gen):
        out = m(xb, gen)
        parts.append({k: float(v.detach()) for k, v in out.items() if k != "total"})
        return out["total"]

    name = f"{arm}-seed{seed}"
    ident = {"arm": arm, "train": to_dict(tc), "vae": to_dict(cfg.vae), "encoder": to_dict(cfg.encoder),
             "loss": to_dict(cfg.loss), "lpips": dist.name}
    res = train(model, loss_fn, [x], tc, resolve(cfg, cfg.paths.runs, PAPER, name, "checkpoints"),
                desc=f"{PAPER} {name}", run_fingerprint=fingerprint(ident, [Path(__file__), Path(method.__file__)]))
    ae = res.model.ae
    rec = {"arm": arm, "train_seed": seed, "steps": res.steps, "seconds": res.train_seconds,
           "resumed_from": res.resumed_from_step, "final_loss": res.history[-1]["loss"],
           "encoder_params": count_parameters(encoder_of(ae)), "params": count_parameters(ae),
           **{f"final_{k}": v for k, v in parts[-1].items()}}
    if res.is_main_process:
        write_dir_state(ae, model_dir(cfg, arm, seed), rec)
    every = max(1, len(parts) // 50)
    return {**rec, "history": res.history, "parts": [{"step": i + 1, **p} for i, p in enumerate(parts)][::every]}


def main(argv=None):
    from common.patch_trunks import patch_lpips

    cfg = load_config(LiteVAEConfig, paper=PAPER, overrides=sys.argv[1:] if argv is None else argv)
    x, dist = train_patches(cfg), patch_lpips(cfg)
    train_arms(cfg, PAPER, cfg.arms, lambda arm, seed: train_arm(cfg, arm, seed, x, dist),
               lambda arm: {"train": to_dict(cfg.train), "loss": to_dict(cfg.loss)},
               extra={"lpips": dist.name, "latent_shape": latent_shape(cfg)})


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
