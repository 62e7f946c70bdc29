"""Root stage `train_scene_clip`: the shared small CLIP, trained on the clean `hq` scenes.

It is the "teacher" the data papers lean on: its image-text cosine scores the pool (the quality
score of Scaling (Down) CLIP and the clean-data filter of DFN), and its image embeddings are the
features the SSL curation clusters. Writes models/scene_clip (weights, meta, pool_scores.npy,
pool_image_embeddings.npy) and metrics/scene_clip.json (zero-shot, retrieval, linear probe, and how
well its score separates clean from noisy pool captions: ROC AUC per noise kind).
"""

import json
import sys
from pathlib import Path

import numpy as np

import common.clip
import common.scenes
import common.training
from common.clip import build_clip, build_tokenizer, encode_images, evaluate_clip, pair_scores, save_clip, train_clip
from common.config import RootConfig, load_config, resolve, to_dict
from common.scenes import NOISE_KINDS, load_scenes
from common.seeding import seed_everything
from common.tracking import log_run
from common.training import fingerprint


def separation_auc(scores: np.ndarray, severity: np.ndarray) -> dict:
    """ROC AUC of the score for clean vs each noise kind (1 = every clean pair scores higher)."""
    from sklearn.metrics import roc_auc_score

    out = {}
    for k, kind in enumerate(NOISE_KINDS[1:], start=1):
        m = (severity == 0) | (severity == k)
        if m.any() and (severity[m] == k).any() and (severity[m] == 0).any():
            out[f"auc_clean_vs_{kind}"] = float(roc_auc_score(severity[m] == 0, scores[m]))
    return out


def main(argv=None):
    cfg = load_config(RootConfig, overrides=sys.argv[1:] if argv is None else argv)
    spec, t = cfg.scene_clip.model, cfg.scene_clip.train
    seed_everything(t.seed)
    data = resolve(cfg, cfg.paths.data, "scenes")
    hq, pool = load_scenes(data, "hq"), load_scenes(data, "pool")
    probe, test = load_scenes(data, "probe_train"), load_scenes(data, "test")
    tok = build_tokenizer()
    model = build_clip(spec, tok, t.seed)
    d = to_dict(cfg)
    run_id = fingerprint({"scenes": d["scenes"], "scene_clip": d["scene_clip"]},
                         [Path(__file__), Path(common.clip.__file__), Path(common.scenes.__file__),
                          Path(common.training.__file__)])
    res = train_clip(model, tok, hq, t, resolve(cfg, cfg.paths.runs, "scene_clip", "checkpoints"),
                     context_length=spec.context_length, desc="scene_clip", run_fingerprint=run_id)
    if not res.is_main_process:
        return
    model = res.model.eval()
    metrics = evaluate_clip(model, tok, probe, test, spec.context_length)
    scores = pair_scores(model, tok, pool, spec.context_length).numpy()
    metrics.update(separation_auc(scores, pool.severity))
    metrics.update({"train_seconds": res.train_seconds, "resumed_from_step": res.resumed_from_step,
                    "steps": res.steps, "samples_seen": res.steps * t.batch_size,
                    "final_loss": res.history[-1]["loss"] if res.history else float("nan"),
                    "params": sum(p.numel() for p in model.parameters())})
    out = resolve(cfg, cfg.paths.models, "scene_clip")
    save_clip(model, out, {"config": d["scene_clip"], "metrics": metrics})
    np.save(out / "pool_scores.npy", scores.astype(np.float32))
    np.save(out / "pool_image_embeddings.npy", encode_images(model, pool.images).numpy().astype(np.float32))
    path = resolve(cfg, "metrics", "scene_clip.json")
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(metrics, indent=2))
    log_run(cfg, "shared", "train_scene_clip", {"scenes": d["scenes"], "scene_clip": d["scene_clip"]}, metrics,
            seed=t.seed, history=res.history)
    print(json.dumps(metrics))


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
