"""Stage `experiment`: CatLIP (image tower + BCE over caption labels) vs CLIP (same image tower + text
tower + contrastive loss) on the same training pairs and samples seen; digit linear probe and cost.

Per seed: one CLIP run (common.clip_runs.run_clip) and one CatLIP run (`run_catlip`, same loop, same
data order, same schedule), an interleaved timing of optimizer steps of both, and the FLOPs of one
training step per sample (common.clip.flops_per_sample). Optionally the epochs study: both arms on a
small subset, probed along one run at several epoch counts.

Writes reports/catlip/results.json (rows with `seed` and `arm` for common.claims) and
reports/catlip/vocabulary.json; runs are cached and resumable under runs/catlip/.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence

import numpy as np
import torch

from common.clip import (
    build_clip,
    build_image_tower,
    build_tokenizer,
    clip_loss,
    evaluate_clip,
    flops_per_sample,
    probe_accuracy,
    tokenize,
)
from common.clip_runs import run_clip
from common.config import load_config, resolve
from common.scenes import Scenes, load_full_pool, load_scenes
from papers.catlip.config import CatlipConfig
from papers.catlip.method import build_vocabulary, caption_to_synsets, catlip_loss, make_lexicon, multi_hot

PAPER = "catlip"
HERE = Path(__file__).parent
CODE = [HERE / "method.py", Path(__file__)]  # the CatLIP arm's objective (run_clip adds the shared code)


def code_digest() -> str:
    import common.clip
    import common.training

    h = hashlib.sha256()
    for f in [*CODE, Path(common.clip.__file__), Path(common.training.__file__)]:
        h.update(f.read_bytes())
    return h.hexdigest()[:12]


# --------------------------------------------------------------------------- probes


class PooledFeatures(torch.nn.Module):
    """The image tower up to its head: pooled conv features (common.clip.SmallCNN), the point a linear
    probe reads in the paper (the backbone without its classifier / projection)."""

    def __init__(self, tower):
        super().__init__()
        self.tower = tower

    def forward(self, x):
        return self.tower.features(x).mean((2, 3))


def backbone(tower):
    """(feature extractor before the head, its name); towers other than the CNN are probed at their output."""
    return (PooledFeatures(tower), "pooled backbone") if hasattr(tower, "features") else (tower, "tower output")


def probe_metrics(tower, probe: Scenes, test: Scenes) -> Dict[str, float]:
    feats, _ = backbone(tower)
    return {"probe_digit": probe_accuracy(feats, probe, test), "probe_digit_head": probe_accuracy(tower, probe, test)}


def clip_card(model, tok, probe, test, context_length):
    """The shared CLIP score card plus the probes at the same feature points as CatLIP's (the card's
    `linear_probe_digit` already reads the tower output)."""
    out = evaluate_clip(model, tok, probe, test, context_length)
    feats, _ = backbone(model.visual)
    out["probe_digit_head"] = out["linear_probe_digit"]
    out["probe_digit"] = out["linear_probe_digit"] if feats is model.visual else probe_accuracy(feats, probe, test)
    return out


def clip_probe_only(model, tok, probe, test, context_length):
    return probe_metrics(model.visual, probe, test)


# --------------------------------------------------------------------------- the CatLIP run


def run_catlip(name: str, train_set: Scenes, targets: torch.Tensor, spec, t, *, seed: int, run_dir: Path,
               probe: Scenes, test: Scenes, samples: Optional[int] = None, eval_samples: Sequence[int] = (),
               extra: Optional[dict] = None) -> dict:
    """The image tower alone trained with BCE on the caption labels `targets` (method.catlip_loss), through the
    shared cached run (common.clip_runs.run_clip: same loop, data order and schedule as the CLIP arm); returns
    its probe card with the loss history."""
    return run_clip(name, train_set, spec, t, seed=seed, run_dir=run_dir, tok=None, probe=probe, test=test,
                    samples=samples, eval_samples=eval_samples, extra=extra, targets=targets, loss=catlip_loss,
                    build=lambda s: build_image_tower(spec, output_dim=targets.shape[1], seed=s),
                    evaluate=lambda tower, tok, probe_, test_, cl: probe_metrics(tower, probe_, test_),
                    code_files=CODE, keep_history=True)


# --------------------------------------------------------------------------- cost


def step_fn(model, loss: Callable, batch, grad_clip: float, lr: float):
    opt = torch.optim.AdamW(model.parameters(), lr=lr)

    def step():
        loss(model, *batch).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def time_steps(steps: Dict[str, Callable], n: int, warmup: int = 2) -> Dict[str, float]:
    """Median wall seconds per optimizer step of each arm, timed in alternation (ABAB...) so that load
    changes on a shared machine hit both arms alike."""
    for fn in steps.values():
        for _ in range(warmup):
            fn()
    times = {k: [] for k in steps}
    for _ in range(n):
        for k, fn in steps.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: float(np.median(v)) for k, v in times.items()}


def cost(cfg, tok, train_set: Scenes, targets: torch.Tensor, seed: int) -> dict:
    """FLOPs per sample of one training step (forward + backward) and timed seconds per step, per arm."""
    B = cfg.train.batch_size
    idx = torch.from_numpy(np.random.default_rng(seed).choice(len(train_set), size=min(B, len(train_set)),
                                                              replace=False))
    images, tokens = train_set.images[idx], tokenize(tok, [train_set.captions[i] for i in idx],
                                                     cfg.model.context_length)
    clip = build_clip(cfg.model, tok, seed).train()
    tower = build_image_tower(cfg.model, output_dim=targets.shape[1], seed=seed).train()
    flops = {"baseline": flops_per_sample(lambda: clip_loss(clip, images, tokens), len(idx)),
             "method": flops_per_sample(lambda: catlip_loss(tower, images, targets[idx]), len(idx))}
    clip.zero_grad(set_to_none=True)
    tower.zero_grad(set_to_none=True)
    secs = time_steps({"baseline": step_fn(clip, clip_loss, (images, tokens), cfg.train.grad_clip, cfg.train.lr),
                       "method": step_fn(tower, catlip_loss, (images, targets[idx]), cfg.train.grad_clip,
                                         cfg.train.lr)}, cfg.study.timing_steps)
    params = {"baseline": sum(p.numel() for p in clip.parameters()),
              "method": sum(p.numel() for p in tower.parameters())}
    return {arm: {"flops_per_sample": flops[arm], "step_seconds": secs[arm], "params": params[arm]}
            for arm in ("baseline", "method")}


# --------------------------------------------------------------------------- main


def label_data(cfg, captions: Sequence[str]):
    lexicon = make_lexicon(cfg.labels.mode, cfg.labels.nouns_only)
    sets = [caption_to_synsets(c, lexicon, cfg.labels.nouns_only) for c in captions]
    vocab, counts = build_vocabulary(sets, cfg.labels.v_tau)
    if not vocab:
        raise ValueError(f"labels.v_tau={cfg.labels.v_tau} (papers/catlip/params.yaml) leaves an empty vocabulary "
                         f"on {len(captions)} training captions")
    return sets, vocab, counts


def load_inputs(cfg):
    """(train set, probe_train, test). cpu / tiny: the root `scenes` split study.train_split; full: the CC3M /
    DataComp shards at study.dataset (common.scenes.load_full_pool). The evaluation splits are the shared
    scenes' on every profile."""
    data_dir = resolve(cfg, cfg.paths.data, "scenes")
    web = load_full_pool(cfg, PAPER, "study.dataset", needs="the paper's image-text webdataset shards (CC3M or "
                         "DataComp-1.3B, `<key>.jpg` + `<key>.txt`)")
    probe, test = load_scenes(data_dir, "probe_train"), load_scenes(data_dir, "test")
    return (load_scenes(data_dir, cfg.study.train_split) if web is None else web[0]), probe, test


