"""GAN pieces (common/gan.py): closed forms of the losses, R1 and PaGoDA's adaptive weight; the discriminator's
initialisation from the teacher UNet's encoder. The adaptive weight's formula and clamps are those of
sony/pagoda@e6c850d622 cm/karras_diffusion.py (calculate_adaptive_weight, get_adaptive_weight)."""

import math

import pytest
import torch

from common.config import UNetConfig
from common.gan import (
    UNetDiscriminator,
    adaptive_weight,
    copied_from,
    d_hinge,
    d_nonsaturating,
    g_hinge,
    g_nonsaturating,
    gan_losses,
    r1_penalty,
)
from common.models import build_unet


def tiny_unet():
    torch.manual_seed(0)
    cfg = UNetConfig(block_out_channels=[8, 16], attention_levels=[False, True], layers_per_block=1, num_classes=10,
                     norm_num_groups=4, attention_head_dim=4)
    return build_unet(cfg, 8, 1).eval()


def test_hinge_and_nonsaturating_closed_forms():
    real, fake = torch.tensor([2.0, 0.5, -1.0]), torch.tensor([-2.0, 0.0, 1.5])
    # hinge: mean relu(1 - r) = (0 + .5 + 2) / 3; mean relu(1 + f) = (0 + 1 + 2.5) / 3
    assert d_hinge(real, fake).item() == pytest.approx(2.5 / 3 + 3.5 / 3)
    assert g_hinge(fake).item() == pytest.approx(0.5 / 3)  # -mean(-2, 0, 1.5)
    sp = lambda v: math.log1p(math.exp(v))  # noqa: E731
    assert d_nonsaturating(real, fake).item() == pytest.approx(
        sum(sp(-r) for r in real.tolist()) / 3 + sum(sp(f) for f in fake.tolist()) / 3, rel=1e-6)
    assert g_nonsaturating(fake).item() == pytest.approx(sum(sp(-f) for f in fake.tolist()) / 3, rel=1e-6)
    assert gan_losses("hinge") == (d_hinge, g_hinge)
    with pytest.raises(ValueError):
        gan_losses("wgan")


def test_r1_of_a_linear_discriminator_is_the_squared_weight_norm():
    a = torch.randn(1, 2, 3, 3)
    penalty = r1_penalty(lambda x: (x * a).flatten(1).sum(1), torch.randn(5, 2, 3, 3))
    assert penalty.item() == pytest.approx(a.pow(2).sum().item(), rel=1e-6)
    # quadratic D(x) = sum x^2: grad = 2x, E ||2x||^2
    x = torch.randn(4, 1, 2, 2)
    assert r1_penalty(lambda v: v.pow(2).flatten(1).sum(1), x).item() == pytest.approx(
        (2 * x).pow(2).flatten(1).sum(1).mean().item(), rel=1e-6)


def test_adaptive_weight_is_pagodas_clipped_gradient_ratio():
    w = torch.randn(3, 4, requires_grad=True)
    a, b = torch.randn(3, 4), torch.randn(3, 4)
    lam = adaptive_weight((w * a).sum(), (w * b).sum(), w)  # grads are a and b
    want = min(max(a.norm().item() / (b.norm().item() + 1e-4), 0.01), 10.0)
    assert lam.item() == pytest.approx(want, rel=1e-6) and not lam.requires_grad
    assert adaptive_weight((w * a).sum() * 1e4, (w * b).sum(), w).item() == pytest.approx(10.0)  # upper clip
    assert adaptive_weight((w * a).sum() * 1e-6, (w * b).sum(), w).item() == pytest.approx(0.01)  # lower clip
    assert adaptive_weight((w * 0).sum(), (w * b).sum(), w).item() == 1.0  # L_rec = 0: weight 1, as official
    with pytest.raises(FloatingPointError):
        adaptive_weight((w * a).sum() * float("nan"), (w * b).sum(), w)


def test_discriminator_copies_every_encoder_weight_and_is_independent_of_the_teacher():
    unet = tiny_unet()
    disc = UNetDiscriminator(unet, num_classes=10)
    encoder = [k for k in unet.state_dict() if k.split(".")[0] in
               ("conv_in", "time_embedding", "class_embedding", "down_blocks", "mid_block")]
    assert sorted(copied_from(disc, unet)) == sorted(encoder)
    x, y = torch.randn(3, 1, 8, 8), torch.tensor([0, 4, 9])
    logits = disc(x, y)
    assert logits.shape == (3, 3)  # heads at 4x4 (after level 0), 4x4 (level 1, no downsampling), mid
    assert [f.shape[-1] for f in disc.features(x, y)] == [4, 4, 4]
    logits.sum().backward()
    assert all(p.grad is None for p in unet.parameters())  # the teacher is untouched
    with torch.no_grad():
        disc.conv_in.weight.add_(1.0)
    assert not torch.equal(disc.conv_in.weight, unet.conv_in.weight)


def test_projection_term_depends_on_the_class():
    disc = UNetDiscriminator(tiny_unet(), num_classes=10)
    x = torch.randn(2, 1, 8, 8)
    assert not torch.allclose(disc(x, torch.tensor([0, 0])), disc(x, torch.tensor([1, 1])))
