"""Every paper's `full` profile on CPU: paper-scale networks, counted, and two steps on a miniature of its data.

For each paper and the shared stages: load the config with `profile=full` (data paths pointed at a
miniature of the real format, tests/miniature_data.py), build the networks the full profile trains or
samples at their paper size, check the parameter count against the official code's, and run two
training or evaluation steps at batch 1-2 through the loaders and losses the stages use. What each full
profile needs (GPU hours, data and where to put it): docs/full_profile.md.

Reference counts:
- ADM CIFAR-10 (DDPM-IP / ADM-ES): 57,094,662, the official guided-diffusion `UNetModel` with the DDPM-IP
  README flags (tests/common/test_config.py); our diffusers UNet2DModel has 55,960,966 (-2.0%).
- CLIP: open_clip's own model configs (open_clip/model_configs/*.json, the official code of the CLIP runs
  of QQT, DFN, Scaling (Down) CLIP) built on the meta device: ViT-B-32 151,277,313, ViT-L-14 427,616,513,
  ViT-B-16 image tower 86,192,640, RN50 102,007,137 (open_clip docs/model_profile.csv: 151.28M, 427.62M, 86.19M
  image, 102.01M). Our pipelines build the same towers with the in-repo word-level tokenizer and 32x32 inputs,
  so the exact comparison is made at the official vocabulary (49,408) and image size (224).
- Mistral-7B-v0.1 (new_knowledge's base LM): 7,241,732,096 (transformers' MistralConfig defaults are that
  model's config.json; the model card's "7.24B"), counted on the meta device.
"""

from __future__ import annotations

import dataclasses

import miniature_data as mini
import numpy as np
import pytest
import torch
from smoke import two_steps
from tinyrepo import ROOT

from common.config import RootConfig, load_config

ADM_CIFAR10_OFFICIAL = 57_094_662
OPEN_CLIP = {"ViT-B-32": 151_277_313, "ViT-L-14": 427_616_513, "RN50": 102_007_137}
OPEN_CLIP_VISUAL = {"ViT-B-16": 86_192_640, "ViT-B-32": 87_849_216}
MISTRAL_7B = 7_241_732_096
SAME_AS_CPU = ("knowledge", "knowledge_lm", "scenes", "scene_clip", "patches", "patch_trunks", "t2i",
               "reward_model")  # no full overlay


def nparams(m) -> int:
    return sum(p.numel() for p in m.parameters())


def close(ours: int, official: int, rel: float = 0.03) -> bool:
    return abs(ours - official) / official <= rel


def full_config(paper=None, *overrides, schema=None):
    if schema is None and paper:
        import importlib

        mod = importlib.import_module(f"papers.{paper}.config")
        schema = next(c for c in vars(mod).values() if isinstance(c, type) and issubclass(c, RootConfig)
                      and c is not RootConfig and c.__module__ == mod.__name__)
    return load_config(schema or RootConfig, paper=paper, overrides=["profile=full", *overrides], root=ROOT)


# --------------------------------------------------------------------------- pixel diffusion (group A)
@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    """CIFAR-10 as the full profile reads it: a `datasets` folder given as data.source, through `prepare`."""
    from common.data import load_split, prepare

    tmp = tmp_path_factory.mktemp("cifar")
    src = mini.cifar10_datasets(tmp / "cifar10")
    cfg = full_config(None, f"data.source={src}", "data.num_heldout=10")
    prepare(cfg.data.name, cfg.data.resolution, cfg.data.num_heldout, cfg.seed, tmp / "prepared", cfg.data.source)
    x, y = load_split(tmp / "prepared", "train")
    assert x.shape[1:] == (3, 32, 32) and x.dtype == torch.uint8 and len(x) == 10
    return cfg, x, y


@pytest.fixture(scope="module")
def adm(cifar):
    """The root full profile's base model (ADM CIFAR-10), built once with random weights."""
    from common.models import build_unet

    cfg = cifar[0]
    torch.manual_seed(0)
    return build_unet(cfg.base_model.unet, cfg.data.resolution, 3)


