"""SeeSR (papers/seesr): reference checks against the official code (cswry/SeeSR), the full profile on the meta
device, two CPU steps of a reduced SD-2-base-layout instance, and the tiny pipeline end to end.

Where each number comes from:
- DAPE loss: basicsr/models/dape_model.py (MSE of the features, weight 1.0 from options/dape.yaml `cri_feature_opt`;
  logits loss -(s_gt log s_lq + (1 - s_gt) log(1 - s_lq)).mean(), weight 1.0); the expected values are worked by
  hand in the test.
- LRE: pipelines/pipeline_seesr.py (start_point 'lr': scheduler.add_noise(latents of the LR, noise, start step));
  abar_999 = 0.004660 for SD's scaled-linear betas 0.00085 .. 0.012 (the research note's value, recomputed here).
- LoRA targets: ram/models/swin_transformer_lora.py `lora.MergedLinear(dim, 3 dim, r=8, enable_lora=[True, False,
  True])`: adapters on q and v only.
- SD-2-base UNet: 865,910,724 parameters (stabilityai/stable-diffusion-2-base unet/config.json built with diffusers);
  its ControlNetModel.from_unet: 364,228,240 (diffusers 0.42.1 on the meta device).
"""

import copy
import json
import math
from pathlib import Path

import pytest
import torch
from smoke import two_steps

from common.claims import load_claims
from common.config import load_config
from papers.seesr import method
from papers.seesr.config import SeeSRConfig

REPO = Path(__file__).resolve().parents[2]


def tiny_unet(cross_dim: int = 8):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    return UNet2DConditionModel(sample_size=16, in_channels=3, out_channels=3, block_out_channels=(8, 8),
                                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), layers_per_block=1,
                                cross_attention_dim=cross_dim, attention_head_dim=4, norm_num_groups=2)


# --------------------------------------------------------------------------- DAPE
def test_dape_loss_on_fixed_tensors_by_hand():
    """e_LR = [1, 2], e_HR = [0, 0]: MSE = (1 + 4) / 2 = 2.5. Logits: l_LR = ln 3 (s = 0.75), l_HR = 0 (s = 0.5):
    BCE = -(0.5 ln 0.75 + 0.5 ln 0.25) = 0.5 (0.287682 + 1.386294) = 0.836988; second tag l_LR = l_HR = 0:
    ln 2 = 0.693147; mean 0.765068. Total (weights 1 : 1) = 3.265068."""
    e_lr, e_hr = torch.tensor([[1.0, 2.0]]), torch.zeros(1, 2)
    l_lr, l_hr = torch.tensor([[math.log(3.0), 0.0]]), torch.zeros(1, 2)
    assert float(method.dape_loss(e_lr, l_lr, e_hr, l_hr)) == pytest.approx(3.265068, abs=1e-6)
    assert float(method.dape_loss(e_hr, l_hr, e_hr, l_hr)) == pytest.approx(math.log(2), abs=1e-6)  # soft target


def test_lora_trains_exactly_the_q_and_v_adapters():
    tagger = method.Tagger(32, 4, 16, 2, 2, 8, len(method.TAGS))
    student = method.add_lora(copy.deepcopy(tagger), 8, 1.0)
    names = sorted(n for n, p in student.named_parameters() if p.requires_grad)
    expected = sorted(f"base_model.model.blocks.{b}.attn.{m}.lora_{ab}.default.weight"
                      for b in range(2) for m in ("q", "v") for ab in ("A", "B"))
    assert names == expected
    x = torch.randn(3, 3, 32, 32)  # LoRA B starts at zero: the student equals the tagger before training
    for a, b in zip(student(x), tagger(x)):
        torch.testing.assert_close(a, b)


def test_dape_teacher_is_frozen_and_the_student_learns():
    tagger = method.Tagger(32, 4, 16, 1, 2, 8, len(method.TAGS))
    dape = method.DAPE(copy.deepcopy(tagger), method.add_lora(copy.deepcopy(tagger), 8, 1.0))
    loss = dape(torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32))
    loss.backward()
    assert all(p.grad is None for p in dape.teacher.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in dape.student.named_parameters()
               if "lora_B" in n)  # B starts at zero, so A has no gradient at step 0


