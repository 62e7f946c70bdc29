"""The seeded degradation pipeline (common/degradations.py): kernels, per-sample seeding, JPEG, the second order.

Real-ESRGAN's numbers below are from Wang et al. 2021 ("Real-ESRGAN", ICCVW) and the official
options/train_realesrnet_x4plus.yml (xinntao/Real-ESRGAN): the first / second order ranges."""

import math

import numpy as np
import pytest
import torch

from common.config import range_violations
from common.degradations import (
    DegradationConfig,
    apply_order,
    blur,
    degradation_seeds,
    degrade,
    degrade_one,
    gaussian_kernel,
    gaussian_noise,
    jpeg,
    model_to_unit,
    poisson_noise,
    resize,
    unit_to_model,
)
from common.image_patches import load_photo


@pytest.fixture(scope="module")
def hr():
    """Six real 32 x 32 RGB crops in [0, 1] (astronaut, coffee)."""
    crops = [load_photo(n)[r:r + 32, c:c + 32] for n in ("astronaut", "coffee") for r, c in ((100, 200), (180, 220),
                                                                                           (300, 260))]
    return torch.from_numpy(np.stack(crops).transpose(0, 3, 1, 2).copy()).float() / 255


def _psnr(a, b):
    return float(10 * torch.log10(1 / ((a - b) ** 2).mean()))


def test_kernels_sum_to_one_and_the_anisotropic_covariance_matches_its_parameters():
    iso = gaussian_kernel(21, 1.5, 1.5, 0.0)
    assert abs(float(iso.sum()) - 1) < 1e-6 and torch.allclose(iso, iso.T) and torch.allclose(iso, iso.flip(0))
    sx, sy, theta = 3.0, 1.0, math.pi / 6
    k = gaussian_kernel(41, sx, sy, theta).double()  # wide enough that the truncation is negligible
    assert abs(float(k.sum()) - 1) < 1e-6
    r = torch.arange(41, dtype=torch.float64) - 20
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    cov = torch.tensor([[(k * xx * xx).sum(), (k * xx * yy).sum()], [(k * xx * yy).sum(), (k * yy * yy).sum()]])
    c, s = math.cos(theta), math.sin(theta)
    rot = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    want = rot @ torch.diag(torch.tensor([sx ** 2, sy ** 2], dtype=torch.float64)) @ rot.T
    assert torch.allclose(cov, want, atol=1e-3)
    # the blur keeps a constant image constant and the mean of any image close (mirror padding)
    img = torch.full((3, 16, 16), 0.3)
    assert torch.allclose(blur(img, k.float()), img, atol=1e-6)


def test_noise_levels_and_resize_shapes(hr):
    g = torch.Generator().manual_seed(0)
    flat = torch.full((3, 64, 64), 0.5)
    n = gaussian_noise(flat, 10 / 255, False, g) - flat
    assert abs(float(n.std()) - 10 / 255) < 0.1 * 10 / 255
    grey = gaussian_noise(flat, 10 / 255, True, g) - flat
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])
    p = poisson_noise(hr[0], 1.0, False, g)
    assert abs(float((p - hr[0]).mean())) < 0.02 and float((p - hr[0]).std()) > 0.01
    assert torch.equal(poisson_noise(hr[0], 0.0, True, g), hr[0])  # scale 0: no noise
    for mode in ("area", "bilinear", "bicubic"):
        assert resize(hr[0], (8, 8), mode).shape == (3, 8, 8)


def test_jpeg_at_quality_100_is_near_identity_and_at_low_quality_is_not(hr):
    q100 = torch.stack([jpeg(x, 100) for x in hr])
    q10 = torch.stack([jpeg(x, 10) for x in hr])
    exact = (hr * 255).round() / 255
    assert _psnr(q100, exact) > 35 and _psnr(q10, exact) < _psnr(q100, exact) - 8
    assert jpeg(hr[0, :1], 90).shape == (1, 32, 32)  # grey images too


