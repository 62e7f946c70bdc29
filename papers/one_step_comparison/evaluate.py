"""Stage `evaluate`: every one-step / few-step sampler of the shared teacher's family on the same 500 held-out noises.

Samplers (each method's own): Diffusion2GAN's student 1 call; Imagine Flash's student at k = 1, 2, 3 calls (noise
correction on); PaGoDA's decoder (stage `train`) 1 call; the teacher's DDIM and DPM-Solver++(2M) at
teacher_samplers.nfe. Noise and labels: the held-out teacher pairs' (root stage teacher_pairs); metrics:
fid / precision / recall / class accuracy [mnist-classifier] against the real held-out digits (common.evaluation).
Diffusion2GAN's rows are ITS evaluate stage's rows when the protocol matches (same noise, labels, sample count,
reference set and backbone: `same_protocol`), else its saved students are re-scored here. Imagine Flash's students
are this page's (retrained at equal compute, stage `train`) and sampled here.
Rows: one per method x training seed x NFE (`arm` = method); the teacher is one fixed model: its row is repeated
per training seed (`fixed_reference`). Cost: network calls per sample and measured seconds per sample at
benchmark.batch_size (interleaved rounds, median). Writes reports/one_step_comparison/{results,pairs}.json.
"""

import dataclasses
import json
import statistics
import sys
import time
from typing import Callable, Dict, List

import torch

from common.atomic import atomic_file
from common.comparison import write_pairs
from common.config import load_config, read_json, resolve
from common.data import to_uint8
from common.evaluation import SampleScorer
from common.experiment import real_floor
from common.sampling import sample, timesteps
from common.seeding import seed_everything
from common.teacher_pairs import Teacher, load_pairs, load_teacher, pairs_meta
from papers.diffusion2gan.evaluate import one_step_samples
from papers.diffusion2gan.train import load_student as load_d2g
from papers.diffusion2gan.train import model_dir as d2g_dir
from papers.imagine_flash import method as imagine_flash
from papers.one_step_comparison.config import OneStepComparisonConfig
from papers.one_step_comparison.selection import forward_equivalents, paper_configs, read_results, settings
from papers.one_step_comparison.train import ARM, IF_ARM, NAME, STAGE, load_decoder, load_imagine_flash

UNIT = "train_seed"
METRICS = ("fid", "precision", "recall", "class_acc")
# (comparison, method, baseline, where) of the claims (claims.yaml), paired per training seed
PAIRS = (("pagoda_vs_diffusion2gan", "pagoda", "diffusion2gan", {"nfe": 1}),
         ("imagine_flash_vs_dpm_solver_nfe3", "imagine_flash", "teacher_dpm_solver_2m", {"nfe": 3}),
         ("diffusion2gan_vs_ddim_nfe1", "diffusion2gan", "teacher_ddim", {"nfe": 1}),
         ("imagine_flash_vs_ddim_nfe1", "imagine_flash", "teacher_ddim", {"nfe": 1}),
         ("pagoda_vs_ddim_nfe1", "pagoda", "teacher_ddim", {"nfe": 1}),
         ("imagine_flash_vs_diffusion2gan_nfe1", "imagine_flash", "diffusion2gan", {"nfe": 1}))


def same_protocol(res: dict, num_samples: int, scorer) -> bool:
    """A paper's results.json was scored as this page scores: same sample count (the held-out pairs' first n noises
    and labels), reference set size and metric backbone."""
    return (res.get("floor_samples") == num_samples and res.get("num_reference") == scorer.num_reference
            and res.get("backbone") == scorer.backbone)


def metrics_of(row: dict, scorer) -> dict:
    return {scorer.key(m): row[scorer.key(m)] for m in METRICS}


def reused_rows(s: dict, d2g_res: dict, scorer) -> List[dict]:
    """Diffusion2GAN's final-step rows of its arm (its evaluate stage's, same protocol)."""
    d = s["diffusion2gan"]
    rows = []
    for seed in s["train_seeds"]:
        src = [r for r in d2g_res["rows"] if r["comparison"] == "students" and r["arm"] == d["arm"]
               and r["step"] == d["step"] and r["train_seed"] == seed]
        rows += [{"arm": "diffusion2gan", UNIT: seed, "nfe": 1, **metrics_of(r, scorer), "source": "diffusion2gan"}
                 for r in src[:1]]
    return rows


