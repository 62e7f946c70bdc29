"""Stage `evaluate`: FID of the baseline sampler vs Epsilon Scaling on the shared base model.

1. Sweep b at `sweep.nfe` on the sweep seeds (the U-shaped curve); b* = argmin of the mean curve.
2. On disjoint seeds, baseline (lambda = 1) vs uniform ES (lambda = b*) at every `compare.nfe`,
   and the linear schedule (same mean lambda) at `compare.linear_nfe`.
Every run samples the same per-sample noise for every arm, so arms differ only by lambda.
Writes reports/epsilon_scaling/results.json (DVC metrics) and sample grids.
"""

import json
import sys
import time

import numpy as np

from common.config import load_config, resolve
from common.experiment import BaseModelExperiment
from common.report import save_grid
from common.sampling import SamplingSpec
from common.seeding import seed_everything
from papers.epsilon_scaling.config import EpsilonScalingConfig
from papers.epsilon_scaling.method import EpsilonScaling, linear_k_for_mean

PAPER = "epsilon_scaling"


def main(argv=None):
    cfg = load_config(EpsilonScalingConfig, paper=PAPER, overrides=sys.argv[1:] if argv is None else argv)
    seed_everything(cfg.seed)
    t0 = time.time()
    exp = BaseModelExperiment(cfg)
    scorer = exp.scorer
    out = resolve(cfg, cfg.paths.reports, PAPER)
    (out / "samples").mkdir(parents=True, exist_ok=True)
    s = cfg.sampler

    def run(nfe, seed, n, b=1.0, k=0.0):
        spec = SamplingSpec(n, nfe, s.method, spacing=s.spacing, guidance_scale=s.guidance_scale, seed=seed,
                            clip_x0=s.clip_x0)
        img, y, _ = exp.sample(spec, lambda: EpsilonScaling(nfe, b, k))
        return img, y

    rows = []
    # 1. the b sweep (U-shaped curve), on its own seeds
    for seed in cfg.sweep.seeds:
        for b in cfg.sweep.b:
            img, y = run(cfg.sweep.nfe, seed, cfg.sweep.num_samples, b=b)
            rows.append({"stage": "sweep", "nfe": cfg.sweep.nfe, "seed": seed, "b": b, **scorer.score(img, y)})
            print(json.dumps(rows[-1]), flush=True)
    fid = scorer.key("fid")
    mean_curve = {b: float(np.mean([r[fid] for r in rows if r["stage"] == "sweep" and r["b"] == b]))
                  for b in cfg.sweep.b}
    b_star = cfg.compare.b if cfg.compare.b is not None else min(mean_curve, key=mean_curve.get)

    # 2. baseline vs ES (uniform b*) at each NFE; linear schedule with the same mean at linear_nfe
    c = cfg.compare
    k_lin = linear_k_for_mean(b_star, c.linear_b0, c.linear_nfe)
    for nfe in c.nfe:
        arms = [("baseline", "uniform", 1.0, 0.0), ("method", "uniform", b_star, 0.0)]
        if nfe == c.linear_nfe:
            arms.append(("method", "linear", c.linear_b0, k_lin))
        for seed in c.seeds:
            for arm, group, b, k in arms:
                img, y = run(nfe, seed, c.num_samples, b=b, k=k)
                row = {"stage": "compare", "nfe": nfe, "seed": seed, "arm": arm, "group": group, "b": b, "k": k,
                       **scorer.score(img, y)}
                rows.append(row)
                if arm == "baseline" and nfe == c.linear_nfe:
                    rows.append({**row, "group": "linear"})  # the linear arm is paired with the same baseline
                if seed == c.seeds[0]:
                    save_grid(img[:100], out / "samples" / f"nfe{nfe}_{arm}_{group}.png")
                print(json.dumps(rows[-1]), flush=True)

    floors = exp.real_floor(cfg, c.num_samples)  # the metric's resolution at the compared sets' size
    results = {"b_star": b_star, "k_linear": k_lin, "sweep_mean_fid": mean_curve, "metric": fid,
               "floors": floors, "floor_samples": c.num_samples,
               "backbone": scorer.backbone, "num_reference": scorer.num_reference, "rows": rows,
               "model_calls": exp.model_calls, "eval_seconds": time.time() - t0,
               "base_model_step": exp.meta["step"]}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"b* = {b_star}; {exp.model_calls} model calls in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
