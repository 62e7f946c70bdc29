"""LiteVAE (Sadat et al., NeurIPS 2024): the Haar DWT against pywavelets, SMC's defining properties, the decoder
surgery, the encoder's shapes and sizes, the tiny pipeline end to end and the full profile (LiteVAE-B vs SD-VAE).

Where the reference values come from (there is no official code):
  - the DWT: pywavelets itself (`pywt.wavedec2` / `pywt.waverec2`, 'haar', the library we pin) and its documented
    2x2 case: pywt.dwt2([[1, 2], [3, 5]], 'haar') -> cA 5.5, (cH -2.5, cV -1.5, cD 0.5);
  - SMC: Eq. (4) of the paper, w_hat = s w / sqrt(sum (s w)^2 + eps) per output filter;
  - parameter counts: the SD-VAE encoder 34.16M and LiteVAE-B 6.75M (the paper's encoder table, quoted by
    RGenDiff/open-litevae's README, which measures 6.60M for its own B); SD-VAE = diffusers AutoencoderKL with
    block_out_channels [128, 256, 512, 512], layers_per_block 2, 4 latent channels (CompVis kl-f8), encoder +
    quant_conv (72) counted: 34,163,664. LiteVAE-B = C 32, mult [1, 2, 3], 4 blocks for every F_l and F_agg (open-litevae's B).
"""

import json
from pathlib import Path

import numpy as np
import pytest
import pywt
import torch

from common.claims import load_claims
from common.config import load_config
from common.models import count_parameters
from common.perceptual import LPIPSDistance, TapNet
from papers.litevae import method
from papers.litevae.config import LiteVAEConfig
from papers.litevae.train import Trainee, build_model, encoder_of, loss_weights

REPO = Path(__file__).resolve().parents[2]
SD_VAE_ENCODER_PAPER, LITEVAE_B_PAPER = 34.16e6, 6.75e6


def cfg_for(profile: str, *overrides):
    return load_config(LiteVAEConfig, paper="litevae", overrides=[f"profile={profile}", *overrides], root=REPO)


def stand_in_lpips() -> LPIPSDistance:
    """A random RGB trunk in place of lpips[patches-cnn] (the unit tests need the loss's shape, not its weights)."""
    torch.manual_seed(0)
    trunk = TapNet(3, [4, 8], [1, 1], [False, True]).eval()
    return LPIPSDistance(trunk, trunk.channels, "stand-in")


# --------------------------------------------------------------------------- the Haar DWT vs pywavelets
def test_haar_2x2_worked_example():
    cA, (cH, cV, cD) = method.dwt2(torch.tensor([[1.0, 2.0], [3.0, 5.0]]))
    assert [float(t) for t in (cA, cH, cV, cD)] == [5.5, -2.5, -1.5, 0.5]
    ref = pywt.dwt2(np.array([[1.0, 2.0], [3.0, 5.0]]), "haar")
    assert np.allclose([ref[0][0, 0], *(b[0, 0] for b in ref[1])], [5.5, -2.5, -1.5, 0.5], atol=1e-12)  # 1/sqrt 2 taps


@pytest.mark.parametrize("levels", [1, 2, 3])
def test_wavedec2_equals_pywt_with_an_exact_round_trip(levels):
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(levels))
    ours, ref = method.wavedec2(x, levels), pywt.wavedec2(x.numpy(), "haar", level=levels)
    assert len(ours) == len(ref) == levels + 1
    assert np.abs(ours[0].numpy() - ref[0]).max() < 1e-6
    for bands, ref_bands in zip(ours[1:], ref[1:]):  # (cH, cV, cD), coarsest level first
        for b, r in zip(bands, ref_bands):
            assert np.abs(b.numpy() - r).max() < 1e-6
    assert (method.waverec2(ours) - x).abs().max() < 1e-6
    back = pywt.waverec2([ours[0].numpy(), *[tuple(b.numpy() for b in bands) for bands in ours[1:]]], "haar")
    assert np.abs(back - x.numpy()).max() < 1e-6


