"""Stage `report`: one table and one plot of every exposure-bias fix -> reports/exposure_bias/README.md."""

import json
import sys

import numpy as np
from matplotlib.ticker import NullFormatter

from common.config import load_config, resolve, to_dict
from common.publish import publish
from common.report import ci_cell, ci_curve, fmt, per_unit, plt, select, table
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


def verdict_lines(rows, metric, nfes):
    """One data-driven sentence per arm: where its paired change is significantly better / worse."""
    lines = []
    for arm in ORDER[1:]:
        better, worse = [], []
        for n in nfes:
            m, lo, hi = mean_ci(paired_change(rows, arm, n, metric))
            (better if hi < 0 else worse if lo > 0 else []).append(str(n))  # over training seeds
        parts = [f"better at NFE {', '.join(better)}" if better else "",
                 f"worse at NFE {', '.join(worse)}" if worse else ""]
        said = "; ".join(x for x in parts if x) or "no significant change at any NFE"
        lines.append(f"- **{arm}** vs no fix: {said} (95% interval over training seeds of the paired change).")
    return "\n".join(lines) + (
        "\n\nIP and ES push in the same direction: at high noise an IP-trained network behaves like ES with "
        "λ ≈ 1 + γ² (the Gaussian IP-optimal predictor in `papers/ddpm_ip/method.py`), so where one helps or "
        "hurts the other tends to as well, and stacking them (IP+ES) compounds the effect.")


