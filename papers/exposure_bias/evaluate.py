"""Stage `evaluate`: every exposure-bias fix and combination on the same models, NFE grid and seeds.

Models: papers/ddpm_ip's baseline-trained and IP-trained networks (both training seeds). Sampler,
NFE grid, samples and seeds: papers/ddpm_ip's DDIM evaluation. The "none" and "IP" arms are that
stage's rows (same models, seeds and sampler, so recomputing them would give the same numbers); the
arms with a sampler fix (ES, TS, IP+ES, IP+TS) are sampled here. Writes reports/exposure_bias/results.json.
"""

import json
import sys
import time

from common.config import load_config, read_json, resolve
from common.experiment import BaseModelExperiment
from common.sampling import SamplingSpec
from common.seeding import seed_everything
from papers.ddpm_ip.config import DdpmIpConfig
from papers.ddpm_ip.train import run_name
from papers.epsilon_scaling.method import EpsilonScaling
from papers.exposure_bias.config import ExposureBiasConfig
from papers.time_shift.method import TimeShift

NAME = "exposure_bias"
SAMPLER = "ddim"  # the sampler all three papers evaluate (DDIM-IP, DDIM-ES, TS-DDIM)


def read_results(reports, paper: str, keys=()) -> dict:
    """reports/<paper>/results.json (made by papers/<paper>/dvc.yaml:evaluate), which must hold `keys`."""
    return read_json(reports / paper / "results.json", f"papers/{paper}/dvc.yaml:evaluate", keys)


def settings(cfg, reports):
    """ES's b and TS's (window, cutoff): from params, else what each paper's own stage selected."""
    es = read_results(reports, "epsilon_scaling", ["b_star"] if cfg.es_b is None else [])
    ts = read_results(reports, "time_shift", (["window"] if cfg.ts_window is None else [])
                      + (["cutoff"] if cfg.ts_cutoff is None else []))
    b = cfg.es_b if cfg.es_b is not None else es["b_star"]
    window = cfg.ts_window if cfg.ts_window is not None else ts["window"]
    cutoff = cfg.ts_cutoff if cfg.ts_cutoff is not None else ts["cutoff"]
    return b, window, cutoff


def arms(b, window, cutoff):
    """(arm, trained model, sampler-hook factory or None for the plain sampler)."""
    es = lambda schedule, nfe: EpsilonScaling(nfe, b)  # noqa: E731
    ts = lambda schedule, nfe: TimeShift(schedule, window, cutoff)  # noqa: E731
    return [("none", "baseline", None), ("ES", "baseline", es), ("TS", "baseline", ts),
            ("IP", "method", None), ("IP+ES", "method", es), ("IP+TS", "method", ts)]


def main(argv=None):
    overrides = sys.argv[1:] if argv is None else argv
    cfg = load_config(ExposureBiasConfig, paper=NAME, overrides=overrides)
    ip = load_config(DdpmIpConfig, paper="ddpm_ip", overrides=[o for o in overrides if o.startswith("profile=")])
    seed_everything(cfg.seed)
    t0 = time.time()
    reports = resolve(cfg, cfg.paths.reports)
    b, window, cutoff = settings(cfg, reports)
    ip_rows = read_results(reports, "ddpm_ip", ["rows"])["rows"]
    ev = ip.eval
    rows, calls = [], 0
    for train_seed in ip.train_seeds:
        for model in ("baseline", "method"):
            exp = None
            for arm, m, hooks in arms(b, window, cutoff):
                if m != model:
                    continue
                for nfe in ev.nfe:
                    for seed in ev.seeds:
                        common = {"arm": arm, "model": model, "nfe": nfe, "seed": f"{train_seed}/{seed}",
                                  "train_seed": train_seed, "sample_seed": seed}
                        if hooks is None:  # the plain sampler: papers/ddpm_ip's row for this cell
                            src = [r for r in ip_rows if r["arm"] == model and r["sampler"] == SAMPLER
                                   and r["nfe"] == nfe and r["train_seed"] == train_seed and r["sample_seed"] == seed]
                            if len(src) != 1:
                                raise RuntimeError(f"reports/ddpm_ip/results.json has no row for {common}; "
                                                   "rerun `dvc repro papers/ddpm_ip/dvc.yaml`")
                            rows.append({**src[0], **common, "source": "ddpm_ip"})
                            continue
                        exp = exp or BaseModelExperiment(cfg, f"ddpm_ip/{run_name(model, train_seed)}")
                        spec = SamplingSpec(ev.num_samples, nfe, SAMPLER, spacing=ev.spacing,
                                            guidance_scale=ev.guidance_scale, seed=seed, clip_x0=True)
                        img, y, secs = exp.sample(spec, lambda h=hooks, e=exp, n=nfe: h(e.schedule, n), progress=False)
                        rows.append({**common, "seconds": secs, **exp.score(img, y), "source": NAME})
                        print(json.dumps(rows[-1]), flush=True)
            calls += exp.model_calls if exp else 0
    fid = [k for k in rows[0] if k.startswith("fid[")][0]
    floors = exp.real_floor(cfg, ev.num_samples)  # the metric's resolution at the compared sets' size
    results = {"metric": fid, "floors": floors, "floor_samples": ev.num_samples,
               "es_b": b, "ts_window": window, "ts_cutoff": cutoff, "sampler": SAMPLER,
               "nfe": list(ev.nfe), "num_samples": ev.num_samples, "rows": rows, "model_calls": calls,
               "eval_seconds": time.time() - t0}
    out = resolve(cfg, cfg.paths.reports, NAME)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"{calls} model calls in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