def teacher_sampler(teacher: Teacher, method: str, nfe: int, spacing: str) -> Callable:
    steps = timesteps(nfe, teacher.schedule.T, spacing)
    return lambda z, c: sample(teacher.model_fn, teacher.schedule, lambda: z, c, steps, method)


def samplers(cfg, s: dict, teacher: Teacher, papers: dict, seed: int) -> Dict[tuple, Callable]:
    """(arm, nfe) -> f(noise, labels) -> images in [-1, 1], for one training seed (the teacher's are seed-free)."""
    d2g = load_d2g(papers["diffusion2gan"], d2g_dir(papers["diffusion2gan"], s["diffusion2gan"]["arm"], seed))
    imf = load_imagine_flash(cfg, s, seed, teacher)
    dec = load_decoder(cfg, seed)
    out = {("diffusion2gan", 1): lambda z, c: one_step_samples(d2g, z, c, len(z), "cpu"),
           ("pagoda", 1): torch.no_grad()(lambda z, c: dec(z, c).clamp(-1, 1))}
    for k in s["imagine_flash"]["k"]:
        out["imagine_flash", k] = lambda z, c, k=k: imagine_flash.sample(imf, z, c, k, s["imagine_flash"]["nc"])
    ts = cfg.teacher_samplers
    for method in ts.samplers:
        for nfe in ts.nfe:
            out[f"teacher_{method}", nfe] = teacher_sampler(teacher, method, nfe, ts.spacing)
    return out


@torch.no_grad()
def batched(fn: Callable, noise, labels, batch: int) -> torch.Tensor:
    return torch.cat([fn(noise[i:i + batch], labels[i:i + batch]) for i in range(0, len(noise), batch)])


@torch.no_grad()
def benchmark(fns: Dict[tuple, Callable], noise, labels, b) -> List[dict]:
    """Seconds per sample of every sampler on the same batch: `rounds` interleaved rounds of `repeats` timed calls,
    the median per round, then the median over rounds."""
    z, c = noise[: b.batch_size], labels[: b.batch_size]
    per = {key: [] for key in fns}
    for _ in range(b.rounds):
        for key, fn in fns.items():
            times = []
            for _ in range(b.repeats):
                t0 = time.perf_counter()
                fn(z, c)
                times.append(time.perf_counter() - t0)
            per[key].append(statistics.median(times) / len(z))
    return [{"arm": arm, "nfe": nfe, "network_calls": nfe, "seconds_per_sample": statistics.median(v),
             "rounds": v, "batch_size": len(z)} for (arm, nfe), v in per.items()]


def training_cost(cfg, s: dict, reports) -> List[dict]:
    """Each method's training compute in the page's unit (README): gradient steps x batch, generator passes with
    gradient, teacher-sized no-grad calls (online + offline), forward-pass equivalents (selection.forward_equivalents);
    the discriminator's passes listed apart; measured seconds from each train stage's record."""
    d2g = read_json(reports / "diffusion2gan" / "train.json", "papers/diffusion2gan/dvc.yaml:train", ["runs"])
    own = read_json(reports / NAME / "train.json", STAGE, ["runs", "inversion"])
    seeds = set(s["train_seeds"])
    secs = lambda runs, arm: statistics.mean(r["seconds"] for r in runs if r["arm"] == arm  # noqa: E731
                                             and r["train_seed"] in seeds)
    rows = [
        {"arm": "diffusion2gan", "steps": s["diffusion2gan"]["steps"], "batch_size": s["diffusion2gan"]["batch_size"],
         "generator_passes": 1, "disc_passes": 3, "online_calls": 0.0,
         "offline_calls": s["teacher_pairs"]["teacher_calls"], "offline": "teacher pairs (DDIM-25)",
         "train_seconds": secs(d2g["runs"], s["diffusion2gan"]["arm"]), "offline_seconds": None},
        {"arm": "imagine_flash", "steps": s["imagine_flash"]["steps"], "batch_size": s["imagine_flash"]["batch_size"],
         "generator_passes": 1, "disc_passes": 0, "online_calls": s["imagine_flash"]["online_calls"],
         "offline_calls": 0, "offline": "none (the pairs' noise and labels only)",
         "train_seconds": secs(own["runs"], IF_ARM), "offline_seconds": None},
        {"arm": "pagoda", "steps": s["pagoda"]["steps"], "batch_size": s["pagoda"]["batch_size"],
         "generator_passes": 2, "disc_passes": 3, "online_calls": 0.0, "offline_calls": own["inversion"]["calls"],
         "offline": f"PF-ODE inversion (Heun, {len(own['inversion']['timesteps'])} points)",
         "train_seconds": secs(own["runs"], ARM), "offline_seconds": own["inversion"]["seconds"]}]
    for r in rows:
        r.update(sample_steps=r["steps"] * r["batch_size"], forward_equivalents=forward_equivalents(
            r["steps"], r["batch_size"], r["generator_passes"], r["online_calls"], r["offline_calls"]))
    return rows