# --------------------------------------------------------------------------- LRE
def test_lre_equals_ddpm_add_noise_at_999():
    sched = method.sd_scheduler()
    assert float(sched.alphas_cumprod[999]) == pytest.approx(0.004660, abs=5e-7)
    g = torch.Generator().manual_seed(0)
    x, eps = torch.randn(4, 3, 8, 8, generator=g), torch.randn(4, 3, 8, 8, generator=g)
    ref = sched.add_noise(x, eps, torch.full((4,), 999))
    torch.testing.assert_close(method.lre_start(x, eps, sched.alphas_cumprod), ref)
    ddim = method.sd_scheduler("ddim")
    ddim.set_timesteps(10)
    assert int(ddim.timesteps[0]) == 999  # trailing spacing: the sampler starts where LRE embeds the LR


# --------------------------------------------------------------------------- SR model
def test_image_attentions_start_as_identity_and_only_controlnet_and_them_train():
    unet = tiny_unet()
    model = method.SeeSR(unet, image_dim=6, heads=2, norm_groups=2, cond_channels=(8,))
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([10, 500])
    lr, text, img = torch.randn(2, 3, 16, 16), torch.randn(2, 5, 8), torch.randn(2, 7, 6)
    torch.testing.assert_close(model(x, t, lr, text, img), model(x, t, lr, text, None))
    trainable = {id(p) for p in model.trainable()}
    for n, p in model.named_parameters():
        assert p.requires_grad == (id(p) in trainable), n
    assert len(model.unet_image_attentions) == 4  # 1 down + 1 mid + 2 up (an up block has layers + 1)
    assert all(n.startswith(("controlnet.", "unet_image_attentions.")) or ".image." in n
               for n, p in model.named_parameters() if p.requires_grad)
    loss = method.eps_loss(model, x, lr, text, img, method.sd_scheduler(), torch.Generator().manual_seed(0))
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.unet_image_attentions.parameters())


def test_super_resolve_with_guidance_one_is_the_conditional_model():
    model = method.SeeSR(tiny_unet(), 6, 2, 2, (8,)).eval()
    lr, text, null = torch.randn(2, 3, 16, 16), torch.randn(2, 5, 8), torch.randn(1, 5, 8)
    eps = torch.randn(2, 3, 16, 16)
    a = method.super_resolve(model, method.sd_scheduler("ddim"), lr, text, null, None, eps, 3, 1.0)
    b = method.super_resolve(model, method.sd_scheduler("ddim"), lr, torch.cat([text]), null, None, eps, 3, 2.0)
    assert a.shape == lr.shape and torch.isfinite(b).all() and not torch.allclose(a, b)


def test_tags_and_objects_of_a_caption():
    from papers.seesr.data import objects_of

    objs = objects_of("two digits: large red seven top left, small blue one bottom right")
    assert objs == [(0, 7, "red"), (3, 1, "blue")]
    y = method.tag_vector([7, 1], ["red", "blue"], 2)
    assert method.tag_prompt(y) == "one, seven, red, blue, two digits"


# --------------------------------------------------------------------------- config and claims
@pytest.mark.parametrize("profile", ["cpu", "tiny", "full"])
def test_params_load_for_every_profile(profile):
    cfg = load_config(SeeSRConfig, paper="seesr", root=REPO, overrides=[f"profile={profile}"])
    assert set(cfg.arms) <= {"seesr", "no_prompt"} and (cfg.sd is not None) == (profile == "full")


def test_claims_file_is_valid():
    claims = load_claims(REPO / "papers" / "seesr" / "claims.yaml")
    assert {c["test"]["unit"] for c in claims} == {"train_seed"}
    assert {c["test"]["where"]["comparison"] for c in claims} == {"dape", "prompt", "lre"}


