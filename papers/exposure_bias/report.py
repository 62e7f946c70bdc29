"""Stage `report`: one table and one plot of every exposure-bias fix -> reports/exposure_bias/README.md (prose: report.md)."""


import numpy as np

from common.config import to_dict
from common.report import ci_cell, ci_curve, fmt, per_unit, select, table
from common.report_stage import ReportStage, nfe_axis
from common.stats import mean_ci
from papers.exposure_bias.config import ExposureBiasConfig
from papers.exposure_bias.evaluate import NAME

ORDER = ["none", "IP", "ES", "TS", "IP+ES", "IP+TS"]
STYLE = {"none": ("k", "o", "-"), "IP": ("C1", "o", "-"), "ES": ("C0", "s", "--"), "TS": ("C2", "^", "--"),
         "IP+ES": ("C0", "s", "-"), "IP+TS": ("C2", "^", "-")}
UNIT = "train_seed"  # the replication unit: IP changes training, so a trained pair of networks is one unit


def paired_change(rows, arm, nfe, metric):
    """Relative change of `metric` vs no fix, per training seed: cells paired on the same noise, then averaged."""
    base = {r["seed"]: r[metric] for r in select(rows, arm="none", nfe=nfe)}
    cells = [{UNIT: r[UNIT], "change": (r[metric] - base[r["seed"]]) / base[r["seed"]]}
             for r in select(rows, arm=arm, nfe=nfe)]
    return per_unit(cells, "change", UNIT)


def main(argv=None):
    st = ReportStage.load(ExposureBiasConfig, NAME, argv, claims=False)  # a comparison page: no claims
    cfg, res, rows, fid, nfes = st.cfg, st.results, st.rows, st.results["metric"], st.results["nfe"]
    n_units = len(per_unit(rows, fid, UNIT, arm="none", nfe=nfes[0]))

    with st.figure("fid_vs_nfe", figsize=(6, 4)) as ax:
        for k, arm in enumerate(ORDER):
            m, lo, hi = ci_curve(rows, "nfe", nfes, fid, unit=UNIT, arm=arm)
            xs = np.array(nfes) * (1 + 0.025 * (k - 2.5))  # small horizontal offsets so the bars do not overlap
            color, marker, ls = STYLE[arm]
            ax.errorbar(xs, m, yerr=[m - lo, hi - m], color=color, marker=marker, ls=ls, capsize=3, label=arm)
        nfe_axis(ax, nfes, fid, xlabel="DDIM steps (NFE)", yscale="log",
                 title=f"mean and 95% CI over {n_units} training seeds")
        ax.legend(ncol=2, fontsize=8)

    change = {(a, n): mean_ci(paired_change(rows, a, n, fid)) for a in ORDER[1:] for n in nfes}  # over training seeds
    other = [k for k in rows[0] if "[" in k and k != fid]
    header = ["fix", *[f"NFE {n}" for n in nfes]]
    protocol = {"profile": cfg.profile, "models": "models/ddpm_ip/{baseline,method}-seed<s>",
                "sampler": f"DDIM, NFE {nfes}, x0 clipped", "feature extractor": fid,
                "model calls (this stage)": f"{res['model_calls']:,}",
                "wall time (evaluate)": f"{res['eval_seconds']:.0f} s",
                "rows reused from papers/ddpm_ip": str(sum(r.get("source") == "ddpm_ip" for r in rows))}
    metrics = {f"{fid}.nfe{n}.{arm.replace('+', '_')}": float(np.mean([r[fid] for r in st.select(arm=arm, nfe=n)]))
               for arm in ORDER for n in nfes}
    st.publish(
        protocol, to_dict(cfg), metrics, fid=fid, n_units=n_units, min_nfe=min(nfes),
        n_cells=len(st.select(arm="none", nfe=nfes[0])) // max(n_units, 1),
        fid_table=table(header, [[a] + [ci_cell(per_unit(rows, fid, UNIT, arm=a, nfe=n)) for n in nfes] for a in ORDER]),
        change_table=table(header, [[a] + ["{:+.1%} [{:+.1%}, {:+.1%}]".format(*change[a, n]) for n in nfes]
                                    for a in ORDER[1:]]),
        other_table=table(["fix", *other], [[a] + [fmt(float(np.mean([r[k] for r in st.select(arm=a, nfe=min(nfes))])))
                                                   for k in other] for a in ORDER]),
        significant={a: ([n for n in nfes if change[a, n][2] < 0], [n for n in nfes if change[a, n][1] > 0])
                     for a in ORDER[1:]})  # arm -> (NFEs where it is significantly better, worse)


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
