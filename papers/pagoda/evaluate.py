"""Stage `evaluate`: the decoders against the teacher, on the same noise and labels, per training seed.

All sample sets share the per-sample seeded noise z_j ~ N(0, I) at the teacher's resolution r and the balanced
labels j mod K (eval.seed). The metric backbone (models/classifier) sees images at the shared data's resolution D
(16), so every resolution is scored in a named view, generated and real images through the SAME resize:
  fid_up[<backbone>]    r-px images (r < D) bicubically upsampled to D; reference: held-out D -> area r -> bicubic D
  fid[<backbone>]       D-px images as they are; reference: the held-out split
  fid_down[<backbone>]  images larger than D area-downsampled to D; reference: the held-out split prepared at that
                        resolution (data/pagoda) area-downsampled the same way
  detail_gap[<res>px]   at resolutions > D, the detail the backbone cannot see: E = mean (x - up(down(x)))^2 (down =
                        2x area, up = bicubic), |E_gen - E_real| / E_real against the held-out images (lower: closer)
Rows (`comparison`, arm baseline/method, unit train_seed; the teacher is one fixed model, its row repeated per seed):
  x1      teacher Heun (2 (n - 1) calls)       vs rec_gan decoder at r (1 call)            fid_up   (claim a)
  gan     rec decoder at r                     vs rec_gan decoder at r                     fid_up   (claim c)
  x<f>    teacher + bicubic to r f             vs rec_gan decoder grown to r f             fid / fid_down, detail_gap
  curve   each arm's EMA snapshots at r (fid_up vs training step)
Writes reports/pagoda/results.json and sample grids (the first eval.grid samples of each set: the same noise).
"""

from typing import Dict

import torch
import torch.nn.functional as F

from common.config import resolve
from common.data import load_split, to_model_range, to_uint8
from common.devices import default_device
from common.edm import EDM
from common.eval_stage import EvalStage
from common.evaluation import extract_features, fid_from_features, load_classifier, metric_key
from common.sampling import SampleNoise, balanced_labels, sample_seeds
from papers.pagoda import method
from papers.pagoda.config import PaGoDAConfig
from papers.pagoda.teacher import PAPER, base_resolution, downsample, load_teacher, teacher_denoiser
from papers.pagoda.train import GAN_ARM, load_decoder, run_name

BACKBONE_STAGE = "train_classifier"


