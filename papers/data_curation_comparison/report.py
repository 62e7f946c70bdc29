"""Stage `report`: every data selector in one table and one plot of quality vs kept fraction, and the verdicts of
the page's claims -> reports/data_curation_comparison/README.md."""

import numpy as np

from common.cli import run_main
from common.report import ci_cell, per_unit, table
from common.report_stage import ReportStage
from common.stats import mean_ci

UNIT = "seed"  # the student seed: one trained student (its selector's randomness shares the seed)
# arm -> (label, color, marker)
ARMS = {"random": ("no filtering (random subset)", "k", "o"), "full": ("full pool (equal samples)", "grey", "*"),
        "topx": ("Top x% (Scaling (Down) CLIP)", "C0", "s"), "dfn": ("DFN filter", "C1", "^"),
        "kmeans": ("balanced k-means (SSL curation)", "C2", "D"), "qqt": ("QQT buckets (law's p*)", "C3", "v"),
        "catlip_full": ("CatLIP objective, full pool", "C4", "P"), "catlip_dfn": ("CatLIP objective, DFN subset", "C5", "X")}
METRICS = {"zero_shot_mean": "zero-shot mean", "retrieval_r1": "retrieval R@1", "linear_probe_digit": "linear probe",
           "clean_share": "clean share kept", "tail_share": "tail-digit share kept"}
PLOTTED = ("zero_shot_mean", "retrieval_r1", "linear_probe_digit", "tail_share")


def groups(rows):
    """(arm, fraction label, row filter) per table row: every selector at each kept fraction; QQT's fraction is its
    own per-seed choice, so its rows form one group."""
    out = []
    for arm in ARMS:
        sel = [r for r in rows if r["arm"] == arm]
        if not sel:
            continue
        if arm == "qqt":
            fr = sorted({r["fraction"] for r in sel})
            out.append((arm, "/".join(f"{f:.3g}" for f in fr), {"arm": arm}))
            continue
        out += [(arm, f"{f:.3g}", {"arm": arm, "fraction": f}) for f in sorted({r["fraction"] for r in sel})]
    return out


def cell(rows, metric, where):
    """'mean [95% CI]' over seeds, or a dash where the arm has no such metric (CatLIP: no text tower)."""
    vals = per_unit([r for r in rows if metric in r], metric, UNIT, **where)
    return ci_cell(vals) if vals else "—"


def point(rows, metric):
    """(mean kept fraction, mean, lower error, upper error) of one group, the interval over seeds."""
    m, lo, hi = mean_ci(per_unit(rows, metric, UNIT))
    return (float(np.mean([r["fraction"] for r in rows])), m,
            0.0 if np.isnan(lo) else m - lo, 0.0 if np.isnan(hi) else hi - m)


def main(argv=None):
    st = ReportStage.load(argv, also=["pairs.json"])
    res, rows = st.results, [r for r in st.rows]
    with st.figure("quality_vs_kept_fraction", figsize=(13, 3.6), ncols=len(PLOTTED)) as axes:
        for ax, metric in zip(axes, PLOTTED):
            for arm, (label, color, marker) in ARMS.items():
                sel = [r for r in rows if r["arm"] == arm and metric in r]
                if not sel:
                    continue
                parts = [sel] if arm == "qqt" else [[r for r in sel if r["fraction"] == f]
                                                    for f in sorted({r["fraction"] for r in sel})]
                pts = np.array([point(p, metric) for p in parts])
                ax.errorbar(pts[:, 0], pts[:, 1], yerr=[pts[:, 2], pts[:, 3]], color=color, marker=marker,
                            capsize=3, ls="-" if len(pts) > 1 else "none", label=label)
            ax.set(xscale="log", xlabel="kept fraction of the pool", ylabel=METRICS[metric], title=METRICS[metric])
        axes[0].legend(fontsize=7)
    gs = groups(rows)
    n = {label: len({r[UNIT] for r in rows if r["arm"] == label}) for label in ARMS}
    main_table = table(["selector", "kept fraction", *METRICS.values(), "pairs kept", "students"], [
        [ARMS[arm][0], frac, *(cell(rows, k, where) for k in METRICS),
         ", ".join(sorted({f"{r['n_train']:,}" for r in rows if all(r.get(k) == v for k, v in where.items())})),
         "reused (papers/dfn)" if all(r["source"] == "dfn" for r in rows if all(r.get(k) == v for k, v in where.items()))
         else "trained here"]
        for arm, frac, where in gs])
    low = res["fractions"][0]
    mean = lambda k, **w: float(np.mean(per_unit(rows, k, UNIT, **w)))  # noqa: E731
    metrics = {f"{k}.{arm}.f{f:g}": mean(k, arm=arm, fraction=f) for arm in ("random", "topx", "dfn", "kmeans")
               for f in res["fractions"] for k in ("zero_shot_mean", "clean_share", "tail_share")}
    at_low = {k: {arm: mean(k, arm=arm, fraction=low) for arm in ("random", "topx", "dfn", "kmeans")}
              for k in ("clean_share", "tail_share", "zero_shot_mean")}
    same = sorted({r["seed"] for r in rows if r.get("hierarchy_is_papers")})
    st.publish(metrics=metrics, main_table=main_table, n_units=n["dfn"], low=low, high=res["fractions"][-1],
               at_low=at_low, pool_tail=mean("tail_share", arm="full"), hierarchy_same=same,
               qqt_choice=", ".join(f"seed {k}: {v}" for k, v in res["qqt_buckets"].items()))


if __name__ == "__main__":
    run_main(main)
