"""Diffusion2GAN (Kang et al., ECCV 2024): the student at initialisation, the loss arms, the GAN arm's gradient split
and discriminator, the Appendix B overfitting setup against the official script, the tiny pipeline end to end and the
full profile (the SD1.5 UNet).

Where the reference values come from: mingukkang/elatentlpips@f64cd65fce `overfitting_exp.py` (4 target images,
`torch.randn(4, C, 64, 64)` trainable latent, `optim.Adam([trainable_param], lr=args.lr)` with `--lr` default 1e-2,
15,000 steps, loss `elatentlpips(z_images, trainable_param, ..., add_l1_loss=False).mean()`, variants
LatentLPIPS / b / bg / bgc / bgco); `elatentlpips.py` ELatentLPIPS.forward (the L1 term
`mean |x0 - x1|` added before the augmentation when add_l1_loss); the SD1.5 UNet's parameter count: diffusers'
UNet2DConditionModel with runwayml/stable-diffusion-v1-5's unet/config.json (859,520,964, the widely quoted
"860M" of the SD1.5 UNet).
"""

import copy
import json
from pathlib import Path

import pytest
import torch
from smoke import two_steps

from common.augment import DiffAugment
from common.claims import load_claims
from common.config import UNetConfig, load_config
from common.diffusion import NoiseSchedule
from common.gan import copied_from
from common.models import build_unet
from common.perceptual import LPIPSDistance, TapNet, latent_vgg16_bn
from common.teacher_pairs import Teacher
from papers.diffusion2gan import method
from papers.diffusion2gan.config import Diffusion2GANConfig

REPO = Path(__file__).resolve().parents[2]

# official overfitting_exp.py: argparse default --lr, the number of images in ./examples, num_steps, the variants
OFFICIAL_LR, OFFICIAL_TARGETS, OFFICIAL_STEPS = 1e-2, 4, 15000
OFFICIAL_VARIANTS = ["b", "bg", "bgc", "bgco"]
SD15_UNET_PARAMS = 859_520_964


def tiny_unet(num_classes: int = 10):
    torch.manual_seed(0)
    cfg = UNetConfig(block_out_channels=[8, 16], attention_levels=[False, True], layers_per_block=1,
                     num_classes=num_classes, norm_num_groups=4, attention_head_dim=4)
    return build_unet(cfg, 8, 1).eval()


def tiny_distance(augment=None, l1=False) -> LPIPSDistance:
    torch.manual_seed(1)
    trunk = TapNet(4, [8, 8, 16], [1, 1, 1], [False, False, True])
    for m in trunk.modules():  # non-trivial BatchNorm statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return LPIPSDistance(trunk, trunk.channels, "latent-lpips[test]", augment=augment, l1=l1)


# --------------------------------------------------------------------------- the student
def test_student_at_init_is_the_teachers_network_call_at_T():
    unet = tiny_unet()
    teacher = Teacher(unet, NoiseSchedule(), 10, 1.0)
    student = method.Student(copy.deepcopy(unet), 1000).eval()
    z, c = torch.randn(3, 1, 8, 8), torch.tensor([0, 4, 9])
    with torch.no_grad():
        assert torch.equal(student(z, c), teacher.eps(z, 999, c))
    assert all(p.requires_grad for p in student.parameters())


# --------------------------------------------------------------------------- the loss arms
def test_e_latent_lpips_with_the_identity_augmentation_is_latent_lpips_plus_l1():
    a, b = torch.randn(4, 4, 8, 8), torch.randn(4, 4, 8, 8)
    gen = torch.Generator().manual_seed(0)
    e = method.Regression("e_latent_lpips", latent_lpips=tiny_distance(DiffAugment({}), l1=True))
    plain = method.Regression("latent_lpips", latent_lpips=tiny_distance())
    d_e, d_plain = e(None, None, a, b, gen), plain(None, None, a, b, gen)
    torch.testing.assert_close(d_e, d_plain + (a - b).abs().mean(dim=(1, 2, 3)), atol=1e-6, rtol=0)
    assert d_e.shape == (4,) and (d_plain > 0).all()


