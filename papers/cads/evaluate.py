"""Stage `evaluate`: diversity and realism of CFG, CADS and guidance annealing across guidance scales.

1. Sweep CADS's window (tau1, tau2) and noise scale s at one high guidance scale on the sweep seeds;
   keep the lowest FID (the paper's headline metric).
2. On disjoint seeds, for each guidance scale: plain CFG, CADS (tuned), the paper's guidance-annealing
   baseline (dynamic CFG, same gamma(t) as tuned CADS) and CADS with the published hyperparameters.
   All arms of a seed start from the same per-sample noise x_T.
Scores, all in the metric backbone's feature space against the held-out reference set: FID, PRDC
(k = diversity_k), conditional PRDC, mean within-class pairwise distance, class accuracy.
Writes reports/cads/results.json (DVC metrics) and sample grids.
"""

import time

import numpy as np

from common.diversity import diversity_metrics, sample_features
from common.eval_stage import EvalStage, sampling_fields
from common.evaluation import classifier_accuracy, fid_from_features
from common.experiment import BaseModelExperiment
from common.report import class_grid
from common.sampling import SamplingSpec, timesteps
from papers.cads.config import CADSConfig
from papers.cads.method import CADS, GuidanceAnnealing, condition_annealing, gamma_schedule

PAPER = "cads"
# claim rows: which sample set is the baseline / method arm of each comparison group
GROUPS = {"cfg": ("cfg", "cads"), "dyncfg": ("dyncfg", "cads"), "paper": ("cfg", "cads_paper")}
QUALITY = {"precision_drop": "precision_k{k}", "class_acc_drop": "class_acc"}  # "similar precision": bound claims


