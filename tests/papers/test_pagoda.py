"""PaGoDA (papers/pagoda): reference checks of the PF-ODE encoder against the official code, the growth step, the
decoder's initialisation, the full-profile networks, and the tiny pipeline.

Reference numbers (OFFICIAL_*): the official `KarrasDenoiser.heun_solver` of sony/pagoda (cm/karras_diffusion.py at
the mirror's HEAD, e6c850d622), run OUTSIDE this repository with its imports stubbed (cm.dist_util, cm.logger,
cm.script_util, cm.enc_dec_lib; cm.nn's append_dims / mean_flat re-typed), float64, args: diffusion_type 've',
start_scales 40, sigma_min 0.002, sigma_max 80, rho 7, sigma_data 0.5, time_continuous False. The network was the
exact denoiser of Gaussian data N(0, s^2 I), s = 0.7: D(x, sigma) = x s^2 / (sigma^2 + s^2), passed through the
official preconditioning (F = (D - c_skip x) / c_out). x0 = 0.7 randn(4, 1, 2, 2) from torch.Generator seed 0;
inverted = heun_solver(x0, ind = 39, num_step = 39, reverse=True); sampled_back = heun_solver(inverted, ind = 0,
num_step = 39). For this data the PF-ODE is exact: x(sigma) = x(sigma0) sqrt((sigma^2 + s^2) / (sigma0^2 + s^2)).
"""

import copy
import json
from pathlib import Path

import pytest
import torch

from common.claims import load_claims
from common.config import load_config
from common.edm import EDM, denoise
from common.models import build_unet, count_parameters
from papers.pagoda import method
from papers.pagoda.config import PaGoDAConfig

REPO = Path(__file__).resolve().parents[2]
S = 0.7
OFFICIAL_INVERTED = [-183.37362683753432, -29.624313787755177, -84.1952944211343, 79.32943184660455,
                     -70.16362679980715, -101.238085250112, -49.46432126634663, -68.76806072819083,
                     -102.83181886751463, 120.92816382995116, 25.688412748360342, 160.14363340795393,
                     90.14202231028864, -97.37557642716166, 5.665986850457714, 26.82789151498273]
OFFICIAL_SAMPLED_BACK = [-1.6186827454632615, -0.26150088429517515, -0.7432119475361401, 0.700259817903207,
                         -0.619351070372812, -0.893652727517261, -0.4366333628817007, -0.6070320757647122,
                         -0.90772099432228, 1.0674617479509325, 0.22675774696297898, 1.413626052250766,
                         0.7957051331274764, -0.8595574407863686, 0.05001501747567746, 0.2368161978436369]
EDM_ = EDM(sigma_data=0.5, p_mean=-1.2, p_std=1.2, sigma_min=0.002, sigma_max=80.0, rho=7.0)


def gaussian_denoiser(x, sigma):
    return x * S**2 / (sigma**2 + S**2)


def closed_form(x, s0, s1):
    return x * ((s1**2 + S**2) / (s0**2 + S**2)) ** 0.5


def x0():
    return torch.randn((4, 1, 2, 2), generator=torch.Generator().manual_seed(0), dtype=torch.float64) * S


# --------------------------------------------------------------------------- the PF-ODE encoder
def test_heun_matches_the_official_solver_both_directions():
    z = method.invert(gaussian_denoiser, x0(), EDM_, 40) * EDM_.sigma_max  # data -> x(sigma_max)
    assert torch.allclose(z.flatten(), torch.tensor(OFFICIAL_INVERTED, dtype=torch.float64), rtol=1e-7, atol=0)
    back = method.sample(gaussian_denoiser, z / EDM_.sigma_max, EDM_, 40)  # noise -> data
    assert torch.allclose(back.flatten(), torch.tensor(OFFICIAL_SAMPLED_BACK, dtype=torch.float64), rtol=1e-7, atol=0)


def test_heun_approaches_the_closed_form():
    """40 points (the official's setting): 0.8% from the exact flow in both solvers (Heun's discretisation error on
    this grid, measured); it shrinks as the grid is refined."""
    for n, tol in ((40, 1e-2), (400, 1e-4)):
        z = method.invert(gaussian_denoiser, x0(), EDM_, n) * EDM_.sigma_max
        exact = closed_form(x0(), EDM_.sigma_min, EDM_.sigma_max)
        assert ((z - exact).abs() / exact.abs()).max() < tol
        back = method.sample(gaussian_denoiser, exact / EDM_.sigma_max, EDM_, n)
        assert ((back - x0()).abs() / x0().abs()).max() < tol


