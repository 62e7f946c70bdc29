"""RGB perceptual trunks for real image patches: lpips[patches-cnn] (a loss and a metric) and rfid[patches-cnn].

Why trained here: the standard LPIPS (ImageNet AlexNet / VGG calibrated on BAPPS) and FID's Inception
network cannot be downloaded, and the in-repo lpips[digits-cnn] is a grey MNIST trunk. The root stage
`train_patch_trunks` (common/stages/train_patch_trunks.py) trains two small TapNets (common/perceptual.py) on
the `train` patches of common/image_patches.py, class-supervised, as the official latent LPIPS trunk was
trained by classification:
  - `lpips`: which of the photographs a crop comes from (8 classes); the distance is the LPIPS structure over
    its taps with unit heads (common.perceptual.LPIPSDistance), named `lpips[patches-cnn]`;
  - `fid`: which photograph AND which 90-degree rotation (32 classes: every crop at 4 rotations), from its own
    seed. rFID (Heusel et al.'s Frechet distance, torch-fidelity's statistics) is computed on the global
    average of its last tap, named `rfid[patches-cnn]`.
Two trunks, because a paper that trains against lpips[patches-cnn] must not be scored by rFID in the same
feature space (the loss would optimise the metric). The trunks still share the data and the architecture
family, so rFID[patches-cnn] is an in-repo proxy, not comparable to a published Inception rFID.

The held-out patches (right quarter of each photo) never enter the trunks' training: they give the held-out
accuracy in metrics/patch_trunks.json and are what the papers reconstruct.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np
import torch

from .perceptual import LPIPSDistance, TapNet, load_trunk_dir

STAGE = "train_patch_trunks"  # the root stage that writes models/patch_trunks
LPIPS_KIND, FID_KIND = "lpips", "fid"
LPIPS_NAME = "lpips[patches-cnn]"
RFID_KEY = "rfid[patches-cnn]"
ROTATIONS = 4  # the rFID trunk's labels: photo * ROTATIONS + k for a crop rotated by k * 90 degrees


def rotation_task(x: torch.Tensor, photo: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Every image at its 4 rotations [4N, C, H, W] with labels photo * 4 + k (the rFID trunk's objective)."""
    xs = torch.cat([torch.rot90(x, k, dims=(2, 3)) for k in range(ROTATIONS)])
    ys = torch.cat([photo * ROTATIONS + k for k in range(ROTATIONS)])
    return xs, ys


def trunk_dir(cfg, kind: str):
    from .config import resolve

    return resolve(cfg, cfg.paths.models, "patch_trunks", kind)


def load_patch_trunk(cfg, kind: str) -> Tuple[TapNet, dict]:
    """(trunk in eval mode, meta) of models/patch_trunks/<kind> (kind: 'lpips' | 'fid')."""
    return load_trunk_dir(trunk_dir(cfg, kind), STAGE)


def patch_lpips(cfg) -> LPIPSDistance:
    """lpips[patches-cnn]: LPIPS with unit heads over the RGB patch trunk's taps; inputs in [-1, 1], 3 channels."""
    trunk, meta = load_patch_trunk(cfg, LPIPS_KIND)
    return LPIPSDistance(trunk, trunk.channels, meta["name"])


def _to_model_range(x: torch.Tensor, value_range: Tuple[float, float]) -> torch.Tensor:
    lo, hi = value_range
    return (x.float() - lo) / (hi - lo) * 2 - 1


@torch.no_grad()
def rfid_features(cfg, x: torch.Tensor, value_range: Tuple[float, float] = (-1.0, 1.0), trunk: TapNet = None,
                  batch_size: int = 512) -> torch.Tensor:
    """[N, D] features of images x (RGB, values in `value_range`) in rfid[patches-cnn]'s space: the global average
    of the last tap of the `fid` trunk."""
    trunk = trunk if trunk is not None else load_patch_trunk(cfg, FID_KIND)[0]
    if x.shape[1] != 3:
        raise ValueError(f"{RFID_KEY} takes RGB images [N, 3, H, W], got {tuple(x.shape)}")
    return torch.cat([trunk(_to_model_range(x[i:i + batch_size], value_range))[-1].mean(dim=(2, 3))
                      for i in range(0, len(x), batch_size)])


def frechet(f_x: torch.Tensor, f_y: torch.Tensor) -> float:
    """Frechet distance of two feature sets (torch-fidelity's statistics and metric, as fid[...] elsewhere)."""
    from .evaluation import fid_from_features

    return float(fid_from_features(f_x, f_y))


def rfid(cfg, x: torch.Tensor, y: torch.Tensor, value_range: Tuple[float, float] = (-1.0, 1.0)) -> float:
    """rfid[patches-cnn] of reconstructions x against references y (both [N, 3, H, W] in `value_range`)."""
    trunk, _ = load_patch_trunk(cfg, FID_KIND)
    return frechet(rfid_features(cfg, x, value_range, trunk), rfid_features(cfg, y, value_range, trunk))


def photo_labels(sources, photos) -> np.ndarray:
    """Class index of each crop's source photo (the order of `photos`)."""
    index = {p: i for i, p in enumerate(photos)}
    return np.array([index[s] for s in sources], dtype=np.int64)
