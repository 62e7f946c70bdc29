"""Real image patches, offline: seeded crops of the photographs shipped with scikit-image, and LFW faces.

Why: the autoencoder and super-resolution papers need real RGB images (textures, edges, colour) that load
without a network. `skimage.data` ships a handful of photographs; random crops of them give a few thousand
HR patches. The root stage `prepare_patches` (common/stages/prepare_patches.py) writes them with `datasets`
to data/patches; `load_patches` reads a split back and names the stage to rerun when the data is missing.

Splits (columns image uint8 [C, H, W], source, split, top, left):
  - `train`:   crops lying entirely in the left (1 - heldout_fraction) of the width of each photo;
  - `heldout`: crops lying entirely in the right-most heldout_fraction of the same photos. The split is by
               REGION: no held-out pixel is ever in a training crop, but held-out regions come from the same
               photos (same camera, lighting and content type), not from unseen photos;
  - `faces`:   the 100 grey faces of `skimage.data.lfw_subset()` (25 x 25, the first 100 of its 200 images;
               the other 100 are non-faces), resized to the patch size with PIL bicubic: an UPSAMPLED image,
               so it holds no detail finer than the 25 x 25 original.
Crops are drawn per photo and split from their own seed (numpy SeedSequence of [seed, photo, split]), so
adding a photo or changing one split's count leaves the other crops as they were. Near-flat crops (the black
borders of `retina`, the empty sky of `hubble_deep_field`) are rejected: a crop is kept when the standard
deviation of its uint8 values is at least `min_std`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple, Union

import numpy as np
import torch

from .config import reading, resolve

STAGE = "prepare_patches"  # the root stage that writes data/patches
SPLITS = ("train", "heldout", "faces")
# RGB photographs of `skimage.data` that load offline with scikit-image 0.26 (no pooch download). Excluded:
# `cat` (the same image as `chelsea`), `colorwheel` (synthetic), the grey ones (camera, moon, textures).
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "retina", "hubble_deep_field",
          "stereo_motorcycle")
MAX_TRIES = 200  # random positions tried per wanted crop before giving up (near-flat photos)


def load_photo(name: str) -> np.ndarray:
    """A `skimage.data` photograph as uint8 [H, W, 3] (stereo_motorcycle: its left view)."""
    import skimage.data as sd

    img = getattr(sd, name)()
    img = img[0] if name == "stereo_motorcycle" else img
    return np.ascontiguousarray(img[..., :3], dtype=np.uint8)


def split_columns(width: int, size: int, heldout_fraction: float) -> Dict[str, Tuple[int, int]]:
    """{split: (first, last) allowed left column of a crop}: train crops end left of the boundary, held-out
    crops start at or right of it, so the two splits share no pixel."""
    boundary = int(round(width * (1 - heldout_fraction)))
    spans = {"train": (0, boundary - size), "heldout": (boundary, width - size)}
    for split, (a, b) in spans.items():
        if b < a:
            raise ValueError(f"a {width}-pixel-wide photo has no room for a {size}-pixel {split} crop at "
                             f"heldout_fraction {heldout_fraction}")
    return spans


def random_crops(img: np.ndarray, n: int, size: int, cols: Tuple[int, int], min_std: float,
                 rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """n crops [n, 3, size, size] with left column in `cols` (inclusive) and std >= min_std; and their
    (top, left) [n, 2]."""
    h = img.shape[0]
    crops, where = [], []
    for _ in range(n * MAX_TRIES):
        top, left = int(rng.integers(0, h - size + 1)), int(rng.integers(cols[0], cols[1] + 1))
        crop = img[top:top + size, left:left + size]
        if crop.std() >= min_std:
            crops.append(crop.transpose(2, 0, 1))
            where.append((top, left))
            if len(crops) == n:
                return np.stack(crops), np.asarray(where, dtype=np.int32)
    raise ValueError(f"only {len(crops)} of {n} crops with std >= {min_std} after {n * MAX_TRIES} tries")


def photo_patches(cfg, split: str) -> dict:
    """Columns {image, source, split, top, left} of a photo split (`train` | `heldout`) for a `patches` config."""
    cols: Dict[str, list] = {"image": [], "source": [], "top": [], "left": []}
    n = cfg.train_per_photo if split == "train" else cfg.heldout_per_photo
    for i, name in enumerate(PHOTOS):
        img = load_photo(name)
        span = split_columns(img.shape[1], cfg.size, cfg.heldout_fraction)[split]
        rng = np.random.default_rng([cfg.seed, i, SPLITS.index(split)])
        x, where = random_crops(img, n, cfg.size, span, cfg.min_std, rng)
        cols["image"].append(x)
        cols["source"] += [name] * n
        cols["top"].append(where[:, 0])
        cols["left"].append(where[:, 1])
    return {"image": np.concatenate(cols["image"]), "source": cols["source"], "split": [split] * len(cols["source"]),
            "top": np.concatenate(cols["top"]), "left": np.concatenate(cols["left"])}


def face_patches(size: int) -> dict:
    """The 100 LFW faces of `skimage.data.lfw_subset()`, grey uint8 [100, 1, size, size] (PIL bicubic resize)."""
    import skimage.data as sd
    from PIL import Image

    faces = np.round(sd.lfw_subset()[:100] * 255).astype(np.uint8)
    x = np.stack([np.asarray(Image.fromarray(f).resize((size, size), Image.BICUBIC)) for f in faces])[:, None]
    n = len(x)
    return {"image": x, "source": ["lfw"] * n, "split": ["faces"] * n, "top": np.zeros(n, np.int32),
            "left": np.zeros(n, np.int32)}


def build_patches(cfg):
    """The `datasets.DatasetDict` of a `patches` config: train, heldout and (if cfg.faces) faces."""
    import datasets

    splits = {s: photo_patches(cfg, s) for s in ("train", "heldout")}
    if cfg.faces:
        splits["faces"] = face_patches(cfg.size)
    out = {}
    for name, c in splits.items():
        features = datasets.Features({"image": datasets.Array3D(shape=c["image"].shape[1:], dtype="uint8"),
                                      "source": datasets.Value("string"), "split": datasets.Value("string"),
                                      "top": datasets.Value("int32"), "left": datasets.Value("int32")})
        out[name] = datasets.Dataset.from_dict(c, features=features)
    return datasets.DatasetDict(out)


# --------------------------------------------------------------------------- reading
@dataclass
class Patches:
    """One split: images uint8 [N, C, H, W] (C = 3 photos, 1 faces), the photo each came from, its top-left corner."""

    images: torch.Tensor
    sources: List[str]
    top: torch.Tensor
    left: torch.Tensor

    def __len__(self) -> int:
        return self.images.shape[0]


def patches_dir(cfg) -> Path:
    """data/patches under the repository root."""
    return resolve(cfg, cfg.paths.data, "patches")


def load_patches(cfg_or_dir: Union[Path, str, object], split: str = "train") -> Patches:
    """A split (`train` | `heldout` | `faces`) of data/patches; missing or unreadable -> a UserError naming the
    file and the stage (prepare_patches) to rerun."""
    from .config import load_from_disk
    from .data import MissingDataError

    if split not in SPLITS:
        raise ValueError(f"patches have splits {SPLITS}, not {split!r}")
    root = Path(cfg_or_dir) if isinstance(cfg_or_dir, (str, Path)) else patches_dir(cfg_or_dir)
    dd = load_from_disk(root, STAGE, error=MissingDataError)
    if split not in dd:
        raise MissingDataError(f"{root} has no {split!r} split (patches.faces: false?; made by stage {STAGE}: "
                               f"run dvc repro dvc.yaml:{STAGE})")
    ds = dd[split]
    with reading(root / split, STAGE):
        x = ds.with_format("numpy", columns=["image"], dtype=np.uint8)[:]["image"]
        pos = ds.with_format("numpy", columns=["top", "left"])[:]
        sources = list(ds["source"])
    return Patches(torch.from_numpy(np.ascontiguousarray(x)), sources,
                   torch.from_numpy(np.asarray(pos["top"], dtype=np.int64)),
                   torch.from_numpy(np.asarray(pos["left"], dtype=np.int64)))