def diffusion_steps(unet, cfg, x, y, noise_input=None):
    from common.data import to_model_range
    from common.diffusion import NoiseSchedule, denoising_loss, unet_fn

    sched = NoiseSchedule.from_config(cfg.diffusion)
    x0, c = to_model_range(x[:1]), (y[:1] if cfg.unet.num_classes else None)
    return two_steps(unet, lambda g: denoising_loss(unet_fn(unet), sched, x0, c, g, noise_input=noise_input))


def sample_two_steps(unet, cfg, num_classes=0, hooks_factory=None, model_fn=None):
    """Two network evaluations per sample at batch 1 (evaluation: inference_mode)."""
    from common.diffusion import NoiseSchedule, unet_fn
    from common.sampling import Hooks, SamplingSpec, generate_all

    unet.eval()
    spec = SamplingSpec(num_samples=1, nfe=2, guidance_scale=3.0 if num_classes else 1.0)
    with torch.inference_mode():
        x, _ = generate_all(model_fn or unet_fn(unet), NoiseSchedule.from_config(cfg.base_model.diffusion), spec,
                            (3, cfg.data.resolution, cfg.data.resolution), num_classes,
                            hooks_factory=hooks_factory or Hooks)
    assert x.shape == (1, 3, cfg.data.resolution, cfg.data.resolution) and torch.isfinite(x).all()


def test_shared_base_model_and_classifier(cifar, adm):
    """prepare_data + train_classifier + train_base_model at full scale: CIFAR-10 folder, ADM, 2 steps each."""
    from common.models import Classifier

    cfg, x, y = cifar
    assert close(nparams(adm), ADM_CIFAR10_OFFICIAL), nparams(adm)
    diffusion_steps(adm, cfg.base_model, x, y)
    c = cfg.classifier
    clf = Classifier(3, c.channels, c.feature_dim)
    two_steps(clf, lambda g: torch.nn.functional.cross_entropy(clf(x[:2].float() / 127.5 - 1), y[:2]))
    sample_two_steps(adm, cfg)  # evaluate_base_model


def test_shared_stages_without_full_overlay_equal_cpu():
    """build_knowledge, pretrain_lm, build_scenes, train_scene_clip have no full overlay: their full run is the cpu one
    (smoke-tested by their own tiny tests)."""
    full, cpu = full_config(None), load_config(RootConfig, overrides=["profile=cpu"], root=ROOT)
    for key in SAME_AS_CPU:
        assert getattr(full, key) == getattr(cpu, key), key


@pytest.mark.parametrize("paper", ["epsilon_scaling", "time_shift", "align_your_steps", "exposure_bias"])
def test_sampling_papers_on_the_full_base_model(paper, cifar, adm):
    """Training-free papers: their full profile samples the shared ADM (2 network evaluations, batch 1)."""
    cfg = full_config(paper, f"data.source={cifar[0].data.source}")
    assert cfg.base_model.unet == cifar[0].base_model.unet and cfg.data.name == "cifar10"
    sample_two_steps(adm, cfg)


def test_ddpm_ip_full(cifar, adm):
    from papers.ddpm_ip.method import input_perturbation

    cfg = full_config("ddpm_ip")
    assert cfg.model.unet == cifar[0].base_model.unet  # the ADM network, trained twice (gamma 0 and 0.15)
    assert cfg.gamma == 0.15
    diffusion_steps(adm, cfg.model, cifar[1], cifar[2], input_perturbation(cfg.gamma))


def test_residual_correction_full(cifar, adm):
    from common.models import build_unet
    from papers.residual_correction.method import residual_loss, unet_correction

    cfg = full_config("residual_correction")
    net = build_unet(cfg.correction.unet, cfg.data.resolution, 3)
    share = nparams(net) / nparams(adm)
    assert share < 0.2, share  # a correction net much smaller than the base (paper: a small UNet)
    x0 = cifar[1][:2].float() / 127.5 - 1
    nfe = torch.tensor([5, 10])
    two_steps(net, lambda g: residual_loss(unet_correction(net), x0 + 0.1 * torch.randn(x0.shape, generator=g), nfe,
                                           x0))


