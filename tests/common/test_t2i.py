"""The text-conditional model's substrate (common/t2i.py, common/prompts.py, common/prompt_words.yaml): the
inputs_embeds path against open_clip's own text forward, the synonym table's shape, synonym substitution
rates, the lenient prompt parser, and the root stages train_t2i / train_reward_model on the tiny profile."""

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from common.clip import build_clip, build_tokenizer, tokenize
from common.config import ClipModelConfig
from common.prompts import ROLES, grammar_words, load_table, parse_prompt, split_words
from common.t2i import PromptEncoder, TextToImage, build_unet, caption_groups, substitute, synonym_table, text_cfg

REPO = Path(__file__).resolve().parents[2]
PROMPTS = ["two digits: large red seven top left, small blue one bottom right", "one digit: small cyan zero bottom left",
           "three digits: small green two top left, large yellow nine top right, small magenta five bottom right", ""]


@pytest.fixture(scope="module")
def tiny_clip():
    tok = build_tokenizer()
    spec = ClipModelConfig(embed_dim=16, image_tower="cnn", cnn_widths=[8], text_width=16, text_layers=2, text_heads=2,
                           context_length=32)
    return build_clip(spec, tok, seed=1).eval(), tok


# --------------------------------------------------------------------------- the synonym table
def test_table_words_are_single_unique_and_never_their_own_synonym():
    table = load_table()
    grammar = {w for r in ROLES for w in grammar_words(r)}
    assert set(table.entries) == set(ROLES)
    for role, words in table.entries.items():
        assert set(words) == set(grammar_words(role)), role  # every grammar word of a role has an entry
        for word, e in words.items():
            assert len(e.synonyms) >= 3 and len(e.antonyms) >= 1, (role, word)
            for s in e.synonyms + e.antonyms:
                assert s and " " not in s and split_words(s) == [s], s  # single words
            assert word not in e.synonyms and not grammar & set(e.synonyms)  # synonyms are new surface words
            assert word not in e.antonyms and set(e.antonyms) <= set(grammar_words(role))  # antonyms differ
    assert len(table.synonym_words) == len(set(table.synonym_words))  # a synonym parses back to one word
    assert table.antonyms("colour", "red")[0] == "cyan" and table.antonyms("size", "large") == ("small",)


def test_parser_reads_synonyms_and_partial_prompts():
    p = parse_prompt("couple numerals: big crimson sieben upper leftmost, tiny azure uno lower east")
    assert p.count == 2 and [(o.size, o.colour, o.digit, o.position) for o in p.objects] == \
        [("large", "red", 7, 0), ("small", "blue", 1, 3)]
    q = parse_prompt("one digit: red seven")  # an edited prompt: unstated attributes stay None
    assert q.count == 1 and q.objects[0].colour == "red" and q.objects[0].size is None and q.objects[0].position is None


# --------------------------------------------------------------------------- the inputs_embeds path
def test_encode_of_embed_equals_open_clip_forward_on_grammar_prompts(tiny_clip):
    model, tok = tiny_clip
    enc = PromptEncoder(model, tok)
    ids = tokenize(tok, PROMPTS, 32)
    assert torch.equal(enc.ids(PROMPTS), ids)
    captured = {}
    handle = model.ln_final.register_forward_hook(lambda m, i, o: captured.setdefault("h", o))
    with torch.no_grad():
        ref = model.encode_text(ids)
        hidden = enc.encode(enc.embed_words(PROMPTS))
    handle.remove()
    assert (hidden - captured["h"]).abs().max() < 1e-6
    assert (enc.text_features(hidden, enc.eos_index(ids)) - ref).abs().max() < 1e-6


def test_synonym_rows_start_at_their_word_and_get_gradients_while_the_tower_is_frozen(tiny_clip):
    model, tok = tiny_clip
    enc = PromptEncoder(model, tok)
    a = enc.embed_words(["one digit: big crimson sieben upper leftmost"])
    b = enc.embed_words(["one digit: large red seven top left"])
    assert torch.equal(a, b)  # initialised at the canonical rows
    mix = torch.softmax(torch.zeros(3, requires_grad=True), 0)
    choices = enc.word_embeddings(["red", "crimson", "cyan"])
    e = enc.embed_words(PROMPTS[:1]).clone()
    e[0, 5] = mix @ choices  # a Gumbel-style mixture in one slot
    enc.text_features(enc.encode(e), torch.tensor([15])).sum().backward()
    assert all(p.grad is None for n, p in enc.named_parameters() if not n.startswith("synonyms"))
    assert enc.synonyms.weight.grad is not None and enc.synonyms.weight.grad.abs().sum() > 0


