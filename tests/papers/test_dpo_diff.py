"""DPO-Diff: reference checks against the official code (ruocwang/dpo-diffusion @52a6188), the best-iterate copy
(the official aliased it), the search spaces, the full profile (SD v1-4 on the meta device, two GPO steps of a
reduced instance) and the tiny pipeline."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from common.claims import load_claims
from common.prompts import load_table
from papers.dpo_diff import method

REPO = Path(__file__).resolve().parents[2]
USER = "two digits: large red seven top left, small blue one bottom right"


# --------------------------------------------------------------------------- reference checks
def test_gumbel_mixture_equals_torch_gumbel_softmax_under_the_same_seed():
    """optimizers/common/prompt_optimizer.py samples with F.gumbel_softmax(logits, tau=1, hard=False)."""
    logits = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.5])
    torch.manual_seed(3)
    ref = F.gumbel_softmax(logits, tau=1.0)
    ours = method.gumbel_softmax(logits, 1.0, torch.Generator().manual_seed(3))
    assert torch.allclose(ours, ref, atol=1e-7)


def test_spherical_distance_of_orthogonal_unit_vectors():
    """model/sd.py spherical_dist_loss: 2 arcsin^2(||x - y|| / 2); orthogonal -> 2 (pi / 4)^2 = 1.2337."""
    d = method.spherical_dist(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 3.0]]))
    assert d.item() == pytest.approx(2 * (math.pi / 4) ** 2, abs=1e-6) and round(d.item(), 4) == 1.2337
    assert method.spherical_dist(torch.tensor([[1.0, 2.0]]), torch.tensor([[2.0, 4.0]])).item() == pytest.approx(0, abs=1e-6)


def test_step_15_2_schedule():
    """configs "step-15-2" (model/sd_pipeline.py estimation_step): t = 15 + floor(i / 2), 20 iterations of 50 steps."""
    assert [method.step_schedule(i, 50) for i in range(20)] == [15 + i // 2 for i in range(20)]
    assert [method.step_schedule(i, 50) for i in range(20)][:4] == [15, 15, 16, 16]
    assert method.step_schedule(19, 50) == 24
    assert [method.step_schedule(i, 10) for i in range(4)] == [3, 3, 3, 3]  # scaled: floor(15 x 10 / 50)


def test_best_is_a_copy_of_the_best_iterate_not_the_live_logits():
    """gpo.py's best_log_coeffs aliased the live list, so "best" was the last iterate. Here the loss grows with
    the iteration, so the best iterate is the first one ([1, 0, ...]), while the live logits move on."""
    space = method.search_space(USER, "negative", load_table())
    target = [torch.randn(len(c)) for c in space.choices]
    res = method.gpo(space, lambda w, i: sum((a * t).sum() for a, t in zip(w, target)) + 10.0 * i, 3,
                     torch.Generator().manual_seed(0))
    assert res.best_loss == res.losses[0] < res.losses[-1]
    for best, init in zip(res.best_logits, method.init_logits(space)):
        assert torch.equal(best, init.detach())
    assert any(not torch.equal(b, last) for b, last in zip(res.best_logits, res.last_logits))
    assert all(b.data_ptr() != last.data_ptr() for b, last in zip(res.best_logits, res.last_logits))
    for a in res.last_logits:
        assert float(a.min()) >= 0.0 and float(a.max()) <= 3.0  # clamped to [0, 3]


def test_search_spaces_follow_the_official_index_0():
    """search_space.py: attack (synonyms) index 0 = the original word; improvement (antonyms) index 0 = ""."""
    table = load_table()
    pos, neg = method.search_space(USER, "positive", table), method.search_space(USER, "negative", table)
    zero = tuple(0 for _ in pos.choices)
    assert pos.text(zero) == " ".join(pos.words) and pos.prompts(zero) == (" ".join(pos.words), "")
    assert all(c[0] == method.EMPTY for c in neg.choices) and neg.prompts(tuple(0 for _ in neg.choices)) == (USER, "")
    assert pos.choices[pos.slot_of_word[pos.words.index("red")]] == ["red", *table.synonyms("colour", "red")]
    with pytest.raises(ValueError, match="synoym"):  # the official's misspelt key fails loudly here
        method.search_space(USER, "synoym", table)


def test_epo_spends_exactly_its_budget_on_distinct_points():
    space = method.search_space(USER, "positive", load_table())
    rng = np.random.default_rng(0)
    hist = method.epo(space, lambda p: float(sum(p)), 9, method.random_points(space, 3, rng), rng, keep=2)
    assert len(hist) == 9 and len({p for p, _ in hist}) == 9
    assert method.best_so_far(hist) == sorted(method.best_so_far(hist), reverse=True)


# --------------------------------------------------------------------------- full profile
SD14_UNET = dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, cross_attention_dim=768,
                 attention_head_dim=8, block_out_channels=(320, 640, 1280, 1280),
                 down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                 up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)  # CompVis/stable-diffusion-v1-4 unet/config.json
VIT_L14_TEXT = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                    num_attention_heads=12, max_position_embeddings=77, projection_dim=768)  # text_encoder/config.json


def test_full_profile_is_sd_v1_4_on_the_meta_device():
    """Parameter counts of SD v1-4's UNet (859,520,964) and CLIP ViT-L/14 text tower (123,060,480), built offline
    from the diffusers / transformers configs above on the meta device."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    with torch.device("meta"):
        unet, text = UNet2DConditionModel(**SD14_UNET), CLIPTextModel(CLIPTextConfig(**VIT_L14_TEXT))
    assert sum(p.numel() for p in unet.parameters()) == 859_520_964
    assert sum(p.numel() for p in text.parameters()) == 123_060_480


