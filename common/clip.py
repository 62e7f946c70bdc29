"""A small CLIP on captioned scenes: open_clip's model and loss, the shared Accelerate loop, and the
evaluations every data paper reports (zero-shot digit / colour / count, retrieval, linear probe).

Model: `open_clip.model.CLIP` built from small tower configs. Image tower: open_clip's
`ModifiedResNet` (CLIP's ResNet with attention pooling) or `VisionTransformer`; text tower: open_clip's
causal transformer pooled at the end-of-text token. Captions use a word-level tokenizer built from
the scene grammar (`common.scenes.vocabulary_texts`), not CLIP's 49k BPE: the vocabulary is ~40 words.
Loss: `open_clip.loss.ClipLoss` (symmetric InfoNCE over the batch) with the learned temperature
clamped at 100 as open_clip's training loop does. Images enter in [-1, 1] without augmentation
(Scaling (Down) CLIP's setting).

Zero-shot classification uses CLIP's prompt ensembling: a class embedding is the normalised mean of
the embeddings of captions that state the class (e.g. every single-digit caption with digit 3).
Retrieval counts a hit when the retrieved caption is the same text as the true one (scenes can share
a caption). The linear probe is a logistic regression on frozen image features (probe_train ->
test single-digit scenes, digit labels).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

from common.scenes import COLOURS, COUNT_WORDS, POSITIONS, SIZES, Obj, Scenes, caption, sample_objects

# --------------------------------------------------------------------------- text


def build_tokenizer():
    """Word-level tokenizer over the scene grammar (pad 0, bos 1, eos 2): a pure function of the code."""
    from common.lm import build_tokenizer as word_level
    from common.scenes import vocabulary_texts

    return word_level(vocabulary_texts())


def tokenize(tok, texts: Sequence[str], context_length: int) -> torch.Tensor:
    """[N, context_length] ids: bos, words, eos, then padding (truncated captions keep their eos)."""
    out = torch.full((len(texts), context_length), tok.pad_token_id, dtype=torch.long)
    for i, ids in enumerate(tok(list(texts), add_special_tokens=False)["input_ids"]):
        ids = [tok.bos_token_id] + ids[: context_length - 2] + [tok.eos_token_id]
        out[i, : len(ids)] = torch.tensor(ids)
    return out


# --------------------------------------------------------------------------- model


class SmallCNN(torch.nn.Module):
    """A plain 4-stage conv net (conv-BN-ReLU, 2x pooling) with global average pooling and a projection.

    Written here because open_clip's CNN tower (ModifiedResNet) downsamples 32x before pooling, which
    leaves a 10-pixel digit about one cell of a 1x1 map at this resolution; this one keeps 4x4 cells.
    """

    def __init__(self, widths: Sequence[int], output_dim: int):
        super().__init__()
        layers, c = [], 3
        for i, w in enumerate(widths):
            layers += [torch.nn.Conv2d(c, w, 3, padding=1, bias=False), torch.nn.BatchNorm2d(w), torch.nn.ReLU()]
            if i < len(widths) - 1:
                layers.append(torch.nn.MaxPool2d(2))
            c = w
        self.features = torch.nn.Sequential(*layers)
        self.proj = torch.nn.Linear(c, output_dim)
        self.output_dim = output_dim
        self.to(memory_format=torch.channels_last)  # 1.13x per CLIP training step on 2 CPU cores (measured)

    def forward(self, x):
        return self.proj(self.features(x.contiguous(memory_format=torch.channels_last)).mean((2, 3)))


def vision_cfg(spec, image_size: int = 32) -> dict:
    if spec.image_tower == "cnn":
        return dict(layers=1, width=64, head_width=64, patch_size=32, image_size=image_size)  # replaced below
    if spec.image_tower == "resnet":
        return dict(layers=tuple(spec.resnet_layers), width=spec.resnet_width, head_width=spec.resnet_width,
                    image_size=image_size)
    if spec.image_tower == "vit":
        return dict(layers=spec.vit_layers, width=spec.vit_width, head_width=spec.vit_head_width,
                    patch_size=spec.vit_patch, image_size=image_size)
    raise ValueError(f"model.image_tower={spec.image_tower!r}: expected 'cnn', 'resnet' or 'vit'")


def build_clip(spec, tok, seed: int):
    """open_clip CLIP with small towers; weights are a pure function of `seed`."""
    from open_clip.model import CLIP

    torch.manual_seed(seed)
    text = dict(context_length=spec.context_length, vocab_size=len(tok), width=spec.text_width,
                heads=spec.text_heads, layers=spec.text_layers, pad_id=tok.pad_token_id,
                eos_id=tok.eos_token_id, pool_type="eos")
    model = CLIP(embed_dim=spec.embed_dim, vision_cfg=vision_cfg(spec), text_cfg=text, output_dict=True)
    if spec.image_tower == "cnn":
        model.visual = SmallCNN(spec.cnn_widths, spec.embed_dim)
    return model


def build_image_tower(spec, output_dim: int, seed: int) -> torch.nn.Module:
    """The image tower alone (open_clip's builder), for image-only objectives such as CatLIP."""
    from open_clip.model import CLIPVisionCfg, _build_vision_tower

    torch.manual_seed(seed)
    if spec.image_tower == "cnn":
        return SmallCNN(spec.cnn_widths, output_dim)
    return _build_vision_tower(output_dim, CLIPVisionCfg(**vision_cfg(spec)))


def to_input(images_u8: torch.Tensor) -> torch.Tensor:
    """uint8 [N, 3, 32, 32] -> float in [-1, 1]."""
    return images_u8.float() / 127.5 - 1.0


MAX_LOGIT_SCALE = 100.0


def clip_loss(model, images_u8: torch.Tensor, tokens: torch.Tensor, generator=None) -> torch.Tensor:
    """open_clip's symmetric contrastive loss on one batch (the temperature clamped at 1/100)."""
    from open_clip.loss import ClipLoss

    out = model(to_input(images_u8), tokens)
    return ClipLoss()(out["image_features"], out["text_features"], out["logit_scale"].clamp(max=MAX_LOGIT_SCALE))


CLIP_WARMUP_MAX_FRACTION = 0.2  # a CLIP run warms up for at most a fifth of its steps (runs of ~100 steps)


def train_config(t, samples: Optional[int] = None):
    """A common.config.TrainConfig for `samples` samples seen (default: t.samples) at batch t.batch_size."""
    from common.config import budget_config, steps_for

    return budget_config(steps_for(samples or t.samples, t.batch_size), warmup_steps=t.warmup_steps,
                         max_warmup_fraction=CLIP_WARMUP_MAX_FRACTION, batch_size=t.batch_size, lr=t.lr,
                         lr_schedule=t.lr_schedule, weight_decay=t.weight_decay, grad_clip=t.grad_clip,
                         checkpoint_every=t.checkpoint_every, keep_checkpoints=t.keep_checkpoints, seed=t.seed,
                         log_every=t.log_every)


def train_clip(model, tok, scenes: Scenes, t, ckpt_dir: Path, *, context_length: int, desc: str,
               run_fingerprint: str, samples: Optional[int] = None, loss_fn: Callable = clip_loss,
               targets: Optional[torch.Tensor] = None, **kw):
    """Train on (image, caption) pairs with the shared Accelerate loop (checkpoints, resume, NaN guard):
    `loss_fn(model, images_u8, tokens, generator)`, or with `targets` (one row per scene) in place of the
    caption tokens, `loss_fn(model, images_u8, targets, generator)` (an image-only objective such as CatLIP's)."""
    from common.training import train

    y = tokenize(tok, scenes.captions, context_length) if targets is None else targets
    return train(model, loss_fn, (scenes.images, y), train_config(t, samples), ckpt_dir, desc=desc,
                 use_ema=False, run_fingerprint=run_fingerprint, **kw)


def save_clip(model, path: Path, meta: dict):
    import json

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path / "model.pt")
    (path / "meta.json").write_text(json.dumps(meta, indent=2))


