"""Stage `report`: claims -> verdicts, plots and reports/residual_correction/README.md (prose: report.md)."""

import numpy as np

from common.config import to_dict
from common.publish import sampling_protocol
from common.report import ci_cell, fmt, per_unit, side_by_side, table
from common.report_stage import ReportStage, errorbar_curve
from papers.residual_correction.config import ResidualCorrectionConfig

PAPER = "residual_correction"
ARMS = {"baseline": ("DDIM", ":"), "method": ("DDIM + correction", "-")}


def main(argv=None):
    st = ReportStage.load(ResidualCorrectionConfig, PAPER, argv)
    cfg, res, fid, size = st.cfg, st.results, st.results["metric"], st.results["size"]
    ev, s, c, sim, trn = cfg.evaluate, cfg.simulate, cfg.correction, st.read("simulate.json"), st.read("train.json")
    groups = {"base": ev.nfe, **({"transfer": ev.transfer_nfe} if ev.transfer_model else {})}
    model = {"base": "base model", "transfer": f"{ev.transfer_model} (transfer)"}

    with st.figure("fid_vs_nfe", figsize=(5.2, 3.5)) as ax:  # 95% intervals over seeds
        for group, grid in groups.items():
            for arm, (label, ls) in ARMS.items():
                errorbar_curve(ax, st.rows, "nfe", grid, fid, "seed", ("other model: " if group == "transfer" else "")
                               + label, stage="compare", group=group, arm=arm, ls=ls)
        ax.set(xlabel="sampling steps (NFE)", ylabel=fid, xscale="log", yscale="log", xticks=ev.nfe,
               xticklabels=[str(n) for n in ev.nfe])
        ax.xaxis.set_minor_formatter("")
        ax.legend(fontsize=7)
    n0 = min(ev.nfe)
    side_by_side(*(st.out / "samples" / f"base_nfe{n0}_{arm}.png" for arm in ARMS), st.figures / f"samples_nfe{n0}.png",
                 [f"{label}, {n0} steps" for label, _ in ARMS.values()])

    keys = [k for k in st.rows[0] if "[" in k]
    cell = lambda k, **where: ci_cell(per_unit(st.rows, k, **where))
    results = table(["model", "NFE", "sampler", *keys], [
        [model[g], n, label, *(cell(k, stage="compare", group=g, nfe=n, arm=arm) for k in keys)]
        for g, grid in groups.items() for n in grid for arm, (label, _) in ARMS.items()])
    gap = table(["NFE", "train: before", "train: after", "held-out: before", "held-out: after",
                 "generated: correction"], [
        [n, *(fmt(trn["gap_mse"][split][str(n)][k]) for split in ("train", "heldout") for k in ("before", "after")),
         cell("correction_msq", stage="compare", group="base", nfe=n, arm="method") if n in ev.nfe else "n/a"]
        for n in s.nfe])
    cost = table(["", "base network", "correction r_phi", "ratio"], [
        [what, f"{size[f'base_{k}']:,}", f"{size[f'correction_{k}']:,}", fmt(size[f"{k}_ratio"])]
        for what, k in (("parameters", "params"), ("FLOPs per call (one sample)", "flops"))])
    overhead = table(["model", "NFE", "FLOPs overhead", "wall-time overhead"], [
        [g, n, fmt(res["sampling_overhead_flops"].get(str(n), float("nan"))) if g == "base" else "",
         ci_cell([r["overhead"] for r in st.select(stage="overhead", group=g, nfe=n)])]
        for g, grid in groups.items() for n in grid])

    protocol = sampling_protocol(
        cfg, res,
        sampler=f"DDIM eta=0, {cfg.sampler.spacing} respacing, x0 clipped={cfg.sampler.clip_x0}, "
                f"guidance {cfg.sampler.guidance_scale}",
        evaluation=f"NFE {list(ev.nfe)}, {ev.num_samples} samples x seeds {list(ev.seeds)}; transfer: "
                   f"{ev.transfer_model or 'none'} at NFE {list(ev.transfer_nfe)}",
        simulation=f"{s.num_pairs} train + {s.num_val} held-out images, {s.inversion_steps} inversion steps, "
                   f"NFE {list(s.nfe)}; {sim['model_calls']:,} model calls in {sim['seconds']:.0f} s",
        correction=f"UNet {list(c.unet.block_out_channels)}, {trn['params']:,} parameters, {trn['steps']} steps at "
                   f"batch {c.train.batch_size}, final loss {trn['final_loss']:.2e}, {trn['train_seconds']:.0f} s")
    mean = lambda **where: float(np.mean([r[fid] for r in st.select(stage="compare", **where)]))
    metrics = {"params_ratio": size["params_ratio"], "flops_ratio": size["flops_ratio"],
               "eval_seconds": res["eval_seconds"], **{f"{fid}.{g}.nfe{n}.{arm}": mean(group=g, nfe=n, arm=arm)
                                                      for g, grid in groups.items() for n in grid for arm in ARMS}}
    d = to_dict(cfg)
    st.publish(protocol, {k: d[k] for k in ("sampler", "simulate", "correction", "evaluate")}, metrics,
               fid=fid, ev=ev, s=s, n0=n0, results_table=results, gap_table=gap, cost_table=cost,
               overhead_table=overhead)


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
