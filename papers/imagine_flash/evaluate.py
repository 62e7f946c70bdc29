"""Stage `evaluate`: FID[mnist-classifier] and intensity / contrast statistics of every student at k = 1, 2, 3 steps,
with and without noise correction, from the held-out pairs' noise and labels, against the real held-out data; the
multi-step teacher's samples for the same noise beside them; FID vs training step from the EMA snapshots.

Rows carry `comparison` (which claim family they serve) and `arm` = method | baseline within it, so one student
appears in several comparisons: direction (backward_srl vs forward_srl), loss (backward_srl vs backward_mse),
noise_correction (backward_srl with vs without), teacher (backward_srl at 3 steps vs the teacher's 25 DDIM steps).
Writes reports/imagine_flash/results.json and samples/.
"""

import copy

import torch

from common.config import resolve
from common.data import load_split, to_uint8
from common.dit import read_dir_state
from common.eval_stage import EvalStage
from common.evaluation import SampleScorer
from common.experiment import real_floor
from common.models import load_diffusion_model
from common.teacher_pairs import Teacher, load_pairs, load_teacher, pairs_meta
from papers.imagine_flash import method
from papers.imagine_flash.config import ImagineFlashConfig
from papers.imagine_flash.train import ARMS, PAPER, STAGE, run_name

# (comparison, the arm that is `method`, the arm that is `baseline`) of the claims
COMPARISONS = (("direction", "backward_srl", "forward_srl"), ("loss", "backward_srl", "backward_mse"))


def intensity_stats(images_uint8: torch.Tensor) -> dict:
    """Mean intensity of the set and mean per-image standard deviation (contrast), both in [0, 1] units."""
    x = images_uint8.float() / 255
    return {"mean_intensity": float(x.mean()), "contrast": float(x.flatten(1).std(1).mean())}


class Scoring:
    """The held-out pairs, the scorer and the real held-out statistics: one sample set -> one metrics dict."""

    def __init__(self, cfg, n: int):
        pairs = load_pairs(cfg, "heldout")
        self.noise, self.label, self.teacher_sample = pairs.noise[:n], pairs.label[:n], pairs.sample[:n]
        data = resolve(cfg, cfg.paths.data, "prepared")
        self.scorer = SampleScorer(data, resolve(cfg, cfg.paths.models, "classifier"), cfg.data.name)
        self.real = intensity_stats(load_split(data, "heldout")[0])
        self.floors = real_floor(self.scorer, data, n, cfg.base_model.unet.num_classes, cfg.seed)

    def __call__(self, x0: torch.Tensor, n: int = None) -> dict:
        img = to_uint8(x0)
        n = len(img) if n is None else n
        stats = intensity_stats(img)
        gaps = {f"{k}_gap": abs(v - self.real[k]) for k, v in stats.items()}
        return {**self.scorer.score(img, self.label[:n]), **stats, **gaps}

    def sample(self, student: Teacher, k: int, corrected: bool, n: int = None) -> torch.Tensor:
        n = len(self.noise) if n is None else n
        return method.sample(student, self.noise[:n], self.label[:n], k, corrected)


def load_student(cfg, arm: str, seed: int, teacher: Teacher) -> Teacher:
    unet, _, _ = load_diffusion_model(resolve(cfg, cfg.paths.models, PAPER, run_name(arm, seed)), STAGE)
    return Teacher(unet, teacher.schedule, teacher.num_classes)


def snapshot(teacher: Teacher, cfg, arm: str, seed: int, step: int) -> Teacher:
    """The EMA snapshot of training step `step` (common.dit.train_snapshots' folder layout)."""
    unet = copy.deepcopy(teacher.unet)
    read_dir_state(unet, resolve(cfg, cfg.paths.runs, PAPER, run_name(arm, seed), f"ema-step-{step}"), STAGE)
    return Teacher(unet.eval().requires_grad_(False), teacher.schedule, teacher.num_classes)


def claim_rows(ev, seed: int, arm: str, k: int, nc: bool, m: dict):
    """The rows of one student's sample set, one per comparison it serves."""
    base = {"train_seed": seed, "student": arm, "k": k, "nc": nc, **m}
    for comparison, meth, basel in COMPARISONS:
        if arm in (meth, basel):
            ev.add(comparison=comparison, arm="method" if arm == meth else "baseline", **base)
    if arm == "backward_srl":
        ev.add(comparison="noise_correction", arm="method" if nc else "baseline", **base)


