"""Stage `report`: claims -> verdicts, Pareto fronts and plots, reports/cdr_pareto/README.md (prose: report.md), MLflow."""

import numpy as np

from common.cli import run_main
from common.report import select, table
from common.report_stage import ReportStage, errorbar_curve
from papers.cdr_pareto.evaluate import knob_settings, setting_name
from papers.cdr_pareto.method import AXES, pareto_front

FRONT_AXES = ("class_acc", "precision_k5", "coverage_k5")  # the three-axis front: one metric per axis
PAIRS = (("coverage_k5", "class_acc"), ("recall_k5", "precision_k5"), ("coverage_k5", "density_k5"),
         ("pairwise_dist", "class_acc"))  # 2-D views: (x = diversity, y = consistency or realism)
COLUMNS = ("class_acc", "target_prob", "precision_k5", "density_k5", "recall_k5", "coverage_k5", "cond_recall_k5",
           "cond_coverage_k5", "pairwise_dist", "fid")
SHOWN = tuple(m for m in COLUMNS if m not in ("target_prob", "cond_recall_k5"))  # along the guidance scale


def main(argv=None):
    st = ReportStage.load(argv)
    cfg, res, k, n0 = st.cfg, st.results, st.cfg.knobs, st.cfg.sampler.nfe
    rows = [r for r in res["rows"] if "arm" not in r]  # the arm rows duplicate settings for the claims
    settings, seeds = [tuple(x) for x in res["settings"]], sorted({r["seed"] for r in rows})
    if settings != knob_settings(cfg):  # results.json from another params.yaml
        raise ValueError(f"{st.out / 'results.json'}: knob settings {settings} differ from params.yaml's; rerun evaluate")
    key, axis = lambda m: f"{m}[{res['backbone']}]", lambda m: f"{m} ({AXES.get(m, ('realism+diversity',))[0]})"
    at = lambda x, **more: dict(w=x[0], s=x[1], nfe=x[2], **more)  # the row fields of knob setting (w, s, nfe)
    pts = lambda metrics, **seed: np.array([[np.mean([r[key(m)] for r in select(rows, **at(x, **seed))])
                                             for m in metrics] for x in settings])  # [settings, metrics] seed means
    mean = {x: dict(zip(COLUMNS, v.tolist())) for x, v in zip(settings, pts(COLUMNS))}
    front = pareto_front(pts(FRONT_AXES))
    per_seed = np.sum([pareto_front(pts(FRONT_AXES, seed=sd)) for sd in seeds], 0)
    families = {  # knob curves through the settings: label -> (ordered settings, index of the knob in (w, s, nfe))
        "guidance w": ([x for x in settings if x[1] == 0 and x[2] == n0], 0),
        **{f"CADS s (w={w:g})": ([x for x in settings if x[0] == w and x[2] == n0], 1) for w in k.cads_guidance},
        f"steps (w={k.steps_guidance:g})": (sorted([x for x in settings if x[0] == k.steps_guidance and x[1] == 0],
                                                   key=lambda x: x[2]), 2)}
    g = families["guidance w"][0]

    with st.figure("pareto_fronts", figsize=(10, 8), nrows=2, ncols=2) as axes:  # knob curves and the 2-D fronts
        for ax, (mx, my) in zip(axes.flat, PAIRS):
            hide = "" if ax is axes.flat[0] else "_"  # the legend of the first view names every curve
            xy = {x: (mean[x][mx], mean[x][my]) for x in settings}
            for j, (name, (xs, knob)) in enumerate(families.items()):
                ax.plot(*zip(*map(xy.get, xs)), marker="o", color=f"C{j}", label=hide + name, alpha=0.85)
                for x in xs:
                    ax.annotate(f"{x[knob]:g}", xy[x], textcoords="offset points", xytext=(3, 3), fontsize=7,
                                color=f"C{j}")
            fp = sorted(p for p, on in zip(xy.values(), pareto_front(list(xy.values()))) if on)
            ax.step(*zip(*fp), where="post", color="k", ls="--", lw=1, label=hide + "Pareto front")
            ax.scatter(*zip(*fp), s=90, facecolors="none", edgecolors="k")
            ax.set(xlabel=axis(mx), ylabel=axis(my))
        axes.flat[0].legend(fontsize=7)
        ax.figure.suptitle(f"Knob curves and Pareto fronts, mean of {len(seeds)} seeds ({res['backbone']} features)")
    with st.figure("metrics_vs_guidance", figsize=(13, 5.6), nrows=2, ncols=4) as axes:  # 95% intervals over seeds
        for ax, m in zip(axes.flat, SHOWN):
            errorbar_curve(ax, rows, "w", [x[0] for x in g], key(m), "seed", None, s=0.0, nfe=n0)
            ax.set(xlabel="guidance scale w", title=axis(m))

    st.publish(metrics={"front_size": int(front.sum())}, seeds=seeds, fid=key("fid"), front_axes=FRONT_AXES,
               on_front=[setting_name(*x) for x, on in zip(settings, front) if on],
               settings_table=table(["w", "s", "steps", *COLUMNS, "3-axis front", "front seeds"], [
                   [f"{x[0]:g}", f"{x[1]:g}", x[2], *(mean[x][m] for m in COLUMNS), "**yes**" if on else "",
                    f"{n}/{len(seeds)}"] for x, on, n in zip(settings, front, per_seed)]),
               guidance_table=st.ci_table(["w", *SHOWN], [(f"{x[0]:g}", at(x)) for x in g], [key(m) for m in SHOWN],
                                          rows=rows),
               samples=[setting_name(*x) for x in (g[0], g[-1]) + tuple(x for x in settings if x[1] > 0)[-1:]])


if __name__ == "__main__":
    run_main(main)
