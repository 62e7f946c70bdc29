"""Stage `evaluate`: FID of the baseline-trained vs the IP-trained models at every sampler and NFE.

Every (training seed, sampling seed) cell is paired: both arms share the training seed (init, data
order, eps draws) and the sampling seed (per-sample initial and step noise, labels), so the only
difference is the input perturbation during training. Writes reports/ddpm_ip/results.json.
"""

import json
import sys
import time

from common.config import load_config, resolve
from common.experiment import BaseModelExperiment
from common.report import save_grid
from common.sampling import SamplingSpec
from common.seeding import seed_everything
from papers.ddpm_ip.config import DdpmIpConfig
from papers.ddpm_ip.train import PAPER, arms, run_name


def grid(ev):
    """(sampler, nfe) pairs: DDIM at `nfe`, ancestral DDPM at `ddpm_nfe`."""
    return [(s, n) for s in ev.samplers for n in (ev.ddpm_nfe if s == "ddpm" else ev.nfe)]


def main(argv=None):
    cfg = load_config(DdpmIpConfig, paper=PAPER, overrides=sys.argv[1:] if argv is None else argv)
    seed_everything(cfg.seed)
    t0 = time.time()
    ev = cfg.eval
    out = resolve(cfg, cfg.paths.reports, PAPER)
    (out / "samples").mkdir(parents=True, exist_ok=True)
    rows, calls = [], 0
    for train_seed in cfg.train_seeds:
        for arm, gamma in arms(cfg):
            exp = BaseModelExperiment(cfg, f"{PAPER}/{run_name(arm, train_seed)}")
            for sampler, nfe in grid(ev):
                for seed in ev.seeds:
                    spec = SamplingSpec(ev.num_samples, nfe, sampler, spacing=ev.spacing,
                                        guidance_scale=ev.guidance_scale, seed=seed, clip_x0=True)
                    img, y, secs = exp.sample(spec, progress=False)
                    rows.append({"arm": arm, "gamma": gamma, "sampler": sampler, "nfe": nfe,
                                 "seed": f"{train_seed}/{seed}", "train_seed": train_seed, "sample_seed": seed,
                                 "seconds": secs, **exp.score(img, y)})
                    if train_seed == cfg.train_seeds[0] and seed == ev.seeds[0]:
                        save_grid(img[:100], out / "samples" / f"{sampler}{nfe}_{arm}.png")
                    print(json.dumps(rows[-1]), flush=True)
            calls += exp.model_calls
    floors = exp.real_floor(cfg, ev.num_samples)  # the metric's resolution at the compared sets' size
    results = {"metric": exp.scorer.key("fid"), "floors": floors, "floor_samples": ev.num_samples,
               "backbone": exp.scorer.backbone,
               "num_reference": exp.scorer.num_reference, "rows": rows, "model_calls": calls,
               "eval_seconds": time.time() - t0, "base_model_step": exp.meta["step"], "params": exp.meta["params"]}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"{calls} model calls in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
