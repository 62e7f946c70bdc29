"""Stage `train`: PaGoDA's one-step decoders (method.py steps 3-4), per arm and training seed.

Per training seed s (the replication unit: initial discriminator heads, data order, fresh-noise draws):
  rec_gan-seed<s>-x1   decoder at the teacher's resolution: L_rec + w lambda L_G (w = decoder.gan_weight), the paper
  rec-seed<s>-x1       the same without the GAN term (claim c), same seed
  rec_gan-seed<s>-x<f> grown from the previous resolution of rec_gan (f in decoder.growth): new output blocks and
                       the head trained, w = decoder.growth_gan_weight, targets = real images at r f
Every decoder starts from the teacher (x1) or from the previous stage (`method.grow`: every same-name same-shape
weight copied, a missing slot raises). The discriminator is re-initialised from the teacher's encoder at every
stage (common.gan.UNetDiscriminator, projection heads), as the official code builds a new one per stage.
The feature distance is lpips[digits-cnn] (common/perceptual.py; the paper: DeiT + EfficientNet features).
Models: models/pagoda/decoders/<name>, EMA snapshots of the x1 stage in runs/pagoda/decoders/<name>/ema-step-<k>.
Writes reports/pagoda/train.json.
"""

import copy
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from common.atomic import atomic_file
from common.config import load_config, read_json, resolve, to_dict
from common.data import load_split, to_model_range
from common.dit import read_dir_state, write_dir_state
from common.edm import EDM
from common.gan import UNetDiscriminator
from common.models import count_parameters
from common.perceptual import pixel_lpips
from common.seeding import seed_everything
from common.tracking import log_run
from common.training import fingerprint, train
from papers.pagoda import method
from papers.pagoda.config import PaGoDAConfig
from papers.pagoda.teacher import PAPER, STAGE, base_resolution, downsample, load_teacher

GAN_ARM = "rec_gan"


def run_name(arm: str, seed: int, factor: int) -> str:
    return f"{arm}-seed{seed}-x{factor}"


def levels(factor: int) -> int:
    return factor.bit_length() - 1  # x1: 0 new levels, x2: 1, x4: 2


def build_decoder(cfg, teacher, factor: int) -> method.Decoder:
    """A decoder with the teacher's architecture (a deep copy) and the growth levels of `factor`."""
    dec = method.Decoder(copy.deepcopy(teacher), EDM.from_config(cfg.teacher.edm), levels(factor), cfg.decoder.growth_layers)
    return dec.requires_grad_(True)  # the teacher is loaded frozen; `method.grow` freezes what it copies


def load_decoder(cfg, teacher, arm: str, seed: int, factor: int, weights: Path = None) -> method.Decoder:
    dec = build_decoder(cfg, teacher, factor)
    w = weights or resolve(cfg, cfg.paths.models, PAPER, "decoders", run_name(arm, seed, factor))
    return read_dir_state(dec, w, f"papers/{PAPER}/dvc.yaml:train").eval().requires_grad_(False)