def test_round_trip():
    """data -> noise -> data: 1.4e-3 on the official 40-point grid (the official solver's own round trip gives the
    same, OFFICIAL_SAMPLED_BACK), below 1e-4 from 100 points on."""
    official = (torch.tensor(OFFICIAL_SAMPLED_BACK, dtype=torch.float64) - x0().flatten()).abs().max()
    for n, tol in ((40, 2e-3), (100, 1e-4)):
        z = method.invert(gaussian_denoiser, x0(), EDM_, n)
        err = (method.sample(gaussian_denoiser, z, EDM_, n) - x0()).abs().max()
        assert err < tol
        if n == 40:
            assert err == pytest.approx(float(official), rel=1e-4)


def test_karras_grid_is_the_official_get_t():
    """get_t(i) = (sigma_max^(1/rho) + i/(N-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho (karras_diffusion.py)."""
    s = method.karras_sigmas(40, 0.002, 80.0, 7.0)
    assert s[0] == pytest.approx(80.0) and s[-1] == pytest.approx(0.002) and bool((s[1:] < s[:-1]).all())
    assert s[20] == pytest.approx((80 ** (1 / 7) + 20 / 39 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7)


# --------------------------------------------------------------------------- the decoder and its growth
def tiny_teacher(res=4, classes=3):
    from common.config import UNetConfig

    torch.manual_seed(0)
    cfg = UNetConfig(block_out_channels=[8, 16], attention_levels=[False, False], layers_per_block=1,
                     num_classes=classes, norm_num_groups=4, attention_head_dim=4)
    return build_unet(cfg, res, 1).eval()


def test_decoder_at_init_is_the_teacher_denoiser_at_sigma_max():
    teacher = tiny_teacher()
    dec = method.Decoder(copy.deepcopy(teacher), EDM_)
    z, y = torch.randn(5, 1, 4, 4), torch.tensor([0, 1, 2, 0, 1])
    sigma = torch.full((5, 1, 1, 1), EDM_.sigma_max)
    ref = denoise(lambda x, c, lab: teacher(x, c, class_labels=lab).sample, EDM_.preconditioner(), z * 80.0, sigma, y)
    with torch.no_grad():
        assert torch.allclose(dec(z, y), ref, atol=1e-6)


def test_growth_copies_every_matching_weight_and_trains_only_new_blocks():
    teacher = tiny_teacher()
    old = method.Decoder(copy.deepcopy(teacher), EDM_)
    torch.nn.init.normal_(old.unet.conv_in.weight)  # "trained": differs from the teacher
    new = method.Decoder(copy.deepcopy(teacher), EDM_, levels=1, growth_layers=1)
    info = method.grow(new, old)
    ref, got = old.state_dict(), new.state_dict()
    assert info["copied"] == sorted(ref) and all(torch.equal(got[k], ref[k]) for k in ref)
    assert info["new"] and all(k.startswith("growth.0.") for k in info["new"])
    assert set(info["trainable"]) == {n for n, _ in new.named_parameters() if n.startswith(("growth.", *method.HEAD))}
    with torch.no_grad():
        assert new(torch.randn(2, 1, 4, 4), torch.tensor([0, 1])).shape == (2, 1, 8, 8)


def test_growth_raises_on_a_renamed_layer():
    """The official loader skips a name it does not find (the layer silently stays random); grow raises."""
    teacher = tiny_teacher()
    old = method.Decoder(copy.deepcopy(teacher), EDM_)
    new = method.Decoder(copy.deepcopy(teacher), EDM_, levels=1)
    new.unet.conv_first = new.unet.conv_in  # renamed: conv_in.* has no slot any more
    del new.unet.conv_in
    with pytest.raises(KeyError, match="conv_in"):
        method.grow(new, old)
    resized = method.Decoder(copy.deepcopy(teacher), EDM_, levels=1)
    resized.unet.conv_out = torch.nn.Conv2d(8, 2, 3, padding=1)  # same name, other shape
    with pytest.raises(KeyError, match="conv_out"):
        method.grow(resized, old)


def test_generator_term_leaves_the_discriminator_alone():
    """Summing L_rec + w lambda L_G + L_D trains each player on its own objective: the discriminator's gradient is
    that of L_D alone, the decoder's has no L_D part."""
    from common.gan import UNetDiscriminator, d_hinge
    from common.perceptual import LPIPSDistance, TapNet

    teacher = tiny_teacher()
    torch.manual_seed(1)
    model = method.PaGoDA(method.Decoder(copy.deepcopy(teacher).requires_grad_(True), EDM_),
                          UNetDiscriminator(teacher, 3))
    trunk = TapNet(1, [4, 8], [1, 1], [False, True])
    dist = LPIPSDistance(trunk, trunk.channels, "test")
    z, x, y, fresh = torch.randn(4, 1, 4, 4), torch.rand(4, 1, 4, 4) * 2 - 1, torch.tensor([0, 1, 2, 0]), torch.randn(4, 1, 4, 4)
    out = method.decoder_loss(model, dist, 8, z, x, y, fresh, 0.2)
    grads = torch.autograd.grad(out["total"], list(model.disc.parameters()), allow_unused=True)
    fake = model.decoder(fresh, y).detach()
    ref = torch.autograd.grad(d_hinge(model.disc(x, y), model.disc(fake, y)), list(model.disc.parameters()),
                              allow_unused=True)
    for g, r in zip(grads, ref):
        assert (g is None and r is None) or torch.allclose(g, r, atol=1e-6)
    assert 0.01 <= float(out["lambda"]) <= 10.0


# --------------------------------------------------------------------------- the paper's files
@pytest.mark.parametrize("profile", ["cpu", "tiny", "full"])
def test_params_load_for_every_profile(profile):
    cfg = load_config(PaGoDAConfig, paper="pagoda", overrides=[f"profile={profile}"], root=REPO)
    assert len(cfg.decoder.train_seeds) >= 3 and cfg.decoder.arms == ["rec_gan", "rec"]
    assert cfg.data.resolution % cfg.teacher.downsample == 0


def test_claims_file_is_valid():
    claims = load_claims(REPO / "papers" / "pagoda" / "claims.yaml")
    counted = [c for c in claims if not c.get("by_design")]
    assert len(counted) == 5 and all(c["test"]["unit"] == "train_seed" for c in counted)


# --------------------------------------------------------------------------- the full profile
# EDM (Karras et al. 2022) ImageNet-64 teacher = ADM at 192 channels, mult 1-2-3-4, 3 res blocks, attention at 32/16/8,
# 64-channel heads, scale-shift norm, BigGAN up/down, 1000 classes: 295.9M parameters (EDM paper, parameter counts
# of its networks; quoted from memory, the PDF was not readable offline). diffusers' UNet2DModel at that config is
# not ADM layer for layer (e.g. its attention projections and class embedding), hence a tolerance.
OFFICIAL_EDM_IMAGENET64 = 295.9e6
# 3 levels x (upsample conv 192*192*9 + 192, 2 ResnetBlock2D(192, temb 768)), counted here (not an official number)
GROWTH_PARAMS = 3 * ((192 * 192 * 9 + 192) + 2 * (2 * 384 + 2 * (192 * 192 * 9 + 192) + 768 * 192 + 192))  # 5,870,016


def test_full_profile_teacher_is_the_edm_imagenet64_network():
    cfg = load_config(PaGoDAConfig, paper="pagoda", overrides=["profile=full"], root=REPO)
    res = cfg.data.resolution // cfg.teacher.downsample
    unet = build_unet(cfg.teacher.unet, res, 3, meta=True)
    n = count_parameters(unet)
    assert n == 295_270_467  # measured: 0.2% below the official count
    assert abs(n - OFFICIAL_EDM_IMAGENET64) / OFFICIAL_EDM_IMAGENET64 < 0.01
    assert (res, [res * f for f in cfg.decoder.growth]) == (64, [128, 256, 512])


def test_full_profile_two_steps_of_a_reduced_instance_grown_to_512():
    """64 -> 128 -> 256 -> 512 through `method.grow` and two `method.decoder_loss` steps at batch 1 at 512 px: the full
    profile's levels, growth, losses and discriminator input size (224); widths and depth reduced (8-16 channels,
    1 res block per level, no attention layers)."""
    from common.gan import UNetDiscriminator
    from common.perceptual import LPIPSDistance, TapNet

    cfg = load_config(PaGoDAConfig, paper="pagoda", root=REPO, overrides=[
        "profile=full", "teacher.unet.block_out_channels=[8, 16, 16, 16]", "teacher.unet.layers_per_block=1",
        "teacher.unet.attention_head_dim=8", "teacher.unet.norm_num_groups=4", "decoder.growth_layers=1",
        "teacher.unet.attention_levels=[false, false, false, false]"])
    edm, r = EDM.from_config(cfg.teacher.edm), cfg.data.resolution // cfg.teacher.downsample
    torch.manual_seed(0)
    teacher = build_unet(cfg.teacher.unet, r, 3).eval()
    dec = method.Decoder(copy.deepcopy(teacher), edm)
    for f in cfg.decoder.growth:
        new = method.Decoder(copy.deepcopy(teacher), edm, f.bit_length() - 1, cfg.decoder.growth_layers)
        method.grow(new, dec)
        dec = new
    model = method.PaGoDA(dec, UNetDiscriminator(teacher, cfg.teacher.unet.num_classes, cfg.decoder.disc_t))
    trunk = TapNet(3, [8, 16], [1, 1], [True, True])  # stands in for DeiT + EfficientNet (weights not offline)
    dist = LPIPSDistance(trunk, trunk.channels, "stand-in")
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.decoder.grown.lr)
    z, y = torch.randn(1, 3, r, r), torch.tensor([7])
    x = torch.rand(1, 3, r * 8, r * 8) * 2 - 1
    for _ in range(2):
        out = method.decoder_loss(model, dist, 224, z, x, y, torch.randn_like(z), cfg.decoder.growth_gan_weight,
                                  disc_size=cfg.decoder.disc_resolution)
        opt.zero_grad()
        out["total"].backward()
        opt.step()
        assert torch.isfinite(out["total"])
    with torch.no_grad():
        assert model.decoder(z, y).shape == (1, 3, 512, 512)