def curve(ev, sc: Scoring, cfg, teacher: Teacher, seed: int, arm: str, final: Teacher, step0: dict):
    """FID vs training step of one student on eval.curve_samples held-out pairs. Step 0 is the teacher itself (every
    student's initialisation): `step0` (k -> metrics) is computed once and repeated for every student."""
    n, steps_done = cfg.eval.curve_samples, cfg.distill.train.steps
    points = [*((s, snapshot(teacher, cfg, arm, seed, s)) for s in cfg.eval.curve_steps if s < steps_done),
              (steps_done, final)]
    for k in cfg.eval.curve_k:
        ev.add(comparison="curve", train_seed=seed, student=arm, k=k, step=0, **step0[k])
    for step, model in points:
        for k in cfg.eval.curve_k:
            m = sc(sc.sample(model, k, True, n), n)
            ev.add(comparison="curve", train_seed=seed, student=arm, k=k, step=step, **m)


def shift_rows(ev, seed: int, by_k: dict, fid: str):
    """Noise correction's relative shift of the intensity statistics vs its relative shift of FID, per k:
    stat_shift = max over {mean intensity, contrast} of |with - without| / without (same for FID)."""
    for k, (off, on) in by_k.items():
        stat = max(abs(on[s] - off[s]) / off[s] for s in ("mean_intensity", "contrast"))
        fid_shift = abs(on[fid] - off[fid]) / off[fid]
        ev.add(comparison="nc_shift", arm="method", train_seed=seed, k=k, stat_shift=stat, fid_shift=fid_shift,
               shift_excess=stat - fid_shift)


def main(argv=None):
    ev = EvalStage.load(ImagineFlashConfig, PAPER, argv)
    cfg, e = ev.cfg, ev.cfg.eval
    teacher = load_teacher(cfg)
    sc = Scoring(cfg, e.num_samples)
    fid = sc.scorer.key("fid")
    nfe_teacher = pairs_meta(cfg)["nfe"]
    teacher_m = sc(sc.teacher_sample)
    ev.log(set="teacher", nfe=nfe_teacher, **teacher_m)
    step0 = {k: sc(sc.sample(teacher, k, True, e.curve_samples), e.curve_samples) for k in e.curve_k}
    grids = {"teacher": sc.teacher_sample[:10]}
    for k in e.step_counts:
        grids[f"teacher_k{k}"] = sc.sample(teacher, k, False, 10)
    for seed in cfg.train_seeds:
        for arm in ARMS:
            student = load_student(cfg, arm, seed, teacher)
            by_k = {}
            for k in e.step_counts:
                for nc in (False, True):
                    x0 = sc.sample(student, k, nc)
                    m = sc(x0)
                    by_k.setdefault(k, [None, None])[int(nc)] = m
                    claim_rows(ev, seed, arm, k, nc, m)
                    if seed == cfg.train_seeds[0] and nc:
                        grids[f"{arm}_k{k}"] = x0[:10]
                if arm == "backward_srl" and k == max(e.step_counts):
                    ev.add(comparison="teacher", arm="baseline", train_seed=seed, k=k, nfe=nfe_teacher, **teacher_m)
                    ev.add(comparison="teacher", arm="method", train_seed=seed, k=k, nfe=k, **by_k[k][1])
            if arm == "backward_srl":
                shift_rows(ev, seed, by_k, fid)
                ev.add(comparison="cost", arm="method", train_seed=seed, nfe_ratio=nfe_teacher / max(e.step_counts))
            curve(ev, sc, cfg, teacher, seed, arm, student, step0)
    ev.save_grid(to_uint8(torch.cat(list(grids.values()))), "same_noise", n=None)
    ev.write(metric=fid, floors=sc.floors, floor_samples=e.num_samples, backbone=sc.scorer.backbone,
             num_reference=sc.scorer.num_reference, real=sc.real, teacher={"nfe": nfe_teacher, **teacher_m},
             grid_rows=list(grids), step_counts=e.step_counts)


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
