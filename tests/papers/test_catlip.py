"""CatLIP: caption -> labels (Eq. 1) against the official fixture, the vocabulary, the BCE reduction,
and the tiny pipeline end to end.

The official WordNet fixture (apple/corenet tests/data/datasets/classification/
test_wordnet_tagged_classification.py: "An image of black dog." with a 10-synset vocabulary ->
[1,0,1,0,0,0,0,0,0,0]) needs the WordNet corpus, which is not installed here. The WordNet code path
is tested instead with a fake synset lookup injected into method.wordnet_synset_key: it returns
nltk-like synsets with the real WordNet 3.0 names and offsets for the words involved, so the four
fixture cases (the vector, "automobile" -> no label, "cars" -> car.n.01, "black" -> a label) exercise
our filter (name() == f"{w}.n.01"), key format ("n<offset>") and vocabulary lookup.
"""

import contextlib
import json
import os

import pytest
import torch
from tinyrepo import env_for, make_tiny_repo

from papers.catlip.method import (
    Lexicon,
    bce_batch_mean,
    build_vocabulary,
    caption_preprocessing,
    caption_to_synsets,
    lemma_lexicon,
    lemmatize_noun,
    make_lexicon,
    multi_hot,
    wordnet_synset_key,
)

# The official mock vocabulary: the first 10 keys of the frequency-sorted dict in
# `WordnetTaggedClassificationDataset._get_vocab`'s docstring (image = n5928118 first, black = n4960277 third).
OFFICIAL_VOCAB = ["n5928118", "n13333833", "n4960277", "n7947958", "n9638875", "n928077", "n7996689",
                  "n10787470", "n5938976", "n8559508"]


class FakeSynset:
    def __init__(self, name, offset):
        self._name, self._offset = name, offset

    def name(self):
        return self._name

    def pos(self):
        return "n"

    def offset(self):
        return self._offset


# wn.synset(f"{w}.n.01") in WordNet 3.0 for the fixture's words; "automobile.n.01" resolves to car.n.01
FAKE_WORDNET = {"image.n.01": FakeSynset("image.n.01", 5928118), "black.n.01": FakeSynset("black.n.01", 4960277),
                "dog.n.01": FakeSynset("dog.n.01", 2084071), "car.n.01": FakeSynset("car.n.01", 2958343),
                "automobile.n.01": FakeSynset("car.n.01", 2958343)}


def fake_lookup(name):
    if name not in FAKE_WORDNET:
        raise LookupError(f"no lemma {name}")  # nltk raises WordNetError
    return FAKE_WORDNET[name]


def fake_wordnet_lexicon(pos_tag=None):
    lemmas = {"cars": "car", "dogs": "dog", "images": "image"}  # WordNetLemmatizer().lemmatize (noun)
    return Lexicon(lambda w: lemmas.get(w, w), wordnet_synset_key(fake_lookup), pos_tag)


def vector(caption, lexicon, vocab_keys, nouns_only=False):
    vocab = {k: i for i, k in enumerate(vocab_keys)}
    return multi_hot([caption_to_synsets(caption, lexicon, nouns_only)], vocab)[0].int().tolist()


# --------------------------------------------------------------------------- the WordNet path (injected)
def test_official_fixture_wordnet_path():
    assert vector("An image of black dog.", fake_wordnet_lexicon(), OFFICIAL_VOCAB) == [1, 0, 1, 0, 0, 0, 0, 0, 0, 0]


def test_wordnet_synonym_with_another_head_gives_no_label():
    assert caption_to_synsets("automobile", fake_wordnet_lexicon()) == []  # car.n.01 != automobile.n.01


def test_wordnet_plural_is_lemmatised():
    assert caption_to_synsets("cars", fake_wordnet_lexicon()) == ["n2958343"]  # car.n.01


def test_pos_quirk_black_is_a_label_unless_nouns_only():
    assert caption_to_synsets("black", fake_wordnet_lexicon()) == ["n4960277"]
    tagger = lambda words: [(w, {"black": "JJ", "dog": "NN", "image": "NN"}.get(w, "DT")) for w in words]
    lex = fake_wordnet_lexicon(tagger)
    assert caption_to_synsets("An image of black dog.", lex, nouns_only=True) == ["n5928118", "n2084071"]
    assert vector("An image of black dog.", lex, OFFICIAL_VOCAB, nouns_only=True) == [1] + [0] * 9


def test_wordnet_mode_needs_wordnet_data_and_says_so():
    try:
        import nltk

        nltk.data.find("corpora/wordnet")
        pytest.skip("WordNet data is installed here; the missing-data message cannot be checked")
    except (ImportError, LookupError):
        pass
    with pytest.raises(RuntimeError, match="labels.mode=wordnet.*WordNet"):
        make_lexicon("wordnet")
    with pytest.raises(ValueError, match="labels.mode"):
        make_lexicon("synsets")