def test_sing_diffusion_full(cifar, adm):
    from papers.sing_diffusion.method import SingDiffusionNet, singularity_loss

    cfg = full_config("sing_diffusion")
    nc = cfg.base_model.unet.num_classes
    net = SingDiffusionNet(nc, (3, cfg.data.resolution, cfg.data.resolution), cfg.net.embed_dim, cfg.net.hidden)
    x0 = cifar[1][:2].float() / 127.5 - 1
    two_steps(net, lambda g: singularity_loss(net, x0, torch.full((2,), nc), g))
    sample_two_steps(adm, cfg)


@pytest.mark.parametrize("paper", ["cads", "cdr_pareto"])
def test_class_conditional_papers_on_an_imagenet_folder(paper, tmp_path):
    """CADS / CDR need a class-conditional model: ImageNet-shaped folder (data.name imagenet) -> class-conditional ADM
    (the root full network with num_classes = the folder's classes) -> 2 CADS-guided sampling steps."""
    from common.data import load_split, prepare
    from common.models import build_unet
    from papers.cads.method import CADS, condition_annealing

    src = mini.imagenet_folder(tmp_path / "imagenet")
    cfg = full_config(paper, "data.name=imagenet", f"data.source={src}", "data.num_heldout=2",
                      "base_model.unet.num_classes=2")
    prepare(cfg.data.name, cfg.data.resolution, cfg.data.num_heldout, cfg.seed, tmp_path / "prepared", cfg.data.source)
    x, y = load_split(tmp_path / "prepared", "train")
    assert x.shape[1:] == (3, cfg.data.resolution, cfg.data.resolution) and set(y.tolist()) == {0, 1}
    torch.manual_seed(0)
    unet = build_unet(cfg.base_model.unet, cfg.data.resolution, 3)
    assert close(nparams(unet), ADM_CIFAR10_OFFICIAL)  # + a 3 x 512 class embedding
    diffusion_steps(unet, cfg.base_model, x, y)
    with condition_annealing(unet, CADS(s=0.25), 2, cfg.base_model.diffusion.num_train_timesteps) as hooks:
        sample_two_steps(unet, cfg, num_classes=2, hooks_factory=hooks)


# --------------------------------------------------------------------------- CLIP-style data papers (group F)
def official_clip_count(spec, visual_only=False) -> int:
    """Our spec built as open_clip's CLIP at the official vocabulary and image size, on the meta device."""
    from open_clip.model import CLIP

    from common.clip import vision_cfg

    text = dict(context_length=spec.context_length, vocab_size=49408, width=spec.text_width, heads=spec.text_heads,
                layers=spec.text_layers)
    with torch.device("meta"):
        m = CLIP(embed_dim=spec.embed_dim, vision_cfg=vision_cfg(spec, image_size=224), text_cfg=text)
    return nparams(m.visual) if visual_only else nparams(m)


@pytest.fixture(scope="module")
def shard(tmp_path_factory):
    """A DataComp / CC-style webdataset shard, read by common.scenes.load_image_text_shards at the pipelines' 32x32,
    and `paths.data` with miniature shared scenes (the evaluation splits the full profiles still read)."""
    from common.scenes import load_image_text_shards

    tmp = tmp_path_factory.mktemp("shards")
    path = mini.webdataset_shard(tmp / "pool")
    mini.scene_splits(tmp / "data" / "scenes")
    pairs = load_image_text_shards(path, resolution=32)
    assert pairs.images.shape == (4, 3, 32, 32) and pairs.images.dtype == torch.uint8 and len(pairs.captions) == 4
    return path, pairs, f"paths.data={tmp / 'data'}"


def same_pairs(loaded, pairs):
    """The stage's loader read the shard: the same images and captions as load_image_text_shards, no ground truth."""
    assert torch.equal(loaded.images, pairs.images) and loaded.captions == pairs.captions
    assert (loaded.severity == -1).all()


