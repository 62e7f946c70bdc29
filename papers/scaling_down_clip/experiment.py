"""Stage `experiment`: the quality-vs-quantity sweep and the CNN-vs-ViT data-size sweep, at equal samples seen.

Every CLIP is one cached, resumable `common.clip_runs.run_clip` under runs/scaling_down_clip/. Writes
reports/scaling_down_clip/results.json: `runs` (one score card per CLIP, with its subset's ground truth),
`subsets` (composition of each Top x% subset), `flops`, and `rows` (per seed) for common.claims.
"""

import json
import sys
import time
from dataclasses import replace

import numpy as np

from common.atomic import atomic_file
from common.clip import build_clip, build_tokenizer, clip_loss, flops_per_sample, tokenize
from common.clip_runs import run_clip
from common.config import load_config, resolve, to_dict
from common.scenes import NOISE_KINDS, Scenes, load_full_pool, load_scenes
from common.teacher import teacher_meta, teacher_scores
from common.tracking import log_run
from papers.scaling_down_clip.config import ScalingDownClipConfig
from papers.scaling_down_clip.method import epochs, flops_matched, nested_subsets, top_x_subset, training_compute

PAPER = "scaling_down_clip"
METRICS = ["zero_shot_mean", "zero_shot_digit", "zero_shot_colour", "zero_shot_count", "retrieval_i2t_r1",
           "retrieval_t2i_r1", "linear_probe_digit"]


def vit_spec(cfg):
    v = cfg.architecture.vit
    return replace(cfg.model, image_tower="vit", vit_width=v.width, vit_layers=v.layers, vit_patch=v.patch,
                   vit_head_width=v.head_width)


def measure_flops(spec, tok, batch: int = 8) -> dict:
    """Training FLOPs (forward + backward) per sample of the whole CLIP loss and of the image tower alone."""
    import torch

    model = build_clip(spec, tok, seed=0)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (batch, 3, 32, 32), generator=g, dtype=torch.uint8)
    from common.scenes import vocabulary_texts

    tokens = tokenize(tok, vocabulary_texts()[:batch], spec.context_length)
    total = flops_per_sample(lambda: clip_loss(model, images, tokens), batch)
    model.zero_grad(set_to_none=True)
    image = flops_per_sample(lambda: model.visual(images.float() / 127.5 - 1.0).sum(), batch)
    return {"gflops_per_sample": total / 1e9, "image_gflops_per_sample": image / 1e9,
            "params": sum(p.numel() for p in model.parameters()),
            "image_params": sum(p.numel() for p in model.visual.parameters())}


def composition(s: Scenes) -> dict:
    """Ground truth of a training subset: noise shares (clean share first), digit-count shares, digit classes."""
    out = {f"share_{k}": float(np.mean(s.noise == k)) for k in NOISE_KINDS}
    out["clean_share"] = out.pop("share_clean")
    for c in (1, 2, 3):
        out[f"share_count_{c}"] = float(np.mean(s.count == c))
    digits = np.concatenate([np.asarray(d) for d in s.digits])
    p = np.bincount(digits, minlength=10) / len(digits)
    out["digit_shares"] = p.tolist()
    out["digit_entropy_bits"] = float(-(p[p > 0] * np.log2(p[p > 0])).sum())
    out["unique_captions"] = len(set(s.captions))
    return out


def load_inputs(cfg):
    """(pool, hq, probe_train, test, pool scores, teacher meta). cpu / tiny: the root `scenes` pool and hq splits
    and the teacher's scores; full: the WebLI-like shards at `pool_source`, each pair scored in its .json
    (common.scenes.load_full_pool), hq = its top quality.compare_pct % by that score, no teacher card. The
    evaluation splits are the shared scenes' on every profile."""
    data = resolve(cfg, cfg.paths.data, "scenes")
    web = load_full_pool(cfg, PAPER, "pool_source", needs="English WebLI-like webdataset shards whose .json carry "
                         "a pretrained CLIP's image-text score as `score` (or DataComp's clip_l14_similarity_score)",
                         scored=True)
    probe, test = load_scenes(data, "probe_train"), load_scenes(data, "test")
    if web is not None:
        pool, scores = web
        return pool, pool.subset(top_x_subset(scores, cfg.quality.compare_pct)), probe, test, scores, {"metrics": {}}
    pool, hq = load_scenes(data, "pool"), load_scenes(data, "hq")
    return pool, hq, probe, test, teacher_scores(cfg, len(pool)), teacher_meta(cfg)


def row(stage: str, run: dict, **keys) -> dict:
    r = {"stage": stage, "seed": run["seed"], **keys, **{m: run[m] for m in METRICS}}
    r["zero_shot_error"] = 1.0 - run["zero_shot_mean"]
    return r