# --------------------------------------------------------------------------- the lemma path (default)
def test_official_fixture_lemma_analogue():
    vocab = ["image", "car", "black", "cat", "tree", "person", "sky", "water", "road", "building"]
    assert vector("An image of black dog.", lemma_lexicon(), vocab) == [1, 0, 1, 0, 0, 0, 0, 0, 0, 0]
    assert caption_to_synsets("An image of black dog.", lemma_lexicon()) == ["image", "black", "dog"]
    assert caption_to_synsets("cars", lemma_lexicon()) == ["car"]
    assert caption_to_synsets("black", lemma_lexicon()) == ["black"]  # the POS quirk
    assert caption_to_synsets("automobile", lemma_lexicon()) == ["automobile"]  # no synonym merging without WordNet
    assert vector("automobile", lemma_lexicon(), vocab) == [0] * 10


def test_scene_caption_labels():
    labels = caption_to_synsets("two digits: large red seven top left, small blue one bottom right", lemma_lexicon())
    assert labels == ["two", "digit", "large", "red", "seven", "top", "left", "small", "blue", "one", "bottom", "right"]


@pytest.mark.parametrize("word, lemma", [("digits", "digit"), ("boxes", "box"), ("puppies", "puppy"),
                                         ("churches", "church"), ("glass", "glass"), ("bus", "bus"),
                                         ("women", "woman"), ("dog", "dog"), ("its", "its")])
def test_lemmatize_noun(word, lemma):
    assert lemmatize_noun(word) == lemma


def test_caption_preprocessing_official_steps():
    assert caption_preprocessing("  A+photo%20of <b>Two</b>  DOGS\n") == "a photo of two dogs"


def test_vocabulary_threshold_order_and_ties():
    sets = [["dog", "cat", "dog"], ["cat", "sky"], ["sky", "dog"], ["cat"], ["tree"]]
    vocab, counts = build_vocabulary(sets, v_tau=2)
    assert vocab == {"cat": 0, "dog": 1, "sky": 2}  # cat 3 > dog 2 = sky 2 (tie by name); tree 1 < V_tau
    assert counts == {"cat": 3, "dog": 2, "sky": 2}  # a caption counts a label once
    assert multi_hot([["sky", "tree", "sky"]], vocab).tolist() == [[0.0, 0.0, 1.0]]
    with pytest.raises(ValueError, match="v_tau"):
        build_vocabulary(sets, v_tau=0)


# --------------------------------------------------------------------------- the loss
def test_bce_batch_mean_hand_computed():
    logits = torch.tensor([[0.0, 2.0, -1.0], [1.0, -3.0, 0.5]])
    targets = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    import math

    sp = lambda x: math.log1p(math.exp(x))  # softplus: -log sigmoid(-x)
    # BCE(z, y) = y * softplus(-z) + (1 - y) * softplus(z); summed over 2 x 3, divided by the batch (2)
    hand = (sp(-0.0) + sp(2.0) + sp(1.0) + sp(1.0) + sp(-3.0) + sp(-0.5)) / 2
    assert bce_batch_mean(logits, targets).item() == pytest.approx(hand, rel=1e-6)
    mean_reduction = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets).item()
    assert bce_batch_mean(logits, targets).item() == pytest.approx(mean_reduction * 3, rel=1e-6)  # x |V|, not x B


# --------------------------------------------------------------------------- run_catlip: resume (through run_clip)
class _Interrupt(Exception):
    pass


