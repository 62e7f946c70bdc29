"""Stage `report`: claims -> verdicts, plots and reports/ssl_data_curation/README.md (prose: report.md), to MLflow."""

import numpy as np

from common.cli import run_main
from common.config import read_json
from common.report import plt, select, table
from common.report_clip import cells, ci_bars, mean_of
from common.report_stage import ReportStage

SUBSETS = {"random": ("random subset", "tab:gray"), "flat": ("flat k-means + balanced", "tab:orange"),
           "hierarchical": ("hierarchical k-means + resampling (curated)", "tab:blue")}
BALANCE = ["digit_entropy", "digit_max_min", "tail_share", "colour_digit_entropy"]
CLIP = ["zero_shot_digit", "tail_acc", "head_acc", "zero_shot_colour", "zero_shot_count", "retrieval_i2t_r1",
        "linear_probe_digit"]
DIGITS = np.arange(10)


def main(argv=None):
    st = ReportStage.load(argv, also=("curation.json",))  # the claims read both
    cur, c = read_json(st.out / "curation.json"), st.cfg.curation
    subsets = {n: select(cur["rows"], subset=n, stage="ablation" if n == "flat" else "balance") for n in SUBSETS}
    arms = {n: rs for n in SUBSETS if (rs := select(st.results["runs"], arm=n))}  # the subsets CLIPs were trained on
    tail, w = cur["tail_digits"], 0.8 / max(1, len(arms))  # w: bar width in tail_accuracy

    with st.figure("digit_shares", figsize=(7, 3.6)) as ax:  # per-digit share: pool vs random vs flat vs curated
        ax.bar(DIGITS - 0.3, cur["pool"]["digit_shares"], 0.2, color="black", label=f"pool ({cur['pool_size']:,})")
        for i, (n, (label, color)) in enumerate(SUBSETS.items()):
            ci_bars(ax, DIGITS + (i - 0.5) * 0.2, [r["digit_shares"] for r in subsets[n]], 0.2, color=color,
                    label=label)
        ax.axhline(0.1, color="gray", lw=0.8, ls="--", label="uniform")
        ax.set(xlabel="digit (pool: long tail, 0 = head, 9 = tail)", ylabel="share of digit occurrences", yscale="log",
               xticks=DIGITS, title=f"Concept balance of subsets of T = {c.target_size} ({len(c.seeds)} seeds)")
    with st.figure("cluster_sizes", figsize=(5.6, 3.6)) as ax:  # per level, in data points, every curation seed
        for seed, h in cur["hierarchy"].items():
            for t, sizes in enumerate(h["cluster_sizes"]):
                ax.plot(np.arange(1, len(sizes) + 1) / len(sizes), np.sort(sizes)[::-1], alpha=0.7,
                        color=plt().get_cmap("viridis")(t / max(1, len(h["cluster_sizes"]) - 1)),
                        label=f"level {t + 1} ({len(sizes)} clusters)" if seed == str(c.seeds[0]) else None)
        ax.set(xlabel="cluster rank / number of clusters", ylabel="cluster size (data points)", yscale="log",
               title="Cluster sizes per level (all seeds)")
    with st.figure("tail_accuracy", figsize=(7, 3.6)) as ax:  # per-digit zero-shot accuracy, the tail shaded
        for i, (n, rs) in enumerate(arms.items()):
            per_seed = [[r[f"zero_shot_digit_{d}"] for d in DIGITS] for r in rs]
            ci_bars(ax, DIGITS + (i - (len(arms) - 1) / 2) * w, per_seed, w, color=SUBSETS[n][1],
                    label=f"{SUBSETS[n][0]} ({len(rs)} seeds)")
        for d in tail:
            ax.axvspan(d - 0.5, d + 0.5, color="red", alpha=0.07)
        ax.axhline(0.1, color="gray", lw=0.8, ls="--", label="chance")
        ax.set(xlabel="test digit (shaded: tail digits)", ylabel="zero-shot accuracy", xticks=DIGITS,
               title="CLIP trained on curated vs random subsets (mean, 95% CI)")

    metrics = {f"{n}.{k}": mean_of(rs, k) for n, rs in subsets.items() for k in ("digit_entropy", "tail_share")}
    metrics.update({f"clip.{n}.{k}": mean_of(rs, k) for n, rs in arms.items() for k in ("zero_shot_digit", "tail_acc")})
    st.publish(metrics=metrics, cur=cur, c=c, balance_table=table(
        ["subset", "seeds", "digit entropy", "max/min digit share", f"tail share {tail}", "colour x digit entropy"],
        [["pool (all)", "-", *(cur["pool"][k] for k in BALANCE)],
         *([label, len(subsets[n]), *cells(subsets[n], BALANCE)] for n, (label, _) in SUBSETS.items())]),
        clip_table=table(["trained on", "seeds", "digit (all)", f"digit, tail {tail}", "digit, head", "colour", "count",
                          "i2t R@1", "digit probe"], [[SUBSETS[n][0], len(rs), *cells(rs, CLIP)]
                                                      for n, rs in arms.items()]))


if __name__ == "__main__":
    run_main(main)
