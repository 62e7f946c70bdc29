"""Each method's settings by its own paper's rule (never tuned on this page's seeds), and the compute budget.

`settings(cfg, papers, pairs, reports)` is pure given its inputs (the three papers' configs, the teacher pairs'
meta.json, the reports folder): a null in this page's params means "the paper's own choice", a value overrides it.

  Diffusion2GAN  the method arm of its last claim comparison (E-LatentLPIPS + GAN), final EMA student (train.steps)
  Imagine Flash  the method arm of its claim comparisons (backward distillation + SRL), noise correction on, k = 1..3,
                 retrained here with its paper's recipe (`distill`) for the steps whose training compute equals
                 Diffusion2GAN's (`equal_compute_steps`; its paper trained it for less)
  PaGoDA         papers/pagoda's decoder recipe at the teacher's resolution (GAN weight, adaptive-weight clip,
                 discriminator timestep, lr, EMA, schedule: its `decoder.base`), trained here at Diffusion2GAN's
                 gradient steps and batch, on as many real training images as Diffusion2GAN has teacher pairs,
                 inverted with the most Heun points (<= PaGoDA's own 40) whose teacher calls fit the pairs' calls
  units          the training seeds of Diffusion2GAN's reused students (PaGoDA and Imagine Flash are trained here
                 on the same seeds)
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Sequence

from common.config import ConfigError, load_config, read_json
from papers.diffusion2gan import evaluate as d2g_eval
from papers.diffusion2gan.config import Diffusion2GANConfig
from papers.imagine_flash import evaluate as if_eval
from papers.imagine_flash.config import ImagineFlashConfig
from papers.imagine_flash.train import ARMS as IF_ARMS
from papers.pagoda.config import PaGoDAConfig
from papers.pagoda.train import GAN_ARM

PAPERS = {"diffusion2gan": Diffusion2GANConfig, "imagine_flash": ImagineFlashConfig, "pagoda": PaGoDAConfig}


def paper_configs(overrides: Sequence[str]) -> Dict[str, object]:
    """The three papers' configs at this run's profile (their own params.yaml)."""
    prof = [o for o in overrides if o.startswith("profile=")]
    return {name: load_config(schema, paper=name, overrides=prof) for name, schema in PAPERS.items()}


def read_results(reports: Path, paper: str, keys=("rows",)) -> dict:
    """reports/<paper>/results.json (made by papers/<paper>/dvc.yaml:evaluate), which must hold `keys`."""
    return read_json(Path(reports) / paper / "results.json", f"papers/{paper}/dvc.yaml:evaluate", keys)


def pick(value, default):
    """The page's override, else the paper's own choice."""
    return default if value is None else value


def inversion_points(budget_calls: int, num_images: int, paper_points: int) -> int:
    """The most Heun points n (2 (n - 1) teacher calls per image) with num_images 2 (n - 1) <= budget_calls, at most
    the paper's own n and at least 2 (one Heun interval)."""
    return max(2, min(paper_points, budget_calls // (2 * num_images) + 1))


def forward_equivalents(steps: int, batch: int, generator_passes: int, online_calls: float, offline_calls: float) -> float:
    """Training compute F in teacher-sized forward passes: 3 per generator sample-pass with gradient (forward +
    backward), 1 per no-grad teacher-sized call (online, per sample step; offline, in total)."""
    n = steps * batch
    return 3 * generator_passes * n + online_calls * n + offline_calls


def imagine_flash_online_calls(step_counts: Sequence[int]) -> float:
    """No-grad calls per Imagine Flash sample step: one teacher call (the SRL target) + the student's backward
    inputs, (k - 1) / 2 on average over the drawn step index i < k of k in step_counts (papers/imagine_flash)."""
    return 1 + sum((k - 1) / 2 for k in step_counts) / len(step_counts)


def equal_compute_steps(budget: float, batch: int, per_sample: float) -> int:
    """The steps at `batch` whose compute (per_sample forward passes per sample step) is nearest `budget`."""
    return max(1, round(budget / (per_sample * batch)))


def settings(cfg, papers: Dict[str, object], pairs: dict, reports: Path) -> dict:
    """Every method's setting (module docstring). `pairs`: data/teacher_pairs/meta.json."""
    d2g, imf, pg = papers["diffusion2gan"], papers["imagine_flash"], papers["pagoda"]
    m = cfg.methods
    d2g_arm = pick(m.diffusion2gan_arm, d2g_eval.COMPARISONS[-1][2])
    if_arm = pick(m.imagine_flash_arm, if_eval.COMPARISONS[0][1])
    if d2g_arm not in d2g.arms:
        raise ConfigError(f"methods.diffusion2gan_arm = {d2g_arm!r}: papers/diffusion2gan trains {list(d2g.arms)}")
    if if_arm not in IF_ARMS:
        raise ConfigError(f"methods.imagine_flash_arm = {if_arm!r}: papers/imagine_flash trains {list(IF_ARMS)}")
    d2g_res = read_results(reports, "diffusion2gan")
    seeds = pick(cfg.train_seeds, sorted(d2g.train_seeds))
    n_pairs, nfe_pairs = int(pairs["counts"]["train"]), int(pairs["nfe"])
    calls = n_pairs * nfe_pairs * (1 if float(pairs["guidance_scale"]) == 1.0 else 2)
    n_inv = pick(cfg.pagoda.num_inverted, n_pairs)
    dec = pg.decoder
    d2g_compute = forward_equivalents(d2g.train.steps, d2g.train.batch_size, 1, 0.0, calls)
    if_online = imagine_flash_online_calls(imf.distill.step_counts)
    if_steps = pick(m.imagine_flash_steps, equal_compute_steps(d2g_compute, imf.distill.train.batch_size,
                                                               3 + if_online))
    return {
        "train_seeds": list(seeds),
        "diffusion2gan": {"arm": d2g_arm, "step": d2g.train.steps, "steps": d2g.train.steps,
                          "batch_size": d2g.train.batch_size, "metric": d2g_res["metric"],
                          "num_reference": d2g_res["num_reference"], "backbone": d2g_res["backbone"]},
        "imagine_flash": {"arm": if_arm, "nc": pick(m.imagine_flash_nc, True), "k": list(imf.eval.step_counts),
                          "steps": if_steps, "paper_steps": imf.distill.train.steps,
                          "batch_size": imf.distill.train.batch_size, "online_calls": if_online,
                          "num_samples": imf.eval.num_samples},
        "pagoda": {"arm": GAN_ARM, "steps": pick(cfg.pagoda.steps, d2g.train.steps),
                   "batch_size": pick(cfg.pagoda.batch_size, d2g.train.batch_size), "num_inverted": n_inv,
                   "inversion_points": pick(cfg.pagoda.inversion_points,
                                            inversion_points(calls, n_inv, pg.teacher.inversion_points)),
                   "paper_inversion_points": pg.teacher.inversion_points, "rho": pg.teacher.edm.rho,
                   "gan_weight": dec.gan_weight, "adaptive_clip": list(dec.adaptive_clip), "disc_t": dec.disc_t,
                   "disc_resolution": dec.disc_resolution, "lr": dec.base.lr, "ema_decay": dec.base.ema_decay,
                   "lr_schedule": dec.base.lr_schedule, "warmup_steps": dec.base.warmup_steps},
        "teacher_pairs": {"num_train": n_pairs, "nfe": nfe_pairs, "teacher_calls": calls},
        "diffusion2gan_compute": d2g_compute,
    }