def main(argv=None):
    cfg = load_config(ScalingDownClipConfig, paper=PAPER, overrides=sys.argv[1:] if argv is None else argv)
    q, a, t = cfg.quality, cfg.architecture, cfg.train
    if q.compare_pct not in q.top_pct or 100 not in q.top_pct:
        raise ValueError(f"papers/{PAPER}/params.yaml: quality.top_pct {q.top_pct} must contain compare_pct "
                         f"({q.compare_pct}) and 100 (all data)")
    if len(q.seeds) < 2 or len(a.seeds) < 2:
        raise ValueError(f"papers/{PAPER}/params.yaml: quality.seeds and architecture.seeds need >= 2 seeds")
    pool, hq, probe, test, scores, teacher = load_inputs(cfg)
    tok = build_tokenizer()
    cnn, vit = cfg.model, vit_spec(cfg)
    if cnn.image_tower not in ("cnn", "resnet"):
        raise ValueError(f"papers/{PAPER}/params.yaml: model.image_tower must be a CNN ('cnn' or 'resnet'), got "
                         f"{cnn.image_tower!r}")
    flops = {"cnn": measure_flops(cnn, tok), "vit": measure_flops(vit, tok)}
    ratio = flops["vit"]["image_gflops_per_sample"] / flops["cnn"]["image_gflops_per_sample"]
    if not flops_matched(flops["vit"]["image_gflops_per_sample"], flops["cnn"]["image_gflops_per_sample"],
                         a.max_flops_ratio):
        raise ValueError(f"papers/{PAPER}/params.yaml: architecture.vit has {ratio:.2f}x the image-tower FLOPs of "
                         f"model.cnn_widths; outside architecture.max_flops_ratio={a.max_flops_ratio}")
    run_dir = resolve(cfg, cfg.paths.runs, PAPER)
    common_kw = dict(run_dir=run_dir, tok=tok, probe=probe, test=test, samples=t.samples)
    t0 = time.time()
    runs, rows, subsets = [], [], {}

    # 1. quality vs quantity: Top x% by teacher score, equal samples seen (Sec. 3.2)
    for pct in sorted(q.top_pct):
        idx = top_x_subset(scores, pct)
        sub = pool.subset(idx)
        info = {"n_train": len(idx), "epochs": epochs(t.samples, len(idx)), "min_score": float(scores[idx].min()),
                **composition(sub)}
        subsets[f"{pct:g}"] = info
        for seed in q.seeds:
            res = run_clip(f"quality/top{pct:g}/seed{seed}", sub, cnn, t, seed=seed, **common_kw,
                           extra={"top_pct": pct})
            res.update(stage="quality", tower="cnn", clean_share=info["clean_share"], epochs=info["epochs"],
                       compute_gflops=training_compute(flops["cnn"]["gflops_per_sample"], res["samples_seen"]))
            runs.append(res)
            rows.append(row("quality", res, top_pct=pct, clean_share=info["clean_share"]))
            if pct in (q.compare_pct, 100):  # the compare claim: Top x% (method) vs all data (baseline)
                rows.append(row("top_vs_all", res, arm="method" if pct == q.compare_pct else "baseline", top_pct=pct))

    # 2. architecture vs data size: CNN vs ViT of similar FLOPs on nested clean subsets (Sec. 5)
    sizes = sorted(a.sizes)
    for seed in a.seeds:
        subs = nested_subsets(len(hq), sizes, seed)
        for k, n in enumerate(sizes):
            for tower, spec in (("cnn", cnn), ("vit", vit)):
                res = run_clip(f"architecture/{tower}/n{n}/seed{seed}", hq.subset(subs[n]), spec, t, seed=seed,
                               **common_kw, extra={"tower": tower, "n_data": n})
                res.update(stage="architecture", epochs=epochs(t.samples, n),
                           compute_gflops=training_compute(flops[tower]["gflops_per_sample"], res["samples_seen"]))
                runs.append(res)
                rows.append(row("architecture", res, tower=tower, n_data=n, size_index=k,
                                arm="method" if tower == "cnn" else "baseline"))
    # the CNN's advantage at the smallest size (baseline) vs at the largest (method): does it shrink?
    for seed in a.seeds:
        def adv(n, seed=seed):
            m = {r["tower"]: r["zero_shot_mean"] for r in rows
                 if r["stage"] == "architecture" and r["seed"] == seed and r["n_data"] == n}
            return m["cnn"] - m["vit"]
        rows.append({"stage": "arch_gap", "seed": seed, "arm": "baseline", "n_data": sizes[0], "cnn_advantage": adv(sizes[0])})
        rows.append({"stage": "arch_gap", "seed": seed, "arm": "method", "n_data": sizes[-1], "cnn_advantage": adv(sizes[-1])})

    seconds = time.time() - t0
    out = resolve(cfg, cfg.paths.reports, PAPER)
    out.mkdir(parents=True, exist_ok=True)
    result = {"runs": runs, "rows": rows, "subsets": subsets, "flops": flops, "vit_cnn_image_flops_ratio": ratio,
              "samples_seen": t.samples, "pool_size": len(pool), "hq_size": len(hq), "test_size": len(test),
              "teacher": {k: v for k, v in teacher["metrics"].items() if k.startswith(("auc", "zero_shot_mean",
                                                                                     "retrieval_i2t_r1"))},
              "experiment_seconds": seconds, "train_seconds": sum(r["train_seconds"] for r in runs)}
    with atomic_file(out / "results.json") as tmp:
        tmp.write_text(json.dumps(result, indent=2))
    d = to_dict(cfg)
    log_run(cfg, PAPER, "experiment", {k: d[k] for k in ("model", "train", "quality", "architecture")},
            {"experiment_seconds": seconds, "samples_seen": t.samples, "runs": len(runs),
             **{f"{k}.gflops_per_sample": v["gflops_per_sample"] for k, v in flops.items()},
             **{f"{k}.image_gflops_per_sample": v["image_gflops_per_sample"] for k, v in flops.items()},
             **{f"{k}.compute_gflops": training_compute(v["gflops_per_sample"], t.samples) for k, v in flops.items()}})
    print(f"{len(runs)} CLIPs in {seconds:.0f} s -> {out / 'results.json'}")


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