# --------------------------------------------------------------------------- full profile
def test_full_profile_is_sd2_base_with_a_controlnet():
    from diffusers import ControlNetModel

    from papers.seesr.backbone import build_sd_unet

    cfg = load_config(SeeSRConfig, paper="seesr", root=REPO, overrides=["profile=full"])
    unet = build_sd_unet(cfg, meta=True)
    assert sum(p.numel() for p in unet.parameters()) == 865_910_724
    with torch.device("meta"):
        control = ControlNetModel.from_unet(unet, load_weights_from_unet=False)
        image = method.add_image_attentions(unet, cfg.sd.image_dim, 8, 32)
    assert sum(p.numel() for p in control.parameters()) == 364_228_240
    assert len(image) == 16  # 3 x 2 down + 1 mid + 3 x 3 up text Transformer2Ds, one image block each
    assert cfg.sr.batch_size == 32 and cfg.sr.steps == 100_000 and cfg.eval.steps == 50


def test_full_profile_two_steps_of_a_reduced_instance():
    """Two steps at batch 1 through the SR loss (ControlNet + image attentions on a frozen UNet) with SD-2-base's
    block layout, linear projections and cross-attention width, depth and widths reduced, an 8x8 latent."""
    from papers.seesr.backbone import build_sd_unet
    from papers.seesr.train import SRLoss

    cfg = load_config(SeeSRConfig, paper="seesr", root=REPO,
                      overrides=["profile=full", "sd.block_out_channels=[32,64,64,64]", "sd.attention_head_dim=[2,4,4,4]",
                                 "sd.layers_per_block=1", "sd.sample_size=8"])
    torch.manual_seed(0)
    unet = build_sd_unet(cfg)
    model = SRLoss(method.SeeSR(unet, cfg.sd.image_dim, 8, 32, (16, 32, 96, 256)), torch.zeros(1, 77, 1024), 0.5,
                   True)
    x, lr = torch.randn(1, 4, 8, 8), torch.randn(1, 3, 64, 64)  # latent x0; the ControlNet sees the LR in pixels (8x)
    text, img = torch.randn(1, 77, 1024), torch.randn(1, 145, cfg.sd.image_dim)
    two_steps(model, lambda g: model(x, lr, text, img, g), lr=1e-5)


# --------------------------------------------------------------------------- the pipeline, tiny
@pytest.mark.e2e
def test_tiny_pipeline(tmp_path):
    """prepare_data, classifier, scenes, scene CLIP, T2I model, patches, patch trunks -> pairs, dape, train,
    evaluate, report on the tiny profile, in-process."""
    import importlib

    from tinyrepo import inside, make_tiny_repo

    root = make_tiny_repo(tmp_path / "repo")
    shared = ["prepare_data", "train_classifier", "build_scenes", "train_scene_clip", "train_t2i", "prepare_patches",
              "train_patch_trunks"]
    stages = [importlib.import_module(f"common.stages.{s}") for s in shared] + [
        importlib.import_module(f"papers.seesr.{s}") for s in ("data", "dape", "train", "evaluate", "report")]
    with inside(root):
        for stage in stages:
            stage.main([])
    res = json.loads((root / "reports/seesr/results.json").read_text())
    assert {r["comparison"] for r in res["rows"]} == {"dape", "prompt", "lre", "reference"}
    verdicts = json.loads((root / "reports/seesr/verdicts.json").read_text())["verdicts"]
    assert len(verdicts) == len(load_claims(REPO / "papers" / "seesr" / "claims.yaml"))
    for fig in ("sr_samples", "tag_f1_vs_degradation", "per_seed"):
        assert (root / f"reports/seesr/figures/{fig}.png").stat().st_size > 1000


def test_the_shared_t2i_model_uses_sd_noise_schedule():
    """The LRE start (Eq. 5) and abar_999 = 0.0046601 are SD's; the shared T2I model must be trained on that schedule
    (papers/seesr/backbone.py refuses another one at load time)."""
    from papers.seesr.backbone import SD_SCHEDULE

    cfg = load_config(SeeSRConfig, paper="seesr", root=REPO)
    d = cfg.t2i.diffusion
    assert dict(num_train_timesteps=d.num_train_timesteps, beta_schedule=d.beta_schedule, beta_start=d.beta_start,
                beta_end=d.beta_end) == SD_SCHEDULE
    assert float(method.sd_scheduler().alphas_cumprod[999]) == pytest.approx(0.0046601, abs=5e-7)