def load_clip(path: Path, spec, tok, stage: Optional[str] = None):
    """A CLIP written by `save_clip`; missing or unreadable: a UserError naming the stage whose DVC outs hold
    `path` (else `stage`)."""
    from common.config import reading, require

    path = require(path, stage, marker="model.pt")
    model = build_clip(spec, tok, seed=0)
    with reading(path / "model.pt", stage):
        state = torch.load(path / "model.pt", map_location="cpu")
    model.load_state_dict(state)
    return model.eval()


# --------------------------------------------------------------------------- embeddings and scores


@torch.no_grad()
def encode_images(model, images_u8: torch.Tensor, batch: int = 1000, normalize: bool = True) -> torch.Tensor:
    model.eval()
    fn = model.encode_image if hasattr(model, "encode_image") else model
    out = [fn(to_input(images_u8[i:i + batch])) for i in range(0, len(images_u8), batch)]
    out = torch.cat(out)
    return torch.nn.functional.normalize(out, dim=-1) if normalize else out


@torch.no_grad()
def encode_texts(model, tok, texts: Sequence[str], context_length: int, batch: int = 2000) -> torch.Tensor:
    model.eval()
    tokens = tokenize(tok, texts, context_length)
    out = torch.cat([model.encode_text(tokens[i:i + batch]) for i in range(0, len(tokens), batch)])
    return torch.nn.functional.normalize(out, dim=-1)


