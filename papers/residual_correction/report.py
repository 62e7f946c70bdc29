"""Stage `report`: claims -> verdicts, plots and reports/residual_correction/README.md, logged to MLflow."""

import json
import sys
from pathlib import Path

import numpy as np

from common.claims import evaluate_claims, load_claims
from common.config import load_config, resolve, to_dict
from common.publish import publish, sampling_protocol
from common.report import ci_cell, ci_curve, fmt, plt, select, side_by_side, table
from papers.residual_correction.config import ResidualCorrectionConfig

PAPER = "residual_correction"
HERE = Path(__file__).parent


def main(argv=None):
    cfg = load_config(ResidualCorrectionConfig, paper=PAPER, overrides=sys.argv[1:] if argv is None else argv)
    out = resolve(cfg, cfg.paths.reports, PAPER)
    res = json.loads((out / "results.json").read_text())
    sim = json.loads((out / "simulate.json").read_text())
    trn = json.loads((out / "train.json").read_text())
    rows, fid, size = res["rows"], res["metric"], res["size"]
    verdicts = evaluate_claims(load_claims(HERE / "claims.yaml"), rows, res.get("floors"))
    figs = out / "figures"
    figs.mkdir(exist_ok=True)
    p, ev, s, c = plt(), cfg.evaluate, cfg.simulate, cfg.correction

    # FID vs NFE with 95% intervals over seeds
    fig, ax = p.subplots(figsize=(5.2, 3.5))
    groups = [("base", ev.nfe, "")] + ([("transfer", ev.transfer_nfe, "other model: ")] if ev.transfer_model else [])
    for group, grid, prefix in groups:
        for arm, style, label in (("baseline", ":", "DDIM"), ("method", "-", "DDIM + correction")):
            m, lo, hi = ci_curve(rows, "nfe", grid, fid, stage="compare", group=group, arm=arm)
            ax.errorbar(grid, m, yerr=[m - lo, hi - m], ls=style, marker="o", capsize=3, label=prefix + label)
    ax.set(xlabel="sampling steps (NFE)", ylabel=fid, xscale="log", yscale="log", xticks=ev.nfe,
           xticklabels=[str(n) for n in ev.nfe])
    ax.xaxis.set_minor_formatter("")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(figs / "fid_vs_nfe.png", dpi=120)
    p.close(fig)

    n0 = min(ev.nfe)
    side_by_side(out / "samples" / f"base_nfe{n0}_baseline.png", out / "samples" / f"base_nfe{n0}_method.png",
                 figs / f"samples_nfe{n0}.png", [f"DDIM, {n0} steps", f"DDIM + correction, {n0} steps"])

    keys = [k for k in rows[0] if "[" in k]
    comp = [[{"base": "base model", "transfer": f"{ev.transfer_model} (transfer)"}[group], nfe, label]
            + [ci_cell([r[k] for r in select(rows, stage="compare", group=group, nfe=nfe, arm=arm)]) for k in keys]
            for group, grid, _ in groups for nfe in grid
            for arm, label in (("baseline", "DDIM"), ("method", "DDIM + correction"))]
    gap = [[n] + [fmt(trn["gap_mse"][split][str(n)][k]) for split in ("train", "heldout") for k in ("before", "after")]
           + [ci_cell([r["correction_msq"] for r in select(rows, stage="compare", group="base", nfe=n, arm="method")])
              if n in ev.nfe else "n/a"]
           for n in s.nfe]
    cost = [["parameters", f"{size['base_params']:,}", f"{size['correction_params']:,}", fmt(size["params_ratio"])],
            ["FLOPs per call (one sample)", f"{size['base_flops']:,}", f"{size['correction_flops']:,}",
             fmt(size["flops_ratio"])]]
    overhead = [[group, nfe, fmt(res["sampling_overhead_flops"].get(str(nfe), float("nan"))) if group == "base" else "",
                 ci_cell([r["overhead"] for r in select(rows, stage="overhead", group=group, nfe=nfe)])]
                for group, grid, _ in groups for nfe in grid]
    sections = [
        "## Results\n\n"
        f"Mean and 95% interval over sampling seeds {list(ev.seeds)} ({ev.num_samples} samples each). Both arms score "
        "the same DDIM samples: the method adds r_phi(x_hat_0, N) to them, nothing else changes. The transfer rows "
        f"apply the same correction, unchanged, to samples of `models/{ev.transfer_model}` "
        f"(step {res['transfer_model_step']}).\n\n"
        + (f"Real-vs-real {fid} at {res['floor_samples']} samples: {res['floors'][fid]:.3g} (the metric's "
          "resolution; effects below it are marked).\n\n" if res.get("floors") else "")
        + table(["model", "NFE", "sampler"] + keys, comp)
        + "\n\n![FID vs NFE](figures/fid_vs_nfe.png)",
        "## The residual: gap to real images before and after the correction\n\n"
        "Mean squared gap ||x_0 - x_hat_0||^2 per pixel (images in [-1, 1]) between real images and the sampler's "
        f"output from their DDIM-inverted noise ({s.inversion_steps} inversion steps), without (before) and with "
        f"(after) the correction: on the {s.num_pairs} training images and on {s.num_val} held-out images it "
        "never saw. Last column: the mean squared correction ||r_phi(x_hat_0, N)||^2 it applies to generated "
        "samples (mean and 95% interval over seeds).\n\n"
        + table(["NFE", "train: before", "train: after", "held-out: before", "held-out: after",
                 "generated: correction"], gap),
        "## Size and cost of the correction\n\n"
        + table(["", "base network", "correction r_phi", "ratio"], cost)
        + "\n\nFLOPs: PyTorch's `FlopCounterMode` (2 per multiply-add of convolutions and matrix products). "
        "Extra compute of one correction per sample relative to the whole N-step sampler (FLOPs), and the measured "
        "wall-time overhead (correction / sampler run, per seed):\n\n"
        + table(["model", "NFE", "FLOPs overhead", "wall-time overhead"], overhead),
        f"## Samples ({n0} steps, same samples on both sides)\n\n![samples](figures/samples_nfe{n0}.png)",
        "## Reading the result\n\n"
        "The paper's numbers come from SDE/ODE samplers of ADM/EDM-class models on CIFAR-10 and other datasets with "
        f"Inception features; ours from the shared {cfg.data.resolution}x{cfg.data.resolution} class-conditional MNIST "
        f"model (step {res['base_model_step']}) in the `{res['backbone']}` feature space, so only directions and "
        "relative effects compare. How the paper pairs real images with sampler outputs and what r_phi sees could "
        "not be verified: the pairing here (DDIM inversion of real images, then the N-step sampler back) and the "
        "network (a small UNet told N through its time embedding, one for all NFE) are our choices; see "
        "[`papers/residual_correction/README.md`](../../papers/residual_correction/README.md). The transfer model is "
        "an earlier snapshot of the base model's own training run, not an independently trained network.",
    ]
    protocol = sampling_protocol(
        cfg, res,
        sampler=f"DDIM eta=0, {cfg.sampler.spacing} respacing, x0 clipped={cfg.sampler.clip_x0}, "
                f"guidance {cfg.sampler.guidance_scale}",
        evaluation=f"NFE {list(ev.nfe)}, {ev.num_samples} samples x seeds {list(ev.seeds)}; transfer: "
                   f"{ev.transfer_model or 'none'} at NFE {list(ev.transfer_nfe)}",
        simulation=f"{s.num_pairs} train + {s.num_val} held-out images, {s.inversion_steps} inversion steps, "
                   f"NFE {list(s.nfe)}; {sim['model_calls']:,} model calls in {sim['seconds']:.0f} s",
        correction=f"UNet {list(c.unet.block_out_channels)}, {trn['params']:,} parameters, {trn['steps']} steps at "
                   f"batch {c.train.batch_size}, final loss {trn['final_loss']:.2e}, {trn['train_seconds']:.0f} s")
    intro = ("**Paper:** Zhang, Liu, Park, Zhang, Xu, *Residual Learning in Diffusion Models*, CVPR 2024, "
             "pp. 7289-7299 "
             "([open access](https://openaccess.thecvf.com/content/CVPR2024/html/Zhang_Residual_Learning_in_Diffusion_"
             "Models_CVPR_2024_paper.html)). **Idea:** a small correction network, trained on the gap between the "
             "sampler's output and real images, is added to the output at the end of sampling. Implementation: "
             "[`papers/residual_correction/method.py`](../../papers/residual_correction/method.py).")
    metrics = {"params_ratio": size["params_ratio"], "flops_ratio": size["flops_ratio"],
               "eval_seconds": res["eval_seconds"]}
    for group, grid, _ in groups:
        for nfe in grid:
            for arm in ("baseline", "method"):
                vals = [r[fid] for r in select(rows, stage="compare", group=group, nfe=nfe, arm=arm)]
                metrics[f"{fid}.{group}.nfe{nfe}.{arm}"] = float(np.mean(vals))
    d = to_dict(cfg)
    path = publish(cfg, PAPER, "Residual Learning in Diffusion Models (Zhang et al., CVPR 2024)", intro, verdicts,
                   sections, protocol, {k: d[k] for k in ("sampler", "simulate", "correction", "evaluate")}, metrics,
                   [figs, out / "results.json"])
    print(f"wrote {path}")


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
