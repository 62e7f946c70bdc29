"""Perceptual distances (common/perceptual.py): the LPIPS structure against lpips.LPIPS's own forward, the latent
VGG's taps (the official E-LatentLPIPS slices), the hub-cache switch. The augmentation's checks: test_augment.py.
"""

import pytest
import torch

from common.augment import DiffAugment
from common.perceptual import LPIPSDistance, TapNet, hub_weights, latent_vgg16_bn


def test_distance_equals_lpips_forward_with_random_trunk_weights():
    import lpips

    torch.manual_seed(0)
    ref = lpips.LPIPS(pretrained=False, net="alex", pnet_rand=True, verbose=False).eval()
    for lin in ref.lins:  # random heads (LPIPS leaves them at their init when not pretrained), made positive
        torch.nn.init.uniform_(lin.model[-1].weight, 0.0, 1.0)
    ours = LPIPSDistance(ref.net, ref.chns, "lpips[alex-random]", heads=list(ref.lins), preprocess=ref.scaling_layer)
    x0, x1 = torch.rand(3, 3, 64, 64) * 2 - 1, torch.rand(3, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        want, per_layer = ref(x0, x1, retPerLayer=True)
        got = ours(x0, x1)
        layers = ours.layers(x0, x1)
    assert got.shape == (3,)
    assert got.tolist() == pytest.approx(want.flatten().tolist(), abs=1e-5)
    for a, b in zip(layers, per_layer):
        assert a.tolist() == pytest.approx(b.flatten().tolist(), abs=1e-5)
    assert [t.shape[1:] for t in ref.net(x0)] == [(64, 15, 15), (192, 7, 7), (384, 3, 3), (256, 3, 3), (256, 3, 3)]


def test_unit_heads_are_frozen_and_the_latent_variant_adds_l1_and_is_zero_on_equal_inputs():
    trunk = TapNet(4, [8, 8, 16], [1, 1, 1], [False, False, True])
    d = LPIPSDistance(trunk, trunk.channels, "latent-lpips[test]", augment=DiffAugment.preset("bg"), l1=True)
    assert not any(p.requires_grad for p in d.parameters())
    assert all(torch.equal(h.model[-1].weight, torch.ones_like(h.model[-1].weight)) for h in d.heads)
    d.train()
    assert not d.training and not trunk.training  # a loss module stays in eval mode
    x = torch.randn(4, 4, 8, 8)
    assert d(x, x.clone(), torch.Generator().manual_seed(0)).abs().max().item() < 1e-6
    y = x + 0.1
    plain = d(x, y, augment=False) - (x - y).abs().mean(dim=(1, 2, 3))
    assert torch.allclose(plain, torch.stack(d.layers(x, y, augment=False)).sum(0), atol=1e-6)
    z = torch.randn(4, 4, 8, 8, requires_grad=True)
    d(z, x, torch.Generator().manual_seed(1)).sum().backward()  # differentiable through the augmentation
    assert z.grad is not None and torch.isfinite(z.grad).all()


def test_latent_vgg_taps_match_the_official_slices():
    import torchvision

    net = latent_vgg16_bn(4, meta=True)
    taps = net(torch.empty(1, 4, 64, 64, device="meta"))
    # official CalibratedLatentVGG16BN: slices [0:7], [7:14], [14:24], [24:34], [34:44] of vgg16_bn.features with
    # the first conv on 4 channels and the first three max-pools replaced by Identity
    assert [tuple(t.shape[1:]) for t in taps] == [(64, 64, 64), (128, 64, 64), (256, 64, 64), (512, 32, 32),
                                                  (512, 16, 16)]
    with torch.device("meta"):
        ref = torchvision.models.vgg16_bn(weights=None).features
        ref[0] = torch.nn.Conv2d(4, 64, 3, padding=1)
    ours = sum(p.numel() for p in net.slices.parameters())
    assert ours == sum(p.numel() for p in ref.parameters())
    assert [len(s) for s in net.slices] == [7, 7, 10, 10, 10]  # the official slice lengths


def test_hub_cache_is_only_looked_at(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    assert hub_weights("alex") is None
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "alexnet-owt-7be5be79.pth").write_bytes(b"")
    assert hub_weights("alex") == tmp_path / "checkpoints" / "alexnet-owt-7be5be79.pth"
    assert hub_weights("vgg") is None