def pair_scores(model, tok, scenes: Scenes, context_length: int) -> torch.Tensor:
    """Cosine similarity of each image with its own caption (the CLIP score filters rank by)."""
    return (encode_images(model, scenes.images) * encode_texts(model, tok, scenes.captions, context_length)).sum(-1)


# --------------------------------------------------------------------------- zero-shot classification


def class_prompts(task: str, seed: int = 0, per_class: int = 40) -> Dict[int, List[str]]:
    """Captions stating each class of a zero-shot task (prompt ensembles).

    digit / colour (single-digit scenes): every single-object caption with that digit / colour;
    count: `per_class` random captions with that many digits (seeded).
    """
    colours, sizes = list(COLOURS), list(SIZES)
    if task == "digit":
        return {d: [caption([Obj(d, c, s, p)]) for c in colours for s in sizes for p in range(len(POSITIONS))]
                for d in range(10)}
    if task == "colour":
        return {k: [caption([Obj(d, c, s, p)]) for d in range(10) for s in sizes for p in range(len(POSITIONS))]
                for k, c in enumerate(colours)}
    if task == "count":
        rng = np.random.default_rng(seed)
        out = {}
        for k, n in enumerate(sorted(COUNT_WORDS)):
            probs = np.eye(3)[n - 1]
            out[k] = [caption(sample_objects(rng, np.full(10, 0.1), probs)) for _ in range(per_class)]
        return out
    raise KeyError(f"unknown zero-shot task '{task}'; known: digit, colour, count")


def task_labels(scenes: Scenes, task: str) -> tuple:
    """(indices of the scenes the task applies to, their class labels)."""
    if task == "count":
        return np.arange(len(scenes)), scenes.count - 1
    single = np.flatnonzero(scenes.count == 1)
    if task == "digit":
        return single, np.array([scenes.digits[i][0] for i in single])
    if task == "colour":
        names = list(COLOURS)
        return single, np.array([names.index(scenes.colours[i][0]) for i in single])
    raise KeyError(task)


