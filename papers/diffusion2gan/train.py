"""Stage `train`: the one-step student per arm (method.ARMS) and training seed, on the shared teacher pairs.

Every run starts from the same copy of the teacher (method.Student) and sees the same batches and the same
augmentation draws for a given training seed (common.training: data order and per-step generators from the seed);
only the loss differs. The GAN arm's discriminator heads are initialised from the seed as well. Runs resume from
runs/diffusion2gan/<arm>-seed<s>/checkpoints; EMA snapshots at `snapshots` go to .../snapshots/step<k> (FID vs
training step), the final EMA student to models/diffusion2gan/<arm>-seed<s>. Writes reports/diffusion2gan/train.json.
"""

import copy
import json
import sys
from dataclasses import replace
from pathlib import Path

import torch

from common.arms import train_arms
from common.atomic import write_dir_atomic
from common.autoencoder import load_autoencoder
from common.config import load_config, resolve, to_dict
from common.perceptual import latent_lpips, pixel_lpips
from common.seeding import seed_everything
from common.teacher_pairs import load_pairs, load_teacher
from common.training import fingerprint, train
from papers.diffusion2gan import method
from papers.diffusion2gan.config import Diffusion2GANConfig

PAPER = "diffusion2gan"
STAGE = f"papers/{PAPER}/dvc.yaml:train"


def run_name(arm: str, seed: int) -> str:
    return f"{arm}-seed{seed}"


# --------------------------------------------------------------------------- building the pieces
def build_student(cfg, teacher_unet=None, meta: bool = False) -> method.Student:
    """The student: a deep copy of the teacher's UNet (cpu / tiny: the shared base model), or, with `student_net`
    (full profile), a UNet2DConditionModel of that config (the SD1.5 teacher's weights are loaded into it by the
    GPU user, README)."""
    T = cfg.base_model.diffusion.num_train_timesteps
    if cfg.student_net is None:
        unet = teacher_unet if teacher_unet is not None else load_teacher(cfg).unet
        return method.Student(copy.deepcopy(unet), T)
    return method.Student(sd_unet(cfg.student_net, meta=meta), T)


def sd_unet(net, meta: bool = False):
    """diffusers UNet2DConditionModel with Stable Diffusion 1.5's block layout (cross-attention in every level but
    the last) at the widths / depth of `net` (a StudentNetConfig)."""
    from contextlib import nullcontext

    from diffusers import UNet2DConditionModel

    n = len(net.block_out_channels)
    down = ("CrossAttnDownBlock2D",) * (n - 1) + ("DownBlock2D",)
    up = ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (n - 1)
    with torch.device("meta") if meta else nullcontext():
        return UNet2DConditionModel(sample_size=net.sample_size, in_channels=net.latent_channels,
                                    out_channels=net.latent_channels, down_block_types=down, up_block_types=up,
                                    block_out_channels=tuple(net.block_out_channels),
                                    layers_per_block=net.layers_per_block, cross_attention_dim=net.cross_attention_dim,
                                    attention_head_dim=net.attention_head_dim)


def latent_space(cfg) -> method.LatentTarget:
    """E of the latent losses: the shared autoencoder's encoder (pixel teacher) or the identity (full profile:
    the SD1.5 teacher's pairs are latents already)."""
    if cfg.student_net is not None:
        return method.LatentTarget(None)
    ae, meta = load_autoencoder(cfg)
    return method.LatentTarget(ae, meta["scaling_factor"])


def regression(cfg, arm: str) -> method.Regression:
    """The arm's distance with its networks: lpips[digits-cnn] (pixels), plain LatentLPIPS (no augmentation, no L1:
    the paper's LatentLPIPS row), E-LatentLPIPS (preset perceptual.augment, L1 per perceptual.latent_l1)."""
    if arm == "lpips":
        return method.Regression(arm, pixel_lpips=pixel_lpips(cfg))
    if arm == "latent_lpips":
        return method.Regression(arm, latent_lpips=latent_lpips(cfg, ensemble=False, l1=False))
    if arm in ("e_latent_lpips", "gan"):
        return method.Regression(arm, latent_lpips=latent_lpips(cfg, ensemble=True))
    return method.Regression(arm)


def build_distiller(cfg, arm: str, student: method.Student, encode: method.LatentTarget, teacher_unet,
                    num_classes: int) -> method.Distiller:
    """G with the arm's loss; the GAN arm gets D from the teacher's encoder (common/gan.py)."""
    disc = method.discriminator(teacher_unet, num_classes, cfg.gan.t_d) if arm == "gan" else None
    return method.Distiller(student, regression(cfg, arm), encode, disc, cfg.gan.weight, cfg.gan.loss,
                            cfg.gan.r1_gamma)