@pytest.mark.parametrize("arm", method.ARMS)
def test_every_arm_is_zero_for_identical_inputs_and_positive_otherwise(arm):
    dist = tiny_distance(DiffAugment.preset("bg"), l1=True) if arm in ("e_latent_lpips", "gan") else tiny_distance()
    torch.manual_seed(2)
    pix = LPIPSDistance(TapNet(1, [4, 8], [1, 1], [False, True]), [4, 8], "lpips[test]")
    reg = method.Regression(arm, pixel_lpips=pix, latent_lpips=dist)
    x, z = torch.randn(2, 1, 8, 8), torch.randn(2, 4, 8, 8)
    same = reg(x, x, z, z, torch.Generator().manual_seed(0))
    assert torch.allclose(same, torch.zeros(2), atol=1e-6)
    other = reg(x, x.flip(0), z, z.flip(0), torch.Generator().manual_seed(0))
    assert (other > 0).all()
    assert reg.latent == (arm not in ("mse", "lpips"))


def test_mse_arm_is_the_pixel_mean_squared_error():
    x, y = torch.randn(3, 1, 8, 8), torch.randn(3, 1, 8, 8)
    torch.testing.assert_close(method.Regression("mse")(x, y, None, None, None), ((x - y) ** 2).mean(dim=(1, 2, 3)))
    with pytest.raises(ValueError):
        method.Regression("lpips")  # an arm without its network fails loudly


def test_the_gan_arm_trains_each_player_on_its_own_loss():
    """One backward of the Distiller's loss = grad(L_reg + w L_G) on G and grad(L_D) on D, nothing crossing."""
    unet = tiny_unet()
    disc = method.discriminator(unet, 10)
    assert len(copied_from(disc, unet)) == sum(1 for k in unet.state_dict() if k.split(".")[0] in
                                               ("conv_in", "time_embedding", "class_embedding", "down_blocks",
                                                "mid_block"))
    reg = method.Regression("mse")
    model = method.Distiller(method.Student(copy.deepcopy(unet), 1000), reg, disc=disc, gan_weight=0.3)
    z, c, x = torch.randn(4, 1, 8, 8), torch.tensor([1, 2, 3, 4]), torch.rand(4, 1, 8, 8) * 2 - 1
    model(z, c, x, None, torch.Generator()).backward()
    g_grad = [p.grad.clone() for p in model.student.parameters()]
    d_grad = [p.grad.clone() for p in model.disc.parameters()]
    model.zero_grad()
    g = model.student(z, c)
    (reg(g, x, None, None, None).mean() + 0.3 * model.g_loss(model.disc(g, c))).backward()
    for a, b in zip(g_grad, model.student.parameters()):
        torch.testing.assert_close(a, b.grad, atol=1e-6, rtol=1e-5)
    model.zero_grad()
    model.discriminator_loss(model.student(z, c), x, c).backward()
    for a, b in zip(d_grad, model.disc.parameters()):
        torch.testing.assert_close(a, b.grad, atol=1e-6, rtol=1e-5)


# --------------------------------------------------------------------------- Appendix B
def test_fit_latent_is_the_official_loop():
    """fit_latent == overfitting_exp.py's loop: randn init of the targets' shape, Adam(lr), loss(target, param).mean()."""
    dist = tiny_distance(DiffAugment.preset("bg"))
    target = torch.randn(OFFICIAL_TARGETS, 4, 8, 8)
    seen = []
    ours = method.fit_latent(target, dist, 3, OFFICIAL_LR, torch.Generator().manual_seed(5),
                             lambda s, w: seen.append(s), 1)
    gen = torch.Generator().manual_seed(5)
    param = torch.nn.Parameter(torch.randn(target.shape, generator=gen))
    opt = torch.optim.Adam([param], lr=OFFICIAL_LR)
    for _ in range(3):
        opt.zero_grad()
        dist(target, param, gen).mean().backward()
        opt.step()
    torch.testing.assert_close(ours, param.detach(), atol=0, rtol=0)
    assert seen == [1, 2, 3]


