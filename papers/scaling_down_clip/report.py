"""Stage `report`: claims -> verdicts, plots and reports/scaling_down_clip/README.md (prose: report.md), logged to
MLflow."""

import numpy as np

from common.config import to_dict
from common.report import ci_cell, fmt, select, table
from common.report_clip import cells, mean_of, stacked_shares, values_band
from common.report_stage import ReportStage
from common.stats import mean_ci
from papers.scaling_down_clip.config import ScalingDownClipConfig
from papers.scaling_down_clip.method import gap, interior_optimum

PAPER = "scaling_down_clip"
LABELS = {"zero_shot_mean": "zero-shot (mean of 3 tasks)", "zero_shot_digit": "zero-shot digit",
          "zero_shot_colour": "zero-shot colour", "zero_shot_count": "zero-shot count",
          "retrieval_i2t_r1": "retrieval R@1 image->text", "retrieval_t2i_r1": "retrieval R@1 text->image",
          "linear_probe_digit": "digit linear probe"}
TOWER = {"cnn": ("CNN", "tab:blue"), "vit": ("ViT", "tab:red")}
NOISE = [("clean_share", "tab:green"), ("share_wrong_colour", "tab:orange"), ("share_wrong_digit", "tab:purple"),
         ("share_unrelated", "tab:red")]
ARCH = ["zero_shot_mean", "zero_shot_digit", "zero_shot_colour", "zero_shot_count", "retrieval_i2t_r1", "linear_probe_digit"]
GAP = ["zero_shot_mean", "retrieval_i2t_r1", "linear_probe_digit"]


