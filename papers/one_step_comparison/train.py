"""Stage `train`: PaGoDA distilled from the SHARED teacher at its own resolution (16x16, no growing), per training
seed, at Diffusion2GAN's gradient steps and batch, and Imagine Flash retrained at Diffusion2GAN's training compute
(selection.settings).

1. Encoder (once, no seed): the first `num_inverted` real training digits inverted by the teacher's PF-ODE (Heun on
   PaGoDA's Karras grid snapped to the teacher's timesteps, pagoda_shared.invert) -> z [N, C, 16, 16].
2. Decoder per seed: pagoda_shared.Decoder (a copy of the teacher, one call), trained with papers/pagoda/method.py's
   decoder_loss (feature reconstruction of the real image from its inverted noise + w lambda hinge GAN on fresh
   noise, adaptive lambda) and its teacher-initialised discriminator (common.gan.UNetDiscriminator).
3. Imagine Flash per seed: papers/imagine_flash/train.py's `train_arm` (its recipe, loss, seeding and data order)
   for the equal-compute steps instead of its paper's budget, into this page's folders.
Models: models/one_step_comparison/pagoda-seed<s>, models/one_step_comparison/imagine_flash/<arm>-seed<s>;
checkpoints in runs/one_step_comparison/.
Writes reports/one_step_comparison/train.json (settings, the inversion's calls and seconds, each run's record).
"""

import copy
import dataclasses
import sys
import time
from pathlib import Path

import torch

from common.arms import train_arms
from common.config import UserError, load_config, reading, require, resolve, to_dict
from common.data import load_split, to_model_range
from common.gan import UNetDiscriminator
from common.models import load_diffusion_model
from common.perceptual import pixel_lpips
from common.seeding import seed_everything
from common.teacher_pairs import Teacher, load_pairs, load_teacher, pairs_meta
from common.training import fingerprint, train
from papers.diffusion2gan.train import save_student
from papers.imagine_flash import train as imagine_flash
from papers.one_step_comparison import pagoda_shared
from papers.one_step_comparison.config import OneStepComparisonConfig
from papers.one_step_comparison.selection import paper_configs, settings
from papers.pagoda import method as pagoda

NAME = "one_step_comparison"
STAGE = f"papers/{NAME}/dvc.yaml:train"
ARM = "pagoda"
IF_ARM = "imagine_flash"


def run_name(seed: int) -> str:
    return f"{ARM}-seed{seed}"


def model_dir(cfg, seed: int) -> Path:
    return resolve(cfg, cfg.paths.models, NAME, run_name(seed))


def load_decoder(cfg, seed: int) -> pagoda_shared.Decoder:
    """The trained EMA decoder of one seed (saved by diffusion2gan.train.save_student: diffusers folder + meta)."""
    from diffusers import UNet2DModel

    d = require(model_dir(cfg, seed), STAGE, marker="meta.json")
    with reading(d, STAGE):
        unet = UNet2DModel.from_pretrained(str(d))
    return pagoda_shared.Decoder(unet, cfg.base_model.diffusion.num_train_timesteps).eval().requires_grad_(False)


def imagine_flash_cfg(cfg, s: dict):
    """papers/imagine_flash's config with the equal-compute steps and this page's models / runs folders (its
    train_arm then writes models/one_step_comparison/imagine_flash/<arm>-seed<s>); no FID-curve snapshots."""
    imf = paper_configs([f"profile={cfg.profile}"])["imagine_flash"]
    d = imf.distill
    return dataclasses.replace(
        imf, paths=dataclasses.replace(imf.paths, models=str(Path(cfg.paths.models) / NAME),
                                       runs=str(Path(cfg.paths.runs) / NAME)),
        distill=dataclasses.replace(d, train=dataclasses.replace(d.train, steps=s["imagine_flash"]["steps"])),
        eval=dataclasses.replace(imf.eval, curve_steps=[]))


def load_imagine_flash(cfg, s: dict, seed: int, teacher: Teacher) -> Teacher:
    """The retrained Imagine Flash student of one seed."""
    icfg = imagine_flash_cfg(cfg, s)
    path = resolve(icfg, icfg.paths.models, imagine_flash.PAPER, imagine_flash.run_name(s["imagine_flash"]["arm"], seed))
    unet, _, _ = load_diffusion_model(path, STAGE)
    return Teacher(unet, teacher.schedule, teacher.num_classes)


