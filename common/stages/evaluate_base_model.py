"""Root stage `evaluate_base_model`: is the shared base model good enough to build papers on?

FID/KID/precision/recall/class accuracy of the final model vs. the weak snapshot (same run at
`weak_fraction` of the steps) over several sampling seeds, sample grids and the loss curve,
written to reports/base_model/ with verdicts from common/stages/base_model_claims.yaml.
"""

import json
import sys
import time
from pathlib import Path

import torch

from common.claims import evaluate_claims, load_claims
from common.config import RootConfig, load_config, read_json, resolve, to_dict
from common.data import to_uint8
from common.diffusion import unet_fn
from common.evaluation import SampleScorer
from common.experiment import floors_of, real_subset
from common.models import load_diffusion_model
from common.publish import provenance
from common.report import class_grid, fmt, plt, save_grid, table, write_paper_report
from common.sampling import SamplingSpec, generate_all
from common.seeding import seed_everything
from common.tracking import log_run

HERE = Path(__file__).parent


def read_metrics(cfg, name: str, stage: str, keys=()) -> dict:
    """metrics/<name> of root stage `stage`, which must hold `keys`."""
    return read_json(resolve(cfg, "metrics", name), stage, keys)


def main(argv=None):
    cfg = load_config(RootConfig, overrides=sys.argv[1:] if argv is None else argv)
    ev = cfg.base_model.eval
    seed_everything(cfg.seed)
    t0 = time.time()
    prov = provenance(cfg, [resolve(cfg, cfg.paths.models, d) for d in ("base_model", "base_model_weak", "classifier")]
                      + [HERE / "base_model_claims.yaml"])  # before the long work: a dirty tree fails fast
    # the training's metrics, read before the long work: a missing or stale file fails fast
    train_info = read_metrics(cfg, "base_model_train.json", "train_base_model",
                              ("history", "weak_step", "steps", "train_seconds", "params", "final_loss"))
    clf = read_metrics(cfg, "classifier.json", "train_classifier", ("heldout_accuracy", "params"))
    data_dir = resolve(cfg, cfg.paths.data, "prepared")
    scorer = SampleScorer(data_dir, resolve(cfg, cfg.paths.models, "classifier"), cfg.data.name)
    models = {arm: load_diffusion_model(resolve(cfg, cfg.paths.models, d))
              for arm, d in (("method", "base_model"), ("baseline", "base_model_weak"))}
    k = cfg.base_model.unet.num_classes
    figs = resolve(cfg, cfg.paths.reports, "base_model", "figures")
    figs.mkdir(parents=True, exist_ok=True)

    rows, fid_ci = [], {}
    for arm, (unet, schedule, meta) in models.items():
        shape = (unet.config.in_channels, cfg.data.resolution, cfg.data.resolution)
        for seed in ev.seeds:
            spec = SamplingSpec(ev.num_samples, ev.nfe, "ddim", guidance_scale=ev.guidance_scale, seed=seed)
            x, y = generate_all(unet_fn(unet), schedule, spec, shape, k, progress=True)
            img = to_uint8(x)
            rows.append({"arm": arm, "model_step": meta["step"], "seed": seed, **scorer.score(img, y)})
            if seed == ev.seeds[0]:
                fid_ci[arm] = scorer.fid_ci(img)
                save_grid(img[:100], figs / f"samples_{arm}.png")
            print(json.dumps(rows[-1]), flush=True)
        grid_spec = SamplingSpec(100, ev.nfe, "ddim", guidance_scale=2.0, seed=ev.seeds[0])
        if arm == "method":
            xg, _ = generate_all(unet_fn(unet), schedule, grid_spec, shape, k)
            save_grid(to_uint8(xg), figs / "samples_method_guidance2.png")

    # Noise floor: real training images, as many and as class-balanced as the samples, scored like samples
    # (common.experiment.real_floor, split in two here because the table and the grid need the whole row).
    xr, yr = real_subset(data_dir, ev.num_samples, k, cfg.seed)
    real = {"arm": "real", "seed": cfg.seed, **scorer.score(xr, yr)}
    save_grid(class_grid(xr, yr, num_classes=max(k, 1)), figs / "real.png", nrow=max(k, 1))

    floors = floors_of(real)
    verdicts = evaluate_claims(load_claims(HERE / "base_model_claims.yaml"), rows, floors)
    p = plt()
    fig, ax = p.subplots(figsize=(5, 3))
    h = train_info["history"]
    ax.plot([r["step"] for r in h], [r["loss"] for r in h])
    ax.axvline(train_info["weak_step"], color="gray", ls="--", label="weak snapshot")
    ax.set(xlabel="optimizer step", ylabel="training loss (eps MSE)", yscale="log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(figs / "loss.png", dpi=120)

    keys = [scorer.key(m) for m in ("fid", "kid", "precision", "recall", "class_acc")]
    res_rows = []
    for arm, label in (("method", "final"), ("baseline", "weak")):
        sel = [r for r in rows if r["arm"] == arm]
        res_rows.append([f"{label} (step {sel[0]['model_step']})"] + [
            f"{fmt(sum(r[k_] for r in sel) / len(sel))} ± {fmt(torch.tensor([r[k_] for r in sel]).std().item())}"
            for k_ in keys])
    res_rows.append(["real train images (noise floor)"] + [fmt(real[k_]) for k_ in keys])
    minutes = train_info["train_seconds"] / 60
    sections = [
        "## Results\n\n"
        f"Mean ± std over sampling seeds {list(ev.seeds)}; {ev.num_samples} samples each, DDIM {ev.nfe} steps, "
        f"guidance scale {ev.guidance_scale}. FID 95% bias-corrected bootstrap interval (seed {ev.seeds[0]}, resampling samples and reference): "
        f"final [{fmt(fid_ci['method'][0])}, {fmt(fid_ci['method'][1])}], "
        f"weak [{fmt(fid_ci['baseline'][0])}, {fmt(fid_ci['baseline'][1])}].\n\n"
        + table(["model"] + keys, res_rows),
        "## Samples\n\nColumn j shows class j (balanced labels). Final model, no guidance:\n\n"
        "![final](figures/samples_method.png)\n\nFinal model, guidance scale 2:\n\n"
        "![final guided](figures/samples_method_guidance2.png)\n\nWeak model (same run, "
        f"step {train_info['weak_step']}):\n\n![weak](figures/samples_baseline.png)\n\nReal training images, "
        "same layout:\n\n![real](figures/real.png)",
        "## Training\n\n"
        f"{train_info['steps']} optimizer steps, {fmt(minutes)} min on this machine, {train_info['params']:,} "
        f"parameters, final loss {fmt(train_info['final_loss'])}.\n\n![loss](figures/loss.png)\n\n"
        f"Metric backbone `{scorer.backbone}`: held-out accuracy {fmt(clf['heldout_accuracy'])} "
        f"({clf['params']:,} parameters).",
    ]
    protocol = {
        "profile": cfg.profile, "dataset": f"{cfg.data.name} {cfg.data.resolution}x{cfg.data.resolution}",
        "reference set": f"held-out split, {scorer.num_reference} images", "feature extractor": scorer.backbone,
        "samples per run": ev.num_samples, "sampler": f"DDIM eta=0, {ev.nfe} steps, x0 clipped",
        "sampling seeds": list(ev.seeds), "wall time (evaluation)": f"{time.time() - t0:.0f} s",
    }
    out = write_paper_report(resolve(cfg, cfg.paths.reports), "base_model",
                             f"Shared base model: class-conditional DDPM on {cfg.data.name}",
                             "The class-conditional epsilon-prediction DDPM that the sampling papers (group A) share, "
                             "trained by the root stage `train_base_model`.", verdicts, sections, protocol,
                             prov)
    metrics = {"rows": rows, "real": real, "fid_ci": fid_ci, "eval_seconds": time.time() - t0}
    resolve(cfg, "metrics", "base_model_eval.json").write_text(json.dumps(metrics, indent=2))
    final = {key: sum(r[key] for r in rows if r["arm"] == "method") / len(ev.seeds) for key in keys}
    log_run(cfg, "shared", "evaluate_base_model", {"eval": to_dict(cfg)["base_model"]["eval"]}, final,
            artifacts=[out.parent])
    print(f"wrote {out}")


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
