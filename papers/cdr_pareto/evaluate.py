"""Stage `evaluate`: consistency, realism and diversity of the shared base model at every knob setting.

Knob settings (w = guidance scale, s = CADS noise scale, nfe = sampling steps), each sampled once per
seed with per-sample seeded noise (so settings of one seed share their initial noise and labels):
  guidance  w in knobs.guidance, s = 0, nfe = sampler.nfe
  CADS      s in knobs.cads_s at each w in knobs.cads_guidance, nfe = sampler.nfe
  steps     nfe in knobs.steps at w = knobs.steps_guidance, s = 0
Every sample set is scored in the metric classifier's feature space against the held-out split
(papers/cdr_pareto/method.py: cdr_metrics). Rows for the claims: the guidance setting w = 1 is the
`baseline` arm and w = eval.claim_guidance the `method` arm (group `guidance`), paired by seed.
Writes reports/cdr_pareto/results.json (DVC metrics) and sample grids.
"""

import json
import sys
import time
from contextlib import nullcontext
from typing import List, Tuple

from common.config import ConfigError, load_config, resolve
from common.diversity import sample_features
from common.evaluation import fid_from_features
from common.experiment import BaseModelExperiment
from common.report import class_grid, save_grid
from common.sampling import Hooks, SamplingSpec
from common.seeding import seed_everything
from papers.cads.method import CADS, condition_annealing
from papers.cdr_pareto.config import CDRParetoConfig
from papers.cdr_pareto.method import cdr_metrics

PAPER = "cdr_pareto"


def knob_settings(cfg: CDRParetoConfig) -> List[Tuple[float, float, int]]:
    """Distinct (w, s, nfe) settings of the three sweeps, in sweep order."""
    k, n0 = cfg.knobs, cfg.sampler.nfe
    settings = [(float(w), 0.0, n0) for w in k.guidance]
    settings += [(float(w), float(s), n0) for w in k.cads_guidance for s in k.cads_s]
    settings += [(float(k.steps_guidance), 0.0, int(n)) for n in k.steps]
    return list(dict.fromkeys(settings))


def planned_model_calls(cfg: CDRParetoConfig) -> int:
    """Network calls of the whole sweep: samples x steps, doubled by guidance (w != 1), over settings and seeds."""
    n = cfg.eval.num_samples * len(cfg.eval.seeds)
    return sum(n * nfe * (2 if w != 1.0 else 1) for w, _, nfe in knob_settings(cfg))


def setting_name(w: float, s: float, nfe: int) -> str:
    return f"w{w:g}_s{s:g}_nfe{nfe}"


def main(argv=None):
    cfg = load_config(CDRParetoConfig, paper=PAPER, overrides=sys.argv[1:] if argv is None else argv)
    e = cfg.eval
    if 1.0 not in cfg.knobs.guidance or e.claim_guidance not in cfg.knobs.guidance:
        raise ConfigError(f"papers/{PAPER}/params.yaml: knobs.guidance {list(cfg.knobs.guidance)} must contain "
                          f"1.0 (the claims' baseline) and eval.claim_guidance={e.claim_guidance}")
    seed_everything(cfg.seed)
    t0 = time.time()
    exp = BaseModelExperiment(cfg)
    if not exp.num_classes:
        raise ConfigError("cdr_pareto needs a class-conditional base model (base_model.unet.num_classes > 0): "
                          "consistency and guidance are defined per class")
    scorer = exp.scorer
    out = resolve(cfg, cfg.paths.reports, PAPER)
    (out / "samples").mkdir(parents=True, exist_ok=True)
    s_cfg = cfg.sampler
    settings = knob_settings(cfg)

    rows = []
    for seed in e.seeds:
        for w, s, nfe in settings:
            spec = SamplingSpec(e.num_samples, nfe, s_cfg.method, spacing=s_cfg.spacing, guidance_scale=w,
                                seed=seed, clip_x0=s_cfg.clip_x0)
            annealing = (condition_annealing(exp.unet, CADS(s=s), exp.num_classes, exp.schedule.T) if s > 0
                         else nullcontext(Hooks))
            with annealing as hooks:
                img, y, seconds = exp.sample(spec, hooks, progress=False)
            f = sample_features(scorer, img)
            m = cdr_metrics(f["features"], f["logits"], y, scorer.ref, e.k)
            m["fid"] = fid_from_features(f["features"], scorer.ref["features"])
            row = {"seed": seed, "w": w, "s": s, "nfe": nfe, "seconds": seconds,
                   **{scorer.key(name): v for name, v in m.items()}}
            rows.append(row)
            for arm, w_arm in (("baseline", 1.0), ("method", e.claim_guidance)):
                if (w, s, nfe) == (w_arm, 0.0, s_cfg.nfe):
                    rows.append({**row, "group": "guidance", "arm": arm})
            if seed == e.seeds[0]:
                save_grid(class_grid(img, y, e.grid_samples // exp.num_classes, exp.num_classes),
                          out / "samples" / f"{setting_name(w, s, nfe)}.png", nrow=exp.num_classes)
            print(json.dumps(row), flush=True)

    floors = exp.real_floor(cfg, e.num_samples)  # the metric's resolution at the compared sets' size
    results = {"settings": [list(x) for x in settings], "backbone": scorer.backbone,
               "floors": floors, "floor_samples": e.num_samples,
               "num_reference": scorer.num_reference, "k": e.k, "rows": rows, "model_calls": exp.model_calls,
               "eval_seconds": time.time() - t0, "base_model_step": exp.meta["step"]}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"{len(settings)} settings x {len(e.seeds)} seeds; {exp.model_calls} model calls in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
