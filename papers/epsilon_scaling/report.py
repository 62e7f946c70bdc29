"""Stage `report`: claims -> verdicts, plots and reports/epsilon_scaling/README.md (prose: report.md), logged to MLflow."""

import numpy as np

from common.cli import run_main
from common.report import ci_curve, side_by_side
from common.report_stage import ReportStage


def main(argv=None):
    st = ReportStage.load(argv)
    cfg, res, rows, fid = st.cfg, st.results, st.rows, st.results["metric"]
    b_star, c, sw, n0 = res["b_star"], cfg.compare, cfg.sweep, min(cfg.compare.nfe)

    st.curves("fid_vs_nfe", "nfe", c.nfe, fid, {"baseline (λ = 1)": dict(arm="baseline"),
                                                f"ES (λ = {b_star:g})": dict(arm="method")},
              nfe=True, figsize=(5, 3.4), stage="compare", group="uniform")  # 95% intervals over sampling seeds
    with st.figure("fid_vs_b", figsize=(5, 3.4)) as ax:  # the U-shaped curve
        m, lo, hi = ci_curve(rows, "b", sw.b, fid, stage="sweep")
        ax.plot(sw.b, m, marker="o")
        ax.fill_between(sw.b, lo, hi, alpha=0.25, label="95% CI over seeds")
        ax.axvline(b_star, color="gray", ls="--", label=f"b* = {b_star:g}")
        ax.set(xlabel="b (uniform λ)", ylabel=fid, title=f"{sw.nfe} steps, {sw.num_samples} samples x {len(sw.seeds)} seeds")
    side_by_side(st.out / "samples" / f"nfe{n0}_baseline_uniform.png", st.out / "samples" / f"nfe{n0}_method_uniform.png",
                 st.figures / f"samples_nfe{n0}.png", [f"baseline, {n0} steps", f"ES b={b_star:g}, {n0} steps"])

    keys = [k for k in rows[0] if "[" in k]
    arms = {("baseline", "uniform"): "baseline λ=1", ("method", "uniform"): f"ES uniform b={b_star:g}",
            ("method", "linear"): f"ES linear k={res['k_linear']:.2g}, b={c.linear_b0:g}"}
    compare = st.ci_table(["NFE", "sampler"] + keys, [
        ((n, label), dict(stage="compare", nfe=n, arm=a, group=g)) for n in c.nfe for (a, g), label in arms.items()
        if g == "uniform" or n == c.linear_nfe], keys)
    sweep = st.ci_table(["b", f"{fid} (mean [95% CI])"], [(b, dict(stage="sweep", b=b)) for b in sw.b], [fid])
    metrics = {"b_star": b_star, **{f"{fid}.nfe{n}.{a}": float(np.mean([r[fid] for r in st.select(
        stage="compare", nfe=n, arm=a, group="uniform")])) for n in c.nfe for a in ("baseline", "method")}}
    st.publish(metrics=metrics, fid=fid, b_star=b_star, c=c, sw=sw, n0=n0, compare_table=compare, sweep_table=sweep)


if __name__ == "__main__":
    run_main(main)
