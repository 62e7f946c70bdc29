"""Stage `report`: claims -> verdicts, Pareto fronts and plots, reports/cdr_pareto/README.md, MLflow."""

import json
import sys
from pathlib import Path

import numpy as np

from common.claims import evaluate_claims, load_claims
from common.config import load_config, resolve, to_dict
from common.publish import publish, sampling_protocol
from common.report import ci_cell, plt, select, table
from common.stats import mean_ci
from papers.cdr_pareto.config import CDRParetoConfig
from papers.cdr_pareto.evaluate import knob_settings, setting_name
from papers.cdr_pareto.method import AXES, pareto_front

PAPER = "cdr_pareto"
HERE = Path(__file__).parent
# the three-axis front: one metric per axis
FRONT_AXES = ("class_acc", "precision_k5", "coverage_k5")
# 2-D views: (x = diversity, y = consistency or realism)
PAIRS = (("coverage_k5", "class_acc"), ("recall_k5", "precision_k5"), ("coverage_k5", "density_k5"),
         ("pairwise_dist", "class_acc"))
COLUMNS = ("class_acc", "target_prob", "precision_k5", "density_k5", "recall_k5", "coverage_k5", "cond_recall_k5",
           "cond_coverage_k5", "pairwise_dist", "fid")


def families(cfg, settings):
    """Knob curves through the settings: label -> ordered settings (a setting may be on several)."""
    k, n0 = cfg.knobs, cfg.sampler.nfe
    fam = {"guidance w": [x for x in settings if x[1] == 0 and x[2] == n0]}
    for w in k.cads_guidance:
        fam[f"CADS s (w={w:g})"] = [x for x in settings if x[0] == w and x[2] == n0]
    fam[f"steps (w={k.steps_guidance:g})"] = sorted([x for x in settings if x[0] == k.steps_guidance and x[1] == 0],
                                                    key=lambda x: x[2])
    return fam


def knob_label(family: str, x) -> str:
    w, s, nfe = x
    return f"{nfe}" if family.startswith("steps") else (f"{s:g}" if family.startswith("CADS") else f"{w:g}")