def test_a_sample_degradation_depends_on_its_seed_not_its_batch(hr):
    cfg = DegradationConfig(second_order=True)
    seeds = degradation_seeds(7, range(len(hr)))
    assert seeds == degradation_seeds(7, range(len(hr))) and len(set(seeds)) == len(seeds)
    assert degradation_seeds(7, [3])[0] == seeds[3]  # a row's seed does not depend on the other rows
    lr, params = degrade(hr, seeds, cfg)
    assert lr.shape == (6, 3, 8, 8) and lr.min() >= 0 and lr.max() <= 1
    alone, p3 = degrade(hr[3:4], seeds[3:4], cfg)
    assert torch.equal(alone[0], lr[3]) and p3[0] == params[3]
    again, _ = degrade(hr.flip(0), seeds[::-1], cfg)
    assert torch.equal(again.flip(0), lr)
    other, _ = degrade(hr, degradation_seeds(8, range(len(hr))), cfg)
    assert not torch.equal(other, lr)
    with pytest.raises(ValueError):
        degrade(hr, seeds[:2], cfg)


def test_the_second_order_runs_only_behind_its_switch(hr):
    off, on = DegradationConfig(), DegradationConfig(second_order=True)
    assert off.second_order is False
    lr, p = degrade_one(hr[0], 5, off)
    assert set(p) == {"first", "final_mode"}
    # without the switch the output is the first order + the final resize + the first order's JPEG
    x = apply_order(hr[0], p["first"], (32, 32), final_jpeg=False)
    x = resize(x, (8, 8), p["final_mode"]).clamp(0, 1) if x.shape[1:] != (8, 8) else x
    assert torch.equal(lr, jpeg(x, p["first"]["jpeg_quality"]))
    lr2, p2 = degrade_one(hr[0], 5, on)
    assert set(p2) == {"first", "second", "final_mode"} and p2["first"] == p["first"]
    assert not torch.equal(lr2, lr)


def test_draws_follow_the_configured_ranges(hr):
    cfg = DegradationConfig(second_order=True)
    _, params = degrade(hr.repeat(5, 1, 1, 1), degradation_seeds(0, range(30)), cfg)
    for order, o in (("first", cfg.first), ("second", cfg.second)):
        for p in params:
            q = p[order]
            assert o.jpeg_range[0] <= q["jpeg_quality"] <= o.jpeg_range[1]
            if q["blur"] is not None:
                b = q["blur"]
                assert b["size"] in o.kernel_sizes and o.sigma_range[0] <= b["sigma_x"] <= o.sigma_range[1]
                assert b["aniso"] or (b["sigma_x"] == b["sigma_y"] and b["theta"] == 0.0)
            assert o.resize_range[0] <= q["resize_scale"] <= o.resize_range[1]
            kind, level = q["noise"]
            lo, hi = (o.noise_range[0] / 255, o.noise_range[1] / 255) if kind == "gaussian" else o.poisson_scale_range
            assert lo <= level <= hi
    assert {p["first"]["blur"] is None for p in params} == {False}  # the first order always blurs


def test_defaults_are_real_esrgans_numbers():
    cfg = DegradationConfig()
    f, s = cfg.first, cfg.second
    assert cfg.scale == 4 and f.kernel_sizes == [7, 9, 11, 13, 15, 17, 19, 21]
    assert (f.sigma_range, s.sigma_range, s.blur_prob) == ([0.2, 3.0], [0.2, 1.5], 0.8)
    assert (f.resize_prob, f.resize_range) == ([0.2, 0.7, 0.1], [0.15, 1.5])
    assert (s.resize_prob, s.resize_range) == ([0.3, 0.4, 0.3], [0.3, 1.2])
    assert (f.noise_range, s.noise_range) == ([1.0, 30.0], [1.0, 25.0])
    assert (f.poisson_scale_range, s.poisson_scale_range) == ([0.05, 3.0], [0.05, 2.5])
    assert f.gaussian_noise_prob == s.gaussian_noise_prob == 0.5 and f.gray_noise_prob == s.gray_noise_prob == 0.4
    assert f.jpeg_range == s.jpeg_range == [30, 95] and abs(f.aniso_prob - 0.25 / 0.70) < 1e-12
    assert list(range_violations(cfg)) == []


def test_range_conversions_round_trip():
    x = torch.linspace(-1, 1, 11)
    assert torch.allclose(unit_to_model(model_to_unit(x)), x, atol=1e-6) and model_to_unit(x).min() == 0
