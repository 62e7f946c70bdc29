"""Root stage `evaluate_base_model`: is the shared base model good enough to build papers on?

FID/KID/precision/recall/class accuracy of the final model vs. the weak snapshot (same run at
`weak_fraction` of the steps) over several sampling seeds, sample grids and the loss curve,
written to reports/base_model/ with verdicts from common/stages/base_model_claims.yaml.
"""

import json
import sys
import time
from pathlib import Path
from typing import List

import numpy as np

from common.claims import evaluate_claims, load_claims
from common.config import RootConfig, load_config, read_json, resolve, to_dict
from common.data import to_uint8
from common.diffusion import unet_fn
from common.evaluation import SampleScorer
from common.experiment import floors_of, real_subset
from common.models import load_diffusion_model
from common.publish import provenance
from common.report import class_grid, fmt, plt, save_grid, select, table, write_paper_report
from common.report_stage import render_template
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
    keys = [scorer.key(m) for m in ("fid", "kid", "precision", "recall", "class_acc")]
    out = write_report(cfg, scorer, keys, rows, real, fid_ci, train_info, clf, verdicts, prov, time.time() - t0)
    metrics = {"rows": rows, "real": real, "fid_ci": fid_ci, "eval_seconds": time.time() - t0}
    resolve(cfg, "metrics", "base_model_eval.json").write_text(json.dumps(metrics, indent=2))
    final = {key: sum(r[key] for r in rows if r["arm"] == "method") / len(ev.seeds) for key in keys}
    log_run(cfg, "shared", "evaluate_base_model", {"eval": to_dict(cfg)["base_model"]["eval"]}, final,
            artifacts=[out.parent])
    print(f"wrote {out}")


def write_report(cfg, scorer, keys: List[str], rows: List[dict], real: dict, fid_ci: dict, train_info: dict,
                 clf: dict, verdicts, prov: dict, seconds: float) -> Path:
    """Loss plot, tables and reports/base_model/README.md (prose: evaluate_base_model.md beside this file)."""
    ev, figs = cfg.base_model.eval, resolve(cfg, cfg.paths.reports, "base_model", "figures")
    p = plt()
    fig, ax = p.subplots(figsize=(5, 3))
    ax.plot([r["step"] for r in train_info["history"]], [r["loss"] for r in train_info["history"]])
    ax.axvline(train_info["weak_step"], color="gray", ls="--", label="weak snapshot")
    ax.set(xlabel="optimizer step", ylabel="training loss (eps MSE)", yscale="log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(figs / "loss.png", dpi=120)
    p.close(fig)
    results = [[f"{label} (step {sel[0]['model_step']})"] + [
        f"{fmt(float(np.mean([r[k] for r in sel])))} ± {fmt(float(np.std([r[k] for r in sel], ddof=1)))}"
        for k in keys] for label, sel in (("final", select(rows, arm="method")), ("weak", select(rows, arm="baseline")))]
    title, intro, sections = render_template(
        HERE / "evaluate_base_model.md", cfg=cfg, ev=ev, fid_ci=fid_ci, train=train_info, clf=clf,
        backbone=scorer.backbone, results_table=table(["model"] + keys, results + [
            ["real train images (noise floor)"] + [fmt(real[k]) for k in keys]]))
    protocol = {
        "profile": cfg.profile, "dataset": f"{cfg.data.name} {cfg.data.resolution}x{cfg.data.resolution}",
        "reference set": f"held-out split, {scorer.num_reference} images", "feature extractor": scorer.backbone,
        "samples per run": ev.num_samples, "sampler": f"DDIM eta=0, {ev.nfe} steps, x0 clipped",
        "sampling seeds": list(ev.seeds), "wall time (evaluation)": f"{seconds:.0f} s",
    }
    return write_paper_report(resolve(cfg, cfg.paths.reports), "base_model", title, intro, verdicts, sections,
                              protocol, prov)


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
