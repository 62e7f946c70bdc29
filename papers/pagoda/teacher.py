"""Stage `teacher`: PaGoDA's stage 1 and its encoder data (method.py steps 1-2).

1. The low-resolution EDM teacher: a class-conditional diffusers UNet2DModel (params `teacher.unet`) trained with
   EDM's loss (common/edm.py) on the shared training split area-downsampled by `teacher.downsample` (16 -> 8).
   It is trained ONCE (seed teacher.train.seed) and then fixed, like the shared base model: the decoders' training
   seeds are the replication unit, the teacher is part of the setting.
2. The PF-ODE inversion (Heun, `teacher.inversion_points`-point Karras grid) of the same downsampled training
   images to noise z = x(sigma_max) / sigma_max, with their labels (and h-flips if `teacher.flip`).
3. The real targets at every growth resolution that is not the shared data's: the same source images prepared at
   that resolution with the same split (common.data.prepare, same seed), checked label by label.

Outputs: models/pagoda/teacher (diffusers folder), data/pagoda/{inversion.pt, prepared_<res>}, reports/pagoda/teacher.json.
"""

import json
import sys
import time

import torch
import torch.nn.functional as F

from common.atomic import atomic_file
from common.config import load_config, resolve, to_dict
from common.data import load_split, prepare, to_model_range
from common.edm import EDM, denoise, edm_loss
from common.models import build_unet, count_parameters
from common.seeding import seed_everything
from common.tracking import log_run
from common.training import fingerprint, save_model_atomic, train
from papers.pagoda import method
from papers.pagoda.config import PaGoDAConfig

PAPER = "pagoda"
STAGE = f"papers/{PAPER}/dvc.yaml:teacher"


def base_resolution(cfg) -> int:
    return cfg.data.resolution // cfg.teacher.downsample


def downsample(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Area downsampling of images in [-1, 1] (the paper's down_d of real data)."""
    return F.avg_pool2d(x, factor) if factor > 1 else x


def unet_net(unet):
    """F(c_in x, c_noise, labels) for common.edm of a diffusers UNet2DModel."""
    return lambda x, c_noise, labels: unet(x, c_noise, class_labels=labels).sample


def teacher_denoiser(unet, edm: EDM, labels: torch.Tensor):
    """D(x; sigma) of the teacher for fixed labels (method.Denoiser)."""
    pre, net = edm.preconditioner(), unet_net(unet)
    return lambda x, sigma: denoise(net, pre, x, sigma, labels)


def load_teacher(cfg):
    from diffusers import UNet2DModel

    from common.config import require

    d = require(resolve(cfg, cfg.paths.models, PAPER, "teacher"), STAGE, marker="config.json")
    return UNet2DModel.from_pretrained(str(d)).eval().requires_grad_(False)


def train_teacher(cfg, x: torch.Tensor, y: torch.Tensor):
    edm, tc = EDM.from_config(cfg.teacher.edm), cfg.teacher.train
    seed_everything(tc.seed)
    unet = build_unet(cfg.teacher.unet, x.shape[-1], x.shape[1])
    pre = edm.preconditioner()

    def loss_fn(m, xb, yb, gen):
        return edm_loss(unet_net(m), edm, xb, yb, gen, tc.cond_dropout, cfg.teacher.unet.num_classes, pre)

    ident = {"unet": to_dict(cfg.teacher.unet), "edm": to_dict(cfg.teacher.edm), "train": to_dict(tc),
             "res": x.shape[-1], "data": to_dict(cfg.data)}
    return train(unet, loss_fn, (x, y), tc, resolve(cfg, cfg.paths.runs, PAPER, "teacher", "checkpoints"),
                 desc="pagoda teacher", run_fingerprint=fingerprint(ident, [__file__]))


@torch.no_grad()
def invert_all(cfg, unet, x: torch.Tensor, y: torch.Tensor, batch: int = 500) -> torch.Tensor:
    edm = EDM.from_config(cfg.teacher.edm)
    return torch.cat([method.invert(teacher_denoiser(unet, edm, y[i:i + batch]), x[i:i + batch], edm,
                                    cfg.teacher.inversion_points) for i in range(0, len(x), batch)])


def growth_data(cfg, labels: torch.Tensor) -> dict:
    """data/pagoda/prepared_<res> for each growth resolution other than the shared data's (same source, same split)."""
    out = {}
    for f in cfg.decoder.growth:
        res = base_resolution(cfg) * f
        if res == cfg.data.resolution:
            continue
        d = resolve(cfg, cfg.paths.data, PAPER, f"prepared_{res}")
        prepare(cfg.data.name, res, cfg.data.num_heldout, cfg.seed, d, cfg.data.source)
        for split, ref in (("train", labels), ("heldout", None)):
            got = load_split(d, split)[1]
            if ref is not None and not torch.equal(got, ref):
                raise RuntimeError(f"{d}: the {split} split at {res}px is not the shared data's (labels differ)")
        out[res] = str(d)
    return out


def main(argv=None):
    cfg = load_config(PaGoDAConfig, paper=PAPER, overrides=sys.argv[1:] if argv is None else argv)
    t0 = time.time()
    x16, y = load_split(resolve(cfg, cfg.paths.data, "prepared"), "train")
    x = downsample(to_model_range(x16), cfg.teacher.downsample)
    res = train_teacher(cfg, x, y)
    unet = res.model.eval().requires_grad_(False)
    save_model_atomic(unet, resolve(cfg, cfg.paths.models, PAPER, "teacher"))
    t1 = time.time()
    n = min(cfg.teacher.num_inverted, len(x))
    xs, ys, flipped = x[:n], y[:n], torch.zeros(n, dtype=torch.bool)
    if cfg.teacher.flip:
        xs, ys = torch.cat([xs, xs.flip(-1)]), torch.cat([ys, ys])
        flipped = torch.cat([flipped, torch.ones(n, dtype=torch.bool)])
    z = invert_all(cfg, unet, xs, ys)
    t2 = time.time()
    out = resolve(cfg, cfg.paths.data, PAPER)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_file(out / "inversion.pt") as tmp:
        torch.save({"z": z, "labels": ys, "flipped": flipped, "index": torch.arange(len(xs)) % n}, tmp)
    grown = growth_data(cfg, y)
    info = {"resolution": x.shape[-1], "params": count_parameters(unet), "train_seconds": res.train_seconds,
            "inversion_seconds": t2 - t1, "inverted": len(z), "z_std": float(z.std()), "z_mean": float(z.mean()),
            "network_calls_per_inversion": 2 * (cfg.teacher.inversion_points - 1), "growth_data": grown,
            "final_loss": res.history[-1]["loss"], "history": res.history, "seconds": time.time() - t0}
    log_run(cfg, PAPER, "teacher", {"unet": to_dict(cfg.teacher.unet), "edm": to_dict(cfg.teacher.edm)},
            {k: v for k, v in info.items() if isinstance(v, (int, float))}, seed=cfg.teacher.train.seed,
            history=res.history)
    rep = resolve(cfg, cfg.paths.reports, PAPER)
    rep.mkdir(parents=True, exist_ok=True)
    with atomic_file(rep / "teacher.json") as tmp:
        tmp.write_text(json.dumps(info, indent=2))
    print(json.dumps({k: v for k, v in info.items() if k != "history"}), flush=True)


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
