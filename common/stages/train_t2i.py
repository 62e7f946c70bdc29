"""Root stage `train_t2i`: the shared text-conditional diffusion model on the captioned scenes (common/t2i.py).

Trains a small UNet2DConditionModel (32x32 RGB, cross-attention on the frozen scene CLIP's text states) with
the shared eps-prediction loss on clean captions: the `hq` split plus `t2i.pool_scenes` pool scenes with their
TRUE captions, synonym substitution at `t2i.synonym_rate`, caption dropout for CFG. The synonym words'
input-embedding rows train with it (the CLIP tower stays frozen). Writes models/t2i (model.pt + meta.json) and
metrics/t2i.json: training time and loss, and a sanity check on held-out test captions: the pixel-reading
oracle's agreement and the CLIP score of CFG samples vs unconditional ones (the empty prompt), of the same
prompts written with synonyms, and the oracle reader on the real images of those captions (its ceiling).
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch

import common.clip
import common.diffusion
import common.prompts
import common.t2i
import common.training
from common.clip import build_tokenizer, load_clip
from common.config import RootConfig, load_config, resolve, to_dict
from common.diffusion import NoiseSchedule
from common.evaluation import load_classifier
from common.judges import ClipJudge, OracleJudge, read_objects
from common.prompts import load_table, split_words
from common.sampling import SamplingSpec
from common.scenes import load_scenes
from common.seeding import seed_everything
from common.t2i import build_t2i, caption_groups, count_trainable, generate_images, save_t2i, synonym_table, t2i_loss
from common.tracking import log_run
from common.training import fingerprint, train


def training_captions(cfg):
    """(images uint8 [N, 3, 32, 32], captions): hq plus the first `pool_scenes` pool scenes with TRUE captions."""
    data = resolve(cfg, cfg.paths.data, "scenes")
    hq = load_scenes(data, "hq")
    k = cfg.t2i.pool_scenes
    if k == 0:
        return hq.images, list(hq.captions)
    pool = load_scenes(data, "pool").subset(np.arange(min(k, len(load_scenes(data, "pool")))))
    return torch.cat([hq.images, pool.images]), list(hq.captions) + list(pool.true_captions)


def with_synonyms(prompt: str) -> str:
    """Every word that has synonyms written with its first synonym (the grammar roles of common.prompts)."""
    from common.prompts import caption_roles

    table = load_table()
    words = split_words(prompt)
    out = [table.synonyms(r, w)[0] if r and w in table.entries.get(r, {}) else w
           for w, r in zip(words, caption_roles(words))]
    return " ".join(out).replace(" :", ":").replace(" ,", ",")


def sanity(cfg, model, schedule, clip_model, tok) -> dict:
    """Oracle agreement (objects read off the pixels) and CLIP score of samples of held-out test captions."""
    e = cfg.t2i.eval
    test = load_scenes(resolve(cfg, cfg.paths.data, "scenes"), "test")
    idx = np.arange(min(e.num_samples, len(test)))
    prompts = [test.true_captions[i] for i in idx]
    classifier = load_classifier(resolve(cfg, cfg.paths.models, "classifier"))
    oracle = OracleJudge(classifier, cfg.data.resolution)
    clip = ClipJudge(clip_model, tok, cfg.scene_clip.model.context_length)
    spec = SamplingSpec(num_samples=len(prompts), nfe=e.nfe, method=e.method, guidance_scale=e.guidance_scale,
                        seed=e.seed)
    plain = SamplingSpec(num_samples=len(prompts), nfe=e.nfe, method=e.method, guidance_scale=1.0, seed=e.seed)
    sets = {
        "cfg": generate_images(model, schedule, prompts, spec),
        "conditional": generate_images(model, schedule, prompts, plain),
        "unconditional": generate_images(model, schedule, [""] * len(prompts), plain),
        "synonyms_cfg": generate_images(model, schedule, [with_synonyms(p) for p in prompts], spec),
    }
    out = {"sanity_prompts": len(prompts), "sanity_nfe": e.nfe,
           "sanity_guidance_scale": e.guidance_scale}
    for name, images in sets.items():
        out[f"oracle_{name}"] = float(oracle(images, prompts).mean())
        out[f"clip_score_{name}"] = float(clip(images, prompts).mean())
    real = test.images[torch.as_tensor(idx)]
    out["oracle_real_images_read"] = float(oracle(real, prompts).mean())
    truth = read_objects(real)
    out["reader_count_accuracy_real"] = float(np.mean([len(t) == test.count[i] for t, i in zip(truth, idx)]))
    out["clip_score_real"] = float(clip(real, prompts).mean())
    return out, sets


def save_grid(sets: dict, prompts, path: Path, n: int = 8):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(n, len(prompts), *(len(v) for v in sets.values()))
    fig, axes = plt.subplots(len(sets), n, figsize=(1.6 * n, 1.8 * len(sets)), squeeze=False)
    for r, (name, images) in enumerate(sets.items()):
        for c in range(n):
            ax = axes[r, c]
            ax.imshow(images[c].permute(1, 2, 0).numpy(), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, fontsize=7)
            if r == 0:
                ax.set_title(prompts[c].replace(", ", ",\n").replace(": ", ":\n"), fontsize=5)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    cfg = load_config(RootConfig, overrides=sys.argv[1:] if argv is None else argv)
    c = cfg.t2i
    seed_everything(c.train.seed)
    tok = build_tokenizer()
    clip_model = load_clip(resolve(cfg, cfg.paths.models, "scene_clip"), cfg.scene_clip.model, tok, "train_scene_clip")
    model = build_t2i(c, clip_model, tok, c.train.seed)
    schedule = NoiseSchedule.from_config(c.diffusion)
    images, captions = training_captions(cfg)
    ids, groups, table = model.text.ids(captions), caption_groups(model, captions), synonym_table(model)

    def loss_fn(m, x, i, g, gen):
        return t2i_loss(m, schedule, x, i, g, gen, table=table, synonym_rate=c.synonym_rate,
                        cond_dropout=c.train.cond_dropout)

    d = to_dict(cfg)
    identity = {"scenes": d["scenes"], "scene_clip": d["scene_clip"], "t2i": d["t2i"]}
    code = [Path(__file__)] + [Path(m.__file__) for m in (common.t2i, common.prompts, common.clip, common.diffusion,
                                                          common.training)] + [common.prompts.TABLE_PATH]
    res = train(model, loss_fn, (images, ids, groups), c.train, resolve(cfg, cfg.paths.runs, "t2i", "checkpoints"),
                desc="t2i", run_fingerprint=fingerprint(identity, code))
    if not res.is_main_process:
        return
    model = res.model.eval()
    metrics = {"train_seconds": res.train_seconds, "resumed_from_step": res.resumed_from_step, "steps": res.steps,
               "train_pairs": len(captions), "final_loss": res.history[-1]["loss"] if res.history else float("nan"),
               "unet_params": sum(p.numel() for p in model.unet.parameters()),
               "trainable_params": count_trainable(model), "synonym_words": len(model.text.table.synonym_words),
               "synonym_rate": c.synonym_rate, "cond_dropout": c.train.cond_dropout}
    out = resolve(cfg, cfg.paths.models, "t2i")
    save_t2i(model, out, schedule.diffusers_config, {"config": d["t2i"], "metrics": metrics})
    sane, sets = sanity(cfg, model, schedule, clip_model, tok)
    metrics.update(sane)
    test = load_scenes(resolve(cfg, cfg.paths.data, "scenes"), "test")
    save_grid(sets, test.true_captions, resolve(cfg, cfg.paths.runs, "t2i", "samples.png"))
    (out / "meta.json").write_text(json.dumps({**json.loads((out / "meta.json").read_text()), "metrics": metrics},
                                              indent=2))
    path = resolve(cfg, "metrics", "t2i.json")
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(metrics, indent=2))
    log_run(cfg, "shared", "train_t2i", identity, metrics, seed=c.train.seed, history=res.history)
    print(json.dumps(metrics))


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
