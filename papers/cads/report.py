"""Stage `report`: claims -> verdicts, plots and reports/cads/README.md (prose: report.md), logged to MLflow."""

import numpy as np

from common.cli import run_main
from common.report import ci_curve, select, side_by_side, table
from common.report_stage import ReportStage, errorbar_curve
from papers.cads.method import CADS

ARMS = {"cfg": ("CFG", "o", ":"), "cads": ("CADS (tuned)", "s", "-"), "dyncfg": ("guidance annealing", "^", "--"),
        "cads_paper": ("CADS (paper settings)", "D", "none")}


def main(argv=None):
    st = ReportStage.load(argv)
    cfg, res, cp, k = st.cfg, st.results, st.cfg.compare, st.cfg.diversity_k
    sets, fid, tuned, w = res["sets"], res["metric"], res["tuned"], f"{max(cp.guidance_scales):g}"
    key = lambda m: f"{m}[{res['backbone']}]"
    rec, prec, acc = key(f"recall_k{k}"), key(f"precision_k{k}"), key("class_acc")
    metrics = {rec: f"recall (k={k})", key(f"coverage_k{k}"): f"coverage (k={k})",  # the panels, in order
               key("pairwise_dist"): "within-class pairwise distance", prec: f"precision (k={k})",
               acc: "class accuracy", fid: fid}
    hp = "tau1={tau1}, tau2={tau2}, s={s}".format  # CADS hyperparameters in titles
    scales = dict(zip(ARMS, (cp.guidance_scales, cp.guidance_scales, cp.dynamic_cfg_scales, cp.paper_scales)))

    with st.figure("diversity_vs_guidance", figsize=(12, 6.4), nrows=2, ncols=3) as axes:
        for ax, (m, label) in zip(axes.flat, metrics.items()):
            for name, (arm, marker, ls) in ARMS.items():  # one legend, in the first panel
                errorbar_curve(ax, sets, "guidance", scales[name], m, "seed", arm if ax is axes.flat[0] else "_",
                               stage="compare", name=name, marker=marker, ls=ls)
            ax.set(xlabel="guidance scale w", ylabel=label)
        ax.figure.suptitle(f"mean and 95% interval over seeds {list(cp.seeds)}, {cp.num_samples} samples each")
    with st.figure("precision_vs_recall", figsize=(5.4, 4.2)) as ax:
        for name, (arm, marker, ls) in ARMS.items():
            xs, ys = (ci_curve(sets, "guidance", scales[name], m, stage="compare", name=name)[0] for m in (rec, prec))
            ax.plot(xs, ys, ls=ls, marker=marker, label=arm)
            for x, *xy in zip(scales[name], xs, ys):
                ax.annotate(f"w={x:g}", xy, fontsize=6, xytext=(3, 3), textcoords="offset points")
        ax.set(xlabel=metrics[rec], ylabel=metrics[prec], title="precision vs recall (seed means)")
    with st.figure("gamma", figsize=(5.4, 3.4)) as ax:  # eq. 2 and its values at the sampling steps
        t_grid, g = np.linspace(0, 1, 401), res["gamma"]
        t_steps = np.array(g["timesteps"]) / (g["num_train_timesteps"] - 1)
        for color, name, marker in (("C0", "tuned", "s"), ("C1", "paper", "D")):
            ax.plot(t_grid, [CADS(**res[name]).gamma(float(t)) for t in t_grid], color=color,
                    label=f"{name}: {hp(**res[name])}")
            ax.plot(t_steps, g[name], ls="none", marker=marker, ms=4, color=color)
        ax.set(xlabel="t = t_train / (T-1)  (1 = pure noise; sampling runs left to right)", ylabel="gamma(t)",
               title=f"CADS schedule (eq. 2); markers: the {cfg.sampler.nfe} sampling steps", xlim=(1.05, -0.05))
    sample = lambda arm: st.out / "samples" / f"{arm}_w{w}.png"
    side_by_side(sample("cfg"), sample("cads"), st.figures / f"samples_cfg_vs_cads_w{w}.png",
                 [f"CFG, w={w}", f"CADS ({hp(**tuned)}), w={w}"])
    side_by_side(sample("dyncfg"), sample("cads_paper"), st.figures / f"samples_dyncfg_vs_paper_w{w}.png",
                 [f"guidance annealing, w={w}", f"CADS, paper settings, w={w}"])

    grid = [(x, n) for x in sorted({x for v in scales.values() for x in v}) for n in ARMS if x in scales[n]]
    results = st.ci_table(["w", "arm", *metrics.values(), "seconds"], [
        ((f"{x:g}", ARMS[n][0]), dict(stage="compare", name=n, guidance=x)) for x, n in grid], [*metrics, "seconds"],
        rows=sets)
    sweep = table(["(tau1, tau2)", "s", "seed", fid, f"recall_k{k}", f"precision_k{k}", "class_acc"], [
        [f"({r['tau1']}, {r['tau2']})", r["s"], r["seed"], *(r[m] for m in (fid, rec, prec, acc))]
        for r in select(sets, stage="sweep")])
    st.publish(metrics={f"tuned_{x}": tuned[x] for x in ("tau1", "tau2", "s")}, fid=fid, cp=cp, sw=cfg.sweep, w=w,
               tuned=tuned, paper=res["paper"], results_table=results, sweep_table=sweep)


if __name__ == "__main__":
    run_main(main)
