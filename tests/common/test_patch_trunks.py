"""RGB patch trunks (common/patch_trunks.py, root stage train_patch_trunks): lpips[patches-cnn] and rfid[patches-cnn]."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tinyrepo import tiny_params_root

from common.patch_trunks import FID_KIND, LPIPS_KIND, ROTATIONS, frechet, photo_labels, rotation_task

REPO = Path(__file__).resolve().parents[2]


def test_rotation_task_labels_each_photo_at_four_rotations():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    xs, ys = rotation_task(x, torch.tensor([5, 1]))
    assert xs.shape == (8, 3, 4, 4) and ys.tolist() == [20, 4, 21, 5, 22, 6, 23, 7]
    assert torch.equal(xs[2], torch.rot90(x[0], 1, dims=(1, 2))) and torch.equal(xs[0], x[0])
    assert (ys // ROTATIONS).tolist() == [5, 1] * 4
    assert photo_labels(["b", "a", "b"], ("a", "b")).tolist() == [1, 0, 1]


def test_frechet_is_zero_on_one_set_and_the_closed_form_for_shifted_gaussians():
    g = torch.Generator().manual_seed(0)
    f = torch.randn(4000, 3, generator=g, dtype=torch.float64)
    assert frechet(f, f) == pytest.approx(0, abs=1e-6)
    # equal covariances: FD = |mu_x - mu_y|^2 exactly (the trace term cancels)
    assert frechet(f + torch.tensor([1.0, 2.0, 0.0], dtype=torch.float64), f) == pytest.approx(5.0, rel=1e-6)


def test_stage_on_the_tiny_profile_trains_both_trunks_and_the_metrics_use_them(tmp_path, monkeypatch):
    from common.stages import prepare_patches, train_patch_trunks

    root = tiny_params_root(tmp_path, monkeypatch)
    from common.config import RootConfig, UserError, load_config
    from common.patch_trunks import RFID_KEY, load_patch_trunk, patch_lpips, rfid

    cfg = load_config(RootConfig, root=root)
    with pytest.raises(UserError, match="train_patch_trunks"):
        patch_lpips(cfg)
    prepare_patches.main(["tracking.enabled=false"])
    train_patch_trunks.main(["tracking.enabled=false"])
    m = json.loads((root / "metrics" / "patch_trunks.json").read_text())
    assert m[LPIPS_KIND]["num_classes"] == 8 and m[FID_KIND]["num_classes"] == 32
    assert m[LPIPS_KIND]["seed"] != m[FID_KIND]["seed"]
    lp_trunk, _ = load_patch_trunk(cfg, LPIPS_KIND)
    fid_trunk, meta = load_patch_trunk(cfg, FID_KIND)
    assert meta["name"] == RFID_KEY and not torch.equal(lp_trunk.slices[0][0].weight, fid_trunk.slices[0][0].weight)
    dist = patch_lpips(cfg)
    x = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    d = dist(x * 2 - 1, x.flip(0) * 2 - 1)
    assert dist.name == "lpips[patches-cnn]" and d.shape == (6,) and torch.allclose(dist(x, x), torch.zeros(6))
    assert rfid(cfg, x, x, (0.0, 1.0)) == pytest.approx(0, abs=1e-6)
    assert np.isfinite(rfid(cfg, x, x.flip(0).roll(1, 2), (0.0, 1.0)))
    with pytest.raises(ValueError, match="RGB"):
        rfid(cfg, x[:, :1], x[:, :1])
