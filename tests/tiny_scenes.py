"""Tiny captioned scenes from scikit-learn's 8x8 digits (train 64, probe 40, test 40), for CLIP-run tests."""

import numpy as np
import torch
from sklearn.datasets import load_digits

from common.scenes import DigitBank, Scenes, make_split


def tiny_scenes():
    d = load_digits()
    bank = DigitBank(np.round(d.images * 255 / 16).astype(np.uint8), d.target)

    def split(n, seed, counts):
        c = make_split(bank, n, seed, {}, np.full(10, 0.1), counts)
        return Scenes(torch.from_numpy(np.stack(c["image"])), c["caption"], c["true_caption"], np.array(c["noise"]),
                      np.array(c["severity"]), np.array(c["count"]), c["digits"], c["colours"])

    return split(64, 0, [1, 1, 1]), split(40, 1, [1.0]), split(40, 2, [2, 1, 1])