def test_substitution_rate_and_caption_dropout_ids(tiny_clip):
    model, tok = tiny_clip
    enc = PromptEncoder(model, tok)
    m = TextToImage(torch.nn.Identity(), enc)
    caps = [PROMPTS[0]] * 4000
    ids, groups = enc.ids(caps), caption_groups(m, caps)
    out = substitute(ids, groups, synonym_table(m), 0.3, torch.Generator().manual_seed(0))
    slot = groups > 0
    assert torch.equal(out[~slot], ids[~slot])  # punctuation, bos, eos, padding never change
    swapped = (out != ids)[slot].float().mean().item()
    assert abs(swapped - 0.3) < 0.01
    red = out[:, 5]  # "red": each synonym about 0.1
    for s in ("crimson", "scarlet", "ruby"):
        assert abs((red == enc.word_id(s)).float().mean().item() - 0.1) < 0.02


def test_text_cfg_is_conditional_at_scale_one_and_extrapolates(tiny_clip):
    model, tok = tiny_clip
    enc = PromptEncoder(model, tok)
    unet = build_unet(SimpleNamespace(cross_attention=[False, True], block_out_channels=[8, 8], layers_per_block=1,
                                      attention_heads=2, norm_num_groups=4), enc.width)
    m = TextToImage(unet, enc).eval()
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([500, 500])
    c, neg = enc.hidden(PROMPTS[:2]), enc.hidden(["", ""])
    with torch.no_grad():
        e_c, e_n = m.eps(x, t, c), m.eps(x, t, neg)
        assert torch.allclose(text_cfg(m, 1.0, neg)(x, t, c), e_c, atol=1e-6)
        assert torch.allclose(text_cfg(m, 3.0, neg)(x, t, c), e_n + 3 * (e_c - e_n), atol=1e-5)


# --------------------------------------------------------------------------- the stages on the tiny profile
@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    """A tiny-profile repository with the stages train_t2i reads (prepare_data, train_classifier, build_scenes,
    train_scene_clip) run in-process."""
    from tinyrepo import inside

    from common.stages import build_scenes, prepare_data, train_classifier, train_scene_clip

    root = tmp_path_factory.mktemp("t2i") / "repo"
    (root / "common").mkdir(parents=True)
    (root / "params.yaml").write_text((REPO / "params.yaml").read_text().replace("\nprofile: cpu\n", "\nprofile: tiny\n"))
    shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")
    with inside(root):
        for stage in (prepare_data, train_classifier, build_scenes, train_scene_clip):
            stage.main(["tracking.enabled=false"])
    return root


def test_train_t2i_stage_on_the_tiny_profile(tiny_root):
    from tinyrepo import inside

    from common.config import RootConfig, load_config
    from common.diffusion import NoiseSchedule
    from common.sampling import SamplingSpec
    from common.stages import train_t2i
    from common.t2i import generate_images, load_t2i

    with inside(tiny_root):
        train_t2i.main(["tracking.enabled=false"])
        cfg = load_config(RootConfig, root=tiny_root)
        model, schedule = load_t2i(tiny_root / "models" / "t2i", cfg)
    m = json.loads((tiny_root / "metrics" / "t2i.json").read_text())
    assert m["steps"] == cfg.t2i.train.steps and m["synonym_words"] == len(load_table().synonym_words)
    for k in ("oracle_cfg", "oracle_unconditional", "clip_score_cfg", "oracle_real_images_read"):
        assert 0 <= m[k] <= 1 or k.startswith("clip")
    assert isinstance(schedule, NoiseSchedule) and (tiny_root / "runs" / "t2i" / "samples.png").is_file()
    spec = SamplingSpec(num_samples=3, nfe=2, guidance_scale=2.0, seed=5)
    a = generate_images(model, schedule, PROMPTS[:3], spec, batch_size=3)
    b = generate_images(model, schedule, PROMPTS[:3], spec, batch_size=1)
    assert a.dtype == torch.uint8 and a.shape == (3, 3, 32, 32) and torch.equal(a, b)  # per-sample seeds


def test_train_reward_model_stage_on_the_tiny_profile(tiny_root):
    from tinyrepo import inside

    from common.config import RootConfig, load_config
    from common.judges import load_reward_model
    from common.stages import train_reward_model

    with inside(tiny_root):
        train_reward_model.main(["tracking.enabled=false"])
        cfg = load_config(RootConfig, root=tiny_root)
        judge = load_reward_model(tiny_root / "models" / "reward_model", cfg)
    m = json.loads((tiny_root / "metrics" / "reward_model.json").read_text())
    assert m["steps"] == cfg.reward_model.steps and m["oracle_acc_digit"] == 1.0 and m["oracle_acc_degraded"] == 0.0
    assert judge(torch.zeros(2, 3, 32, 32, dtype=torch.uint8), PROMPTS[:2]).shape == (2,)