def test_dwt_features_are_the_12_channel_levels():
    x = torch.randn(2, 3, 32, 32)
    feats = method.dwt_features(x, 2)
    assert [tuple(f.shape) for f in feats] == [(2, 12, 16, 16), (2, 12, 8, 8)]
    ll1, bands1 = method.dwt2(x)
    assert torch.equal(feats[0], torch.cat([ll1, *bands1], 1))
    assert torch.allclose(feats[1][:, :3], method.dwt2(ll1)[0])


# --------------------------------------------------------------------------- SMC
def test_smc_is_invariant_to_the_scale_of_w_and_with_s_1_normalises_each_filter():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(6, 5, 3, padding=1)
    x = torch.randn(2, 6, 8, 8)
    smc = method.SMC(conv, eps=0.0)
    unit = conv.weight / conv.weight.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    assert torch.allclose(smc(x), torch.nn.functional.conv2d(x, unit, conv.bias, padding=1), atol=1e-5)
    out = smc(x)
    with torch.no_grad():
        smc.weight.mul_(37.0)
    assert torch.allclose(smc(x), out, atol=1e-5)
    with torch.no_grad():
        smc.scale.copy_(torch.rand(6) + 0.5)
        smc.weight.mul_(0.01)
    a = smc(x)
    with torch.no_grad():
        smc.weight.mul_(250.0)
    assert torch.allclose(smc(x), a, atol=1e-5)
    assert torch.allclose(smc.modulated_weight().flatten(1).norm(dim=1), torch.ones(5), atol=1e-6)


def test_smc_surgery_leaves_no_group_norm_and_keeps_the_decoder_working():
    cfg = cfg_for("tiny")
    ae = build_model(cfg, "litevae_smc")
    assert not any(isinstance(m, torch.nn.GroupNorm) for m in ae.decoder.modules())
    assert sum(isinstance(m, method.SMC) for m in ae.decoder.modules()) > 0
    std = build_model(cfg, "litevae")
    assert any(isinstance(m, torch.nn.GroupNorm) for m in std.decoder.modules())
    x = torch.rand(2, 3, cfg.image_size, cfg.image_size) * 2 - 1
    assert ae.decode(ae.encode(x).latent_dist.mean).sample.shape == x.shape


# --------------------------------------------------------------------------- the encoder and the arms
def test_arms_share_the_latent_shape_and_the_cpu_encoders_are_5x_apart():
    cfg = cfg_for("cpu")
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    shapes = {arm: tuple(build_model(cfg, arm).encode(x).latent_dist.mean.shape) for arm in method.ARMS}
    assert set(shapes.values()) == {(2, 4, 8, 8)}
    n = {arm: count_parameters(encoder_of(build_model(cfg, arm, meta=True))) for arm in ("vae", "litevae")}
    assert n == {"vae": 367_344, "litevae": 69_328}
    assert 5.0 <= n["vae"] / n["litevae"] <= 6.0  # the paper: 34.16M / 6.75M = 5.1x, "six-fold" in the text


def test_loss_high_frequency_terms_vanish_on_smooth_and_identical_images():
    x = torch.full((1, 3, 16, 16), 0.3)
    assert method.high_bands(x, 2).abs().max() < 1e-6
    assert method.high_pass(x, 1.0, 5).abs().max() < 1e-6
    cfg = cfg_for("tiny")
    model = Trainee(build_model(cfg, "litevae"), stand_in_lpips(), loss_weights(cfg))
    parts = model(torch.rand(2, 3, 16, 16) * 2 - 1, torch.Generator().manual_seed(0))
    assert set(parts) == {"l1", "lpips", "kl", "wave", "gauss", "total"} and torch.isfinite(parts["total"])


def test_channel_norm_ratio():
    assert method.norm_ratio(torch.ones(8)) == 1.0
    assert method.norm_ratio(torch.tensor([1.0, 1.0, 1.0, 5.0])) == 2.5


