"""Stage `evaluate`: FID of every student on the held-out pairs' noise, and the teacher's FID on the same noise.

The held-out pairs (root stage teacher_pairs, 500 pairs, seeds never used in training) give the noise z and label c;
each student makes G(z, c) in ONE network call, the teacher's DDIM-25 sample of the same (z, c) is the pair's
`sample`. Both are scored against the real held-out digits in the metric backbone's feature space
(fid[mnist-classifier], class accuracy), and the student against the teacher on the same noise (MSE, PSNR).
Students: each arm x training seed (the replication unit) at each snapshot step and at the end of training.

Rows (`comparison`): `students` (every model: table and FID-vs-step curve; arm = the loss), `teacher`, and the
claim comparisons with arm baseline / method at the final step: `elpips_vs_mse` (mse / e_latent_lpips),
`gan_vs_elpips` (e_latent_lpips / gan). Writes reports/diffusion2gan/results.json and sample grids (same noise).
"""

import torch

from common.config import resolve
from common.data import to_uint8
from common.devices import default_device
from common.eval_stage import EvalStage
from common.evaluation import SampleScorer
from common.experiment import real_floor
from common.report import class_grid
from common.teacher_pairs import load_pairs, pairs_meta
from papers.diffusion2gan.config import Diffusion2GANConfig
from papers.diffusion2gan.train import PAPER, load_student, model_dir

# (comparison, baseline arm, method arm): the claims' paired comparisons at the final step
COMPARISONS = (("elpips_vs_mse", "mse", "e_latent_lpips"), ("gan_vs_elpips", "e_latent_lpips", "gan"))


@torch.no_grad()
def one_step_samples(student, noise: torch.Tensor, label: torch.Tensor, batch: int, device) -> torch.Tensor:
    """G(z, c) for every held-out pair, one network call each, clipped to the data range [-1, 1]."""
    student = student.to(device)
    out = [student(noise[i:i + batch].to(device), label[i:i + batch].to(device)).cpu()
           for i in range(0, len(noise), batch)]
    return torch.cat(out).clamp(-1, 1)


def to_teacher(x: torch.Tensor, teacher: torch.Tensor) -> dict:
    """Per-set distance of the student's samples to the teacher's on the same noise: MSE and PSNR (range 2)."""
    mse = (x - teacher).pow(2).flatten(1).mean(1)
    return {"mse_to_teacher": float(mse.mean()), "psnr_to_teacher": float((10 * torch.log10(4.0 / mse)).mean())}


def grid(images_uint8: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """One column per class when every class is present (the cpu profile's 500 balanced pairs), else as they come."""
    if len(torch.unique(labels)) < num_classes:
        return images_uint8
    return class_grid(images_uint8, labels, num_classes=num_classes)


def rows_for(arm: str, final: bool):
    """The result rows one model contributes: `students` always, and each claim comparison it serves."""
    rows = [{"comparison": "students", "arm": arm}]
    if final:
        rows += [{"comparison": c, "arm": "baseline" if arm == b else "method", "model": arm}
                 for c, b, m in COMPARISONS if arm in (b, m)]
    return rows


def main(argv=None):
    stage = EvalStage.load(Diffusion2GANConfig, PAPER, argv)
    cfg, device = stage.cfg, default_device()
    data_dir = resolve(cfg, cfg.paths.data, "prepared")
    scorer = SampleScorer(data_dir, resolve(cfg, cfg.paths.models, "classifier"), cfg.data.name, device=device)
    held, meta = load_pairs(cfg, "heldout"), pairs_meta(cfg)
    n, k = len(held), cfg.base_model.unet.num_classes
    stage.add(comparison="teacher", arm="teacher", nfe=meta["nfe"], num_samples=n, **scorer.score(
        to_uint8(held.sample), held.label))
    stage.save_grid(grid(to_uint8(held.sample), held.label, k), "teacher", n=None)
    steps = [s for s in cfg.snapshots if s < cfg.train.steps] + [cfg.train.steps]
    for seed in cfg.train_seeds:
        for arm in cfg.arms:
            for step in steps:
                final = step == cfg.train.steps
                student = load_student(cfg, model_dir(cfg, arm, seed, None if final else step))
                x = one_step_samples(student, held.noise, held.label, cfg.eval.batch_size, device)
                score = {**scorer.score(to_uint8(x), held.label), **to_teacher(x, held.sample)}
                for row in rows_for(arm, final):
                    stage.add(**row, train_seed=seed, step=step, nfe=1, num_samples=n, **score)
                if final and seed == cfg.train_seeds[0]:
                    stage.save_grid(grid(to_uint8(x), held.label, k), arm, n=None)
    stage.write(metric=scorer.key("fid"), floors=real_floor(scorer, data_dir, n, k, cfg.seed), floor_samples=n,
                backbone=scorer.backbone, num_reference=scorer.num_reference, teacher_nfe=meta["nfe"],
                teacher_sampler=f"{meta['method']} (eta {meta.get('eta', 0)}), {meta['nfe']} steps")


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
