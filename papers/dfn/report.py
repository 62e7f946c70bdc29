"""Stage `report`: claims -> verdicts, plots and reports/dfn/README.md (prose: report.md), logged to MLflow."""

import numpy as np

from common.cli import run_main
from common.report import plt, select
from common.report_clip import mean_of, stacked_shares
from common.report_stage import ReportStage
from common.stats import mean_ci

SEVERITY = {"clean": "tab:green", "wrong colour": "tab:orange", "wrong digit": "tab:red", "unrelated": "tab:gray"}
FILTER_KEYS = ["filter_train_clean_share", None, "zero_shot_digit", "linear_probe_digit", "retrieval_i2t_r1",
               "precision", "precision_unseen", "auc", "auc_unseen"]  # None: the paper's metric
STUDENT_KEYS = ["data_precision", None, "zero_shot_digit", "zero_shot_colour", "zero_shot_count", "retrieval_i2t_r1",
                "linear_probe_digit"]
arm_label = lambda arm: f"DFN p={int(arm[5:]) / 100:.1f}" if arm.startswith("dfn_p") else arm


def main(argv=None):
    st = ReportStage.load(argv)
    res, metric, pool, heur = st.results, st.results["metric"], st.results["pool"], st.results["heuristic"]
    filters, students = st.select(stage="filter"), st.select(stage="student")
    shares, arms = sorted({r["dirty_share"] for r in filters}), list(dict.fromkeys(r["data"] for r in students))
    stu, dfn_arm = {(r["data"], r["seed"]): r for r in students}, lambda sh: f"dfn_p{int(round(100 * sh)):03d}"

    with st.figure("filter_accuracy_vs_quality", figsize=(9.6, 3.6), ncols=2) as axes:  # colour: induced student
        score = [stu.get((dfn_arm(r["dirty_share"]), r["seed"]), {}).get(metric, np.nan) for r in filters]
        for ax, key, ylabel in ((axes[0], "precision", f"clean share of the kept top {res['keep_fraction']:.0%}"),
                                (axes[1], "auc", "ROC AUC clean vs noisy (pool)")):
            sc = ax.scatter([r[metric] for r in filters], [r[key] for r in filters], c=score, cmap="viridis", s=60,
                            edgecolors="k")
            for r in filters:
                ax.annotate(f"p={r['dirty_share']:.1f}", (r[metric], r[key]), textcoords="offset points", xytext=(5, 4),
                            fontsize=7)
            ax.set(xlabel=f"filter's own accuracy ({metric}, test split)", ylabel=ylabel)
        axes[0].axhline(heur["precision"], ls="--", color="tab:red", lw=1, label="heuristic filter")
        axes[0].axhline(pool["clean_share"], ls=":", color="gray", lw=1, label="unfiltered pool")
        axes[0].figure.colorbar(sc, ax=axes[1], label=f"student {metric}")
        axes[0].figure.suptitle("Filter accuracy vs filtering quality (one point per filter and seed)", fontsize=10)
    with st.figure("student_scores", figsize=(6.4, 3.4)) as ax:  # mean, 95% t-interval, seeds as dots
        for i, arm in enumerate(arms):
            v = [r[metric] for r in select(students, data=arm)]
            m, lo, hi = mean_ci(v)
            ax.errorbar([i], [m], yerr=[[m - lo], [hi - m]] if np.isfinite(lo) else None, fmt="o", capsize=4, color="k")
            ax.scatter([i] * len(v), v, s=12, color="tab:blue", alpha=0.6, zorder=3)
        ax.set_xticks(range(len(arms)), [arm_label(a) for a in arms], fontsize=8)
        ax.set(ylabel=f"student {metric} (test)",
               title=f"Students at {res['student_samples']:,} samples seen (mean, 95% t-interval, seeds as dots)")
    kept = lambda rs: [mean_of(rs, f"kept_share_severity_{k}") for k in range(len(SEVERITY))]  # mean over seeds
    comp = {"unfiltered": [pool["noise_shares"].get(k.replace(" ", "_"), 0.0) for k in SEVERITY],
            "heuristic": kept([heur]), **{dfn_arm(sh): kept(select(filters, dirty_share=sh)) for sh in shares}}
    names = [a for a in arms if a in comp]
    with st.figure("training_set_composition", figsize=(6.4, 3.2)) as ax:  # ground-truth noise kinds
        stacked_shares(ax, [arm_label(a) for a in names], [(lab, [comp[a][k] for a in names], c)
                                                           for k, (lab, c) in enumerate(SEVERITY.items())], fontsize=8)
        ax.set(ylabel="share of the training set", title="Ground-truth caption quality of each training set")
    with st.figure("precision_vs_fraction", figsize=(5.6, 3.4)) as ax:  # mean over seeds per filter
        for i, sh in enumerate(shares):
            rs = select(filters, dirty_share=sh)
            fr = sorted(rs[0]["precision_curve"], key=float)
            ax.plot([float(f) for f in fr], [np.mean([r["precision_curve"][f] for r in rs]) for f in fr], marker="o",
                    color=plt().get_cmap("viridis")(i / max(1, len(shares) - 1)), label=f"DFN p={sh:.1f}")
        ax.scatter([heur["kept_fraction"]], [heur["precision"]], marker="x", color="tab:red", s=60, zorder=3,
                   label="heuristic (rule)")
        ax.axhline(pool["clean_share"], ls=":", color="gray", lw=1, label="unfiltered pool")
        ax.axvline(res["keep_fraction"], ls="--", color="k", lw=0.8)
        ax.set(xlabel="kept fraction of the pool", ylabel="clean share of the kept set",
               title="Filtering quality vs kept fraction")

    filter_table = st.ci_table(["p", "clean share of filter data", metric, "zero-shot digit", "digit probe", "R@1 i2t",
                                "precision", "precision (unseen)", "AUC", "AUC (unseen)"],
                               [(f"{sh:.1f}", dict(dirty_share=sh)) for sh in shares],
                               [k or metric for k in FILTER_KEYS], rows=filters)
    student_table = st.ci_table(["training set", "pairs", "clean share", metric, "zero-shot digit", "zero-shot colour",
                                 "zero-shot count", "R@1 i2t", "digit probe"],
                                [((arm_label(a), select(students, data=a)[0]["n_train"]), dict(data=a)) for a in arms],
                                [k or metric for k in STUDENT_KEYS], rows=students)
    metrics = {f"filter_p{sh:.1f}.{k}": mean_of(select(filters, dirty_share=sh), k) for sh in shares
               for k in ("precision", metric)}
    metrics.update({f"student.{a}.{metric}": mean_of(select(students, data=a), metric) for a in arms})
    st.publish(metrics=metrics, metric=metric, pool=pool, heur=heur, shares=shares, filter_table=filter_table,
               student_table=student_table, th=res["thresholding"],
               datacomp_extra=np.mean([r["datacomp_n_keep"] - r["n_keep"] for r in filters]))


if __name__ == "__main__":
    run_main(main)