# --------------------------------------------------------------------------- the paper's files
@pytest.mark.parametrize("profile", ["cpu", "tiny", "full"])
def test_params_load_for_every_profile(profile):
    cfg = cfg_for(profile)
    assert len(cfg.train_seeds) >= 3 and cfg.arms == list(method.ARMS)
    assert cfg.image_size % 2 ** cfg.encoder.levels == 0


def test_claims_file_is_valid():
    claims = load_claims(REPO / "papers" / "litevae" / "claims.yaml")
    counted = [c for c in claims if not c.get("by_design")]
    assert len(claims) == 9 and len(counted) == 7
    assert {c["test"]["unit"] for c in counted} == {"train_seed", "round"}


# --------------------------------------------------------------------------- the full profile
def test_full_profile_encoders_are_sd_vae_and_litevae_b():
    cfg = cfg_for("full")
    vae = count_parameters(encoder_of(build_model(cfg, "vae", meta=True)))
    lite = count_parameters(encoder_of(build_model(cfg, "litevae", meta=True)))
    assert vae == 34_163_664 and abs(vae - SD_VAE_ENCODER_PAPER) / SD_VAE_ENCODER_PAPER < 0.001
    # our reconstruction of B: 1.9% below the paper's 6.75M (open-litevae measures 6.60M for its B)
    assert lite == 6_622_508 and abs(lite - LITEVAE_B_PAPER) / LITEVAE_B_PAPER < 0.025
    assert cfg.image_size == 256 and cfg.encoder.levels == 3


def test_full_profile_two_steps_of_a_reduced_instance():
    """Two optimiser steps of Eq. (5) at batch 1 at 256 x 256 with 3 Haar levels (f = 8): the full profile's input
    size, levels, decoder layout and loss; widths and depth reduced."""
    cfg = cfg_for("full", "vae.block_out_channels=[8, 8, 8, 8]", "vae.layers_per_block=1", "vae.norm_num_groups=4",
                  "encoder.extractor.channels=4", "encoder.extractor.blocks=1", "encoder.extractor.groups=2",
                  "encoder.aggregator.channels=4", "encoder.aggregator.blocks=1", "encoder.aggregator.groups=2")
    for arm in ("litevae_smc", "vae"):
        torch.manual_seed(0)
        model = Trainee(build_model(cfg, arm), stand_in_lpips(), loss_weights(cfg))
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.train.lr)
        x = torch.rand(1, 3, 256, 256) * 2 - 1
        for step in range(2):
            loss = model(x, torch.Generator().manual_seed(step))["total"]
            opt.zero_grad()
            loss.backward()
            opt.step()
            assert torch.isfinite(loss)
        assert model.ae.encode(x).latent_dist.mean.shape == (1, 4, 32, 32)


# --------------------------------------------------------------------------- the pipeline, tiny
@pytest.mark.e2e
def test_tiny_pipeline(tmp_path):
    """prepare_patches -> train_patch_trunks -> train -> evaluate -> benchmark -> report on the tiny profile."""
    from tinyrepo import inside, make_tiny_repo

    root = make_tiny_repo(tmp_path / "repo")
    from common.stages import prepare_patches, train_patch_trunks
    from papers.litevae import benchmark, evaluate, report, train

    with inside(root):
        for stage in (prepare_patches, train_patch_trunks, train, evaluate, benchmark, report):
            stage.main([])
    res = json.loads((root / "reports/litevae/results.json").read_text())
    assert {r["comparison"] for r in res["rows"]} == {"recon", "lite_vs_vae", "smc"}
    verdicts = json.loads((root / "reports/litevae/verdicts.json").read_text())["verdicts"]
    assert len(verdicts) == 9
    for fig in ("reconstructions", "channel_norms", "psnr_lpips_per_seed", "loss"):
        assert (root / f"reports/litevae/figures/{fig}.png").stat().st_size > 1000
