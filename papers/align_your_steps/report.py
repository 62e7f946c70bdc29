"""Stage `report`: claims -> verdicts, plots and reports/align_your_steps/README.md (prose: report.md)."""

import numpy as np

from common.cli import run_main
from common.report import ci_cell, fmt, per_unit, side_by_side, table
from common.report_stage import ReportStage
from papers.align_your_steps.method import gaussian_klub_optimal

LABELS = {"ays": "AYS", "time_uniform": "time-uniform", "edm": "EDM (rho=7)", "log_snr": "log-SNR uniform"}


def main(argv=None):
    st = ReportStage.load(argv)
    cfg, res, fid = st.cfg, st.results, st.results["metric"]
    o, cp, n0, hist, sched = cfg.optimize, cfg.compare, cfg.optimize.num_steps, res["history"], res["schedules"]
    names, pair, sweeps = ["ays", *cp.baselines], (cp.baselines[0], "ays"), [h["sweep"] for h in hist]
    arm = {n: dict(schedule=n, group=cp.baselines[0] if n == "ays" else n) for n in names}  # AYS rows: one copy
    lw = {n: 2.2 if n == "ays" else 1.2 for n in names}
    ts = lambda xs, f=str: " ".join(map(f, xs))

    st.curves("fid_vs_nfe", "nfe", cp.nfe, fid, {LABELS[n]: dict(**arm[n], lw=lw[n]) for n in names}, nfe=True)
    with st.figure("schedules", figsize=(5.2, 3.5)) as ax:  # with the KLUB-optimal one for Gaussian data (App. A.3)
        x = np.linspace(0, 1, n0 + 1)
        for n in names:
            ax.plot(x, sched[str(n0)][n]["sigmas"], marker="o", ms=3, label=LABELS[n], lw=lw[n])
        ax.plot(x, gaussian_klub_optimal(res["sigma_min"], res["sigma_max"], n0, o.c)[::-1], ls=":", color="gray",
                label=f"KLUB-optimal, Gaussian c={o.c:g}")
        ax.set(yscale="log", xlabel="step i / n", ylabel="noise level sigma", title=f"{n0}-step schedules")
        ax.legend(fontsize=7)
    with st.figure("optimization", figsize=(5.2, 3.5)) as ax:  # the coarse stage: KLUB and early-stopping FID
        ax.errorbar(sweeps, [h["klub"] for h in hist], yerr=[2 * h["klub_se"] for h in hist], marker="o", capsize=3)
        ax.set(xlabel="pass of Algorithm 1", ylabel="KLUB estimate (±2 s.e.)", yscale="log", xticks=sweeps)
        if any(h["proxy"] is not None for h in hist):
            ax2 = ax.twinx()
            ax2.plot(sweeps, [h["proxy"] for h in hist], marker="s", color="C1")
            ax2.set_ylabel(f"early-stopping {fid}", color="C1")
    side_by_side(*(st.out / "samples" / f"nfe{n0}_{a}.png" for a in pair), st.figures / f"samples_nfe{n0}.png",
                 [f"{LABELS[a]}, {n0} steps" for a in pair])  # the first baseline vs AYS

    keys = [k for k in st.rows[0] if "[" in k]
    cells = [(nfe, LABELS[n], arm[n], sched[str(nfe)][n]) for nfe in cp.nfe for n in names]
    results = table(["NFE", "schedule", *keys, "KLUB"], [
        [nfe, label, *(ci_cell(per_unit(st.rows, k, nfe=nfe, **a)) for k in keys), s["klub"]]
        for nfe, label, a, s in cells])
    schedules = table(["NFE", "schedule", "timesteps"], [[nfe, label, ts(s["timesteps"])] for nfe, label, _, s in cells])
    stages = table(["steps", "timesteps", "sigmas"],
                   [[s["num_steps"], ts(s["timesteps"]), ts(s["sigmas"], lambda v: fmt(v, 3))] for s in res["stages"]])
    passes = table(["pass", "changed", "KLUB", "s.e.", f"early-stopping {fid}", "timesteps"], [
        [f"**{h['sweep']}** (kept)" if h["kept"] else h["sweep"], fmt(h["changed"]), h["klub"], h["klub_se"],
         fmt(h["proxy"]), ts(h["timesteps"])] for h in hist])
    st.publish(metrics={"coarse_passes": max(sweeps), "kept_pass": next(h["sweep"] for h in hist if h["kept"])},
               fid=fid, o=o, cp=cp, es=cfg.early_stopping, n0=n0, init=LABELS.get(o.init, o.init),
               results_table=results, schedules_table=schedules, stages_table=stages, passes_table=passes)


if __name__ == "__main__":
    run_main(main)