def main(argv=None):
    overrides = sys.argv[1:] if argv is None else argv
    cfg = load_config(OneStepComparisonConfig, paper=NAME, overrides=overrides)
    seed_everything(cfg.seed)
    t0 = time.time()
    reports, papers = resolve(cfg, cfg.paths.reports), paper_configs(overrides)
    s = settings(cfg, papers, pairs_meta(cfg), reports)
    cfg = dataclasses.replace(cfg, train_seeds=s["train_seeds"])
    held = load_pairs(cfg, "heldout")
    n = len(held)
    data = resolve(cfg, cfg.paths.data, "prepared")
    scorer = SampleScorer(data, resolve(cfg, cfg.paths.models, "classifier"), cfg.data.name, device="cpu")
    teacher = load_teacher(cfg)
    d2g_res = read_results(reports, "diffusion2gan")
    # Imagine Flash is retrained here at equal compute (stage `train`): its rows are always computed here
    reuse = {"diffusion2gan": same_protocol(d2g_res, n, scorer), "imagine_flash": False}
    rows = [r for r in reused_rows(s, d2g_res, scorer) if reuse[r["source"]]]
    fns = {}
    for seed in s["train_seeds"]:
        fns = samplers(cfg, s, teacher, papers, seed)
        for (arm, nfe), fn in fns.items():
            if reuse.get(arm) or (arm.startswith("teacher_") and seed != s["train_seeds"][0]):
                continue
            x = batched(fn, held.noise, held.label, cfg.batch_size)
            m = metrics_of(scorer.score(to_uint8(x), held.label), scorer)
            units = s["train_seeds"] if arm.startswith("teacher_") else [seed]
            rows += [{"arm": arm, UNIT: u, "nfe": nfe, **m, "source": NAME,
                      "fixed_reference": arm.startswith("teacher_")} for u in units]
            print(arm, nfe, seed, {k: round(v, 3) for k, v in m.items()}, flush=True)
    t_bench = time.time()
    cost = benchmark(fns, held.noise, held.label, cfg.benchmark)
    out = resolve(cfg, cfg.paths.reports, NAME)
    out.mkdir(parents=True, exist_ok=True)
    pairs = write_pairs(out / "pairs.json", rows, PAIRS, unit=UNIT)
    results = {"metric": scorer.key("fid"), "metrics": [scorer.key(m) for m in METRICS], "unit": UNIT,
               "settings": s, "reused": reuse, "num_samples": n, "num_reference": scorer.num_reference,
               "backbone": scorer.backbone, "floors": real_floor(scorer, data, n, teacher.num_classes, cfg.seed),
               "floor_samples": n, "teacher_spacing": cfg.teacher_samplers.spacing,
               "teacher_nfe": list(cfg.teacher_samplers.nfe), "teacher_samplers": list(cfg.teacher_samplers.samplers),
               "sampling_cost": cost, "training_cost": training_cost(cfg, s, reports), "rows": rows,
               "num_pairs_rows": len(pairs), "benchmark_seconds": time.time() - t_bench,
               "eval_seconds": time.time() - t0}
    with atomic_file(out / "results.json") as tmp:
        tmp.write_text(json.dumps(results, indent=1))
    print(f"evaluate: {time.time() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
