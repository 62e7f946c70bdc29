"""Stage `report`: claims -> verdicts, the benchmark table, figures, reports/mj_bench/README.md (prose: report.md)."""

import numpy as np
import torch

from common.cli import run_main
from common.report import per_unit, save_grid
from common.report_stage import ReportStage, errorbar_curve

BIAS = ("bias_acc", "ges", "nds")


def heatmap(st: ReportStage, judges, persps):
    """The benchmark table by judge x perspective: acc w/ tie at threshold 0 (mean over units); bias: NDS."""
    cells = np.array([[np.mean(per_unit(st.rows, "acc_w_tie", table="table", judge=j, perspective=p, thr=0.0))
                       for p in persps] + [np.mean(per_unit(st.rows, "nds", table="bias", judge=j))] for j in judges])
    with st.figure("benchmark_table", figsize=(6.0, 3.8)) as ax:
        im = ax.imshow(cells, vmin=0, vmax=1, cmap="viridis")
        for (i, k), v in np.ndenumerate(cells):
            ax.text(k, i, f"{v:.2f}", ha="center", va="center", color="w" if v < 0.6 else "k", fontsize=8)
        ax.set(xticks=range(len(persps) + 1), xticklabels=[*persps, "bias (NDS)"], yticks=range(len(judges)),
               yticklabels=judges, title="acc w/ tie (thr 0), mean over units")
        ax.figure.colorbar(im, ax=ax)


def threshold_curves(st: ReportStage, judges, persps, thresholds):
    """Accuracy w/ and w/o tie vs the tie threshold, per judge, one panel per perspective (95% over units)."""
    with st.figure("accuracy_vs_threshold", figsize=(13, 3.8), ncols=len(persps)) as axes:
        for ax, p in zip(axes, persps):
            for c, j in enumerate(judges):
                for metric, ls in (("acc_w_tie", "-"), ("acc_wo_tie", "--")):
                    errorbar_curve(ax, st.rows, "thr", thresholds, metric, "seed",
                                   f"{j} {metric[4:]}" if ax is axes[0] else "_", table="table", judge=j,
                                   perspective=p, color=f"C{c}", ls=ls, marker="o")
            ax.set(xlabel="tie threshold (min-max normalised scores)", ylabel="accuracy", title=p)
        axes[0].legend(fontsize=6, ncol=2)


def bias_figure(st: ReportStage, judges):
    """Per-unit ACC / GES / NDS of each judge (normalised as the paper states; x: raw, evaluate_bias_avg.py)."""
    with st.figure("bias_scores", figsize=(12, 3.6), ncols=3) as axes:
        for ax, m in zip(axes, BIAS):
            for k, j in enumerate(judges):
                for raw, mk in ((False, "o"), (True, "x")):
                    v = per_unit(st.rows, f"{m}_raw" if raw else m, table="bias", judge=j)
                    ax.plot(np.full(len(v), k + (0.15 if raw else 0)), v, mk, color=f"C{k}")
            ax.set(xticks=range(len(judges)), title=f"{m} per unit (o: min-max normalised, x: raw)")
            ax.set_xticklabels(judges, rotation=30, fontsize=7)
            ax.set_ylim(bottom=max(-1.0, ax.get_ylim()[0]))


def tables(st: ReportStage, judges, persps, thresholds):
    rows = [((j, p, f"{t:g}"), dict(table="table", judge=j, perspective=p, thr=t))
            for p in persps for j in judges for t in (thresholds[0], thresholds[-1])]
    acc = st.ci_table(["judge", "perspective", "thr", "acc w/ tie", "acc w/o tie", "tie share"], rows,
                      ["acc_w_tie", "acc_wo_tie", "tie_share"])
    kinds = sorted({(r["perspective"], r["kind"]) for r in st.rows if r.get("table") == "kind"})
    kind = st.ci_table(["judge", "perspective", "kind", "acc w/ tie"], [
        ((j, p, k), dict(table="kind", judge=j, perspective=p, kind=k)) for p, k in kinds for j in judges],
        ["acc_w_tie"])
    bias = st.ci_table(["judge", "ACC", "GES", "NDS", "ACC raw", "GES raw", "NDS raw"], [
        (j, dict(table="bias", judge=j)) for j in judges], [*BIAS, *(f"{m}_raw" for m in BIAS)])
    return acc, kind, bias


def examples(st: ReportStage, persps):
    ex = dict(np.load(st.out / "examples.npz"))
    for p in persps:  # row 1 chosen, row 2 rejected
        n = len(ex[f"{p}_chosen"])
        both = torch.from_numpy(np.concatenate([ex[f"{p}_chosen"], ex[f"{p}_rejected"]]))
        save_grid(both, st.figures / f"pairs_{p}.png", nrow=n)
    b = ex["bias_images"]
    save_grid(torch.from_numpy(b.reshape(-1, *b.shape[2:])), st.figures / "bias_groups.png", nrow=b.shape[1])
    return {p: list(zip(ex[f"{p}_kind"].tolist(), ex[f"{p}_prompt"].tolist())) for p in persps}, \
        ex["bias_prompt"].tolist()


def main(argv=None):
    st = ReportStage.load(argv)
    res = st.results
    judges, persps, thresholds = res["judges"], res["perspectives"], res["thresholds"]
    heatmap(st, judges, persps)
    threshold_curves(st, judges, persps, thresholds)
    bias_figure(st, judges)
    acc, kind, bias = tables(st, judges, persps, thresholds)
    prompts, bias_prompts = examples(st, persps)
    st.publish(acc_table=acc, kind_table=kind, bias_table=bias, prompts=prompts, bias_prompts=bias_prompts,
               judges=judges, persps=persps, thresholds=thresholds)


if __name__ == "__main__":
    run_main(main)