def main(argv=None):
    cfg = load_config(ExposureBiasConfig, paper=NAME, overrides=sys.argv[1:] if argv is None else argv)
    out = resolve(cfg, cfg.paths.reports, NAME)
    res = json.loads((out / "results.json").read_text())
    rows, fid, nfes = res["rows"], res["metric"], res["nfe"]
    n_cells = len(select(rows, arm="none", nfe=nfes[0]))
    n_units = len(per_unit(rows, fid, UNIT, arm="none", nfe=nfes[0]))
    figs = out / "figures"
    figs.mkdir(exist_ok=True)
    p = plt()
    fig, ax = p.subplots(figsize=(6, 4))
    for k, arm in enumerate(ORDER):
        m, lo, hi = ci_curve(rows, "nfe", nfes, fid, unit=UNIT, arm=arm)
        xs = np.array(nfes) * (1 + 0.025 * (k - 2.5))  # small horizontal offsets so the bars do not overlap
        color, marker, ls = STYLE[arm]
        ax.errorbar(xs, m, yerr=[m - lo, hi - m], color=color, marker=marker, ls=ls, capsize=3, label=arm)
    ax.set(xlabel="DDIM steps (NFE)", ylabel=fid, xscale="log", yscale="log", xticks=nfes,
           xticklabels=[str(n) for n in nfes], title=f"mean and 95% CI over {n_units} training seeds")
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.legend(ncol=2, fontsize=8)
    fig.tight_layout()
    fig.savefig(figs / "fid_vs_nfe.png", dpi=120)
    p.close(fig)

    tab = [[arm] + [ci_cell(per_unit(rows, fid, UNIT, arm=arm, nfe=n)) for n in nfes] for arm in ORDER]
    change = []
    for arm in ORDER[1:]:
        cells = []
        for n in nfes:
            m, lo, hi = mean_ci(paired_change(rows, arm, n, fid))
            cells.append(f"{m:+.1%} [{lo:+.1%}, {hi:+.1%}]")
        change.append([arm] + cells)
    other = [k for k in rows[0] if "[" in k and k != fid]
    extra = [[arm] + [fmt(float(np.mean([r[k] for r in select(rows, arm=arm, nfe=min(nfes))]))) for k in other]
             for arm in ORDER]
    b, w, c = res["es_b"], res["ts_window"], res["ts_cutoff"]
    sections = [
        f"## {fid} at each NFE\n\n"
        f"Mean and 95% Student-t interval over {n_units} training seeds, the replication unit (their "
        f"{n_cells // max(n_units, 1)} sampling seeds averaged first; every arm uses the same initial noise and "
        f"labels in a cell). Sampler: DDIM (η = 0), {res['num_samples']} samples per cell. With {n_units} units "
        "the intervals are wide: this page ranks the fixes, it does not test them (see each paper's verdicts, "
        "[docs/verdicts.md](../../docs/verdicts.md)).\n\n"
        + (f"Real-vs-real {fid} at {res['floor_samples']} samples: {res['floors'][fid]:.3g} (the metric's "
           "resolution: arms closer than this differ by less than real images do).\n\n" if res.get("floors") else "")
        + table(["fix", *[f"NFE {n}" for n in nfes]], tab)
        + "\n\n![FID vs NFE](figures/fid_vs_nfe.png)",
        "## Change vs no fix (paired, relative)\n\n"
        f"Negative is better. Changes are paired cell by cell (same noise and labels), averaged per training seed, "
        f"and the interval is over the {n_units} training seeds; one that straddles 0 is no evidence either "
        "way.\n\n" + table(["fix", *[f"NFE {n}" for n in nfes]], change),
        f"## Other metrics at NFE {min(nfes)} (means)\n\n" + table(["fix", *other], extra),
        "## The arms\n\n" + table(["arm", "model", "sampler fix", "setting (selected by)"], [
            ["none", "baseline-trained", "—", "—"],
            ["IP", "IP-trained (γ from papers/ddpm_ip)", "—", "—"],
            ["ES", "baseline-trained", "ε/λ, uniform λ = b", f"b = {b:g} (papers/epsilon_scaling sweep)"],
            ["TS", "baseline-trained", "time shift", f"window {w}, cutoff {c} (papers/time_shift sweep)"],
            ["IP+ES", "IP-trained", "ε/λ", f"b = {b:g}"],
            ["IP+TS", "IP-trained", "time shift", f"window {w}, cutoff {c}"]]),
        "## Reading it\n\n" + verdict_lines(rows, fid, nfes) + "\n\n"
        "Pairing the cells removes the sampling noise that arms share within a training seed, not the spread "
        "between training seeds: every interval on this page is over training seeds, so it is as wide as the "
        "networks' seed-to-seed variation makes it. "
        "All arms share the networks of [papers/ddpm_ip](../ddpm_ip/README.md) (small UNets trained for a few "
        "hundred steps), so this page compares the fixes on one substrate; the ES and TS settings were selected "
        "by their own papers' stages on the larger shared base model and are used here as is, without "
        "re-tuning on these models or seeds. The papers report all three fixes on CIFAR-10 ADM models with "
        "Inception FID; see each paper's report for its claims and verdicts.",
    ]
    protocol = {"profile": cfg.profile, "models": "models/ddpm_ip/{baseline,method}-seed<s>",
                "sampler": f"DDIM, NFE {nfes}, x0 clipped", "feature extractor": fid,
                "model calls (this stage)": f"{res['model_calls']:,}",
                "wall time (evaluate)": f"{res['eval_seconds']:.0f} s",
                "rows reused from papers/ddpm_ip": str(sum(r.get("source") == "ddpm_ip" for r in rows))}
    intro = ("Not a paper: one page comparing the three exposure-bias fixes of this repository, alone and "
             "combined, on the same data, models, NFE grid and seeds. Input perturbation changes training "
             "([DDPM-IP](../ddpm_ip/README.md)); Epsilon Scaling ([ES](../epsilon_scaling/README.md)) and the "
             "Time-Shift sampler ([TS](../time_shift/README.md)) change sampling only.")
    metrics = {f"{fid}.nfe{n}.{arm.replace('+', '_')}": float(np.mean([r[fid] for r in select(rows, arm=arm, nfe=n)]))
               for arm in ORDER for n in nfes}
    path = publish(cfg, NAME, "Exposure bias: input perturbation vs Epsilon Scaling vs Time-Shift", intro, [],
                   sections, protocol, to_dict(cfg), metrics, [figs, out / "results.json"])
    print(f"wrote {path}")


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
