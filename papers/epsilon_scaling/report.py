"""Stage `report`: claims -> verdicts, plots and reports/epsilon_scaling/README.md, logged to MLflow."""

import json
import sys
from pathlib import Path

import numpy as np

from common.claims import evaluate_claims, load_claims
from common.config import load_config, resolve, to_dict
from common.publish import publish, sampling_protocol
from common.report import ci_cell, ci_curve, plt, select, side_by_side, table
from papers.epsilon_scaling.config import EpsilonScalingConfig

PAPER = "epsilon_scaling"
HERE = Path(__file__).parent


def main(argv=None):
    cfg = load_config(EpsilonScalingConfig, paper=PAPER, overrides=sys.argv[1:] if argv is None else argv)
    out = resolve(cfg, cfg.paths.reports, PAPER)
    res = json.loads((out / "results.json").read_text())
    rows, fid, b_star = res["rows"], res["metric"], res["b_star"]
    verdicts = evaluate_claims(load_claims(HERE / "claims.yaml"), rows, res.get("floors"))
    figs = out / "figures"
    figs.mkdir(exist_ok=True)
    p = plt()
    c, sw = cfg.compare, cfg.sweep

    # FID vs NFE with 95% intervals over seeds
    fig, ax = p.subplots(figsize=(5, 3.4))
    for arm, label in (("baseline", "baseline (λ = 1)"), ("method", f"ES (λ = {b_star:g})")):
        m, lo, hi = ci_curve(rows, "nfe", c.nfe, fid, stage="compare", arm=arm, group="uniform")
        ax.errorbar(c.nfe, m, yerr=[m - lo, hi - m], marker="o", capsize=3, label=label)
    ax.set(xlabel="sampling steps (NFE)", ylabel=fid, xscale="log", xticks=c.nfe, xticklabels=[str(n) for n in c.nfe])
    ax.legend()
    fig.tight_layout()
    fig.savefig(figs / "fid_vs_nfe.png", dpi=120)
    p.close(fig)

    # FID vs b (the U-shaped curve)
    fig, ax = p.subplots(figsize=(5, 3.4))
    m, lo, hi = ci_curve(rows, "b", sw.b, fid, stage="sweep")
    ax.plot(sw.b, m, marker="o")
    ax.fill_between(sw.b, lo, hi, alpha=0.25, label="95% CI over seeds")
    ax.axvline(b_star, color="gray", ls="--", label=f"b* = {b_star:g}")
    ax.set(xlabel="b (uniform λ)", ylabel=fid, title=f"{sw.nfe} steps, {sw.num_samples} samples x {len(sw.seeds)} seeds")
    ax.legend()
    fig.tight_layout()
    fig.savefig(figs / "fid_vs_b.png", dpi=120)
    p.close(fig)

    n0 = min(c.nfe)
    side_by_side(out / "samples" / f"nfe{n0}_baseline_uniform.png", out / "samples" / f"nfe{n0}_method_uniform.png",
                 figs / f"samples_nfe{n0}.png", [f"baseline, {n0} steps", f"ES b={b_star:g}, {n0} steps"])

    # tables
    keys = [k for k in rows[0] if "[" in k]
    comp = []
    for nfe in c.nfe:
        arms = [("baseline", "uniform", "baseline λ=1"), ("method", "uniform", f"ES uniform b={b_star:g}")]
        if nfe == c.linear_nfe:
            arms.append(("method", "linear", f"ES linear k={res['k_linear']:.2g}, b={c.linear_b0:g}"))
        for arm, group, label in arms:
            sel = select(rows, stage="compare", nfe=nfe, arm=arm, group=group)
            comp.append([nfe, label] + [ci_cell([r[k] for r in sel]) for k in keys])
    sweep_tab = [[b, ci_cell([r[fid] for r in select(rows, stage="sweep", b=b)])] for b in sw.b]
    sections = [
        "## Results\n\n"
        f"Mean and 95% interval over sampling seeds {list(c.seeds)} ({c.num_samples} samples each). "
        f"b* = {b_star:g} was chosen on the sweep seeds {list(sw.seeds)}, which are disjoint from these.\n\n"
        + (f"Real-vs-real {fid} at {res['floor_samples']} samples: {res['floors'][fid]:.3g} (the metric's "
          "resolution; effects below it are marked).\n\n" if res.get("floors") else "")
        + table(["NFE", "sampler"] + keys, comp)
        + "\n\n![FID vs NFE](figures/fid_vs_nfe.png)",
        f"## FID vs b ({sw.nfe} steps)\n\n"
        + table(["b", f"{fid} (mean [95% CI])"], sweep_tab)
        + "\n\n![FID vs b](figures/fid_vs_b.png)",
        f"## Samples ({n0} steps, same initial noise and labels on both sides)\n\n"
        f"![samples](figures/samples_nfe{n0}.png)",
        "## Reading the result\n\n"
        "The paper's numbers come from ADM on CIFAR-10 with 50k samples and Inception features; ours from the "
        f"shared {cfg.data.resolution}x{cfg.data.resolution} class-conditional MNIST model (step "
        f"{res['base_model_step']}) and the in-repo `{res['backbone']}` feature space, so only directions and "
        "relative effects are comparable, not absolute FIDs.",
    ]
    protocol = sampling_protocol(
        cfg, res,
        sampler=f"{cfg.sampler.method}, {cfg.sampler.spacing} respacing, x0 clipped={cfg.sampler.clip_x0}, "
                f"guidance {cfg.sampler.guidance_scale}",
        compare=f"NFE {list(c.nfe)}, {c.num_samples} samples x seeds {list(c.seeds)}",
        sweep=f"NFE {sw.nfe}, b in {list(sw.b)}, {sw.num_samples} samples x seeds {list(sw.seeds)}")
    intro = ("**Paper:** Ning et al., *Elucidating the Exposure Bias in Diffusion Models*, ICLR 2024 "
             "([arXiv:2308.15321](https://arxiv.org/abs/2308.15321)). **Idea:** divide the predicted noise by "
             "λ_t > 1 at sampling time to undo exposure bias, without retraining. Implementation: "
             "[`papers/epsilon_scaling/method.py`](../../papers/epsilon_scaling/method.py).")
    metrics = {"b_star": b_star, "eval_seconds": res["eval_seconds"]}
    for nfe in c.nfe:
        for arm in ("baseline", "method"):
            vals = [r[fid] for r in select(rows, stage="compare", nfe=nfe, arm=arm, group="uniform")]
            metrics[f"{fid}.nfe{nfe}.{arm}"] = float(np.mean(vals))
    d = to_dict(cfg)
    path = publish(cfg, PAPER, "Epsilon Scaling (Ning et al., ICLR 2024)", intro, verdicts, sections, protocol,
                   {k: d[k] for k in ("sampler", "compare", "sweep")}, metrics, [figs, out / "results.json"])
    print(f"wrote {path}")


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
