"""Stage `evaluate`: FID of DDIM/DDPM vs their Time-Shift versions on the shared base model.

1. Sweep (window, cutoff) for TS-DDIM at `sweep.nfe` on the sweep seeds; keep the argmin of FID.
2. On disjoint seeds: baseline vs TS for each sampler and NFE, paired per-sample noise, recording
   wall time (the overhead claim) and the shifted timesteps TS chose.
Writes reports/time_shift/results.json (DVC metrics) and sample grids.
"""

import json
import sys
import time

import numpy as np

from common.config import load_config, resolve
from common.experiment import BaseModelExperiment
from common.report import save_grid
from common.sampling import Hooks, SamplingSpec
from common.seeding import seed_everything
from papers.time_shift.config import TimeShiftConfig
from papers.time_shift.method import TimeShift

PAPER = "time_shift"


def main(argv=None):
    cfg = load_config(TimeShiftConfig, paper=PAPER, overrides=sys.argv[1:] if argv is None else argv)
    seed_everything(cfg.seed)
    t0 = time.time()
    exp = BaseModelExperiment(cfg)
    out = resolve(cfg, cfg.paths.reports, PAPER)
    (out / "samples").mkdir(parents=True, exist_ok=True)
    shifts = {}

    def run(sampler, nfe, seed, n, window=None, cutoff=None):
        spec = SamplingSpec(n, nfe, sampler, spacing=cfg.spacing, guidance_scale=cfg.guidance_scale, seed=seed,
                            clip_x0=cfg.clip_x0)
        made = []  # the hooks of each batch chunk, to read back the timesteps they chose

        def time_shift():
            made.append(TimeShift(exp.schedule, window, cutoff))
            return made[-1]

        img, y, seconds = exp.sample(spec, Hooks if window is None else time_shift)
        return img, y, seconds, (made[0].chosen if made else [])

    rows = []
    sw = cfg.sweep
    for seed in sw.seeds:
        for w in sw.window:
            for c in sw.cutoff:
                img, y, _, _ = run(sw.sampler, sw.nfe, seed, sw.num_samples, w, c)
                rows.append({"stage": "sweep", "sampler": sw.sampler, "nfe": sw.nfe, "seed": seed, "window": w,
                             "cutoff": c, **exp.score(img, y)})
                print(json.dumps(rows[-1]), flush=True)
    fid = exp.scorer.key("fid")
    sweep_mean = {(w, c): float(np.mean([r[fid] for r in rows if r["stage"] == "sweep" and r["window"] == w
                                         and r["cutoff"] == c])) for w in sw.window for c in sw.cutoff}
    w_star, c_star = min(sweep_mean, key=sweep_mean.get)
    cp = cfg.compare
    window = cp.window if cp.window is not None else w_star
    cutoff = cp.cutoff if cp.cutoff is not None else c_star

    for sampler in cp.samplers:
        for nfe in cp.nfe:
            for seed in cp.seeds:
                secs = {}
                arms = (("baseline", None, None, None), ("method", "tuned", window, cutoff),
                        ("method", "paper", cp.paper_window, cp.paper_cutoff))
                for arm, group, w, c in arms:
                    name = group or "baseline"
                    img, y, secs[name], chosen = run(sampler, nfe, seed, cp.num_samples, w, c)
                    row = {"stage": "compare", "sampler": sampler, "nfe": nfe, "seed": seed, "arm": arm,
                           "seconds": secs[name], **exp.score(img, y)}
                    # the baseline row is paired with each TS setting: one copy per group
                    rows += [{**row, "group": g} for g in ((group,) if group else ("tuned", "paper"))]
                    if seed == cp.seeds[0]:
                        save_grid(img[:100], out / "samples" / f"{sampler}_nfe{nfe}_{name}.png")
                        if group:  # t_s chosen per step (first batch of this seed)
                            shifts[f"{sampler}_nfe{nfe}_{group}"] = [
                                {"nominal": int(t), "mean": float(ts.float().mean()), "min": int(ts.min()),
                                 "max": int(ts.max())} for t, ts in chosen]
                    print(json.dumps(rows[-1]), flush=True)
                for group in ("tuned", "paper"):
                    rows.append({"stage": "overhead", "sampler": sampler, "nfe": nfe, "seed": seed, "group": group,
                                 "overhead": secs[group] / secs["baseline"] - 1})

    floors = exp.real_floor(cfg, cp.num_samples)  # the metric's resolution at the compared sets' size
    results = {"floors": floors, "floor_samples": cp.num_samples,
               "window": window, "cutoff": cutoff, "paper_window": cp.paper_window, "paper_cutoff": cp.paper_cutoff, "sweep_mean_fid": {f"{w},{c}": v for (w, c), v in sweep_mean.items()},
               "metric": fid, "backbone": exp.scorer.backbone, "num_reference": exp.scorer.num_reference,
               "rows": rows, "shifts": shifts, "model_calls": exp.model_calls, "eval_seconds": time.time() - t0,
               "base_model_step": exp.meta["step"]}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"window={window} cutoff={cutoff}; {exp.model_calls} model calls in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