def main(argv=None):
    st = ReportStage.load(ScalingDownClipConfig, PAPER, argv)
    res, subsets, flops, q, a = st.results, st.results["subsets"], st.results["flops"], st.cfg.quality, st.cfg.architecture
    pcts, sizes = sorted(float(x) for x in q.top_pct), sorted(int(n) for n in a.sizes)
    qrows, arows = st.select(stage="quality"), st.select(stage="architecture")
    at = lambda x: select(qrows, top_pct=x)
    sub = lambda x, k: subsets[f"{x:g}"][k]
    band = lambda ax, xs, key, m, label, color, rows, **w: values_band(
        ax, xs, [[r[m] for r in select(rows, **{key: x}, **w)] for x in xs], label, color, marker="o")

    with st.figure("quality_vs_quantity", figsize=(13, 3.6), ncols=3) as axes:  # equal samples seen
        for ax, title, ms in ((axes[0], "Zero-shot", (("zero_shot_mean", "black"), ("zero_shot_digit", "tab:purple"),
                                                      ("zero_shot_colour", "tab:orange"), ("zero_shot_count", "tab:green"))),
                              (axes[1], "Retrieval and probe", (("retrieval_i2t_r1", "tab:blue"),
                                                                ("retrieval_t2i_r1", "tab:cyan"), ("linear_probe_digit", "tab:brown")))):
            for m, color in ms:
                band(ax, pcts, "top_pct", m, LABELS[m], color, qrows)
            ax.set(xlabel="Top x% of the pool (teacher cosine)", ylabel="accuracy" if ax is axes[0] else "accuracy / recall",
                   title=title)
            ax.legend(fontsize=7)
        stacked_shares(axes[2], [f"{x:g}%" for x in pcts], [(k.replace("share_", ""), [sub(x, k) for x in pcts], c)
                                                            for k, c in NOISE], legend_loc="lower left")
        axes[2].set(xlabel="Top x%", ylabel="share of pairs", title="Ground truth of each subset")
        axes[0].figure.suptitle(f"Quality vs quantity at {res['samples_seen']:,} samples seen ({len(q.seeds)} seeds, 95% CI)")
    with st.figure("cnn_vs_vit_vs_data", figsize=(13, 3.6), ncols=3) as axes:
        for ax, m in zip(axes, GAP):
            for tower, (name, color) in TOWER.items():
                band(ax, sizes, "n_data", m, f"{name} ({flops[tower]['image_gflops_per_sample'] * 1e3:.1f} image "
                     "MFLOPs/sample)", color, arows, tower=tower)
            ax.set(xscale="log", xlabel="clean training pairs (hq subset)", ylabel=LABELS[m], title=LABELS[m])
            ax.legend(fontsize=7)
        axes[0].figure.suptitle(f"CNN vs ViT of similar FLOPs at {res['samples_seen']:,} samples seen ({len(a.seeds)} "
                                "seeds, 95% CI)")

    quality_table = table(["subset", "pairs", "epochs", "clean share", "noise c/d/u", "count 1/2/3", "digit entropy"]
                          + list(LABELS.values()), [
        [f"Top {x:g}%", sub(x, "n_train"), fmt(sub(x, "epochs")), fmt(sub(x, "clean_share")),
         " / ".join(fmt(sub(x, k)) for k in ("share_wrong_colour", "share_wrong_digit", "share_unrelated")),
         " / ".join(fmt(sub(x, f"share_count_{n}")) for n in (1, 2, 3)), fmt(sub(x, "digit_entropy_bits")),
         *cells(at(x), LABELS)] for x in pcts])
    flops_table = table(["tower", "CLIP GFLOPs/sample", "image-tower GFLOPs/sample", "params", "image params",
                         "compute (GFLOPs)"], [[TOWER[k][0], fmt(v["gflops_per_sample"]), fmt(v["image_gflops_per_sample"]),
                                                f"{v['params']:,}", f"{v['image_params']:,}",
                                                fmt(v["gflops_per_sample"] * res["samples_seen"])] for k, v in flops.items()])
    arch_table = table(["pairs", "epochs", "tower", "zero-shot mean", "digit", "colour", "count", "R@1 i2t", "probe"], [
        [n, fmt(res["samples_seen"] / n), TOWER[t][0], *cells(select(arows, n_data=n, tower=t), ARCH)]
        for n in sizes for t in TOWER])
    by_seed = lambda n, t: sorted(select(arows, n_data=n, tower=t), key=lambda r: r["seed"])
    diff = lambda n, m: gap(*([r[m] for r in by_seed(n, t)] for t in TOWER))  # CNN - ViT per seed
    gap_table = table(["pairs", "zero-shot mean", "R@1 i2t", "probe"], [[n, *(ci_cell(diff(n, m)) for m in GAP)]
                                                                        for n in sizes])
    err = [mean_of(at(x), "zero_shot_error") for x in pcts]
    best = {LABELS[m]: pcts[int(np.argmax([mean_of(at(x), m) for x in pcts]))] for m in LABELS}
    arch_gap = {arm: mean_ci([r["cnn_advantage"] for r in st.select(stage="arch_gap", arm=arm)])
                for arm in ("baseline", "method")}
    cfg = st.cfg
    protocol = {
        "profile": cfg.profile,
        "teacher": "models/scene_clip (root stage train_scene_clip), cosine of its image and caption embeddings",
        "samples seen": f"{res['samples_seen']:,} per CLIP (batch {cfg.train.batch_size}, lr {cfg.train.lr}, "
                        f"{cfg.train.lr_schedule})",
        "quality sweep": f"Top {', '.join(f'{x:g}' for x in pcts)}% x seeds {list(q.seeds)}",
        "architecture sweep": f"sizes {sizes} x CNN/ViT x seeds {list(a.seeds)}",
        "evaluation": f"test split ({res['test_size']:,} clean scenes of held-out digits): zero-shot digit/colour/count "
                      "with prompt ensembles, retrieval R@1 over true captions, digit linear probe (probe_train)",
        "CLIPs trained": str(len(res["runs"])),
        "wall time (experiment)": f"{res['experiment_seconds']:.0f} s (training {res['train_seconds']:.0f} s)"}
    summary = {f"quality.top{x:g}.{m}": mean_of(at(x), m) for x in pcts for m in GAP}
    summary.update({f"quality.top{x:g}.clean_share": sub(x, "clean_share") for x in pcts})
    summary.update({f"arch.{t}.n{n}.zero_shot_mean": mean_of(select(arows, n_data=n, tower=t), "zero_shot_mean")
                    for n in sizes for t in TOWER})
    summary.update({f"{k}.compute_gflops": v["gflops_per_sample"] * res["samples_seen"] for k, v in flops.items()})
    d = to_dict(cfg)
    st.publish(protocol, {k: d[k] for k in ("model", "train", "quality", "architecture")},
               {**summary, "experiment_seconds": res["experiment_seconds"]}, q=q, a=a, sizes=sizes, best=best,
               opt=interior_optimum(pcts, err), arch_gap=arch_gap, quality_table=quality_table, flops_table=flops_table,
               arch_table=arch_table, gap_table=gap_table)


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