def targets(cfg, factor: int) -> torch.Tensor:
    """Real training images in [-1, 1] at r x factor: downsampled shared data, the shared data, or data/pagoda's."""
    res = base_resolution(cfg) * factor
    if res <= cfg.data.resolution:
        x = to_model_range(load_split(resolve(cfg, cfg.paths.data, "prepared"), "train")[0])
        return downsample(x, cfg.data.resolution // res)
    return to_model_range(load_split(resolve(cfg, cfg.paths.data, PAPER, f"prepared_{res}"), "train")[0])


def inversion(cfg) -> dict:
    from common.config import reading, require

    path = require(resolve(cfg, cfg.paths.data, PAPER, "inversion.pt"), STAGE)
    with reading(path, STAGE):
        return torch.load(path)


def train_stage(cfg, teacher, decoder: method.Decoder, z, x, y, tc, gan_weight: float, name: str,
                snapshots=(), identity=None):
    """common.training.train of one decoder (+ its discriminator when gan_weight > 0) on (z, x, labels)."""
    disc = UNetDiscriminator(teacher, cfg.teacher.unet.num_classes, cfg.decoder.disc_t) if gan_weight > 0 else None
    model = method.PaGoDA(decoder, disc)
    distance, size = pixel_lpips(cfg), cfg.data.resolution
    clip = tuple(cfg.decoder.adaptive_clip)
    parts = []

    def loss_fn(m, zb, xb, yb, gen):
        fresh = torch.randn(zb.shape, generator=gen).to(zb.device)
        out = method.decoder_loss(m, distance, size, zb, xb, yb, fresh, gan_weight, clip, cfg.decoder.disc_resolution)
        parts.append({k: float(v) for k, v in out.items() if k != "total"})
        return out["total"]

    run_dir = resolve(cfg, cfg.paths.runs, PAPER, "decoders", name)
    dirs = {s: run_dir / f"ema-step-{s}" for s in snapshots if 0 < s < tc.steps}

    def snapshot(step, ema_model):
        write_dir_state(ema_model.decoder, dirs[step])

    ident = {**(identity or {}), "train": to_dict(tc), "gan_weight": gan_weight, "name": name,
             "decoder": to_dict(cfg.decoder), "edm": to_dict(cfg.teacher.edm)}
    res = train(model, loss_fn, (z, x, y), tc, run_dir / "checkpoints", desc=f"{PAPER} {name}",
                ema_snapshots=sorted(dirs), snapshot_fn=snapshot if dirs else None,
                run_fingerprint=fingerprint(ident, [__file__, method.__file__]))
    return res, dirs, parts


def save(cfg, res, name: str, parts: list, extra: dict) -> dict:
    """Write the EMA decoder of one run; its record for train.json."""
    dec = res.model.decoder
    every = max(1, len(parts) // 50)
    rec = {"name": name, **extra, "steps": res.steps, "seconds": res.train_seconds,
           "resumed_from": res.resumed_from_step, "params": count_parameters(dec),
           "trainable": sum(p.numel() for p in dec.parameters() if p.requires_grad),
           "final_loss": res.history[-1]["loss"], "history": res.history,
           "parts": [{"step": i + 1, **p} for i, p in enumerate(parts)][::every]}
    if res.is_main_process:
        write_dir_state(dec, resolve(cfg, cfg.paths.models, PAPER, "decoders", name),
                        {k: v for k, v in rec.items() if k not in ("history", "parts")})
    return rec


def train_seed(cfg, teacher, inv, seed: int) -> list:
    """Every run of one training seed (module docstring)."""
    dc, r = cfg.decoder, base_resolution(cfg)
    z, y, idx = inv["z"], inv["labels"], inv["index"]
    records, prev = [], None
    flip = inv["flipped"].view(-1, 1, 1, 1)
    for arm in dc.arms:
        seed_everything(seed)
        x = targets(cfg, 1)[idx]
        x = torch.where(flip, x.flip(-1), x)
        tc = replace(dc.base, seed=seed)
        w = dc.gan_weight if arm == GAN_ARM else 0.0
        name = run_name(arm, seed, 1)
        res, snaps, parts = train_stage(cfg, teacher, build_decoder(cfg, teacher, 1), z, x, y, tc, w, name,
                                        dc.snapshots, {"resolution": r})
        records.append(save(cfg, res, name, parts, {"arm": arm, "train_seed": seed, "factor": 1, "resolution": r,
                                                    "gan_weight": w, "snapshots": {k: str(v) for k, v in snaps.items()}}))
        if arm == GAN_ARM:
            prev = res.model.decoder
    for f in dc.growth:
        seed_everything(seed)
        new = build_decoder(cfg, teacher, f)
        copied = method.grow(new, prev)
        x = targets(cfg, f)[idx]
        x = torch.where(flip, x.flip(-1), x)
        tc, name = replace(dc.grown, seed=seed), run_name(GAN_ARM, seed, f)
        res, _, parts = train_stage(cfg, teacher, new, z, x, y, tc, dc.growth_gan_weight, name,
                                    identity={"resolution": r * f, "from": records[-1]["name"]})
        records.append(save(cfg, res, name, parts, {
            "arm": GAN_ARM, "train_seed": seed, "factor": f, "resolution": r * f, "gan_weight": dc.growth_gan_weight,
            "copied": len(copied["copied"]), "new": len(copied["new"]), "trainable_names": copied["trainable"]}))
        prev = res.model.decoder
    return records


def main(argv=None):
    cfg = load_config(PaGoDAConfig, paper=PAPER, overrides=sys.argv[1:] if argv is None else argv)
    teacher, inv = load_teacher(cfg), inversion(cfg)
    t0, runs = time.time(), []
    for seed in cfg.decoder.train_seeds:
        for rec in train_seed(cfg, teacher, inv, seed):
            runs.append(rec)
            log_run(cfg, PAPER, "train", {"arm": rec["arm"], "factor": rec["factor"], "gan_weight": rec["gan_weight"],
                                          "decoder": to_dict(cfg.decoder)},
                    {k: v for k, v in rec.items() if isinstance(v, (int, float))}, seed=seed, history=rec["history"])
            print(json.dumps({k: v for k, v in rec.items() if k not in ("history", "parts", "trainable_names")}),
                  flush=True)
    out = resolve(cfg, cfg.paths.reports, PAPER)
    out.mkdir(parents=True, exist_ok=True)
    teacher_info = read_json(out / "teacher.json", STAGE)
    with atomic_file(out / "train.json") as tmp:
        tmp.write_text(json.dumps({"train_seconds": time.time() - t0, "teacher_params": teacher_info["params"],
                                   "runs": runs}, indent=2))


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
