"""Stage `report`: claims -> verdicts, plots and reports/residual_correction/README.md (prose: report.md)."""

from common.cli import run_main
from common.report import ci_cell, per_unit, side_by_side, table
from common.report_stage import ReportStage, errorbar_curve, nfe_axis

ARMS = {"baseline": ("DDIM", ":"), "method": ("DDIM + correction", "-")}


def main(argv=None):
    st = ReportStage.load(argv)
    res, fid, ev, s, trn = st.results, st.results["metric"], st.cfg.evaluate, st.cfg.simulate, st.read("train.json")
    n0, groups = min(ev.nfe), {"base": ev.nfe, **({"transfer": ev.transfer_nfe} if ev.transfer_model else {})}
    model = {"base": "base model", "transfer": f"{ev.transfer_model} (transfer)"}

    with st.figure("fid_vs_nfe", figsize=(5.2, 3.5)) as ax:  # 95% intervals over seeds
        for group, grid in groups.items():
            for arm, (label, ls) in ARMS.items():
                errorbar_curve(ax, st.rows, "nfe", grid, fid, "seed", ("other model: " if group == "transfer" else "")
                               + label, stage="compare", group=group, arm=arm, ls=ls)
        nfe_axis(ax, ev.nfe, fid, yscale="log")
        ax.legend(fontsize=7)
    side_by_side(*(st.out / "samples" / f"base_nfe{n0}_{arm}.png" for arm in ARMS), st.figures / f"samples_nfe{n0}.png",
                 [f"{label}, {n0} steps" for label, _ in ARMS.values()])

    keys = [k for k in st.rows[0] if "[" in k]
    results = st.ci_table(["model", "NFE", "sampler", *keys], [
        ((model[g], n, label), dict(stage="compare", group=g, nfe=n, arm=arm))
        for g, grid in groups.items() for n in grid for arm, (label, _) in ARMS.items()], keys)
    gap = table(
        ["NFE", "train: before", "train: after", "held-out: before", "held-out: after", "generated: correction"],
        [[n, *(trn["gap_mse"][split][str(n)][k] for split in ("train", "heldout") for k in ("before", "after")),
          ci_cell(per_unit(st.rows, "correction_msq", stage="compare", group="base", nfe=n, arm="method"))
          if n in ev.nfe else "n/a"] for n in s.nfe])
    overhead = st.ci_table(["model", "NFE", "FLOPs overhead", "wall-time overhead"], [
        ((g, n, res["sampling_overhead_flops"].get(str(n), float("nan")) if g == "base" else ""),
         dict(stage="overhead", group=g, nfe=n)) for g, grid in groups.items() for n in grid], ["overhead"])
    st.publish(metrics={k: res["size"][k] for k in ("params_ratio", "flops_ratio")}, fid=fid, ev=ev, s=s, n0=n0,
               trn=trn, sim=st.read("simulate.json"), results_table=results, gap_table=gap, overhead_table=overhead)


if __name__ == "__main__":
    run_main(main)
