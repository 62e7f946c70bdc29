"""Stage `report`: every exposure-bias fix in one plot and three tables -> reports/exposure_bias/README.md."""

import numpy as np

from common.cli import run_main
from common.report import ci_cell, ci_curve, per_unit, table
from common.report_stage import ReportStage, nfe_axis
from common.stats import mean_ci

STYLE = {"none": ("k", "o", "-"), "IP": ("C1", "o", "-"), "ES": ("C0", "s", "--"), "TS": ("C2", "^", "--"),
         "IP+ES": ("C0", "s", "-"), "IP+TS": ("C2", "^", "-")}  # arm -> color, marker, line style
UNIT = "train_seed"  # the replication unit: IP changes training, so a trained pair of networks is one unit


def main(argv=None):
    st = ReportStage.load(argv, claims=False)  # a comparison page: no claims
    rows, fid, nfes, arms = st.rows, st.results["metric"], st.results["nfe"], list(STYLE)
    n_units = len(per_unit(rows, fid, UNIT, arm="none", nfe=nfes[0]))
    mean = lambda k, **where: float(np.mean([r[k] for r in st.select(**where)]))  # over all cells

    with st.figure("fid_vs_nfe", figsize=(6, 4)) as ax:
        for k, (arm, (color, marker, ls)) in enumerate(STYLE.items()):
            m, lo, hi = ci_curve(rows, "nfe", nfes, fid, unit=UNIT, arm=arm)
            xs = np.array(nfes) * (1 + 0.025 * (k - 2.5))  # small horizontal offsets so the bars do not overlap
            ax.errorbar(xs, m, yerr=[m - lo, hi - m], color=color, marker=marker, ls=ls, capsize=3, label=arm)
        nfe_axis(ax, nfes, fid, xlabel="DDIM steps (NFE)", yscale="log",
                 title=f"mean and 95% CI over {n_units} training seeds")
        ax.legend(ncol=2, fontsize=8)

    # relative change vs no fix, cell by cell (same noise and labels), averaged per training seed, CI over those
    base = {(r["nfe"], r["seed"]): r[fid] for r in st.select(arm="none")}
    paired = [{**r, "change": (r[fid] - base[r["nfe"], r["seed"]]) / base[r["nfe"], r["seed"]]} for r in rows]
    change = {(a, n): mean_ci(per_unit(paired, "change", UNIT, arm=a, nfe=n)) for a in arms[1:] for n in nfes}
    other, header = [k for k in rows[0] if "[" in k and k != fid], ["fix", *[f"NFE {n}" for n in nfes]]
    st.publish(
        metrics={f"{fid}.nfe{n}.{a.replace('+', '_')}": mean(fid, arm=a, nfe=n) for a in arms for n in nfes},
        fid=fid, n_units=n_units, min_nfe=min(nfes), n_cells=len(st.select(arm="none", nfe=nfes[0])) // max(n_units, 1),
        fid_table=table(header, [[a, *(ci_cell(per_unit(rows, fid, UNIT, arm=a, nfe=n)) for n in nfes)] for a in arms]),
        change_table=table(header, [[a, *("{:+.1%} [{:+.1%}, {:+.1%}]".format(*change[a, n]) for n in nfes)]
                                    for a in arms[1:]]),
        other_table=table(["fix", *other], [[a, *(mean(k, arm=a, nfe=min(nfes)) for k in other)] for a in arms]),
        significant={a: ([n for n in nfes if change[a, n][2] < 0], [n for n in nfes if change[a, n][1] > 0])
                     for a in arms[1:]})  # arm -> (NFEs where it is significantly better, worse)


if __name__ == "__main__":
    run_main(main)
