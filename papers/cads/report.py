"""Stage `report`: claims -> verdicts, plots and reports/cads/README.md (prose: report.md), logged to MLflow."""

import numpy as np

from common.config import to_dict
from common.publish import sampling_protocol
from common.report import fmt, select, side_by_side, table
from common.report_stage import ReportStage, ci_table, errorbar_curve
from papers.cads.config import CADSConfig
from papers.cads.method import CADS

PAPER = "cads"
ARMS = {"cfg": ("CFG", "o", ":"), "cads": ("CADS (tuned)", "s", "-"), "dyncfg": ("guidance annealing", "^", "--"),
        "cads_paper": ("CADS (paper settings)", "D", "none")}


def main(argv=None):
    st = ReportStage.load(CADSConfig, PAPER, argv)
    cfg, res = st.cfg, st.results
    sets, fid, tuned, paper = res["sets"], res["metric"], res["tuned"], res["paper"]
    cp, sw, k = cfg.compare, cfg.sweep, cfg.diversity_k
    key = lambda m: f"{m}[{res['backbone']}]"
    rec, prec, acc = key(f"recall_k{k}"), key(f"precision_k{k}"), key("class_acc")
    metrics = [(rec, f"recall (k={k})"), (key(f"coverage_k{k}"), f"coverage (k={k})"),
               (key("pairwise_dist"), "within-class pairwise distance"), (prec, f"precision (k={k})"),
               (acc, "class accuracy"), (fid, fid)]
    scales = dict(zip(ARMS, (cp.guidance_scales, cp.guidance_scales, cp.dynamic_cfg_scales, cp.paper_scales)))
    mean = lambda m, **where: float(np.mean([r[m] for r in select(sets, stage="compare", **where)]))

    with st.figure("diversity_vs_guidance", figsize=(12, 6.4), nrows=2, ncols=3) as axes:
        for i, (ax, (m, label)) in enumerate(zip(axes.flat, metrics)):
            for name, (arm, marker, ls) in ARMS.items():  # one legend, in the first panel
                errorbar_curve(ax, sets, "guidance", scales[name], m, "seed", arm if i == 0 else "_",
                               stage="compare", name=name, marker=marker, ls=ls)
            ax.set(xlabel="guidance scale w", ylabel=label)
        axes.flat[0].legend(fontsize=7)
        axes.flat[0].figure.suptitle(f"mean and 95% interval over seeds {list(cp.seeds)}, "
                                     f"{cp.num_samples} samples each")
    with st.figure("precision_vs_recall", figsize=(5.4, 4.2)) as ax:
        for name, (arm, marker, ls) in ARMS.items():
            pts = [(mean(rec, name=name, guidance=w), mean(prec, name=name, guidance=w)) for w in scales[name]]
            ax.plot(*zip(*pts), ls=ls, marker=marker, label=arm)
            for w, xy in zip(scales[name], pts):
                ax.annotate(f"w={w:g}", xy, fontsize=6, xytext=(3, 3), textcoords="offset points")
        ax.set(xlabel=f"recall (k={k})", ylabel=f"precision (k={k})", title="precision vs recall (seed means)")
        ax.legend(fontsize=7)
    with st.figure("gamma", figsize=(5.4, 3.4)) as ax:  # eq. 2 and its values at the sampling steps
        g, t_grid = res["gamma"], np.linspace(0, 1, 401)
        for name, marker, a in (("tuned", "s", tuned), ("paper", "D", paper)):
            line, = ax.plot(t_grid, [CADS(a["tau1"], a["tau2"]).gamma(float(t)) for t in t_grid],
                            label=f"{name}: tau1={a['tau1']}, tau2={a['tau2']}, s={a['s']}")
            ax.plot(np.array(g["timesteps"]) / (g["num_train_timesteps"] - 1), g[name], ls="none", marker=marker, ms=4,
                    color=line.get_color())
        ax.set(xlabel="t = t_train / (T-1)  (1 = pure noise; sampling runs left to right)", ylabel="gamma(t)",
               title=f"CADS schedule (eq. 2); markers: the {cfg.sampler.nfe} sampling steps")
        ax.invert_xaxis()
        ax.legend(fontsize=7)
    w = f"{max(cp.guidance_scales):g}"
    sample = lambda arm: st.out / "samples" / f"{arm}_w{w}.png"
    side_by_side(sample("cfg"), sample("cads"), st.figures / f"samples_cfg_vs_cads_w{w}.png",
                 [f"CFG, w={w}", f"CADS (tau1={tuned['tau1']}, tau2={tuned['tau2']}, s={tuned['s']}), w={w}"])
    side_by_side(sample("dyncfg"), sample("cads_paper"), st.figures / f"samples_dyncfg_vs_paper_w{w}.png",
                 [f"guidance annealing, w={w}", f"CADS, paper settings, w={w}"])

    cols = [m for m, _ in metrics] + ["seconds"]
    grid = [(x, n) for x in sorted({x for v in scales.values() for x in v}) for n in ARMS if x in scales[n]]
    comp = ci_table(sets, [(ARMS[n][0], dict(stage="compare", name=n, guidance=x)) for x, n in grid], cols, "seed")
    results = table(["w", "arm"] + [label for _, label in metrics] + ["seconds"],
                    [[f"{x:g}", *row] for (x, _), row in zip(grid, comp)])
    sweep = table(["(tau1, tau2)", "s", "seed", fid, f"recall_k{k}", f"precision_k{k}", "class_acc"], [
        [f"({r['tau1']}, {r['tau2']})", r["s"], r["seed"], *(fmt(r[m]) for m in (fid, rec, prec, acc))]
        for r in select(sets, stage="sweep")])

    protocol = sampling_protocol(
        cfg, res,
        sampler=f"{cfg.sampler.method} {cfg.sampler.nfe} steps, {cfg.sampler.spacing} respacing, x0 clipped="
                f"{cfg.sampler.clip_x0}",
        compare=f"guidance {list(cp.guidance_scales)} (annealing {list(cp.dynamic_cfg_scales)}, paper settings "
                f"{list(cp.paper_scales)}), {cp.num_samples} samples x seeds {list(cp.seeds)}",
        sweep=f"w={sw.guidance_scale:g}, windows {sw.windows} x s {list(sw.s)}, {sw.num_samples} samples x seeds "
              f"{list(sw.seeds)}",
        diversity=f"PRDC k={k} (common/diversity.py) against the reference set; pairwise distance within class")
    summary = {**{f"tuned_{x}": tuned[x] for x in ("tau1", "tau2", "s")}, "eval_seconds": res["eval_seconds"]}
    d = to_dict(cfg)
    st.publish(protocol, {k_: d[k_] for k_ in ("sampler", "paper", "diversity_k", "sweep", "compare")}, summary,
               fid=fid, cp=cp, sw=sw, w=w, tuned=tuned, paper=paper, results_table=results, sweep_table=sweep)


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