def resize(x: torch.Tensor, res: int) -> torch.Tensor:
    """Images in [-1, 1] to `res`: bicubic up, area (average-pool) down."""
    if x.shape[-1] == res:
        return x
    if x.shape[-1] < res:
        return F.interpolate(x, size=res, mode="bicubic", align_corners=False).clamp(-1, 1)
    return downsample(x, x.shape[-1] // res)


def view_name(res: int, d: int) -> str:
    return "fid_up" if res < d else "fid" if res == d else "fid_down"


def detail_energy(x: torch.Tensor) -> torch.Tensor:
    """Per-image mean (x - bicubic_up(area_down_2x(x)))^2: the energy of the finest octave."""
    return (x - resize(downsample(x, 2), x.shape[-1])).pow(2).flatten(1).mean(1)


class Views:
    """Reference features of every view and the scoring of a sample set in it (module docstring)."""

    def __init__(self, cfg, device):
        self.cfg, self.device, self.d = cfg, device, cfg.data.resolution
        self.weights = resolve(cfg, cfg.paths.models, "classifier")
        load_classifier(self.weights)
        self.backbone = "mnist-classifier" if cfg.data.name == "mnist" else f"{cfg.data.name}-classifier"
        real = to_model_range(load_split(resolve(cfg, cfg.paths.data, "prepared"), "heldout")[0])
        self.real, self.ref, self.energy = {}, {}, {}
        for f in (1, *cfg.decoder.growth):
            res = base_resolution(cfg) * f
            x = real if res == self.d else resize(real, res) if res < self.d else to_model_range(
                load_split(resolve(cfg, cfg.paths.data, PAPER, f"prepared_{res}"), "heldout")[0])
            self.real[res] = x
            self.ref[res] = self.features(x)["features"]
            if res > self.d:
                self.energy[res] = float(detail_energy(x).mean())

    def features(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        return extract_features(to_uint8(resize(x, self.d)), self.backbone, self.weights, self.device)

    def score(self, x: torch.Tensor, labels: torch.Tensor) -> dict:
        res = x.shape[-1]
        f = self.features(x)
        out = {metric_key(view_name(res, self.d), self.backbone): fid_from_features(f["features"], self.ref[res]),
               metric_key("class_acc", self.backbone): float((f["logits"].argmax(1) == labels).float().mean())}
        if res in self.energy:
            out[f"detail_gap[{res}px]"] = abs(float(detail_energy(x).mean()) - self.energy[res]) / self.energy[res]
        return out


@torch.no_grad()
def decode(decoder, z: torch.Tensor, labels: torch.Tensor, batch: int = 500) -> torch.Tensor:
    return torch.cat([decoder(z[i:i + batch], labels[i:i + batch]) for i in range(0, len(z), batch)]).clamp(-1, 1)


@torch.no_grad()
def teacher_samples(cfg, teacher, z, labels, batch: int = 500) -> torch.Tensor:
    edm = EDM.from_config(cfg.teacher.edm)
    return torch.cat([method.sample(teacher_denoiser(teacher, edm, labels[i:i + batch]), z[i:i + batch], edm,
                                    cfg.eval.teacher_points) for i in range(0, len(z), batch)]).clamp(-1, 1)


def main(argv=None):
    stage = EvalStage.load(PaGoDAConfig, PAPER, argv)
    cfg, ev, dc = stage.cfg, stage.cfg.eval, stage.cfg.decoder
    device, r = default_device(), base_resolution(stage.cfg)
    views = Views(cfg, device)
    teacher = load_teacher(cfg)
    labels = balanced_labels(ev.num_samples, cfg.teacher.unet.num_classes)
    z = SampleNoise(sample_seeds(ev.seed, ev.num_samples), (teacher.config.in_channels, r, r))()
    t_img = teacher_samples(cfg, teacher, z, labels)
    calls = 2 * (ev.teacher_points - 1)
    teacher_scores = {f: views.score(resize(t_img, r * f), labels) for f in (1, *dc.growth)}
    stage.save_grid(to_uint8(t_img[:ev.grid]), "teacher_x1", n=None)
    for f in dc.growth:
        stage.save_grid(to_uint8(resize(t_img[:ev.grid], r * f)), f"teacher_bicubic_x{f}", n=None)
    for seed in dc.train_seeds:
        common = {"train_seed": seed, "sample_seed": ev.seed}
        scores = {}
        for arm in dc.arms:
            img = decode(load_decoder(cfg, teacher, arm, seed, 1), z, labels)
            scores[arm] = views.score(img, labels)
            if seed == dc.train_seeds[0]:
                stage.save_grid(to_uint8(img[:ev.grid]), f"{arm}_x1", n=None)
            stage.add(comparison="curve", arm=arm, model=arm, step=dc.base.steps, **common, **scores[arm])
            for step in dc.snapshots:
                if step < dc.base.steps:
                    snap = resolve(cfg, cfg.paths.runs, PAPER, "decoders", run_name(arm, seed, 1), f"ema-step-{step}")
                    img = decode(load_decoder(cfg, teacher, arm, seed, 1, snap), z, labels)
                    stage.add(comparison="curve", arm=arm, model=arm, step=step, **common,
                              **views.score(img, labels))
        stage.add(comparison="x1", arm="baseline", model="teacher", network_calls=calls, **common,
                  **teacher_scores[1])
        stage.add(comparison="x1", arm="method", model=GAN_ARM, network_calls=1, **common, **scores[GAN_ARM])
        stage.add(comparison="gan", arm="baseline", model="rec", **common, **scores["rec"])
        stage.add(comparison="gan", arm="method", model=GAN_ARM, **common, **scores[GAN_ARM])
        for f in dc.growth:
            img = decode(load_decoder(cfg, teacher, GAN_ARM, seed, f), z, labels)
            if seed == dc.train_seeds[0]:
                stage.save_grid(to_uint8(img[:ev.grid]), f"{GAN_ARM}_x{f}", n=None)
            stage.add(comparison=f"x{f}", arm="baseline", model="teacher+bicubic", resolution=r * f,
                      network_calls=calls, **common, **teacher_scores[f])
            stage.add(comparison=f"x{f}", arm="method", model=f"{GAN_ARM} grown", resolution=r * f, network_calls=1,
                      **common, **views.score(img, labels))
    stage.write(backbone=views.backbone, teacher_resolution=r, data_resolution=views.d,
                num_reference=len(views.real[views.d]), teacher_calls=calls,
                sampler=f"teacher: Heun on a {ev.teacher_points}-point Karras grid ({calls} calls); decoders: 1 call",
                real_detail_energy={str(k): v for k, v in views.energy.items()})


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