def test_full_profile_growth_blocks():
    """The full decoder: the EDM ImageNet-64 network + 3 levels of (upsample conv + 2 res blocks at 192 channels)
    (official res64to512: num_channels_high 192, num_res_blocks_high 2; its exact block layout differs)."""
    cfg = load_config(PaGoDAConfig, paper="pagoda", overrides=["profile=full"], root=REPO)
    unet = build_unet(cfg.teacher.unet, 64, 3, meta=True)
    dec = method.Decoder(unet, EDM.from_config(cfg.teacher.edm), len(cfg.decoder.growth), cfg.decoder.growth_layers)
    growth = sum(p.numel() for p in dec.growth.parameters())
    assert growth == GROWTH_PARAMS and count_parameters(dec) == 295_270_467 + GROWTH_PARAMS


# --------------------------------------------------------------------------- the pipeline, tiny
@pytest.mark.e2e
def test_tiny_pipeline(tmp_path):
    """prepare_data -> train_classifier -> train_autoencoder -> train_perceptual -> teacher -> train -> evaluate ->
    report on the tiny profile, in-process."""
    from tinyrepo import inside, make_tiny_repo

    root = make_tiny_repo(tmp_path / "repo")
    from common.stages import prepare_data, train_autoencoder, train_classifier, train_perceptual
    from papers.pagoda import evaluate, report, teacher, train

    with inside(root):
        for stage in (prepare_data, train_classifier, train_autoencoder, train_perceptual, teacher, train, evaluate,
                      report):
            stage.main([])
    res = json.loads((root / "reports/pagoda/results.json").read_text())
    assert {r["comparison"] for r in res["rows"]} == {"curve", "x1", "gan", "x2", "x4"}
    verdicts = json.loads((root / "reports/pagoda/verdicts.json").read_text())["verdicts"]
    assert len(verdicts) == 6
    for fig in ("fid_vs_step", "samples_x1", "samples_x4", "losses"):
        assert (root / f"reports/pagoda/figures/{fig}.png").stat().st_size > 1000