def test_run_catlip_resume_keeps_one_probe_per_budget(tmp_path, monkeypatch):
    """Stopped when step 8 begins (checkpoint 4, probes of steps 2 and 6 already in curve.json): the rerun
    resumes at 4 and records each budget's probe once, equal to the uninterrupted run's; without result.json
    a finished run is retrained from scratch: the CatLIP arm is common.clip_runs.run_clip with CatLIP's model,
    loss, targets and probes (tests/common/test_clip_runs.py tests the same for the CLIP arm)."""
    from tiny_scenes import tiny_scenes

    from common.config import ClipModelConfig, ClipTrainConfig
    from common.training import COMPLETE
    from papers.catlip import experiment

    train_set, probe, test = tiny_scenes()
    sets = [caption_to_synsets(c, lemma_lexicon()) for c in train_set.captions]
    targets = multi_hot(sets, build_vocabulary(sets, v_tau=1)[0])
    spec = ClipModelConfig(embed_dim=8, image_tower="cnn", cnn_widths=[4, 8], text_width=8, text_layers=1, text_heads=2,
                           context_length=32)
    t = ClipTrainConfig(samples=128, batch_size=16, lr=2e-3, warmup_steps=20, lr_schedule="cosine", weight_decay=1e-4,
                        seed=0, checkpoint_every=4, log_every=2)  # 8 steps
    kw = dict(seed=0, probe=probe, test=test, eval_samples=[32, 96])  # probes after steps 2 and 6
    real_run, names = experiment.run_clip, []
    monkeypatch.setattr(experiment, "run_clip", lambda name, *a, **k: names.append(name) or real_run(name, *a, **k))
    ref = experiment.run_catlip("c", train_set, targets, spec, t, run_dir=tmp_path / "ref", **kw)
    monkeypatch.undo()
    assert names == ["c"]  # the shared cached run, not a copy of it
    assert [p["samples_seen"] for p in ref["curve"]] == [32, 96] and ref["resumed_from"] is None
    assert set(ref) >= {"probe_digit", "probe_digit_head", "history"} and "zero_shot_mean" not in ref

    real_loss, calls = experiment.catlip_loss, [0]

    def stopped(*a):
        calls[0] += 1  # one micro-batch per step
        if calls[0] > 7:
            raise _Interrupt
        return real_loss(*a)

    monkeypatch.setattr(experiment, "catlip_loss", stopped)
    with pytest.raises(_Interrupt):
        experiment.run_catlip("c", train_set, targets, spec, t, run_dir=tmp_path / "run", **kw)
    monkeypatch.undo()
    folder = tmp_path / "run" / "c"
    assert [p["samples_seen"] for p in json.loads((folder / "curve.json").read_text())["points"]] == [32, 96]
    res = experiment.run_catlip("c", train_set, targets, spec, t, run_dir=tmp_path / "run", **kw)
    assert res["resumed_from"] == 4
    assert [p["samples_seen"] for p in res["curve"]] == [32, 96]  # the step-6 probe is not duplicated
    assert res["curve"] == ref["curve"] and res["probe_digit"] == ref["probe_digit"]
    assert res["history"] == ref["history"] and res["train_seconds"] > 0

    # finished, result.json lost: retrained from scratch, not resumed at step 8; its probes once each
    assert (folder / "checkpoints" / COMPLETE).is_file()
    (folder / "result.json").unlink()
    again = experiment.run_catlip("c", train_set, targets, spec, t, run_dir=tmp_path / "run", **kw)
    assert again["resumed_from"] is None and again["curve"] == ref["curve"]


# --------------------------------------------------------------------------- the tiny pipeline
@contextlib.contextmanager
def in_repo(root):
    """Run stage entry points in process inside `root` (its DVC root, MLflow store, no progress bars)."""
    saved, cwd = dict(os.environ), os.getcwd()
    os.environ.update({k: v for k, v in env_for(root).items() if k in ("DVC_ROOT", "MLFLOW_TRACKING_URI",
                                                                        "TQDM_DISABLE")})
    os.chdir(root)
    try:
        yield
    finally:
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """build_scenes -> experiment -> report on the tiny profile."""
    root = make_tiny_repo(tmp_path_factory.mktemp("catlip"))
    with in_repo(root):
        from common.stages import build_scenes
        from papers.catlip import experiment, report

        for stage in (build_scenes, experiment, report):
            stage.main(["tracking.enabled=false"])
    return root


def test_tiny_pipeline_outputs(tiny):
    out = tiny / "reports" / "catlip"
    res = json.loads((out / "results.json").read_text())
    main = [r for r in res["rows"] if r["stage"] == "main"]
    assert {(r["arm"], r["seed"]) for r in main} == {(a, s) for a in ("baseline", "method") for s in (0, 1)}
    for s in (0, 1):
        b, m = (next(r for r in main if r["arm"] == a and r["seed"] == s) for a in ("baseline", "method"))
        assert b["samples_seen"] == m["samples_seen"]  # same budget
        assert m["flops_per_sample"] < b["flops_per_sample"] and m["params"] < b["params"]
    vocab = json.loads((out / "vocabulary.json").read_text())
    assert vocab[0]["label"] == "digit" and res["labels"]["vocab_size"] == len(vocab)
    verdicts = json.loads((out / "verdicts.json").read_text())["verdicts"]
    assert {v["id"] for v in verdicts} == {"catlip-probe-comparable", "catlip-faster-step", "catlip-fewer-flops",
                                           "catlip-keeps-improving-with-epochs"}
    assert all((out / "figures" / f).is_file() for f in ("probe_vs_cost.png", "training_curves.png",
                                                         "probe_vs_epochs.png"))


def test_tiny_runs_are_cached(tiny):
    """A second experiment run reads every finished run back (same fingerprints, same numbers)."""
    out = tiny / "reports" / "catlip" / "results.json"
    before = json.loads(out.read_text())
    with in_repo(tiny):
        from papers.catlip import experiment

        experiment.main(["tracking.enabled=false"])
    after = json.loads(out.read_text())
    key = lambda rows: [(r["stage"], r.get("arm"), r["seed"], r.get("probe_digit"), r.get("train_seconds"))
                        for r in rows]
    assert key(after["rows"]) == key(before["rows"])


def test_full_profile_fails_clearly_without_data(tiny):
    from common.data import MissingDataError

    with in_repo(tiny):
        from papers.catlip import experiment

        with pytest.raises(MissingDataError, match="study.dataset"):
            experiment.main(["profile=full", "tracking.enabled=false"])
