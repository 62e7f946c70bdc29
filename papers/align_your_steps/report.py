"""Stage `report`: claims -> verdicts, plots and reports/align_your_steps/README.md, logged to MLflow."""

import json
import sys
from pathlib import Path

import numpy as np

from common.claims import evaluate_claims, load_claims
from common.config import load_config, resolve, to_dict
from common.publish import publish, sampling_protocol
from common.report import ci_cell, ci_curve, fmt, plt, select, side_by_side, table
from papers.align_your_steps.config import AlignYourStepsConfig
from papers.align_your_steps.method import gaussian_klub_optimal

PAPER = "align_your_steps"
HERE = Path(__file__).parent
LABELS = {"ays": "AYS", "time_uniform": "time-uniform", "edm": "EDM (rho=7)", "log_snr": "log-SNR uniform"}


def main(argv=None):
    cfg = load_config(AlignYourStepsConfig, paper=PAPER, overrides=sys.argv[1:] if argv is None else argv)
    out = resolve(cfg, cfg.paths.reports, PAPER)
    res = json.loads((out / "results.json").read_text())
    rows, fid = res["rows"], res["metric"]
    verdicts = evaluate_claims(load_claims(HERE / "claims.yaml"), rows, res.get("floors"))
    figs = out / "figures"
    figs.mkdir(exist_ok=True)
    p, o, cp, es = plt(), cfg.optimize, cfg.compare, cfg.early_stopping
    names = ["ays"] + list(cp.baselines)
    n0 = o.num_steps

    def sched_rows(name):  # one row per seed and NFE (the AYS rows are copied once per baseline group)
        return [r for r in select(rows, stage="compare", schedule=name) if name != "ays" or r["group"] == cp.baselines[0]]

    # FID vs NFE
    fig, ax = p.subplots(figsize=(5.2, 3.5))
    for name in names:
        m, lo, hi = ci_curve(sched_rows(name), "nfe", cp.nfe, fid)
        ax.errorbar(cp.nfe, m, yerr=[m - lo, hi - m], marker="o", capsize=3, label=LABELS[name],
                    lw=2.2 if name == "ays" else 1.2)
    ax.set(xlabel="sampling steps (NFE)", ylabel=fid, xscale="log", xticks=cp.nfe,
           xticklabels=[str(n) for n in cp.nfe])
    ax.legend()
    fig.tight_layout()
    fig.savefig(figs / "fid_vs_nfe.png", dpi=120)
    p.close(fig)

    # the schedules themselves, with the KLUB-optimal schedule for Gaussian data (App. A.3) for reference
    fig, ax = p.subplots(figsize=(5.2, 3.5))
    group = res["schedules"][str(n0)]
    for name in names:
        sig = np.asarray(group[name]["sigmas"])
        ax.plot(np.arange(len(sig)) / (len(sig) - 1), sig, marker="o", ms=3, label=LABELS[name],
                lw=2.2 if name == "ays" else 1.2)
    gauss = gaussian_klub_optimal(res["sigma_min"], res["sigma_max"], n0, o.c)[::-1]
    ax.plot(np.arange(n0 + 1) / n0, gauss, ls=":", color="gray", label=f"KLUB-optimal, Gaussian c={o.c:g}")
    ax.set(yscale="log", xlabel="step i / n", ylabel="noise level sigma", title=f"{n0}-step schedules")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(figs / "schedules.png", dpi=120)
    p.close(fig)

    # the coarse stage: KLUB and early-stopping FID per pass
    hist = res["history"]
    fig, ax = p.subplots(figsize=(5.2, 3.5))
    sweeps = [h["sweep"] for h in hist]
    ax.errorbar(sweeps, [h["klub"] for h in hist], yerr=[2 * h["klub_se"] for h in hist], marker="o", capsize=3,
                color="C0")
    ax.set(xlabel="pass of Algorithm 1", ylabel="KLUB estimate (±2 s.e.)", yscale="log", xticks=sweeps)
    if any(h["proxy"] is not None for h in hist):
        ax2 = ax.twinx()
        ax2.plot(sweeps, [h["proxy"] for h in hist], marker="s", color="C1")
        ax2.set_ylabel(f"early-stopping {fid}", color="C1")
    fig.tight_layout()
    fig.savefig(figs / "optimization.png", dpi=120)
    p.close(fig)

    side_by_side(out / "samples" / f"nfe{n0}_{cp.baselines[0]}.png", out / "samples" / f"nfe{n0}_ays.png",
                 figs / f"samples_nfe{n0}.png", [f"{LABELS[cp.baselines[0]]}, {n0} steps", f"AYS, {n0} steps"])

    keys = [k for k in rows[0] if "[" in k]
    comp = [[nfe, LABELS[name]] + [ci_cell([r[k] for r in sched_rows(name) if r["nfe"] == nfe]) for k in keys]
            + [fmt(res["schedules"][str(nfe)][name]["klub"])]
            for nfe in cp.nfe for name in names]
    sched_tab = [[nfe, LABELS[name], " ".join(str(t) for t in res["schedules"][str(nfe)][name]["timesteps"])]
                 for nfe in cp.nfe for name in names]
    hist_tab = [[f"**{h['sweep']}** (kept)" if h["kept"] else h["sweep"],
                 "n/a" if h["changed"] is None else str(h["changed"]), fmt(h["klub"]), fmt(h["klub_se"]),
                 "n/a" if h["proxy"] is None else fmt(h["proxy"]), " ".join(str(t) for t in h["timesteps"])]
                for h in hist]
    stage_tab = [[st["num_steps"], " ".join(str(t) for t in st["timesteps"]),
                  " ".join(fmt(v, 3) for v in st["sigmas"])] for st in res["stages"]]
    derived = {nfe: ("optimised" if nfe == n0 else "refined" if any(st["num_steps"] == nfe for st in res["stages"])
                     else "log-linear interpolation") for nfe in cp.nfe}
    sections = [
        "## Results\n\n"
        f"Mean and 95% interval over sampling seeds {list(cp.seeds)} ({cp.num_samples} samples each), DDIM "
        f"(eta={cfg.sampler.eta:g}, x0 clipping {cfg.sampler.clip_x0}); every schedule of a seed starts from the same "
        "per-sample noise. The last column is the KLUB (Eq. 10, up to a constant) of the schedule, estimated on one "
        f"shared set of {cp.klub_draws} Monte Carlo draws. AYS per NFE: "
        + ", ".join(f"{n}: {d}" for n, d in derived.items()) + ".\n\n"
        + (f"Real-vs-real {fid} at {res['floor_samples']} samples: {res['floors'][fid]:.3g} (the metric's "
          "resolution; effects below it are marked).\n\n" if res.get("floors") else "")
        + table(["NFE", "schedule"] + keys + ["KLUB"], comp)
        + "\n\n![FID vs NFE](figures/fid_vs_nfe.png)",
        "## The schedules\n\nModel-call timesteps of the DDIM runs (the last step lands on data, sigma = 0):\n\n"
        + table(["NFE", "schedule", "timesteps"], sched_tab)
        + "\n\nAYS stages (the coarse one after early stopping, then each subdivision), descending noise levels "
          f"between the model's sigma_min = {res['sigma_min']:.4g} and sigma_max = {res['sigma_max']:.4g}:\n\n"
        + table(["steps", "timesteps", "sigmas"], stage_tab)
        + "\n\n![schedules](figures/schedules.png)",
        "## The optimisation\n\n"
        f"Initialised from {LABELS.get(o.init, o.init)}; each pass of Algorithm 1 moves the {o.num_steps - 1} interior "
        f"points one at a time among {o.num_candidates} candidates, each estimated with {o.num_draws} Monte Carlo draws "
        f"over {o.num_data} training images (importance sampling in t with c = {o.c:g}). Early stopping: FID of "
        f"{es.num_samples} samples on seed {es.seed} after each pass, patience {es.patience}, best pass kept. "
        f"{res['optimize_calls']:,} network calls, {res['optimize_seconds']:.0f} s.\n\n"
        + table(["pass", "changed", "KLUB", "s.e.", f"early-stopping {fid}", "timesteps"], hist_tab)
        + "\n\n![optimisation](figures/optimization.png)",
        f"## Samples ({n0} steps, same initial noise)\n\n![samples](figures/samples_nfe{n0}.png)",
        "## Reading the result\n\n"
        "The paper optimises schedules for EDM-trained CIFAR-10/FFHQ models, an ImageNet latent model and text-to-image "
        "models, with 8192 data points and up to 300 iterations, and scores 50k samples with Inception features; ours "
        f"is the shared {cfg.data.resolution}x{cfg.data.resolution} {cfg.data.name} DDPM (step {res['base_model_step']}) "
        f"with {o.num_data} data points and at most {o.max_sweeps} pass(es), scored in the `{res['backbone']}` feature space: "
        "directions are comparable, absolute FIDs are not. The schedule lives on the model's 1000 training timesteps "
        "(candidates and subdivision points are snapped to them), so the optimised schedule is exactly the one sampled; "
        "the KLUB integral itself runs over continuous noise levels (fractional timesteps into the network). The KLUB "
        "is an upper bound on the output error, not the error itself (App. A.3), which is why the coarse stage "
        "stops on a perceptual proxy rather than at the KLUB's minimum.",
    ]
    protocol = sampling_protocol(
        cfg, res,
        sampler=f"DDIM eta={cfg.sampler.eta:g}, x0 clipped={cfg.sampler.clip_x0}, guidance {cfg.sampler.guidance_scale}, "
                "schedule levels -> nearest training timestep, last level set to 0",
        compare=f"NFE {list(cp.nfe)}, {cp.num_samples} samples x seeds {list(cp.seeds)}",
        optimisation=f"{o.num_steps} steps from {o.init}, <= {o.max_sweeps} passes, {o.num_candidates} candidates, "
                     f"{o.num_draws} draws / estimate, {o.num_data} data points, {o.refine_rounds} subdivision(s)",
        **{"early stopping": f"FID of {es.num_samples} samples, seed {es.seed}, patience {es.patience}"
           if es.enabled else "off"})
    intro = ("**Paper:** Sabour, Fidler, Kreis, *Align Your Steps: Optimizing Sampling Schedules in Diffusion Models*, "
             "ICML 2024 ([arXiv:2404.14507](https://arxiv.org/abs/2404.14507)). **Idea:** choose the sampling schedule "
             "that minimises a KL upper bound between the true generative SDE and the solver's linearised SDE, "
             "estimated by Monte Carlo with the trained denoiser; refine hierarchically and interpolate log-linearly "
             "to other step counts. Implementation: "
             "[`papers/align_your_steps/method.py`](../../papers/align_your_steps/method.py).")
    metrics = {"optimize_seconds": res["optimize_seconds"], "eval_seconds": res["eval_seconds"],
               "coarse_passes": max(h["sweep"] for h in hist), "kept_pass": next(h["sweep"] for h in hist if h["kept"])}
    d = to_dict(cfg)
    path = publish(cfg, PAPER, "Align Your Steps (Sabour et al., ICML 2024)", intro, verdicts, sections, protocol,
                   {k: d[k] for k in ("sampler", "optimize", "early_stopping", "compare")}, metrics,
                   [figs, out / "results.json"])
    print(f"wrote {path}")


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
