"""The small CLIP: tokenizer layout, open_clip model and loss against a hand computation, and the score
card (zero-shot, retrieval, linear probe) against models whose answers are known."""

import hashlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from common import clip
from common.config import ClipModelConfig, ClipTrainConfig
from common.scenes import DIGIT_WORDS, Obj, Scenes, caption


@pytest.fixture(scope="module")
def tok():
    return clip.build_tokenizer()


def tiny_spec(**kw):
    return ClipModelConfig(**{**dict(embed_dim=16, image_tower="cnn", cnn_widths=[8, 16], text_width=16, text_layers=1, text_heads=2,
                                     context_length=32), **kw})


def test_tokenize_layout(tok):
    ids = clip.tokenize(tok, ["one digit: large red seven top left", "two digits"], 8)  # 8 words + bos + eos > 8
    assert ids.shape == (2, 8)
    row = ids[0].tolist()
    assert row[0] == tok.bos_token_id and row[1:7] == tok("one digit : large red seven", add_special_tokens=False)["input_ids"]
    assert row[-1] == tok.eos_token_id  # truncated: eos kept in the last position
    short = ids[1].tolist()
    assert short[:4] == [tok.bos_token_id] + tok("two digits", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert set(short[4:]) == {tok.pad_token_id} and tok.unk_token_id not in row


@pytest.mark.parametrize("tower", ["cnn", "resnet", "vit"])
def test_towers_and_seeded_init(tok, tower):
    spec = tiny_spec(image_tower=tower, resnet_width=8, vit_width=32, vit_layers=1, vit_head_width=16)
    a, b = clip.build_clip(spec, tok, seed=3), clip.build_clip(spec, tok, seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    t = clip.tokenize(tok, ["one digit: small red one top left"] * 4, spec.context_length)
    out = a(clip.to_input(x), t)
    assert out["image_features"].shape == (4, 16) and out["text_features"].shape == (4, 16)
    assert clip.build_image_tower(spec, 7, seed=0)(clip.to_input(x)).shape == (4, 7)


def test_clip_loss_is_symmetric_infonce(tok):
    spec = tiny_spec()
    model = clip.build_clip(spec, tok, seed=0)
    with torch.no_grad():
        model.logit_scale.fill_(np.log(200.0))  # above the clamp: the loss must use 100
    x = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    caps = [caption([Obj(d, "red", "small", 0)]) for d in range(5)]
    t = clip.tokenize(tok, caps, spec.context_length)
    loss = clip.clip_loss(model, x, t)
    img = F.normalize(model.encode_image(clip.to_input(x)), dim=-1)
    txt = F.normalize(model.encode_text(t), dim=-1)
    logits = 100.0 * img @ txt.T
    ref = (F.cross_entropy(logits, torch.arange(5)) + F.cross_entropy(logits.T, torch.arange(5))) / 2
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5)


class OracleModel(torch.nn.Module):
    """Embeds a caption as a pseudo-random unit vector of its exact token sequence, and an image as the
    vector of its true caption (the scene index is stored in pixel [0, 0, 0]): a perfect CLIP."""

    dim = 4096

    def __init__(self, tok, true_captions, context_length):
        super().__init__()
        self.table = {self.key(r): self.vec(r) for r in clip.tokenize(tok, true_captions, context_length)}
        self.index = [self.key(r) for r in clip.tokenize(tok, true_captions, context_length)]

    @staticmethod
    def key(row):
        return hashlib.sha256(row.numpy().tobytes()).hexdigest()

    def vec(self, row):
        g = torch.Generator().manual_seed(int(self.key(row)[:12], 16))
        return F.normalize(torch.randn(self.dim, generator=g), dim=0)

    def encode_text(self, tokens):
        return torch.stack([self.vec(r) for r in tokens])

    def encode_image(self, x):
        idx = ((x[:, 0, 0, 0] + 1) * 127.5).round().long()
        return torch.stack([self.table[self.index[i]] for i in idx])


def oracle_scenes():
    rng = np.random.default_rng(0)
    objs = [[Obj(int(rng.integers(10)), str(rng.choice(["red", "blue", "green"])), "large", int(rng.integers(4)))]
            for _ in range(40)]
    objs += [[Obj(1, "red", "small", 0), Obj(2, "blue", "large", 3)] for _ in range(10)]
    caps = [caption(o) for o in objs]
    images = torch.zeros(len(objs), 3, 32, 32, dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.arange(len(objs), dtype=torch.uint8)
    return Scenes(images, caps, caps, np.array(["clean"] * len(caps)), np.zeros(len(caps), int),
                  np.array([len(o) for o in objs]), [[x.digit for x in o] for o in objs],
                  [[x.colour for x in o] for o in objs])


def test_zero_shot_and_retrieval_of_a_perfect_model(tok):
    test = oracle_scenes()
    model = OracleModel(tok, test.true_captions, 32)
    zs = clip.zero_shot(model, tok, test, 32)
    assert zs["zero_shot_digit"] == 1.0 and zs["zero_shot_colour"] == 1.0
    r = clip.retrieval(model, tok, test, 32)
    assert r["retrieval_i2t_r1"] == 1.0 and r["retrieval_t2i_r1"] == 1.0  # 10 scenes share one caption: all hits


def test_zero_shot_of_a_model_that_swaps_digits(tok):
    test = oracle_scenes()
    swapped = [c.replace(DIGIT_WORDS[d[0]], DIGIT_WORDS[(d[0] + 1) % 10]) if n == 1 else c
               for c, d, n in zip(test.true_captions, test.digits, test.count)]
    model = OracleModel(tok, swapped, 32)  # its images look like the caption with the next digit
    zs = clip.zero_shot(model, tok, test, 32)
    assert zs["zero_shot_digit"] == 0.0 and zs["zero_shot_colour"] == 1.0
    # only the 10 two-digit scenes keep their caption (a swapped caption may by chance be another scene's)
    assert 10 / 50 <= clip.retrieval(model, tok, test, 32)["retrieval_i2t_r1"] < 0.3


def test_class_prompts_state_their_class():
    p = clip.class_prompts("digit")
    assert len(p) == 10 and all(len(v) == 48 and all(f" {DIGIT_WORDS[d]} " in c for c in v) for d, v in p.items())
    c = clip.class_prompts("count")
    assert all(all(x.startswith(w) for x in c[k]) for k, w in enumerate(["one digit:", "two digits:", "three digits:"]))


def test_linear_probe_separable_and_random():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 600)
    x = rng.normal(size=(600, 8)) + 4 * np.eye(3, 8)[y]
    assert clip.linear_probe(x[:400], y[:400], x[400:], y[400:]) > 0.95
    x_noise = rng.normal(size=(600, 8))
    assert clip.linear_probe(x_noise[:400], y[:400], x_noise[400:], y[400:]) < 0.5


def test_flops_per_sample_counts_a_matmul():
    w = torch.randn(8, 4, requires_grad=True)
    x = torch.randn(16, 8)
    # forward 2*16*8*4, backward (grad wrt w only) 2*16*8*4
    assert clip.flops_per_sample(lambda: (x @ w).sum(), 16) == pytest.approx(2 * 2 * 8 * 4)


def test_train_config_counts_samples():
    t = ClipTrainConfig(samples=1000, batch_size=64, warmup_steps=20, lr=2e-3, lr_schedule="cosine", weight_decay=1e-4,
                        seed=0)
    c = clip.train_config(t)
    assert c.steps == 16 and c.batch_size == 64 and c.warmup_steps == 3
    assert clip.train_config(t, samples=64).steps == 1
