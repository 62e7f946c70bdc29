"""Stage `report`: claims -> verdicts, plots and reports/epsilon_scaling/README.md (prose: report.md), logged to MLflow."""

import numpy as np

from common.config import to_dict
from common.publish import sampling_protocol
from common.report import ci_curve, side_by_side, table
from common.report_stage import ReportStage, ci_table, errorbar_curve, nfe_axis
from papers.epsilon_scaling.config import EpsilonScalingConfig

PAPER = "epsilon_scaling"


def main(argv=None):
    st = ReportStage.load(EpsilonScalingConfig, PAPER, argv)
    cfg, res, rows, fid = st.cfg, st.results, st.rows, st.results["metric"]
    b_star, c, sw = res["b_star"], cfg.compare, cfg.sweep

    with st.figure("fid_vs_nfe", figsize=(5, 3.4)) as ax:  # 95% intervals over sampling seeds
        for arm, label in (("baseline", "baseline (λ = 1)"), ("method", f"ES (λ = {b_star:g})")):
            errorbar_curve(ax, rows, "nfe", c.nfe, fid, "seed", label, stage="compare", arm=arm, group="uniform")
        nfe_axis(ax, c.nfe, fid)
    with st.figure("fid_vs_b", figsize=(5, 3.4)) as ax:  # the U-shaped curve
        m, lo, hi = ci_curve(rows, "b", sw.b, fid, stage="sweep")
        ax.plot(sw.b, m, marker="o")
        ax.fill_between(sw.b, lo, hi, alpha=0.25, label="95% CI over seeds")
        ax.axvline(b_star, color="gray", ls="--", label=f"b* = {b_star:g}")
        ax.set(xlabel="b (uniform λ)", ylabel=fid, title=f"{sw.nfe} steps, {sw.num_samples} samples x {len(sw.seeds)} seeds")
    n0 = min(c.nfe)
    side_by_side(st.out / "samples" / f"nfe{n0}_baseline_uniform.png", st.out / "samples" / f"nfe{n0}_method_uniform.png",
                 st.figures / f"samples_nfe{n0}.png", [f"baseline, {n0} steps", f"ES b={b_star:g}, {n0} steps"])

    keys = [k for k in rows[0] if "[" in k]
    arms = {("baseline", "uniform"): "baseline λ=1", ("method", "uniform"): f"ES uniform b={b_star:g}",
            ("method", "linear"): f"ES linear k={res['k_linear']:.2g}, b={c.linear_b0:g}"}
    compare = table(["NFE", "sampler"] + keys, ci_table(rows, [
        ((n, label), dict(stage="compare", nfe=n, arm=a, group=g)) for n in c.nfe for (a, g), label in arms.items()
        if g == "uniform" or n == c.linear_nfe], keys, "seed"))
    sweep = table(["b", f"{fid} (mean [95% CI])"], ci_table(rows, [(b, dict(stage="sweep", b=b)) for b in sw.b],
                                                            [fid], "seed"))
    protocol = sampling_protocol(
        cfg, res,
        sampler=f"{cfg.sampler.method}, {cfg.sampler.spacing} respacing, x0 clipped={cfg.sampler.clip_x0}, "
                f"guidance {cfg.sampler.guidance_scale}",
        compare=f"NFE {list(c.nfe)}, {c.num_samples} samples x seeds {list(c.seeds)}",
        sweep=f"NFE {sw.nfe}, b in {list(sw.b)}, {sw.num_samples} samples x seeds {list(sw.seeds)}")
    metrics = {"b_star": b_star, "eval_seconds": res["eval_seconds"],
               **{f"{fid}.nfe{n}.{a}": float(np.mean([r[fid] for r in st.select(stage="compare", nfe=n, arm=a,
                                                                                  group="uniform")]))
                  for n in c.nfe for a in ("baseline", "method")}}
    d = to_dict(cfg)
    st.publish(protocol, {k: d[k] for k in ("sampler", "compare", "sweep")}, metrics,
               fid=fid, b_star=b_star, c=c, sw=sw, n0=n0, compare_table=compare, sweep_table=sweep)


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