def test_the_overfitting_setup_is_the_official_one():
    for profile in ("cpu", "full"):
        ov = load_config(Diffusion2GANConfig, paper="diffusion2gan", overrides=[f"profile={profile}"], root=REPO).overfit
        assert (ov.num_targets, ov.lr, ov.l1, ov.presets) == (OFFICIAL_TARGETS, OFFICIAL_LR, False, OFFICIAL_VARIANTS)
        assert len(ov.seeds) >= 3
    full = load_config(Diffusion2GANConfig, paper="diffusion2gan", overrides=["profile=full"], root=REPO)
    assert full.overfit.steps == OFFICIAL_STEPS


# --------------------------------------------------------------------------- the paper's files
@pytest.mark.parametrize("profile", ["cpu", "tiny", "full"])
def test_params_load_for_every_profile(profile):
    cfg = load_config(Diffusion2GANConfig, paper="diffusion2gan", overrides=[f"profile={profile}"], root=REPO)
    assert set(cfg.arms) <= set(method.ARMS) and cfg.gan.loss in ("hinge", "nonsaturating")
    assert all(s < cfg.train.steps for s in cfg.snapshots)


def test_claims_file_is_valid():
    claims = load_claims(REPO / "papers" / "diffusion2gan" / "claims.yaml")
    counted = [c for c in claims if not c.get("by_design")]
    assert {c["test"]["unit"] for c in counted} == {"train_seed", "seed", "round"}
    assert {c["id"] for c in claims if c.get("by_design")} == {"one-network-call"}


# --------------------------------------------------------------------------- the full profile
def test_full_profile_is_the_sd15_unet_and_its_discriminator():
    from papers.diffusion2gan.train import sd_unet

    cfg = load_config(Diffusion2GANConfig, paper="diffusion2gan", overrides=["profile=full"], root=REPO)
    unet = sd_unet(cfg.student_net, meta=True)
    assert sum(p.numel() for p in unet.parameters()) == SD15_UNET_PARAMS
    disc = method.discriminator(unet, 0)
    encoder = sum(p.numel() for n, p in unet.named_parameters()
                  if n.split(".")[0] in ("conv_in", "time_embedding", "down_blocks", "mid_block"))
    assert sum(p.numel() for n, p in disc.named_parameters() if n.split(".")[0] not in ("heads", "text_proj")) == encoder
    assert isinstance(disc, method.TextUNetDiscriminator) and len(disc.heads) == 5


def test_full_profile_two_steps_of_a_shallow_instance():
    """Two steps at batch 1 through the GAN arm's code path (E-LatentLPIPS on latents + D from the student's encoder):
    SD1.5's first two widths (320, 640), one layer per block, a 16x16 latent, the official latent-VGG16-BN layout."""
    from papers.diffusion2gan.train import sd_unet

    cfg = load_config(Diffusion2GANConfig, paper="diffusion2gan", root=REPO,
                      overrides=["profile=full", "student_net.block_out_channels=[320,640]",
                                 "student_net.layers_per_block=1", "student_net.sample_size=16"])
    net, torch_seed = cfg.student_net, torch.manual_seed(0)
    assert torch_seed is not None
    unet = sd_unet(net)
    trunk = latent_vgg16_bn(net.latent_channels)
    dist = LPIPSDistance(trunk, trunk.channels, "e-latent-lpips[vgg16-bn, random]", augment=DiffAugment.preset("bg"),
                         l1=True)
    model = method.Distiller(method.Student(copy.deepcopy(unet), 1000), method.Regression("gan", latent_lpips=dist),
                             method.LatentTarget(None), method.discriminator(unet, 0), cfg.gan.weight, cfg.gan.loss,
                             cfg.gan.r1_gamma)
    z, x = torch.randn(1, 4, 16, 16), torch.randn(1, 4, 16, 16)
    text = torch.randn(1, net.text_tokens, net.cross_attention_dim)
    two_steps(model, lambda g: model(z, text, x, x, g), lr=1e-5)


