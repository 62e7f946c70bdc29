"""Stage `report`: claims -> verdicts, plots and reports/dfn/README.md, logged to MLflow."""

import json
import sys
from pathlib import Path

import numpy as np

from common.claims import evaluate_claims, load_claims
from common.config import load_config, resolve, to_dict
from common.publish import publish
from common.report import ci_cell, fmt, plt, select, table
from common.stats import mean_ci
from papers.dfn.config import DfnConfig

PAPER = "dfn"
HERE = Path(__file__).parent
SEVERITY = ["clean", "wrong colour", "wrong digit", "unrelated"]
SEV_COLORS = ["tab:green", "tab:orange", "tab:red", "tab:gray"]


def arm_label(arm: str) -> str:
    if arm.startswith("dfn_p"):
        return f"DFN p={int(arm[5:]) / 100:.1f}"
    return arm


def main(argv=None):
    cfg = load_config(DfnConfig, paper=PAPER, overrides=sys.argv[1:] if argv is None else argv)
    out = resolve(cfg, cfg.paths.reports, PAPER)
    res = json.loads((out / "results.json").read_text())
    rows, metric = res["rows"], res["metric"]
    verdicts = evaluate_claims(load_claims(HERE / "claims.yaml"), rows)
    figs = out / "figures"
    figs.mkdir(exist_ok=True)
    p = plt()
    filters, students = select(rows, stage="filter"), select(rows, stage="student")
    shares = sorted({r["dirty_share"] for r in filters})
    arms = list(dict.fromkeys(r["data"] for r in students))
    stu = {(r["data"], r["seed"]): r for r in students}

    # 1. filter accuracy vs filtering quality, coloured by the induced student's score
    fig, axes = p.subplots(1, 2, figsize=(9.6, 3.6))
    xs = [r[metric] for r in filters]
    st_score = [stu.get((f"dfn_p{int(round(100 * r['dirty_share'])):03d}", r["seed"]), {}).get(metric, np.nan)
                for r in filters]
    for ax, key, lab in ((axes[0], "precision", f"clean share of the kept top {res['keep_fraction']:.0%}"),
                         (axes[1], "auc", "ROC AUC clean vs noisy (pool)")):
        sc = ax.scatter(xs, [r[key] for r in filters], c=st_score, cmap="viridis", s=60, edgecolors="k")
        for r, x in zip(filters, xs):
            ax.annotate(f"p={r['dirty_share']:.1f}", (x, r[key]), textcoords="offset points", xytext=(5, 4),
                        fontsize=7)
        ax.set(xlabel=f"filter's own accuracy ({metric}, test split)", ylabel=lab)
    fig.colorbar(sc, ax=axes, label=f"student {metric}")
    axes[0].axhline(res["heuristic"]["precision"], ls="--", color="tab:red", lw=1, label="heuristic filter")
    axes[0].axhline(res["pool"]["clean_share"], ls=":", color="gray", lw=1, label="unfiltered pool")
    axes[0].legend(fontsize=7)
    fig.suptitle("Filter accuracy vs filtering quality (one point per filter and seed)", fontsize=10)
    fig.savefig(figs / "filter_accuracy_vs_quality.png", dpi=120, bbox_inches="tight")
    p.close(fig)

    # 2. student score per training set, mean and 95% interval over seeds
    fig, ax = p.subplots(figsize=(6.4, 3.4))
    for i, arm in enumerate(arms):
        v = [r[metric] for r in select(students, data=arm)]
        m, lo, hi = mean_ci(v)
        err = [[m - lo], [hi - m]] if np.isfinite(lo) else None
        ax.errorbar([i], [m], yerr=err, fmt="o", capsize=4, color="k")
        ax.scatter([i] * len(v), v, s=12, color="tab:blue", alpha=0.6, zorder=3)
    ax.set_xticks(range(len(arms)), [arm_label(a) for a in arms], fontsize=8)
    ax.set(ylabel=f"student {metric} (test)", title=f"Students at {res['student_samples']:,} samples seen "
                                                     f"(mean, 95% t-interval, seeds as dots)")
    fig.tight_layout()
    fig.savefig(figs / "student_scores.png", dpi=120)
    p.close(fig)

    # 3. what each training set is made of (ground-truth noise kinds)
    fig, ax = p.subplots(figsize=(6.4, 3.2))
    comp = {"unfiltered": [res["pool"]["noise_shares"].get(k, 0.0) for k in
                           ["clean", "wrong_colour", "wrong_digit", "unrelated"]],
            "heuristic": [res["heuristic"][f"kept_share_severity_{k}"] for k in range(4)]}
    for sh in shares:
        comp[f"dfn_p{int(round(100 * sh)):03d}"] = [float(np.mean([r[f"kept_share_severity_{k}"] for r in
                                                                   select(filters, dirty_share=sh)])) for k in range(4)]
    names = [a for a in arms if a in comp]
    bottom = np.zeros(len(names))
    for k in range(4):
        v = np.array([comp[a][k] for a in names])
        ax.bar(range(len(names)), v, bottom=bottom, color=SEV_COLORS[k], label=SEVERITY[k])
        bottom += v
    ax.set_xticks(range(len(names)), [arm_label(a) for a in names], fontsize=8)
    ax.set(ylabel="share of the training set", title="Ground-truth caption quality of each training set")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1, 1))
    fig.tight_layout()
    fig.savefig(figs / "training_set_composition.png", dpi=120)
    p.close(fig)

    # 4. precision of the kept set vs kept fraction, per filter (mean over seeds), heuristic as a point
    fig, ax = p.subplots(figsize=(5.6, 3.4))
    cmap = p.get_cmap("viridis")
    for i, sh in enumerate(shares):
        rs = select(filters, dirty_share=sh)
        fr = sorted(rs[0]["precision_curve"], key=float)
        ax.plot([float(f) for f in fr], [np.mean([r["precision_curve"][f] for r in rs]) for f in fr], marker="o",
                color=cmap(i / max(1, len(shares) - 1)), label=f"DFN p={sh:.1f}")
    ax.scatter([res["heuristic"]["kept_fraction"]], [res["heuristic"]["precision"]], marker="x", color="tab:red",
               s=60, zorder=3, label="heuristic (rule)")
    ax.axhline(res["pool"]["clean_share"], ls=":", color="gray", lw=1, label="unfiltered pool")
    ax.axvline(res["keep_fraction"], ls="--", color="k", lw=0.8)
    ax.set(xlabel="kept fraction of the pool", ylabel="clean share of the kept set",
           title="Filtering quality vs kept fraction")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(figs / "precision_vs_fraction.png", dpi=120)
    p.close(fig)

    # tables
    ftab = []
    for sh in shares:
        rs = select(filters, dirty_share=sh)
        ftab.append([f"{sh:.1f}", ci_cell([r["filter_train_clean_share"] for r in rs]), ci_cell([r[metric] for r in rs]),
                     ci_cell([r["zero_shot_digit"] for r in rs]), ci_cell([r["linear_probe_digit"] for r in rs]),
                     ci_cell([r["retrieval_i2t_r1"] for r in rs]), ci_cell([r["precision"] for r in rs]),
                     ci_cell([r["precision_unseen"] for r in rs]), ci_cell([r["auc"] for r in rs]),
                     ci_cell([r["auc_unseen"] for r in rs])])
    stab = []
    for arm in arms:
        rs = select(students, data=arm)
        stab.append([arm_label(arm), rs[0]["n_train"], ci_cell([r["data_precision"] for r in rs]),
                     ci_cell([r[metric] for r in rs]), ci_cell([r["zero_shot_digit"] for r in rs]),
                     ci_cell([r["zero_shot_colour"] for r in rs]), ci_cell([r["zero_shot_count"] for r in rs]),
                     ci_cell([r["retrieval_i2t_r1"] for r in rs]), ci_cell([r["linear_probe_digit"] for r in rs])])
    th = res["thresholding"]
    pool, heur = res["pool"], res["heuristic"]
    sections = [
        "## Setup\n\n"
        f"Pool: the shared captioned-scenes `pool` split ({pool['n_pool']:,} pairs, {pool['clean_share']:.0%} clean; "
        f"wrong colour / wrong digit / unrelated captions; long-tailed digits). Kept fraction "
        f"f = {res['keep_fraction']:.0%} (DFN-2B) = {pool['n_keep']:,} pairs; the pool holds {pool['n_clean']:,} "
        f"clean pairs, so a perfect filter reaches precision 1 "
        f"({'yes' if pool['enough_clean_for_top_fraction'] else 'NO'}).\n\n"
        f"Filters: the same small CLIP, {res['filter_samples']:,} samples seen, trained on the clean `hq` split "
        f"with a share p of its pairs replaced by random pool pairs (p = {', '.join(f'{s:.1f}' for s in shares)}). "
        "Score = cosine of the L2-normalised image and caption embeddings. Students: the same CLIP at "
        f"{res['student_samples']:,} samples seen on each training set; filter seed s induces the set of student "
        "seed s.\n\n"
        f"Heuristic filter (no learned model; stand-in for DataComp's basic filtering): keep a pair if the "
        f"caption's colour words equal the set of palette hues in the image and its count word equals the number "
        f"of connected bright blobs. It keeps {heur['n_keep']:,} pairs ({heur['kept_fraction']:.0%} of the pool, "
        f"not a fixed fraction), precision {fmt(heur['precision'])}, recall {fmt(heur['recall'])}; it cannot see "
        "wrong-digit captions.",
        "## Filters: own accuracy vs filtering quality\n\n"
        "Mean [95% interval] over filter seeds. `precision` = clean share of the kept top fraction; `unseen` = "
        "the same over the pool pairs the filter did not train on (a dirty filter has seen some pool pairs and "
        "can memorise their noisy captions).\n\n"
        + table(["p", "clean share of filter data", metric, "zero-shot digit", "digit probe", "R@1 i2t",
                 "precision", "precision (unseen)", "AUC", "AUC (unseen)"], ftab)
        + "\n\n![filter accuracy vs quality](figures/filter_accuracy_vs_quality.png)\n\n"
        "![precision vs kept fraction](figures/precision_vs_fraction.png)",
        "## Students at equal compute\n\n"
        + table(["training set", "pairs", "clean share", metric, "zero-shot digit", "zero-shot colour",
                 "zero-shot count", "R@1 i2t", "digit probe"], stab)
        + "\n\n![student scores](figures/student_scores.png)\n\n"
        "![training set composition](figures/training_set_composition.png)",
        "## Thresholding semantics\n\n"
        "We keep exactly n = round(f·N) pairs (`keep_top_fraction`, ties by index), so arms of equal fraction "
        "have equal size. DataComp's `apply_filter.py` computes n = int(N·f), threshold = the score at position n "
        "of the descending order, and keeps score ≥ threshold: n + 1 pairs plus ties (`datacomp_keep`). "
        f"Fixture {th['fixture']} at f = {th['fraction']}: DataComp keeps {th['datacomp_keeps']}, we keep "
        f"{th['ours_keeps']}. On the pool the difference is "
        f"{np.mean([r['datacomp_n_keep'] - r['n_keep'] for r in filters]):.0f} pair(s) on average.",
        "## Reading the result\n\n"
        "The paper filters DataComp's CommonPool with a ViT-B/32 DFN and trains ViT students for billions of "
        "samples; here everything is a small CLIP on synthetic captioned MNIST scenes whose caption noise is known, "
        "so the quality of each induced dataset is measured directly (precision) rather than only through the "
        "student. Only directions are comparable. The dirty filters here are polluted with pool pairs drawn from "
        "the very pool they later filter (as CommonPool data in the paper); the `unseen` columns separate "
        "memorisation from a worse notion of alignment.",
    ]
    protocol = {
        "profile": cfg.profile,
        "filters": f"shares {shares}, seeds {cfg.filter.seeds}, CNN {cfg.filter.model.cnn_widths}, "
                   f"{cfg.filter.train.samples:,} samples, batch {cfg.filter.train.batch_size}",
        "students": f"seeds {cfg.student.seeds}, CNN {cfg.student.model.cnn_widths}, {cfg.student.train.samples:,} "
                    f"samples, batch {cfg.student.train.batch_size}",
        "metric": f"{metric} (zero-shot digit / colour / count with prompt ensembles, test split of held-out MNIST digits)",
        "CLIP runs": res["n_runs"],
        "wall time (experiment)": f"{res['seconds']:.0f} s",
    }
    intro = ("**Paper:** Fang et al., *Data Filtering Networks*, ICLR 2024 "
             "([arXiv:2309.17425](https://arxiv.org/abs/2309.17425)). **Idea:** train a CLIP on high-quality pairs "
             "and keep the top fraction of an uncurated pool by its image-text cosine; the filter's own accuracy "
             "does not predict the quality of the dataset it induces. "
             "Implementation: [`papers/dfn/method.py`](../../papers/dfn/method.py).")
    metrics = {}
    for sh in shares:
        rs = select(filters, dirty_share=sh)
        metrics[f"filter_p{sh:.1f}.precision"] = float(np.mean([r["precision"] for r in rs]))
        metrics[f"filter_p{sh:.1f}.{metric}"] = float(np.mean([r[metric] for r in rs]))
    for arm in arms:
        metrics[f"student.{arm}.{metric}"] = float(np.mean([r[metric] for r in select(students, data=arm)]))
    metrics["experiment_seconds"] = res["seconds"]
    d = to_dict(cfg)
    path = publish(cfg, PAPER, "Data Filtering Networks (Fang et al., ICLR 2024)", intro, verdicts, sections,
                   protocol, {k: d[k] for k in ("filter", "student", "heuristic", "metric")}, metrics,
                   [figs, out / "results.json"])
    print(f"wrote {path}")


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