def test_full_profile_two_gpo_steps_of_a_reduced_instance():
    """Two GPO steps at batch 1 through the same Problem / shortcut-gradient code with SD v1-4's block layout
    (widths and depth reduced) on a tiny CLIP text tower and image tower."""
    from diffusers import UNet2DConditionModel

    from common.clip import build_clip, build_tokenizer
    from common.config import ClipModelConfig, load_config
    from common.diffusion import NoiseSchedule
    from common.t2i import PromptEncoder, TextToImage
    from papers.dpo_diff.config import DPODiffConfig
    from papers.dpo_diff.evaluate import Problem

    cfg = load_config(DPODiffConfig, paper="dpo_diff", root=REPO,
                      overrides=["profile=full", "sampler.images=1", "sampler.nfe=4"])
    tok = build_tokenizer()
    clip = build_clip(ClipModelConfig(embed_dim=16, image_tower="cnn", cnn_widths=[8], text_width=16, text_layers=2,
                                      text_heads=2, context_length=32), tok, seed=1).eval()
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**{**SD14_UNET, "sample_size": 32, "in_channels": 3, "out_channels": 3,
                                   "block_out_channels": (32, 32, 64, 64), "layers_per_block": 1,
                                   "cross_attention_dim": 16, "attention_head_dim": 2, "norm_num_groups": 8})
    model = TextToImage(unet, PromptEncoder(clip, tok)).requires_grad_(False)
    pb = Problem(cfg, model, NoiseSchedule(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012), clip,
                 tok)
    space = method.search_space(USER, "negative", load_table())
    res = method.gpo(space, lambda w, i: pb.relaxed_loss(space, w, method.step_schedule(i, cfg.sampler.nfe)), 2,
                     torch.Generator().manual_seed(0))
    assert len(res.losses) == 2 and all(math.isfinite(x) for x in res.losses)
    assert any(not torch.equal(a, b) for a, b in zip(res.last_logits, method.init_logits(space)))


# --------------------------------------------------------------------------- the pipeline, tiny
@pytest.mark.e2e
def test_tiny_pipeline(tmp_path):
    """prepare_data, classifier, scenes, scene CLIP, T2I model -> evaluate, report on the tiny profile."""
    import importlib

    from tinyrepo import inside, make_tiny_repo

    root = make_tiny_repo(tmp_path / "repo")
    shared = ["prepare_data", "train_classifier", "build_scenes", "train_scene_clip", "train_t2i"]
    stages = [importlib.import_module(f"common.stages.{s}") for s in shared] + [
        importlib.import_module(f"papers.dpo_diff.{s}") for s in ("evaluate", "report")]
    with inside(root):
        for stage in stages:
            stage.main([])
    res = json.loads((root / "reports/dpo_diff/results.json").read_text())
    assert {r["optimiser"] for r in res["finals"]} == {"user", "random", "gpo", "epo", "hybrid"}
    verdicts = json.loads((root / "reports/dpo_diff/verdicts.json").read_text())["verdicts"]
    assert len(verdicts) == len(load_claims(REPO / "papers" / "dpo_diff" / "claims.yaml"))
    for fig in ("loss_vs_evaluations", "optimised_prompts", "shortcut_vs_full_gradient"):
        assert (root / f"reports/dpo_diff/figures/{fig}.png").stat().st_size > 1000