def clip_steps(spec, pairs, batch=2):
    """2 training steps of the pipeline's CLIP (common.clip.build_clip) at batch 2, then one scoring pass."""
    from common.clip import build_clip, build_tokenizer, clip_loss, encode_images, tokenize

    tok = build_tokenizer()
    model = build_clip(spec, tok, seed=0)
    ids = tokenize(tok, pairs.captions[:batch], spec.context_length)
    two_steps(model, lambda g: clip_loss(model, pairs.images[:batch], ids))
    model.eval()
    with torch.inference_mode():
        assert torch.isfinite(encode_images(model, pairs.images[:batch])).all()
    return model, tok


@pytest.mark.parametrize("paper, arch", [("qqt_data_filtering", "ViT-B-32"), ("scaling_down_clip", "RN50")])
def test_clip_papers_full(paper, arch, shard):
    import importlib

    from common.scenes import load_shard_scores

    key = "pool" if paper == "qqt_data_filtering" else "pool_source"
    cfg = full_config(paper, f"{key}={shard[0]}", shard[2])
    inputs = importlib.import_module(f"papers.{paper}.experiment").load_inputs(cfg)  # the stage's own loader
    pool, scores = inputs[0], inputs[-1] if paper == "qqt_data_filtering" else inputs[-2]
    same_pairs(pool, shard[1])
    assert np.array_equal(scores, load_shard_scores(shard[0]))  # ranked by the .json's clip_l14_similarity_score
    assert close(official_clip_count(cfg.model), OPEN_CLIP[arch]), (official_clip_count(cfg.model), OPEN_CLIP[arch])
    if paper == "scaling_down_clip":  # the ViT arm of the architecture study: ViT-B/32's image tower
        vit = dataclasses.replace(cfg.model, image_tower="vit", vit_width=cfg.architecture.vit.width,
                                  vit_layers=cfg.architecture.vit.layers, vit_patch=cfg.architecture.vit.patch,
                                  vit_head_width=cfg.architecture.vit.head_width)
        assert close(official_clip_count(vit, visual_only=True), OPEN_CLIP_VISUAL["ViT-B-32"])
        assert len(inputs[1]) == 2  # hq: the top quality.compare_pct (40%) of the 4 pairs by score
    clip_steps(cfg.model, pool)


@pytest.mark.parametrize("paper, key", [("qqt_data_filtering", "pool"), ("catlip", "study.dataset"),
                                        ("dfn", "filter_data"), ("ssl_data_curation", "pool")])
def test_full_loaders_name_a_missing_path_in_one_line(paper, key, tmp_path):
    import importlib

    from common.data import MissingDataError

    mod = importlib.import_module(f"papers.{paper}.{'curate' if paper == 'ssl_data_curation' else 'experiment'}")
    load = getattr(mod, "load_pool" if paper == "ssl_data_curation" else "load_inputs")
    with pytest.raises(MissingDataError, match=f"`{key}: .*does not exist") as err:
        load(full_config(paper, f"{key}={tmp_path / 'absent'}", f"paths.data={tmp_path}"))
    assert "\n" not in str(err.value)


def test_dfn_full(shard):
    from papers.dfn.experiment import load_inputs
    from papers.dfn.method import score_pairs

    cfg = full_config("dfn", f"pool={shard[0]}", f"filter_data={shard[0]}", shard[2])
    hq, pool, _, _ = load_inputs(cfg)  # the stage's loader: filter pairs and pool from their shard folders
    same_pairs(hq, shard[1])
    same_pairs(pool, shard[1])
    assert official_clip_count(cfg.filter.model) == OPEN_CLIP["ViT-B-32"]
    assert official_clip_count(cfg.student.model) == OPEN_CLIP["ViT-L-14"]  # counted only: 428M, a GPU's job
    model, tok = clip_steps(cfg.filter.model, hq)  # the filter: 2 steps on the HQ pairs
    with torch.inference_mode():  # filtering the pool: one scoring pass
        s = score_pairs(model, tok, pool.images, pool.captions, cfg.filter.model.context_length)
    assert len(s) == 4 and np.isfinite(np.asarray(s)).all()


