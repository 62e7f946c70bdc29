"""Teacher pairs and the teacher's x0 / eps (common/teacher_pairs.py, common/stages/teacher_pairs.py), and the
substrate's root stages on the tiny profile (teacher_pairs, train_autoencoder, train_perceptual)."""

import json

import pytest
import torch

from common.config import UNetConfig
from common.diffusion import NoiseSchedule, unet_fn
from common.models import build_unet, save_diffusion_model
from common.sampling import SampleNoise, sample, sample_seeds, timesteps
from common.stages.teacher_pairs import make_pairs, write_pairs
from common.teacher_pairs import Teacher, load_pairs, pairs_meta

UNET = UNetConfig(block_out_channels=[8, 16], attention_levels=[False, True], layers_per_block=1, num_classes=10,
                  norm_num_groups=4, attention_head_dim=4)


@pytest.fixture(scope="module")
def teacher():
    torch.manual_seed(0)
    return build_unet(UNET, 8, 1).eval().requires_grad_(False), NoiseSchedule()


def test_x0_and_eps_are_the_networks_prediction_converted(teacher):
    unet, sched = teacher
    t = Teacher(unet, sched, num_classes=10)
    x, c, tt = torch.randn(3, 1, 8, 8), torch.tensor([1, 5, 9]), torch.tensor([10, 500, 999])
    with torch.no_grad():
        eps = unet(x, tt, class_labels=c).sample
        x0, e = t.predict(x, tt, c)
        assert torch.allclose(e, eps, atol=1e-6)
        ab = sched.alpha_bar(tt).float().view(-1, 1, 1, 1)
        assert torch.allclose(x0, (x - (1 - ab).sqrt() * eps) / ab.sqrt(), atol=1e-5)
        assert torch.allclose(t.x0(x, 500, c), t.x0(x, torch.full((3,), 500), c))  # int t = per-sample t
        x0c, ec = t.predict(x, tt, c, clip=True)
        assert x0c.abs().max() <= 1 and torch.allclose(sched.q_sample(x0c, tt, ec), x, atol=1e-4)
    xg = x.clone().requires_grad_(True)
    t.x0(xg, tt, c).sum().backward()  # gradients reach the input through the frozen teacher
    assert xg.grad is not None and all(p.grad is None for p in unet.parameters())
    guided = Teacher(unet, sched, 10, guidance_scale=2.0)
    with torch.no_grad():
        null = unet(x, tt, class_labels=torch.full((3,), 10)).sample
        assert torch.allclose(guided.eps(x, tt, c), null + 2 * (eps - null), atol=1e-5)


def test_pairs_are_per_sample_seeded_ddim_runs(teacher, tmp_path):
    unet, sched = teacher
    a = make_pairs(unet, sched, 10, 5, seed=3, nfe=4, guidance_scale=1.0, clip_x0=True, batch_size=2)
    b = make_pairs(unet, sched, 10, 5, seed=3, nfe=4, guidance_scale=1.0, clip_x0=True, batch_size=5)
    assert (a["nfe"], a["model_calls"]) == (4, 20)
    assert all((a[k] == b[k]).all() for k in ("noise", "label", "seed"))  # independent of the batch
    assert abs(a["sample"] - b["sample"]).max() < 1e-4  # (float rounding of batched convolutions only)
    seeds = sample_seeds(3, 5)
    assert a["seed"].tolist() == seeds and a["label"].tolist() == [0, 1, 2, 3, 4]
    j = 3  # pair j is the deterministic DDIM map of its own x_T, alone
    noise = SampleNoise([seeds[j]], (1, 8, 8))
    assert torch.equal(torch.from_numpy(a["noise"][j:j + 1]), noise())
    with torch.no_grad():
        fresh = SampleNoise([seeds[j]], (1, 8, 8))  # (its generators are stateful: a fresh one redraws x_T)
        x = sample(unet_fn(unet), sched, fresh, torch.tensor([j]), timesteps(4), "ddim", 0.0, True)
    assert torch.allclose(torch.from_numpy(a["sample"][j:j + 1]), x, atol=1e-4)
    write_pairs({"train": a, "heldout": make_pairs(unet, sched, 10, 2, 4, 4, 1.0, True, 2)}, tmp_path / "pairs")
    (tmp_path / "meta.json").write_text(json.dumps({"nfe": 4, "method": "ddim", "guidance_scale": 1.0,
                                                    "counts": {"train": 5, "heldout": 2}}))
    p = load_pairs(tmp_path, "train")
    assert len(p) == 5 and p.noise.dtype == torch.float32 and p.label.dtype == torch.int64
    assert torch.equal(p.sample, torch.from_numpy(a["sample"])) and p.seed.tolist() == seeds
    assert len(load_pairs(tmp_path, "heldout")) == 2 and pairs_meta(tmp_path)["nfe"] == 4
    with pytest.raises(ValueError):
        load_pairs(tmp_path, "test")


def test_substrate_stages_on_the_tiny_profile(tmp_path):
    """teacher_pairs, train_autoencoder and train_perceptual end to end on the tiny profile, and the readers."""
    from tinyrepo import inside, make_tiny_repo

    from common.autoencoder import decode, encode, load_autoencoder
    from common.config import RootConfig, load_config
    from common.perceptual import latent_lpips, pixel_lpips
    from common.stages import prepare_data, teacher_pairs, train_autoencoder, train_perceptual

    root = make_tiny_repo(tmp_path / "repo")
    with inside(root):
        prepare_data.main([])
        cfg = load_config(RootConfig, overrides=["tracking.enabled=false"])
        torch.manual_seed(0)
        unet = build_unet(cfg.base_model.unet, cfg.data.resolution, 1)
        save_diffusion_model(unet, NoiseSchedule().diffusers_config, root / "models" / "base_model", {"step": 0})
        overrides = ["tracking.enabled=false"]
        teacher_pairs.main(overrides)
        train_autoencoder.main(overrides)
        train_perceptual.main(overrides + ["perceptual.pixel_backbone=digits-cnn"])
        pairs = load_pairs(cfg, "train")
        assert len(pairs) == cfg.teacher_pairs.num_train and pairs.noise.shape[1:] == (1, 8, 8)
        assert pairs_meta(cfg)["nfe"] == cfg.teacher_pairs.nfe
        ae, meta = load_autoencoder(cfg)
        z = encode(ae, pairs.sample[:2], meta["scaling_factor"])
        assert z.shape == (2, 4, 4, 4) and decode(ae, z, meta["scaling_factor"]).shape == (2, 1, 8, 8)
        m = json.loads((root / "metrics" / "autoencoder.json").read_text())
        assert {"psnr", "ssim", "l1"} <= set(m["heldout"])
        cfg = load_config(RootConfig, overrides=["perceptual.pixel_backbone=digits-cnn"])
        pix, lat = pixel_lpips(cfg), latent_lpips(cfg)
        assert (pix.name, lat.name) == ("lpips[digits-cnn]", "e-latent-lpips[digits-ae]")
        assert pix(pairs.sample[:2], pairs.sample[2:4]).shape == (2,)
        assert lat(z, z.flip(0), torch.Generator().manual_seed(0)).shape == (2,)
        assert latent_lpips(cfg, ensemble=False).augment is None
