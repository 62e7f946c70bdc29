"""Stage `report`: FID / precision / recall vs NFE of every method, cost tables, verdicts ->
reports/one_step_comparison/README.md."""

import numpy as np
from matplotlib.ticker import ScalarFormatter

from common.cli import run_main
from common.report import ci_curve, per_unit, table
from common.report_stage import ReportStage, nfe_axis

UNIT = "train_seed"
STYLE = {"diffusion2gan": ("C0", "s", "-", "Diffusion2GAN (E-LatentLPIPS + GAN)"),
         "imagine_flash": ("C1", "^", "-", "Imagine Flash (backward + SRL + NC)"),
         "pagoda": ("C2", "D", "-", "PaGoDA (teacher resolution)"),
         "teacher_ddim": ("k", "o", "--", "teacher DDIM"),
         "teacher_dpm_solver_2m": ("0.5", "o", ":", "teacher DPM-Solver++(2M)")}
SHORT = {"fid": "FID", "precision": "precision", "recall": "recall", "class_acc": "class accuracy"}


def nfes_of(rows, arm):
    return sorted({r["nfe"] for r in rows if r["arm"] == arm})


def cells(rows, arms, metrics):
    """(arm, nfe) -> one 'mean [95% CI]' cell per metric, over training seeds."""
    from common.report import ci_cell

    return [[STYLE[a][3], n, *(ci_cell(per_unit(rows, k, UNIT, arm=a, nfe=n)) for k in metrics)]
            for a in arms for n in nfes_of(rows, a)]


def main(argv=None):
    st = ReportStage.load(argv, also=["pairs.json"])
    res, rows = st.results, st.results["rows"]
    metrics, fid = res["metrics"], res["metric"]
    arms = [a for a in STYLE if any(r["arm"] == a for r in rows)]
    n_units = len(per_unit(rows, fid, UNIT, arm="pagoda", nfe=1))
    all_nfe = sorted({r["nfe"] for r in rows})

    with st.figure("metrics_vs_nfe", figsize=(13, 3.8), ncols=3) as axes:
        for ax, key in zip(axes, metrics[:3]):
            for k, a in enumerate(arms):
                color, marker, ls, label = STYLE[a]
                xs = nfes_of(rows, a)
                m, lo, hi = ci_curve(rows, "nfe", xs, key, unit=UNIT, arm=a)
                off = np.array(xs) * (1 + 0.03 * (k - 2))  # small offsets so the bars do not overlap
                ax.errorbar(off, m, yerr=[m - lo, hi - m], color=color, marker=marker, ls=ls, capsize=3, label=label)
            nfe_axis(ax, all_nfe, key, xlabel="network calls per sample (NFE)",
                     yscale="log" if key == fid else "linear")
        axes[0].set_title(f"mean and 95% CI over {n_units} training seeds", fontsize=9)
        axes[0].legend(fontsize=7)
        for ax in axes[1:]:
            ax.legend().set_visible(False)  # one legend for the three panels

    cost = {(c["arm"], c["nfe"]): c for c in res["sampling_cost"]}
    with st.figure("fid_vs_seconds", figsize=(5.4, 3.8)) as ax:
        for a in arms:
            color, marker, ls, label = STYLE[a]
            xs = nfes_of(rows, a)
            m, lo, hi = ci_curve(rows, "nfe", xs, fid, unit=UNIT, arm=a)
            secs = [1e3 * cost[a, n]["seconds_per_sample"] for n in xs]
            ax.errorbar(secs, m, yerr=[m - lo, hi - m], color=color, marker=marker, ls=ls, capsize=3, label=label)
        ax.set(xlabel=f"ms per sample (batch {res['sampling_cost'][0]['batch_size']}, one CPU core)", ylabel=fid,
               xscale="log", yscale="log")
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(ScalarFormatter())
        ax.legend(fontsize=7)

    tc = res["training_cost"]
    train_table = table(
        ["method", "steps x batch", "generator passes / sample-step", "online teacher-size calls / sample-step",
         "offline teacher calls", "forward-pass equivalents F", "discriminator passes / sample-step",
         "measured train s (mean per seed)", "offline s"],
        [[STYLE[c["arm"]][3], f"{c['steps']} x {c['batch_size']} = {c['sample_steps']:,}", c["generator_passes"],
          f"{c['online_calls']:g}", f"{c['offline_calls']:,} ({c['offline']})", f"{c['forward_equivalents']:,.0f}",
          c["disc_passes"], f"{c['train_seconds']:.0f}",
          "-" if c["offline_seconds"] is None else f"{c['offline_seconds']:.0f}"] for c in tc])
    sample_table = table(["sampler", "NFE", "network calls / sample", "ms / sample", "per-round ms"],
                         [[STYLE[c["arm"]][3], c["nfe"], c["network_calls"], f"{1e3 * c['seconds_per_sample']:.3f}",
                           ", ".join(f"{1e3 * v:.3f}" for v in c["rounds"])] for c in res["sampling_cost"]])
    tr = st.read("train.json", ["train_seconds", "inversion"])
    mean = lambda k, **w: float(np.mean(per_unit(rows, k, UNIT, **w)))  # noqa: E731
    leaders = [(n, *min((mean(fid, arm=a, nfe=n), STYLE[a][3]) for a in arms if n in nfes_of(rows, a)))
               for n in all_nfe]  # (NFE, lowest mean FID, its method)
    st.publish(
        metrics={f"{m.split('[')[0]}.{a}.nfe{n}": mean(m, arm=a, nfe=n) for a in arms for n in nfes_of(rows, a)
                 for m in metrics},
        fid=fid, n_units=n_units, s=res["settings"], train_table=train_table, sample_table=sample_table,
        metric_table=table(["method", "NFE", *[SHORT.get(m.split("[")[0], m) for m in metrics]],
                           cells(rows, arms, metrics)),
        reused=res["reused"], n_reused=sum(r["source"] != "one_step_comparison" for r in rows),
        n_rows=len(rows), leaders=leaders, train_seconds=tr["train_seconds"], inversion_seconds=tr["inversion"]["seconds"])


if __name__ == "__main__":
    run_main(main)