def test_catlip_full(shard):
    from common.clip import build_image_tower
    from papers.catlip.experiment import load_inputs
    from papers.catlip.method import build_vocabulary, caption_to_synsets, catlip_loss, make_lexicon, multi_hot

    cfg = full_config("catlip", f"study.dataset={shard[0]}", shard[2])
    train_set = load_inputs(cfg)[0]  # the stage's loader: the CC3M-style shards at study.dataset
    same_pairs(train_set, shard[1])
    vocab_size = 24_320  # the paper's DataComp-1.3B WordNet vocabulary at V_tau = 500 (Table 1)
    ours = official_clip_count(cfg.model, visual_only=True)
    assert ours == OPEN_CLIP_VISUAL["ViT-B-16"], ours
    with torch.device("meta"):  # the classification tower at the paper's vocabulary: ViT-B/16 + a 24k-way head
        assert nparams(build_image_tower(cfg.model, vocab_size, seed=0)) > 86e6
    # labels: the pipeline's lemma lexicon (the `wordnet` mode needs nltk's WordNet data, docs/full_profile.md)
    lex = make_lexicon("lemma")
    labels = [caption_to_synsets(c, lex) for c in train_set.captions]
    vocab, _ = build_vocabulary(labels, 1)
    tower = build_image_tower(cfg.model, len(vocab), seed=0)
    targets = multi_hot(labels[:2], vocab)
    two_steps(tower, lambda g: catlip_loss(tower, train_set.images[:2], targets))


def test_ssl_data_curation_full(tmp_path):
    from papers.ssl_data_curation import method
    from papers.ssl_data_curation.curate import load_features, load_pool

    shards = mini.webdataset_shard(tmp_path / "ssl" / "web_pool", n=64, size=16)
    feats = mini.feature_matrix(tmp_path / "ssl" / "dinov2_vitl14_features.npy", n=64)
    cfg = full_config("ssl_data_curation", f"features={feats}", f"pool={shards}")
    pool = load_pool(cfg)  # the stages' loaders: the web pool's shards and its features, row for row
    X = load_features(cfg, len(pool))
    assert len(pool) == 64 and X.shape == (64, 1024)  # DINOv2 ViT-L/14 embeddings
    c = cfg.curation
    levels = len(c.n_clusters)  # the full profile's 4 levels, each k shrunk to the miniature (2 k-means steps)
    k = [max(2, 16 >> i) for i in range(levels)]
    lv = method.hierarchical_kmeans(X, k, [1] * levels, c.n_resamples[0], np.random.default_rng(0), n_iters=2)
    idx = method.hierarchical_sampling(lv, 8, np.random.default_rng(0))
    assert len(lv) == levels and len(np.unique(idx)) == 8


# --------------------------------------------------------------------------- language model (group G)
def test_new_knowledge_full(tmp_path):
    """Mistral-7B counted on the meta device; 2 fine-tuning steps of a 2-layer model of the same family, saved
    as the local folder `base_lm` points to, on an EntityQuestions-format folder read by the paper's loader."""
    from transformers import MistralConfig, MistralForCausalLM

    from common.lm import build_tokenizer, lm_loss
    from papers.new_knowledge.inputs import load_base, load_questions, prompt_ids, zero_shot_prompt

    with torch.device("meta"):
        assert nparams(MistralForCausalLM(MistralConfig())) == MISTRAL_7B
    q = mini.entity_questions(tmp_path / "entity_questions")
    texts = []
    for split in ("train", "dev", "test"):
        for f in sorted((q / split).glob("*.json")):
            import json

            texts += [r["question"] + " " + a for r in json.loads(f.read_text()) for a in r["answers"]]
    tok = build_tokenizer([zero_shot_prompt(t) for t in texts])
    small = MistralConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    MistralForCausalLM(small).save_pretrained(tmp_path / "lm")
    tok.save_pretrained(tmp_path / "lm")
    cfg = full_config("new_knowledge", f"questions={q}", f"base_lm={tmp_path / 'lm'}")
    kb = load_questions(cfg)
    assert {len(kb[s]) for s in ("train", "dev", "test")} == {5}  # the two-answer question is dropped
    model, tok, _ = load_base(cfg)
    ids = torch.tensor([prompt_ids(tok, zero_shot_prompt(r["question"]) + " " + r["object"]) for r in kb["train"][:1]])
    model.train()
    two_steps(model, lambda g: lm_loss(model, ids), lr=cfg.study.lr)
