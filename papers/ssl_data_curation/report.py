"""Stage `report`: claims -> verdicts, plots and reports/ssl_data_curation/README.md (prose: report.md), logged to
MLflow."""

import numpy as np

from common.config import read_json, to_dict
from common.report import fmt, plt, table
from common.report_clip import cells, ci_bars, mean_of
from common.report_stage import ReportStage
from papers.ssl_data_curation.config import SslDataCurationConfig

PAPER = "ssl_data_curation"
SUBSETS = [("random", "random subset", "tab:gray"), ("flat", "flat k-means + balanced", "tab:orange"),
           ("hierarchical", "hierarchical k-means + resampling (curated)", "tab:blue")]
BALANCE = ("digit_entropy", "digit_max_min", "tail_share", "colour_digit_entropy")
CLIP = ["zero_shot_digit", "tail_acc", "head_acc", "zero_shot_colour", "zero_shot_count", "retrieval_i2t_r1",
        "linear_probe_digit"]


def main(argv=None):
    st = ReportStage.load(SslDataCurationConfig, PAPER, argv, also=("curation.json",))  # claims read both
    cur, c, runs = read_json(st.out / "curation.json"), st.cfg.curation, st.results["runs"]
    by_subset = {n: [r for r in cur["rows"] if r["subset"] == n and r["stage"] == ("ablation" if n == "flat" else "balance")]
                 for n, _, _ in SUBSETS}
    arms = [s for s in SUBSETS if any(r["arm"] == s[0] for r in runs)]
    by_arm = {n: [r for r in runs if r["arm"] == n] for n, _, _ in arms}

    with st.figure("digit_shares", figsize=(7, 3.6)) as ax:  # per-digit share: pool vs random vs flat vs curated
        ax.bar(np.arange(10) - 0.3, cur["pool"]["digit_shares"], 0.2, color="black",
               label="pool (30k)" if cur["pool_size"] >= 1000 else "pool")
        for i, (name, label, color) in enumerate(SUBSETS):
            ci_bars(ax, np.arange(10) + (i - 0.5) * 0.2, [r["digit_shares"] for r in by_subset[name]], 0.2, color=color,
                    label=label)
        ax.axhline(0.1, color="gray", lw=0.8, ls="--", label="uniform")
        ax.set(xlabel="digit (pool: long tail, 0 = head, 9 = tail)", ylabel="share of digit occurrences", yscale="log",
               xticks=range(10), title=f"Concept balance of subsets of T = {c.target_size} ({len(c.seeds)} seeds)")
    with st.figure("cluster_sizes", figsize=(5.6, 3.6)) as ax:  # per level, in data points, every curation seed
        for s, h in cur["hierarchy"].items():
            for t, sizes in enumerate(h["cluster_sizes"]):
                v = np.sort(np.asarray(sizes))[::-1]
                ax.plot(np.arange(1, len(v) + 1) / len(v), v, alpha=0.7,
                        color=plt().get_cmap("viridis")(t / max(1, len(h["cluster_sizes"]) - 1)),
                        label=f"level {t + 1} ({len(v)} clusters)" if s == str(c.seeds[0]) else None)
        ax.set(xlabel="cluster rank / number of clusters", ylabel="cluster size (data points)", yscale="log",
               title="Cluster sizes per level (all seeds)")
    with st.figure("tail_accuracy", figsize=(7, 3.6)) as ax:  # per-digit zero-shot accuracy, the tail shaded
        w = 0.8 / max(1, len(arms))
        for i, (name, label, color) in enumerate(arms):
            ci_bars(ax, np.arange(10) + (i - (len(arms) - 1) / 2) * w, [[r[f"zero_shot_digit_{d}"] for d in range(10)]
                    for r in by_arm[name]], w, color=color, label=f"{label} ({len(by_arm[name])} seeds)")
        for d in cur["tail_digits"]:
            ax.axvspan(d - 0.5, d + 0.5, color="red", alpha=0.07)
        ax.axhline(0.1, color="gray", lw=0.8, ls="--", label="chance")
        ax.set(xlabel="test digit (shaded: tail digits)", ylabel="zero-shot accuracy", xticks=range(10),
               title="CLIP trained on curated vs random subsets (mean, 95% CI)")

    pool, tail = cur["pool"], cur["tail_digits"]
    balance_table = table(["subset", "seeds", "digit entropy", "max/min digit share", f"tail share {tail}",
                           "colour x digit entropy"], [["pool (all)", "-", *(fmt(pool[k]) for k in BALANCE)]] +
                          [[label, len(by_subset[n]), *cells(by_subset[n], BALANCE)] for n, label, _ in SUBSETS])
    clip_table = table(["trained on", "seeds", "digit (all)", f"digit, tail {tail}", "digit, head", "colour", "count",
                        "i2t R@1", "digit probe"], [[label, len(by_arm[n]), *cells(by_arm[n], CLIP)] for n, label, _ in arms])
    s = st.cfg.study
    protocol = {
        "profile": st.cfg.profile, "features": f"{cur['features']} ({cur['pool_size']} x {cur['feature_dim']})",
        "curation": f"levels {list(c.n_clusters)}, sample sizes {list(c.sample_sizes)}, resamples {list(c.n_resamples)}, "
                    f"Lloyd iterations {list(c.n_iters)}, T = {c.target_size}, seeds {list(c.seeds)}",
        "k-means time per seed": ", ".join(f"{fmt(h['kmeans_seconds'])} s" for h in cur["hierarchy"].values()),
        "CLIP": f"{s.train.samples:,} samples, batch {s.train.batch_size}, lr {s.train.lr}, seeds {list(s.seeds)}, "
                f"arms {list(s.arms)}",
        "wall time (curate)": f"{cur['seconds']:.0f} s", "wall time (experiment)": f"{st.results['seconds']:.0f} s"}
    summary = {f"{n}.{k}": mean_of(by_subset[n], k) for n, _, _ in SUBSETS for k in ("digit_entropy", "tail_share",
                                                                                  "digit_max_min")}
    summary.update({f"clip.{n}.{k}": mean_of(by_arm[n], k) for n, _, _ in arms for k in ("zero_shot_digit", "tail_acc")})
    d = to_dict(st.cfg)
    st.publish(protocol, {k: d[k] for k in ("curation", "study", "features", "pool")},
               {**summary, "curate_seconds": cur["seconds"], "experiment_seconds": st.results["seconds"]},
               cur=cur, c=c, balance_table=balance_table, clip_table=clip_table)


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