def main(argv=None):
    cfg = load_config(CatlipConfig, paper=PAPER, overrides=sys.argv[1:] if argv is None else argv)
    st = cfg.study
    if len(st.seeds) < 2:
        raise ValueError(f"study.seeds={st.seeds} (papers/catlip/params.yaml): need >= 2 seeds for verdicts")
    t_start = time.time()
    train_set, probe, test = load_inputs(cfg)
    sets, vocab, counts = label_data(cfg, train_set.captions)
    targets = multi_hot(sets, vocab)
    tok = build_tokenizer()
    run_dir = resolve(cfg, cfg.paths.runs, PAPER)
    out = resolve(cfg, cfg.paths.reports, PAPER)
    out.mkdir(parents=True, exist_ok=True)
    digest = code_digest()

    rows, runs = [], []
    cost_by_seed = {}
    for seed in st.seeds:
        c = cost(cfg, tok, train_set, targets, seed)
        cost_by_seed[seed] = c
        clip = run_clip(f"clip_s{seed}", train_set, cfg.model, cfg.train, seed=seed, run_dir=run_dir, tok=tok,
                        probe=probe, test=test, evaluate=clip_card, extra={"arm": "baseline", "code": digest},
                        keep_history=True)
        cat = run_catlip(f"catlip_s{seed}", train_set, targets, cfg.model, cfg.train, seed=seed, run_dir=run_dir,
                         probe=probe, test=test, extra={"arm": "method", "code": digest})
        for arm, r in (("baseline", clip), ("method", cat)):
            steps = r["samples_seen"] // cfg.train.batch_size
            rows.append({"stage": "main", "arm": arm, "seed": seed, "probe_digit": r["probe_digit"],
                         "probe_digit_head": r["probe_digit_head"], **c[arm],
                         "train_step_seconds": r["train_seconds"] / steps, "train_seconds": r["train_seconds"],
                         "samples_seen": r["samples_seen"],
                         "train_flops": c[arm]["flops_per_sample"] * r["samples_seen"]})
            runs.append({"stage": "main", "arm": arm, **{k: v for k, v in r.items() if k != "fingerprint"}})
        rows.append({"stage": "gap", "seed": seed, "probe_gap": clip["probe_digit"] - cat["probe_digit"]})

    if st.epochs_subset > 0 and st.epochs:
        small = train_set.subset(np.arange(min(st.epochs_subset, len(train_set))))
        n = len(small)
        epochs = sorted(st.epochs)
        small_targets = targets[: n]
        for seed in st.epochs_seeds:
            kw = dict(seed=seed, run_dir=run_dir, probe=probe, test=test, samples=epochs[-1] * n,
                      eval_samples=[e * n for e in epochs[:-1]])
            clip = run_clip(f"epochs_clip_s{seed}", small, cfg.model, cfg.train, tok=tok, evaluate=clip_probe_only,
                            extra={"arm": "baseline", "code": digest}, keep_history=True, **kw)
            cat = run_catlip(f"epochs_catlip_s{seed}", small, small_targets, cfg.model, cfg.train,
                             extra={"arm": "method", "code": digest}, **kw)
            for arm, r in (("baseline", clip), ("method", cat)):
                points = r.get("curve", []) + [{"samples_seen": r["samples_seen"], "probe_digit": r["probe_digit"]}]
                by_epoch = {}
                for p, e in zip(points, epochs):
                    by_epoch[e] = p["probe_digit"]
                    rows.append({"stage": "epochs", "arm": arm, "seed": seed, "epochs": e,
                                 "samples_seen": p["samples_seen"], "probe_digit": p["probe_digit"]})
                rows.append({"stage": "epochs_gain", "arm": arm, "seed": seed, "from_epochs": epochs[-2],
                             "to_epochs": epochs[-1], "late_gain": by_epoch[epochs[-1]] - by_epoch[epochs[-2]]})
                runs.append({"stage": "epochs", "arm": arm, **{k: v for k, v in r.items() if k != "fingerprint"}})

    no_label = int(sum(1 for s in sets if not any(k in vocab for k in s)))
    labels = {"mode": cfg.labels.mode, "nouns_only": cfg.labels.nouns_only, "v_tau": cfg.labels.v_tau,
              "vocab_size": len(vocab), "n_captions": len(sets), "distinct_labels": len({k for s in sets for k in s}),
              "mean_labels_per_caption": float(targets.sum(1).mean()), "captions_without_label": no_label}
    (out / "vocabulary.json").write_text(json.dumps(
        [{"index": i, "label": k, "captions": counts[k]} for k, i in vocab.items()], indent=1))
    res = {"rows": rows, "runs": runs, "labels": labels, "train_split": st.train_split, "n_train": len(train_set),
           "n_probe_train": len(probe), "n_test": len(test), "seconds": time.time() - t_start,
           "examples": [{"caption": c, "labels": [k for k in s if k in vocab]} for c, s in zip(train_set.captions[:5],
                                                                                            sets[:5])]}
    (out / "results.json").write_text(json.dumps(res, indent=1))
    print(f"wrote {out / 'results.json'} ({res['seconds']:.0f} s)")


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
