"""Real image patches (common/image_patches.py) and the root stage prepare_patches on the tiny profile."""

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from tinyrepo import tiny_params_root

from common.data import MissingDataError
from common.image_patches import PHOTOS, build_patches, load_patches, load_photo, split_columns

REPO = Path(__file__).resolve().parents[2]
CFG = dict(size=16, train_per_photo=3, heldout_per_photo=2, heldout_fraction=0.25, min_std=8.0, faces=True, seed=0)


def test_every_photo_loads_offline_as_rgb():
    for name in PHOTOS:
        img = load_photo(name)
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3 and min(img.shape[:2]) >= 256, name


def test_region_split_shares_no_pixel():
    spans = split_columns(451, 32, 0.25)
    boundary = round(451 * 0.75)
    assert spans["train"] == (0, boundary - 32) and spans["heldout"] == (boundary, 451 - 32)
    with pytest.raises(ValueError):
        split_columns(40, 32, 0.25)


def test_crops_are_seeded_in_their_region_and_not_flat():
    cfg = SimpleNamespace(**CFG)
    dd = build_patches(cfg)
    assert {k: len(v) for k, v in dd.items()} == {"train": 3 * len(PHOTOS), "heldout": 2 * len(PHOTOS), "faces": 100}
    again = build_patches(SimpleNamespace(**{**CFG, "heldout_per_photo": 1, "faces": False}))
    assert list(again) == ["train", "heldout"]
    tr = dd["train"].with_format("numpy")[:]
    assert np.array_equal(tr["image"], again["train"].with_format("numpy")[:]["image"])  # seeded per photo + split
    for split in ("train", "heldout"):
        rows = dd[split].with_format("numpy")[:]
        assert rows["image"].shape[1:] == (3, 16, 16) and set(rows["split"]) == {split}
        for img, src, top, left in zip(rows["image"], rows["source"], rows["top"], rows["left"]):
            photo = load_photo(src)
            boundary = int(round(photo.shape[1] * 0.75))
            assert (left + 16 <= boundary) if split == "train" else (left >= boundary)
            assert np.array_equal(img, photo[top:top + 16, left:left + 16].transpose(2, 0, 1))
            assert img.std() >= 8.0
    faces = dd["faces"].with_format("numpy")[:]
    assert faces["image"].shape == (100, 1, 16, 16) and set(faces["source"]) == {"lfw"}


def test_stage_on_the_tiny_profile_writes_the_splits_and_the_reader_reads_them(tmp_path, monkeypatch):
    from common.stages import prepare_patches

    root = tiny_params_root(tmp_path, monkeypatch)
    with pytest.raises(MissingDataError, match="prepare_patches: run dvc repro dvc.yaml:prepare_patches"):
        load_patches(root / "data" / "patches", "train")
    prepare_patches.main(["tracking.enabled=false"])
    from common.config import RootConfig, load_config

    cfg = load_config(RootConfig, root=root)
    p = load_patches(cfg, "train")
    assert p.images.dtype == torch.uint8 and p.images.shape == (cfg.patches.train_per_photo * len(PHOTOS), 3,
                                                                cfg.patches.size, cfg.patches.size)
    assert len(load_patches(cfg, "heldout")) == cfg.patches.heldout_per_photo * len(PHOTOS)
    assert load_patches(cfg, "faces").images.shape[1] == 1 and p.sources[0] == PHOTOS[0]
    m = json.loads((root / "metrics" / "patches.json").read_text())
    assert m["rows"]["faces"] == 100 and m["photos"] == list(PHOTOS)
    with pytest.raises(ValueError):
        load_patches(cfg, "test")