def main(argv=None):
    st = EvalStage.load(CADSConfig, PAPER, argv)
    cfg = st.cfg
    exp = BaseModelExperiment(cfg)
    if not exp.num_classes:
        raise ValueError("CADS needs a class-conditional base model: models/base_model has num_classes = 0 "
                         "(set base_model.unet.num_classes in the root params.yaml)")
    sp, k, T, null = cfg.sampler, cfg.diversity_k, exp.schedule.T, exp.num_classes
    paper = CADS(cfg.paper.tau1, cfg.paper.tau2, cfg.paper.s, cfg.paper.psi)

    def run(name, w, seed, n, cads=None):
        """(uint8 images, labels, metrics) of one sample set; `name` picks the sampler."""
        start = time.perf_counter()
        spec = SamplingSpec(n, sp.nfe, sp.method, spacing=sp.spacing, guidance_scale=w, seed=seed,
                            clip_x0=sp.clip_x0)
        if name == "cfg":
            img, y, _ = exp.sample(spec, progress=False)
        elif name.startswith("cads"):
            with condition_annealing(exp.unet, cads, null, T) as hooks:
                img, y, _ = exp.sample(spec, hooks, progress=False)
        elif name == "dyncfg":  # the shared guidance at scale gamma(t) w
            img, y, _ = exp.sample(spec, lambda: GuidanceAnnealing(cads.gamma, T), progress=False)
        else:
            raise ValueError(f"unknown arm '{name}'")
        seconds = time.perf_counter() - start
        return img, y, {**score(img, y), "seconds": seconds}

    def score(img, y):
        """FID, PRDC (marginal and per class), pairwise distance and class accuracy from one feature pass."""
        f = sample_features(exp.scorer, img)
        m = diversity_metrics(f["features"], y, exp.scorer.ref, k)
        m.update(fid=fid_from_features(f["features"], exp.scorer.ref["features"]),
                 class_acc=classifier_accuracy(f["logits"], y))
        return {exp.scorer.key(name): v for name, v in m.items()}

    sets = []  # one entry per sample set; the claim rows pair them up at the end
    sw = cfg.sweep
    for seed in sw.seeds:
        for tau1, tau2 in sw.windows:
            for s in sw.s:
                cads = CADS(tau1, tau2, s, cfg.paper.psi)
                _, _, m = run("cads", sw.guidance_scale, seed, sw.num_samples, cads)
                sets.append(st.log(stage="sweep", name="cads", guidance=sw.guidance_scale, seed=seed,
                                   tau1=tau1, tau2=tau2, s=s, **m))
    fid = exp.scorer.key("fid")
    sweep_mean = {(t1, t2, s): float(np.mean([r[fid] for r in sets if r["stage"] == "sweep" and
                                              (r["tau1"], r["tau2"], r["s"]) == (t1, t2, s)]))
                  for t1, t2 in sw.windows for s in sw.s}
    best = min(sweep_mean, key=sweep_mean.get)
    cp = cfg.compare
    tau1, tau2 = cp.window if cp.window is not None else best[:2]
    s = cp.s if cp.s is not None else best[2]
    tuned = CADS(tau1, tau2, s, cfg.paper.psi)
    w_max = max(cp.guidance_scales)
    for extra, key in ((cp.dynamic_cfg_scales, "dynamic_cfg_scales"), (cp.paper_scales, "paper_scales")):
        if w_max not in extra:
            raise ValueError(f"papers/cads/params.yaml: compare.{key} must include the highest guidance scale "
                             f"{w_max} (the claims compare the arms there)")

    arms = [("cfg", w, None) for w in cp.guidance_scales] + [("cads", w, tuned) for w in cp.guidance_scales] \
        + [("dyncfg", w, tuned) for w in cp.dynamic_cfg_scales] + [("cads_paper", w, paper) for w in cp.paper_scales]
    for seed in cp.seeds:
        for name, w, cads in arms:
            img, y, m = run(name, w, seed, cp.num_samples, cads)
            sets.append(st.log(stage="compare", name=name, guidance=w, seed=seed, **m))
            if seed == cp.seeds[0]:
                st.save_grid(class_grid(img, y, per_class=8, num_classes=null), f"{name}_w{w:g}", n=None)

    st.rows = claim_rows(sets, exp.scorer.key, k, w_max)
    ts = timesteps(sp.nfe, T, sp.spacing)
    st.write(**sampling_fields(cfg, exp, cp.num_samples),
             tuned={"tau1": tau1, "tau2": tau2, "s": s, "psi": cfg.paper.psi},
             paper={"tau1": paper.tau1, "tau2": paper.tau2, "s": paper.s, "psi": paper.psi},
             sweep_mean_fid={f"{t1},{t2},{sv}": v for (t1, t2, sv), v in sweep_mean.items()},
             gamma={"timesteps": ts, "num_train_timesteps": T, "tuned": gamma_schedule(tuned, ts, T),
                    "paper": gamma_schedule(paper, ts, T)},
             embedding_dim=exp.unet.class_embedding.embedding_dim,
             alpha_bar_at_paper_tau1=float(exp.schedule.alpha_bar(round(paper.tau1 * (T - 1)))), sets=sets)
    print(f"tuned CADS tau1={tau1} tau2={tau2} s={s}; {exp.model_calls} model calls in {st.seconds:.0f} s")


def claim_rows(sets, key, k, w_max):
    """Rows for common/claims.py: each comparison group pairs a baseline and a method set per seed and scale;
    `quality` rows hold the per-seed drop of precision and class accuracy (method below baseline)."""
    compare = [r for r in sets if r["stage"] == "compare"]
    by = {(r["name"], r["guidance"], r["seed"]): r for r in compare}
    rows = []
    for group, (base, method) in GROUPS.items():
        for (name, w, seed), r in sorted(by.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][0])):
            if name != method or (base, w, seed) not in by:
                continue
            level = "highest" if w == w_max else "lower"
            b = by[(base, w, seed)]
            for arm, src in (("baseline", b), ("method", r)):
                rows.append({**src, "stage": "compare", "group": group, "arm": arm, "guidance_level": level})
            drops = {d: b[key(q.format(k=k))] - r[key(q.format(k=k))] for d, q in QUALITY.items()}
            rows.append({"stage": "quality", "group": group, "guidance": w, "guidance_level": level, "seed": seed,
                         **drops})
    return rows


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