def inverted_data(cfg, teacher, s: dict, batch: int = 500):
    """(z, x, labels) of the first num_inverted training digits; the grid, calls and seconds of the inversion."""
    x, y = load_split(resolve(cfg, cfg.paths.data, "prepared"), "train")
    x, y = to_model_range(x[: s["num_inverted"]]), y[: s["num_inverted"]]
    ts = pagoda_shared.inversion_grid(teacher, s["inversion_points"], s["rho"])
    t0 = time.time()
    z = torch.cat([pagoda_shared.invert(teacher, x[i:i + batch], y[i:i + batch], ts) for i in range(0, len(x), batch)])
    info = {"timesteps": ts, "calls": len(x) * 2 * (len(ts) - 1), "seconds": time.time() - t0,
            "z_std": float(z.std())}
    return z, x, y, info


def train_decoder(cfg, teacher, data, s: dict, seed: int) -> dict:
    """One PaGoDA decoder at the teacher's resolution (module docstring, 2.)."""
    seed_everything(seed)
    p = s["pagoda"]
    base = papers_base(cfg)
    tc = dataclasses.replace(base, steps=p["steps"], batch_size=p["batch_size"], seed=seed,
                             checkpoint_every=cfg.pagoda.checkpoint_every, log_every=cfg.pagoda.log_every)
    dec = pagoda_shared.Decoder(copy.deepcopy(teacher.unet), cfg.base_model.diffusion.num_train_timesteps)
    disc = UNetDiscriminator(teacher.unet, teacher.num_classes, p["disc_t"])
    model = pagoda.PaGoDA(dec, disc)
    distance, size, clip = pixel_lpips(cfg), cfg.data.resolution, tuple(p["adaptive_clip"])

    def loss_fn(m, zb, xb, yb, gen):
        fresh = torch.randn(zb.shape, generator=gen).to(zb.device)
        out = pagoda.decoder_loss(m, distance, size, zb, xb, yb, fresh, p["gan_weight"], clip, p["disc_resolution"])
        return out["total"]

    ident = {"pagoda": p, "train": to_dict(tc), "inversion": data[3]["timesteps"], "teacher": "base_model"}
    res = train(model, loss_fn, data[:3], tc, resolve(cfg, cfg.paths.runs, NAME, run_name(seed), "checkpoints"),
                desc=f"{NAME} {run_name(seed)}", run_fingerprint=fingerprint(
                    ident, [Path(__file__), Path(pagoda.__file__), Path(pagoda_shared.__file__)]))
    rec = {"arm": ARM, "train_seed": seed, "steps": res.steps, "batch_size": tc.batch_size,
           "seconds": res.train_seconds, "resumed_from": res.resumed_from_step, "final_loss": res.history[-1]["loss"],
           "decoder_params": sum(q.numel() for q in res.model.decoder.parameters()),
           "disc_params": sum(q.numel() for q in res.model.disc.parameters())}
    if res.is_main_process:
        save_student(res.model.decoder, model_dir(cfg, seed), rec)
    return {**rec, "history": res.history}


def papers_base(cfg):
    """papers/pagoda's `decoder.base` TrainConfig (lr, EMA, schedule, warm-up of its base-resolution stage)."""
    return paper_configs([f"profile={cfg.profile}"])["pagoda"].decoder.base


def main(argv=None):
    overrides = sys.argv[1:] if argv is None else argv
    cfg = load_config(OneStepComparisonConfig, paper=NAME, overrides=overrides)
    if cfg.profile == "full":
        raise UserError(f"papers/{NAME}: the full profile is not runnable yet: papers/diffusion2gan's full student "
                        "is distilled from SD1.5, and PaGoDA's adaptor (pagoda_shared.py) needs a text-conditioned "
                        "decoder for it; run profile=cpu")
    s = settings(cfg, paper_configs(overrides), pairs_meta(cfg), resolve(cfg, cfg.paths.reports))
    cfg = dataclasses.replace(cfg, train_seeds=s["train_seeds"])
    teacher = load_teacher(cfg)
    data = inverted_data(cfg, teacher, s["pagoda"])
    print(f"inverted {len(data[0])} images with {data[3]['calls']} teacher calls in {data[3]['seconds']:.0f} s",
          flush=True)
    icfg, pairs = imagine_flash_cfg(cfg, s), load_pairs(cfg, "train")

    def train_one(arm, seed):
        if arm == ARM:
            return train_decoder(cfg, teacher, data, s, seed)
        return {**imagine_flash.train_arm(icfg, teacher, pairs, s["imagine_flash"]["arm"], seed), "arm": IF_ARM}

    train_arms(cfg, NAME, [ARM, IF_ARM], train_one, lambda arm: {arm: s[arm]},
               extra={"settings": s, "inversion": data[3]})


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