@torch.no_grad()
def encode_all(encode: method.LatentTarget, x: torch.Tensor, batch: int = 500) -> torch.Tensor:
    """E(x) of the teacher's samples, once per run (the latent arms' targets)."""
    return torch.cat([encode(x[i:i + batch]) for i in range(0, len(x), batch)])


# --------------------------------------------------------------------------- saving and loading students
def save_student(student: method.Student, out_dir: Path, meta: dict):
    """The student's UNet (diffusers save_pretrained) + meta.json, atomically."""
    def write(tmp):
        student.unet.save_pretrained(str(tmp))
        (Path(tmp) / "meta.json").write_text(json.dumps(meta, indent=2))

    write_dir_atomic(Path(out_dir), write)


def load_student(cfg, out_dir: Path) -> method.Student:
    from diffusers import UNet2DModel

    from common.config import reading, require

    d = require(Path(out_dir), STAGE, marker="meta.json")
    with reading(d, STAGE):
        unet = UNet2DModel.from_pretrained(str(d))
    return method.Student(unet, cfg.base_model.diffusion.num_train_timesteps).eval()


def model_dir(cfg, arm: str, seed: int, step=None) -> Path:
    """models/diffusion2gan/<arm>-seed<s> (final), runs/diffusion2gan/<arm>-seed<s>/snapshots/step<k> (snapshot)."""
    if step is None:
        return resolve(cfg, cfg.paths.models, PAPER, run_name(arm, seed))
    return resolve(cfg, cfg.paths.runs, PAPER, run_name(arm, seed), "snapshots", f"step{step}")


# --------------------------------------------------------------------------- one run
def train_arm(cfg, arm: str, seed: int, pairs, x_lat, teacher_unet, encode, num_classes: int) -> dict:
    seed_everything(seed)
    train_cfg = replace(cfg.train, seed=seed)
    model = build_distiller(cfg, arm, build_student(cfg, teacher_unet), encode, teacher_unet, num_classes)
    name = run_name(arm, seed)
    identity = {"arm": arm, "train": to_dict(train_cfg), "gan": to_dict(cfg.gan) if arm == "gan" else None,
                "perceptual": to_dict(cfg.perceptual), "snapshots": list(cfg.snapshots)}
    files = [Path(__file__), Path(method.__file__)]

    def snapshot(step, m):
        save_student(m.student, model_dir(cfg, arm, seed, step), {"arm": arm, "train_seed": seed, "step": step})

    res = train(model, lambda m, z, c, x, xl, gen: m(z, c, x, xl, gen), [pairs.noise, pairs.label, pairs.sample, x_lat],
                train_cfg, resolve(cfg, cfg.paths.runs, PAPER, name, "checkpoints"), desc=f"{PAPER} {name}",
                ema_snapshots=[s for s in cfg.snapshots if s < train_cfg.steps], snapshot_fn=snapshot,
                run_fingerprint=fingerprint(identity, files))
    rec = {"arm": arm, "train_seed": seed, "steps": res.steps, "seconds": res.train_seconds,
           "resumed_from": res.resumed_from_step, "final_loss": res.history[-1]["loss"],
           "student_params": sum(p.numel() for p in res.model.student.parameters()),
           "disc_params": sum(p.numel() for p in res.model.disc.parameters()) if res.model.disc is not None else 0}
    if res.is_main_process:
        save_student(res.model.student, model_dir(cfg, arm, seed), rec)
    return {**rec, "history": res.history}


def main(argv=None):
    cfg = load_config(Diffusion2GANConfig, paper=PAPER, overrides=sys.argv[1:] if argv is None else argv)
    bad = [a for a in cfg.arms if a not in method.ARMS]
    if bad:
        from common.config import ConfigError

        raise ConfigError(f"papers/{PAPER}/params.yaml: arms {bad} are not among {list(method.ARMS)}")
    teacher = load_teacher(cfg)
    pairs = load_pairs(cfg, "train")
    encode = latent_space(cfg)
    x_lat = encode_all(encode, pairs.sample)
    train_arms(cfg, PAPER, cfg.arms,
               lambda arm, seed: train_arm(cfg, arm, seed, pairs, x_lat, teacher.unet, encode, teacher.num_classes),
               lambda arm: {"train": to_dict(cfg.train)}, extra={"latent_shape": list(x_lat.shape[1:])})

if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
