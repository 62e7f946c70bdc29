"""Reconstruction metrics (common/recon_metrics.py): PSNR / SSIM against closed forms, LPIPS's backbone policy."""

import math

import numpy as np
import pytest
import torch

from common.config import UserError
from common.perceptual import GreyToRGB, LPIPSDistance, TapNet
from common.recon_metrics import SSIM_KW, lpips, psnr, recon_metrics, ssim, summarise


def test_psnr_of_a_constant_offset_is_the_closed_form():
    x = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 0.5 - 0.25  # room for the offset
    for d in (0.01, 0.1):
        assert np.allclose(psnr(x + d, x), 10 * math.log10(2.0 ** 2 / d ** 2))  # [-1, 1]: data_range 2
        assert np.allclose(psnr(x + d, x, (0.0, 1.0)), 10 * math.log10(1.0 / d ** 2))  # [0, 1]: data_range 1
    assert np.isinf(psnr(x, x)).all()
    assert psnr(x + 0.1, x).shape == (4,)


def test_ssim_of_identical_images_is_one_and_of_flat_images_the_luminance_term():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(3, 3, 32, 32, generator=g) * 2 - 1
    assert np.allclose(ssim(x, x), 1.0)
    # two flat images a, b: contrast-structure term is C2 / C2 = 1, luminance (2ab + C1) / (a^2 + b^2 + C1)
    a, b, c1 = 0.2, -0.3, (SSIM_KW["K1"] * 2.0) ** 2
    got = ssim(torch.full((1, 1, 16, 16), a), torch.full((1, 1, 16, 16), b))
    assert np.allclose(got, (2 * a * b + c1) / (a * a + b * b + c1))
    noisy = (x + 0.2 * torch.randn(x.shape, generator=g)).clamp(-1, 1)
    assert (ssim(noisy, x) < 0.95).all() and (ssim(noisy, x) > -1).all()


def _grey_lpips():
    torch.manual_seed(0)
    return LPIPSDistance(TapNet(1, [4, 8], [1, 1], [False, True]).eval(), [4, 8], "lpips[test-grey]")


def test_lpips_is_named_by_its_backbone_and_a_grey_trunk_refuses_rgb():
    dist = _grey_lpips()
    g = torch.Generator().manual_seed(2)
    x, y = torch.rand(5, 1, 16, 16, generator=g), torch.rand(5, 1, 16, 16, generator=g)
    m = recon_metrics(x, y, (0.0, 1.0), lpips_dist=dist)
    assert set(m) == {"psnr", "ssim", "lpips[test-grey]"} and m["lpips[test-grey]"].shape == (5,)
    assert np.allclose(lpips(dist, x, x, (0.0, 1.0)), 0) and (m["lpips[test-grey]"] > 0).all()
    # value ranges: the same images in [0, 1] and in [-1, 1] give the same distance
    assert np.allclose(lpips(dist, x * 2 - 1, y * 2 - 1), m["lpips[test-grey]"], atol=1e-6)
    assert np.allclose(lpips(dist, x, y, (0.0, 1.0), batch_size=2), m["lpips[test-grey]"], atol=1e-6)
    with pytest.raises(UserError, match="1-channel images, not 3-channel"):
        lpips(dist, torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16))


def test_rgb_images_get_the_rgb_patch_trunk_where_the_choice_is_the_grey_digits_trunk(monkeypatch):
    """lpips_for: perceptual.pixel_backbone's distance for grey images; lpips[patches-cnn] for RGB ones where that
    distance is the grey lpips[digits-cnn]; any other grey-only trunk is refused for RGB."""
    import common.patch_trunks
    import common.perceptual
    from common.recon_metrics import lpips_for

    rgb = LPIPSDistance(TapNet(3, [4], [1], [False]).eval(), [4], "lpips[patches-cnn]")
    monkeypatch.setattr(common.patch_trunks, "patch_lpips", lambda cfg: rgb)
    monkeypatch.setattr(common.perceptual, "pixel_lpips", lambda cfg: _grey_lpips())
    assert lpips_for(None, 1).name == "lpips[test-grey]"
    with pytest.raises(UserError, match="lpips_for"):
        lpips_for(None, 3)
    digits = _grey_lpips()
    digits.name = "lpips[digits-cnn]"
    monkeypatch.setattr(common.perceptual, "pixel_lpips", lambda cfg: digits)
    assert lpips_for(None, 1) is digits and lpips_for(None, 3) is rgb


@pytest.mark.filterwarnings("ignore::UserWarning")  # torchvision's deprecation of lpips' `pretrained=` argument
def test_an_rgb_trunk_takes_rgb_patches():
    """lpips.LPIPS(net='alex')'s structure with random weights (no download): RGB 32x32 patches go through."""
    import lpips as lp

    ref = lp.LPIPS(net="alex", pretrained=False, pnet_rand=True, verbose=False)
    dist = LPIPSDistance(ref.net, ref.chns, "lpips[alex-random]", heads=list(ref.lins), preprocess=GreyToRGB())
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3)) * 2 - 1
    d = lpips(dist, x, x.flip(0))
    assert d.shape == (2,) and np.isfinite(d).all() and np.allclose(lpips(dist, x, x), 0, atol=1e-6)


def test_summarise_means_the_finite_values():
    out = summarise({"psnr": np.array([np.inf, 20.0, 30.0]), "ssim": np.array([0.5, 1.0])})
    assert out == {"psnr": 25.0, "ssim": 0.75}
    assert summarise({"psnr": np.array([np.inf])}) == {"psnr": None}