def class_embeddings(model, tok, task: str, context_length: int) -> torch.Tensor:
    prompts = class_prompts(task)
    emb = [encode_texts(model, tok, prompts[k], context_length).mean(0) for k in sorted(prompts)]
    return torch.nn.functional.normalize(torch.stack(emb), dim=-1)


def zero_shot(model, tok, test: Scenes, context_length: int, image_features: Optional[torch.Tensor] = None) -> dict:
    """Top-1 zero-shot accuracy per task, and per digit class (tail concepts of the long-tailed pool)."""
    feats = encode_images(model, test.images) if image_features is None else image_features
    out = {}
    for task in ("digit", "colour", "count"):
        idx, y = task_labels(test, task)
        pred = (feats[idx] @ class_embeddings(model, tok, task, context_length).T).argmax(-1).numpy()
        out[f"zero_shot_{task}"] = float((pred == y).mean())
        if task == "digit":
            for d in range(10):
                out[f"zero_shot_digit_{d}"] = float((pred[y == d] == d).mean()) if (y == d).any() else float("nan")
    return out


# --------------------------------------------------------------------------- retrieval


def retrieval(model, tok, test: Scenes, context_length: int, image_features: Optional[torch.Tensor] = None,
              ks: Sequence[int] = (1, 5)) -> dict:
    """Recall@k image->text and text->image over the test set's true captions (same text = a hit)."""
    img = encode_images(model, test.images) if image_features is None else image_features
    txt = encode_texts(model, tok, test.true_captions, context_length)
    sim = img @ txt.T
    _, caption_id = np.unique(np.asarray(test.true_captions), return_inverse=True)
    cid = torch.from_numpy(caption_id)
    out = {}
    for k in ks:
        i2t = cid[sim.topk(k, dim=1).indices]  # caption ids of the k best texts per image
        t2i = cid[sim.T.topk(k, dim=1).indices]
        out[f"retrieval_i2t_r{k}"] = float((i2t == cid[:, None]).any(1).float().mean())
        out[f"retrieval_t2i_r{k}"] = float((t2i == cid[:, None]).any(1).float().mean())
    return out


# --------------------------------------------------------------------------- linear probe


def linear_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                 C: float = 1.0) -> float:
    """Logistic regression on standardised frozen features; returns test accuracy (deterministic)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    sc = StandardScaler().fit(train_x)
    clf = LogisticRegression(C=C, max_iter=2000).fit(sc.transform(train_x), train_y)
    return float((clf.predict(sc.transform(test_x)) == test_y).mean())


def probe_accuracy(image_encoder: Callable[[torch.Tensor], torch.Tensor], probe_train: Scenes, test: Scenes) -> float:
    """Digit linear-probe accuracy: fit on probe_train (single digits), test on the test single-digit scenes."""
    idx, y = task_labels(test, "digit")
    ytr = np.array([d[0] for d in probe_train.digits])
    ftr = encode_images(image_encoder, probe_train.images, normalize=False).numpy()
    fte = encode_images(image_encoder, test.images[idx], normalize=False).numpy()
    return linear_probe(ftr, ytr, fte, y)


# --------------------------------------------------------------------------- everything at once


def evaluate_clip(model, tok, probe_train: Scenes, test: Scenes, context_length: int) -> dict:
    """Zero-shot, retrieval and linear-probe metrics of one CLIP (the shared score card)."""
    feats = encode_images(model, test.images)
    out = zero_shot(model, tok, test, context_length, feats)
    out.update(retrieval(model, tok, test, context_length, feats))
    out["linear_probe_digit"] = probe_accuracy(model.visual, probe_train, test)
    out["zero_shot_mean"] = float(np.mean([out["zero_shot_digit"], out["zero_shot_colour"], out["zero_shot_count"]]))
    return out


def flops_per_sample(fn: Callable[[], torch.Tensor], batch: int) -> float:
    """Forward + backward FLOPs of `fn()` (a loss on `batch` samples) per sample, by torch's FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn().backward()
    return counter.get_total_flops() / batch
