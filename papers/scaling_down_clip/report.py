"""Stage `report`: claims -> verdicts, plots and reports/scaling_down_clip/README.md (prose: report.md), to MLflow."""

from common.cli import run_main
from common.report import ci_cell, fmt, per_unit, select, table
from common.report_clip import cells, mean_of, stacked_shares, values_band
from common.report_stage import ReportStage
from common.stats import mean_ci
from papers.scaling_down_clip.method import gap, interior_optimum

LABELS = {"zero_shot_mean": "zero-shot (mean of 3 tasks)", "zero_shot_digit": "zero-shot digit", "zero_shot_colour":
          "zero-shot colour", "zero_shot_count": "zero-shot count", "retrieval_i2t_r1": "retrieval R@1 image->text",
          "retrieval_t2i_r1": "retrieval R@1 text->image", "linear_probe_digit": "digit linear probe"}
COLOR = dict(zip(LABELS, ["black", "tab:purple", "tab:orange", "tab:green", "tab:blue", "tab:cyan", "tab:brown"]))
ARCH = [m for m in LABELS if m != "retrieval_t2i_r1"]  # the columns of the architecture table
GAP = ["zero_shot_mean", "retrieval_i2t_r1", "linear_probe_digit"]
TOWER = {"cnn": ("CNN", "tab:blue"), "vit": ("ViT", "tab:red")}
NOISE = {"clean_share": "tab:green", "share_wrong_colour": "tab:orange", "share_wrong_digit": "tab:purple",
         "share_unrelated": "tab:red"}


def main(argv=None):
    st = ReportStage.load(argv)
    q, a, flops, seen = st.cfg.quality, st.cfg.architecture, st.results["flops"], st.results["samples_seen"]
    pcts, sizes, arows = sorted(map(float, q.top_pct)), sorted(map(int, a.sizes)), st.select(stage="architecture")
    at = lambda x: st.select(stage="quality", top_pct=x)
    sub = lambda x, k: st.results["subsets"][f"{x:g}"][k]  # ground truth of the Top x% subset

    with st.figure("quality_vs_quantity", figsize=(13, 3.6), ncols=3) as axes:  # equal samples seen
        for i, m in enumerate(LABELS):  # the 4 zero-shot metrics left, retrieval and probe in the middle
            values_band(axes[i // 4], pcts, [[r[m] for r in at(x)] for x in pcts], LABELS[m], COLOR[m], "o")
        for ax, title, ylabel in zip(axes, ("Zero-shot", "Retrieval and probe"), ("accuracy", "accuracy / recall")):
            ax.set(xlabel="Top x% of the pool (teacher cosine)", ylabel=ylabel, title=title)
        stacked_shares(axes[2], [f"{x:g}%" for x in pcts], [(k.replace("share_", ""), [sub(x, k) for x in pcts], c)
                                                            for k, c in NOISE.items()], legend_loc="lower left")
        axes[2].set(xlabel="Top x%", ylabel="share of pairs", title="Ground truth of each subset")
        axes[0].figure.suptitle(f"Quality vs quantity at {seen:,} samples seen ({len(q.seeds)} seeds, 95% CI)")
    with st.figure("cnn_vs_vit_vs_data", figsize=(13, 3.6), ncols=3) as axes:
        for ax, m in zip(axes, GAP):
            for t, (name, color) in TOWER.items():
                values_band(ax, sizes, [[r[m] for r in select(arows, n_data=n, tower=t)] for n in sizes],
                            f"{name} ({flops[t]['image_gflops_per_sample'] * 1e3:.1f} image MFLOPs/sample)", color, "o")
            ax.set(xscale="log", xlabel="clean training pairs (hq subset)", ylabel=LABELS[m], title=LABELS[m])
        axes[0].figure.suptitle(f"CNN vs ViT of similar FLOPs at {seen:,} samples seen ({len(a.seeds)} seeds, 95% CI)")

    slash = lambda x, keys: " / ".join(fmt(sub(x, k)) for k in keys)  # several shares in one cell
    quality = [[f"Top {x:g}%", sub(x, "n_train"), sub(x, "epochs"), sub(x, "clean_share"), slash(x, list(NOISE)[1:]),
                slash(x, [f"share_count_{n}" for n in (1, 2, 3)]), sub(x, "digit_entropy_bits"), *cells(at(x), LABELS)]
               for x in pcts]
    towers = [[TOWER[k][0], v["gflops_per_sample"], v["image_gflops_per_sample"], f"{v['params']:,}",
               f"{v['image_params']:,}", v["gflops_per_sample"] * seen] for k, v in flops.items()]
    arch = [[n, seen / n, TOWER[t][0], *cells(select(arows, n_data=n, tower=t), ARCH)] for n in sizes for t in TOWER]
    diff = {n: [gap(*(per_unit(arows, m, n_data=n, tower=t) for t in TOWER)) for m in GAP] for n in sizes}  # CNN - ViT
    st.publish(
        metrics={f"quality.top{x:g}.{m}": mean_of(at(x), m) for x in pcts for m in GAP}, pcts=pcts, sizes=sizes,
        best={LABELS[m]: max(pcts, key=lambda x: mean_of(at(x), m)) for m in LABELS},
        opt=interior_optimum(pcts, [mean_of(at(x), "zero_shot_error") for x in pcts]),
        arch_gap=[mean_ci(diff[n][0]) for n in (sizes[0], sizes[-1])],
        quality_table=table(["subset", "pairs", "epochs", "clean share", "noise c/d/u", "count 1/2/3", "digit entropy",
                             *LABELS.values()], quality),
        flops_table=table(["tower", "CLIP GFLOPs/sample", "image-tower GFLOPs/sample", "params", "image params",
                           "compute (GFLOPs)"], towers),
        arch_table=table(["pairs", "epochs", "tower", "zero-shot mean", "digit", "colour", "count", "R@1 i2t", "probe"],
                         arch),
        gap_table=table(["pairs", "zero-shot mean", "R@1 i2t", "probe"],
                        [[n, *map(ci_cell, per_metric)] for n, per_metric in diff.items()]))


if __name__ == "__main__":
    run_main(main)
