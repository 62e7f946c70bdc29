"""Stage `report`: claims -> verdicts, Pareto fronts and plots, reports/cdr_pareto/README.md (prose: report.md), MLflow."""

import numpy as np

from common.config import to_dict
from common.publish import sampling_protocol
from common.report import select, table
from common.report_stage import ReportStage, ci_table, errorbar_curve
from papers.cdr_pareto.config import CDRParetoConfig
from papers.cdr_pareto.evaluate import knob_settings, setting_name
from papers.cdr_pareto.method import AXES, pareto_front

PAPER = "cdr_pareto"
FRONT_AXES = ("class_acc", "precision_k5", "coverage_k5")  # the three-axis front: one metric per axis
PAIRS = (("coverage_k5", "class_acc"), ("recall_k5", "precision_k5"), ("coverage_k5", "density_k5"),
         ("pairwise_dist", "class_acc"))  # 2-D views: (x = diversity, y = consistency or realism)
COLUMNS = ("class_acc", "target_prob", "precision_k5", "density_k5", "recall_k5", "coverage_k5", "cond_recall_k5",
           "cond_coverage_k5", "pairwise_dist", "fid")
SHOWN = tuple(m for m in COLUMNS if m not in ("target_prob", "cond_recall_k5"))  # along the guidance scale


def at(x, **more) -> dict:
    """The row fields of knob setting x = (w, s, nfe) (plus `more`, e.g. seed=...)."""
    return dict(w=x[0], s=x[1], nfe=x[2], **more)


def families(cfg, settings):
    """Knob curves through the settings: label -> (ordered settings, index of the knob in (w, s, nfe))."""
    k, n0 = cfg.knobs, cfg.sampler.nfe
    return {"guidance w": ([x for x in settings if x[1] == 0 and x[2] == n0], 0),
            **{f"CADS s (w={w:g})": ([x for x in settings if x[0] == w and x[2] == n0], 1) for w in k.cads_guidance},
            f"steps (w={k.steps_guidance:g})": (sorted([x for x in settings if x[0] == k.steps_guidance and x[1] == 0],
                                                       key=lambda x: x[2]), 2)}


def main(argv=None):
    st = ReportStage.load(CDRParetoConfig, PAPER, argv)
    cfg, res = st.cfg, st.results
    rows = [r for r in res["rows"] if "arm" not in r]  # the arm rows duplicate settings for the claims
    settings = [tuple(x) for x in res["settings"]]
    if settings != knob_settings(cfg):
        raise ValueError(f"{st.out / 'results.json'} holds knob settings {settings}, params.yaml gives "
                         f"{knob_settings(cfg)}; rerun the evaluate stage")
    seeds = sorted({r["seed"] for r in rows})

    def key(m):
        return f"{m}[{res['backbone']}]"

    def pts(metrics, **seed):
        """[settings, metrics] array of seed means (or of one seed's values: seed=...)."""
        return np.array([[np.mean([r[key(m)] for r in select(rows, **at(x, **seed))]) for m in metrics]
                         for x in settings])

    mean = {x: dict(zip(COLUMNS, v.tolist())) for x, v in zip(settings, pts(COLUMNS))}
    front = pareto_front(pts(FRONT_AXES))
    per_seed = np.sum([pareto_front(pts(FRONT_AXES, seed=sd)) for sd in seeds], 0)
    fam = families(cfg, settings)
    with st.figure("pareto_fronts", figsize=(10, 8), nrows=2, ncols=2) as axes:  # knob curves and the 2-D fronts
        for i, (ax, (mx, my)) in enumerate(zip(axes.flat, PAIRS)):
            hide = "_" * (i > 0)  # the legend of the first view names every curve
            for (name, (xs, knob)), color in zip(fam.items(), [f"C{j}" for j in range(len(fam))]):
                ax.plot([mean[x][mx] for x in xs], [mean[x][my] for x in xs], marker="o", color=color,
                        label=hide + name, alpha=0.85)
                for x in xs:
                    ax.annotate(f"{x[knob]:g}", (mean[x][mx], mean[x][my]), textcoords="offset points",
                                xytext=(3, 3), fontsize=7, color=color)
            fp = pts((mx, my))[pareto_front(pts((mx, my)))]
            fp = fp[np.argsort(fp[:, 0])]
            ax.step(fp[:, 0], fp[:, 1], where="post", color="k", ls="--", lw=1, label=hide + "Pareto front")
            ax.scatter(fp[:, 0], fp[:, 1], s=90, facecolors="none", edgecolors="k")
            ax.set(xlabel=f"{mx} ({AXES.get(mx, ('',))[0]})", ylabel=f"{my} ({AXES.get(my, ('',))[0]})")
        axes.flat[0].legend(fontsize=7)
        ax.figure.suptitle(f"Knob curves and Pareto fronts, mean of {len(seeds)} seeds ({res['backbone']} features)")
    g, n0 = fam["guidance w"][0], cfg.sampler.nfe
    with st.figure("metrics_vs_guidance", figsize=(13, 5.6), nrows=2, ncols=4) as axes:  # 95% intervals over seeds
        for ax, m in zip(axes.flat, SHOWN):
            errorbar_curve(ax, rows, "w", [x[0] for x in g], key(m), "seed", None, s=0.0, nfe=n0)
            ax.set(xlabel="guidance scale w", title=f"{m} ({AXES.get(m, ('realism+diversity',))[0]})")

    on_front = [setting_name(*x) for i, x in enumerate(settings) if front[i]]
    protocol = sampling_protocol(
        cfg, res, sampler=f"{cfg.sampler.method}, {cfg.sampler.spacing} spacing, x0 clipped={cfg.sampler.clip_x0}",
        knobs=f"guidance {list(cfg.knobs.guidance)} at {n0} steps; CADS s {list(cfg.knobs.cads_s)} at w "
              f"{list(cfg.knobs.cads_guidance)}; steps {list(cfg.knobs.steps)} at w {cfg.knobs.steps_guidance:g}",
        samples=f"{cfg.eval.num_samples} per setting x seeds {seeds}", prdc=f"k = {res['k']}, strict balls")
    metrics = {"eval_seconds": res["eval_seconds"], "front_size": int(front.sum()),
               **{f"{m}.w{x[0]:g}": mean[x][m] for x in g for m in FRONT_AXES}}
    d = to_dict(cfg)
    st.publish(protocol, {k: d[k] for k in ("sampler", "knobs", "eval")}, metrics,
               seeds=seeds, fid=key("fid"), front_axes=FRONT_AXES, on_front=on_front,
               settings_table=table(["w", "s", "steps", *COLUMNS, "3-axis front", "front seeds"], [
                   [f"{x[0]:g}", f"{x[1]:g}", x[2], *(mean[x][m] for m in COLUMNS), "**yes**" if front[i] else "",
                    f"{per_seed[i]}/{len(seeds)}"] for i, x in enumerate(settings)]),
               guidance_table=table(["w", *SHOWN], ci_table(rows, [(f"{x[0]:g}", at(x)) for x in g],
                                                            [key(m) for m in SHOWN], "seed")),
               samples=[setting_name(*x) for x in (g[0], g[-1]) + tuple(x for x in settings if x[1] > 0)[-1:]])
    print(f"3-axis front: {on_front}")


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
