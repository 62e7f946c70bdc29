"""HR / LR pairs of captioned scenes with their known tags.

HR = the 32x32 scene in [-1, 1]; LR = common/degradations.py's first-order chain (scale 4 -> 8x8) with a per-sample
seed from (degradation_seed, split, row index), so a scene always gets the same LR image; LR_up = LR bicubic-
upsampled back to 32x32 (the ControlNet's and the taggers' input, as SeeSR feeds RAM and the ControlNet the
upsampled LR). One degradation per scene (the official draws a fresh one each step: a difference we state).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List

import numpy as np
import torch
import torch.nn.functional as F

from common.config import resolve
from common.degradations import degradation_seeds, degrade, model_to_unit, unit_to_model
from common.scenes import DIGIT_WORDS, POSITIONS, load_scenes
from papers.seesr import method

SPLIT_KEYS = {"hq": 0, "test": 1}
SPLITS = {"train": "hq", "test": "test"}  # our split -> the scenes split it is cut from
STAGE = "papers/seesr/dvc.yaml:pairs"


@dataclass
class Pairs:
    hr: torch.Tensor  # [N, 3, 32, 32] in [-1, 1]
    lr: torch.Tensor  # [N, 3, 8, 8] in [-1, 1]
    lr_up: torch.Tensor  # [N, 3, 32, 32] in [-1, 1]
    tags: torch.Tensor  # [N, len(TAGS)] multi-hot, the scene's known content
    objects: List[List[tuple]]  # per scene: (quadrant index, digit, colour)
    degradations: List[dict]  # the parameters drawn per sample


def objects_of(true_caption: str) -> List[tuple]:
    """(quadrant, digit, colour) of each object, read back from the scene's true caption (common/scenes.caption)."""
    out = []
    for part in true_caption.split(": ", 1)[1].split(", "):
        words = part.split(" ")  # size colour digit position...
        out.append((POSITIONS.index(" ".join(words[3:])), DIGIT_WORDS.index(words[2]), words[1]))
    return out


def upsample(lr: torch.Tensor, size: int) -> torch.Tensor:
    return F.interpolate(lr, size=(size, size), mode="bicubic", align_corners=False).clamp(-1, 1)


def load_pairs(cfg, split: str, n: int = None) -> Pairs:
    s = load_scenes(resolve(cfg, cfg.paths.data, "scenes"), split)
    idx = np.arange(len(s) if n is None else min(n, len(s)))
    s = s.subset(idx)
    hr = s.images.float() / 127.5 - 1
    seeds = degradation_seeds(cfg.degradation_seed * 16 + SPLIT_KEYS[split], idx)
    lr, params = degrade(model_to_unit(hr), seeds, cfg.degradation)
    lr = unit_to_model(lr)
    tags = torch.stack([method.tag_vector(d, c, int(k)) for d, c, k in zip(s.digits, s.colours, s.count)])
    return Pairs(hr, lr, upsample(lr, hr.shape[-1]), tags, [objects_of(c) for c in s.true_captions], params)


def pairs_path(cfg, split: str):
    return resolve(cfg, cfg.paths.models, "seesr", "pairs", f"{split}.pt")


def save_pairs(p: Pairs, path):
    from common.atomic import atomic_file

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        torch.save(vars(p), tmp)


def read_pairs(cfg, split: str) -> Pairs:
    """The pairs written by stage `pairs` (degrading is ~15 ms per image: done once, not in every stage)."""
    from common.config import reading, require

    path = require(pairs_path(cfg, split), STAGE)
    with reading(path, STAGE):
        return Pairs(**torch.load(path, weights_only=False))


def main(argv=None):
    import sys

    from common.config import load_config
    from papers.seesr.config import SeeSRConfig

    cfg = load_config(SeeSRConfig, paper="seesr", overrides=sys.argv[1:] if argv is None else argv)
    for split, n in (("train", cfg.num_train), ("test", cfg.num_test)):
        save_pairs(load_pairs(cfg, SPLITS[split], n), pairs_path(cfg, split))
        print(f"wrote {pairs_path(cfg, split)}")


if __name__ == "__main__":
    from common.cli import run_main

    run_main(main)