def main(argv=None):
    cfg = load_config(CDRParetoConfig, paper=PAPER, overrides=sys.argv[1:] if argv is None else argv)
    out = resolve(cfg, cfg.paths.reports, PAPER)
    res = json.loads((out / "results.json").read_text())
    rows = [r for r in res["rows"] if "arm" not in r]  # the arm rows duplicate settings for the claims
    verdicts = evaluate_claims(load_claims(HERE / "claims.yaml"), res["rows"], res.get("floors"))
    def key(m):
        return f"{m}[{res['backbone']}]"

    settings = [tuple(x) for x in res["settings"]]
    if settings != knob_settings(cfg):
        raise ValueError(f"{out / 'results.json'} holds knob settings {settings}, params.yaml gives "
                         f"{knob_settings(cfg)}; rerun the evaluate stage")
    seeds = sorted({r["seed"] for r in rows})

    def of(x, seed=None):
        """Result rows of setting x = (w, s, nfe), of every seed or of one."""
        return select(rows, w=x[0], s=x[1], nfe=x[2], **({} if seed is None else {"seed": seed}))

    def pts(metrics, seed=None):
        """[settings, metrics] array of seed means (or one seed's values)."""
        return np.array([[mean[x][m] if seed is None else of(x, seed)[0][key(m)] for m in metrics] for x in settings])

    mean = {x: {m: float(np.mean([r[key(m)] for r in of(x)])) for m in COLUMNS} for x in settings}
    front = pareto_front(pts(FRONT_AXES))
    per_seed = np.sum([pareto_front(pts(FRONT_AXES, sd)) for sd in seeds], 0)

    figs = out / "figures"
    figs.mkdir(exist_ok=True)
    p = plt()
    fam = families(cfg, settings)
    colors = dict(zip(fam, p.rcParams["axes.prop_cycle"].by_key()["color"]))

    # 2-D Pareto views: knob curves (seed means with 95% intervals) and the 2-D front
    fig, axes = p.subplots(2, 2, figsize=(10, 8))
    for ax, (mx, my) in zip(axes.flat, PAIRS):
        for name, xs in fam.items():
            xv = np.array([mean[x][mx] for x in xs])
            yv = np.array([mean[x][my] for x in xs])
            ax.plot(xv, yv, marker="o", color=colors[name], label=name, alpha=0.85)
            for x, a, b in zip(xs, xv, yv):
                ax.annotate(knob_label(name, x), (a, b), textcoords="offset points", xytext=(3, 3), fontsize=7,
                            color=colors[name])
        f2 = pareto_front(pts((mx, my)))
        order = np.argsort(pts((mx,))[f2, 0])
        fp = pts((mx, my))[f2][order]
        ax.step(fp[:, 0], fp[:, 1], where="post", color="k", ls="--", lw=1, label="Pareto front")
        ax.scatter(fp[:, 0], fp[:, 1], s=90, facecolors="none", edgecolors="k")
        ax.set(xlabel=f"{mx} ({AXES.get(mx, ('',))[0]})", ylabel=f"{my} ({AXES.get(my, ('',))[0]})")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"Knob curves and Pareto fronts, mean of {len(seeds)} seeds ({res['backbone']} features)")
    fig.tight_layout()
    fig.savefig(figs / "pareto_fronts.png", dpi=110)
    p.close(fig)

    # every metric along the guidance scale, with 95% intervals over seeds
    g = fam["guidance w"]
    ws = [x[0] for x in g]
    shown = ("class_acc", "precision_k5", "density_k5", "recall_k5", "coverage_k5", "cond_coverage_k5",
             "pairwise_dist", "fid")
    fig, axes = p.subplots(2, 4, figsize=(13, 5.6))
    for ax, m in zip(axes.flat, shown):
        st = np.array([mean_ci([r[key(m)] for r in of(x)]) for x in g])
        ax.errorbar(ws, st[:, 0], yerr=[st[:, 0] - st[:, 1], st[:, 2] - st[:, 0]], marker="o", capsize=3)
        ax.set(xlabel="guidance scale w", title=f"{m} ({AXES.get(m, ('realism+diversity',))[0]})")
    fig.tight_layout()
    fig.savefig(figs / "metrics_vs_guidance.png", dpi=110)
    p.close(fig)

    # tables
    cols = list(COLUMNS)
    setting_rows = [[f"{x[0]:g}", f"{x[1]:g}", x[2]] + [mean[x][m] for m in cols]
                    + ["**yes**" if front[i] else "", f"{per_seed[i]}/{len(seeds)}"] for i, x in enumerate(settings)]
    guidance_rows = [[f"{x[0]:g}"] + [ci_cell([r[key(m)] for r in of(x)]) for m in shown] for x in g]
    on_front = [setting_name(*x) for i, x in enumerate(settings) if front[i]]
    w_claim = cfg.eval.claim_guidance
    sections = [
        "## What is measured\n\n"
        "Each knob setting (guidance scale w, CADS noise scale s, sampling steps) is sampled with "
        f"{cfg.eval.num_samples} class-balanced samples per seed (seeds {seeds}), and scored in the "
        f"`{res['backbone']}` feature space against the held-out split ({res['num_reference']} images):\n\n"
        "- **consistency**: `class_acc`, how often the held-out metric classifier reads the conditioning class "
        "(and `target_prob`, its mean probability of that class);\n"
        f"- **realism**: marginal precision and density (Naeem et al. 2020, k = {res['k']});\n"
        f"- **diversity**: marginal recall and coverage (k = {res['k']}), conditional recall and coverage "
        "(`cond_*`: each class's samples against that class's real images, averaged over classes), and "
        "`pairwise_dist`, the mean feature distance between two samples of the same class.\n\n"
        f"The claims pair w = 1 with w = {w_claim:g} seed by seed (same initial noise and labels)."
        + (f" Real-vs-real {key('fid')} at {res['floor_samples']} samples: {res['floors'][key('fid')]:.3g} (the "
           "metric's resolution; no claim here is on FID, so none is marked by it)." if res.get("floors") else ""),
        "## Pareto fronts\n\n"
        "Curves: the three knobs (labels on the points: w, s or steps); dashed staircase and circles: the "
        "2-D Pareto front of all settings in that view (seed means).\n\n![Pareto fronts](figures/pareto_fronts.png)",
        f"## All settings (seed means)\n\nThe three-axis front uses {', '.join(FRONT_AXES)} (one metric per axis; "
        "all maximised); `front seeds` counts the seeds on which the setting is non-dominated when the front "
        f"is computed from that seed alone. On the front: {', '.join(f'`{n}`' for n in on_front)}.\n\n"
        + table(["w", "s", "steps"] + cols + ["3-axis front", "front seeds"], setting_rows),
        f"## Along the guidance scale ({cfg.sampler.nfe} steps, CADS off; mean [95% CI] over seeds)\n\n"
        + table(["w"] + list(shown), guidance_rows) + "\n\n![metrics vs guidance](figures/metrics_vs_guidance.png)",
        "## Samples (first seed; column j = class j, same noise in every grid)\n\n"
        + "\n".join(f"- {setting_name(*x)}: ![{setting_name(*x)}](samples/{setting_name(*x)}.png)"
                    for x in (g[0], g[-1]) + tuple(x for x in settings if x[1] > 0)[-1:]),
        "## Reading the result\n\n"
        "The paper measures text-to-image models on MSCOCO and GeoDE with DSG/CLIPScore consistency and "
        "Inception/DINOv2 features; ours is the shared 16x16 class-conditional MNIST DDPM "
        f"(step {res['base_model_step']}), where a class label is the prompt and the in-repo classifier is both "
        "the consistency judge and the feature space. Only directions along a knob are comparable, not values. "
        "The classifier that judges consistency is held out from the generator's training, but it is also the "
        "feature extractor for realism and diversity, so the axes share one backbone.",
    ]
    k = cfg.knobs
    protocol = sampling_protocol(
        cfg, res,
        sampler=f"{cfg.sampler.method}, {cfg.sampler.spacing} spacing, x0 clipped={cfg.sampler.clip_x0}",
        knobs=f"guidance {list(k.guidance)} at {cfg.sampler.nfe} steps; CADS s {list(k.cads_s)} at w "
              f"{list(k.cads_guidance)}; steps {list(k.steps)} at w {k.steps_guidance:g}",
        samples=f"{cfg.eval.num_samples} per setting x seeds {seeds}", prdc=f"k = {res['k']}, strict balls")
    intro = ("**Paper:** Astolfi et al., *Consistency-diversity-realism Pareto fronts of conditional image "
             "generative models*, 2024 ([arXiv:2406.10429](https://arxiv.org/abs/2406.10429)). **Idea:** judge a "
             "conditional generator on consistency, realism and diversity at once, sweep its inference-time knobs, "
             "and read the trade-off off the Pareto front. Implementation: "
             "[`papers/cdr_pareto/method.py`](../../papers/cdr_pareto/method.py), metrics in "
             "[`common/diversity.py`](../../common/diversity.py).")
    metrics = {"eval_seconds": res["eval_seconds"], "front_size": int(front.sum())}
    for x in g:
        for m in FRONT_AXES:
            metrics[f"{m}.w{x[0]:g}"] = mean[x][m]
    d = to_dict(cfg)
    path = publish(cfg, PAPER, "Consistency-diversity-realism Pareto fronts (Astolfi et al., 2024)", intro,
                   verdicts, sections, protocol, {kk: d[kk] for kk in ("sampler", "knobs", "eval")}, metrics,
                   [figs, out / "results.json"])
    print(f"wrote {path}; 3-axis front: {on_front}")


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