# --------------------------------------------------------------------------- the pipeline, tiny
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """prepare_data -> classifier -> base model -> teacher pairs, autoencoder, perceptual -> overfit, train, benchmark,
    evaluate, report on the tiny profile, in-process."""
    from tinyrepo import inside, make_tiny_repo

    root = make_tiny_repo(tmp_path_factory.mktemp("d2g") / "repo")
    from common.stages import (
        prepare_data,
        teacher_pairs,
        train_autoencoder,
        train_base_model,
        train_classifier,
        train_perceptual,
    )
    from papers.diffusion2gan import benchmark, evaluate, overfit, report, train

    with inside(root):
        for stage in (prepare_data, train_classifier, train_base_model, teacher_pairs, train_autoencoder,
                      train_perceptual, overfit, train, benchmark, evaluate, report):
            stage.main([])
    return root


@pytest.mark.e2e
def test_tiny_pipeline(tiny):
    root = tiny
    res = json.loads((root / "reports/diffusion2gan/results.json").read_text())
    assert {r["arm"] for r in res["rows"] if r["comparison"] == "students"} == set(method.ARMS)
    verdicts = json.loads((root / "reports/diffusion2gan/verdicts.json").read_text())["verdicts"]
    assert len(verdicts) == len(load_claims(REPO / "papers" / "diffusion2gan" / "claims.yaml"))
    for fig in ("fid_vs_step", "overfit_curves", "overfit_images", "samples_same_noise", "loss"):
        assert (root / f"reports/diffusion2gan/figures/{fig}.png").stat().st_size > 1000


@pytest.mark.e2e
def test_one_step_comparison_page_on_the_tiny_outputs(tiny):
    """papers/one_step_comparison's train, evaluate and report after this file's tiny Diffusion2GAN pipeline (whose
    students and rows the page reuses): PaGoDA and Imagine Flash are trained at Diffusion2GAN's compute on its seeds,
    every claim gets a verdict over 3 units, and the page joins the index."""
    from tinyrepo import inside

    from common.claims import LABELS
    from papers.one_step_comparison import evaluate as page_evaluate
    from papers.one_step_comparison import report as page_report
    from papers.one_step_comparison import train as page_train

    root = tiny
    with inside(root):
        for stage in (page_train, page_evaluate, page_report):
            stage.main([])
    out = root / "reports/one_step_comparison"
    res = json.loads((out / "results.json").read_text())
    assert {r["arm"] for r in res["rows"]} == {"diffusion2gan", "imagine_flash", "pagoda", "teacher_ddim",
                                               "teacher_dpm_solver_2m"}
    d2g = json.loads((root / "reports/diffusion2gan/results.json").read_text())
    fid = res["metric"]
    reused = sorted(r[fid] for r in res["rows"] if r["arm"] == "diffusion2gan")
    assert reused == sorted(r[fid] for r in d2g["rows"] if r["comparison"] == "students" and r["arm"] == "gan"
                            and r["step"] == res["settings"]["diffusion2gan"]["step"])
    cost = {c["arm"]: c["forward_equivalents"] for c in res["training_cost"]}
    per_step = (3 + res["settings"]["imagine_flash"]["online_calls"]) * res["settings"]["imagine_flash"]["batch_size"]
    assert abs(cost["imagine_flash"] - cost["diffusion2gan"]) <= per_step / 2  # equal compute, to half a step
    verdicts = json.loads((out / "verdicts.json").read_text())["verdicts"]
    ids = [c["id"] for c in load_claims(REPO / "papers" / "one_step_comparison" / "claims.yaml")]
    assert [v["id"] for v in verdicts] == ids and all(v["verdict"] in LABELS and v["n_units"] == 3 for v in verdicts)
    assert (out / "figures/metrics_vs_nfe.png").stat().st_size > 1000
    assert "[one_step_comparison](one_step_comparison/README.md)" in (root / "reports/README.md").read_text()
