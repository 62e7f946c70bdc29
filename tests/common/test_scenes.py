"""Captioned scenes: captions state the rendered objects, noise is exactly the kind it claims, splits are
deterministic and the pool's long tail and noise shares are what the config asks."""

from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest

from common.scenes import (
    COLOURS,
    DIGIT_WORDS,
    NOISE_KINDS,
    POSITIONS,
    SIZES,
    DigitBank,
    Obj,
    build_scenes,
    caption,
    corrupt,
    load_scenes,
    long_tail_probs,
    make_split,
    sample_objects,
)


@pytest.fixture(scope="module")
def bank():
    from sklearn.datasets import load_digits

    d = load_digits()
    return DigitBank(np.round(d.images * 255 / 16).astype(np.uint8), d.target)


def parse(cap):
    """Caption -> (count word, [(size, colour, digit, position)]): the inverse of `caption`."""
    head, body = cap.split(": ")
    objs = []
    for part in body.split(", "):
        w = part.split(" ")
        objs.append((w[0], w[1], DIGIT_WORDS.index(w[2]), POSITIONS.index(" ".join(w[3:]))))
    return head, objs


def test_caption_grammar_round_trips():
    objs = [Obj(7, "red", "large", 3), Obj(1, "blue", "small", 0)]
    cap = caption(objs)
    assert cap == "two digits: small blue one top left, large red seven bottom right"
    head, parsed = parse(cap)
    assert head == "two digits" and parsed == [("small", "blue", 1, 0), ("large", "red", 7, 3)]


def test_render_places_each_tinted_digit_in_its_quadrant(bank):
    rng = np.random.default_rng(0)
    img = bank.render([Obj(3, "red", "large", 0), Obj(5, "blue", "small", 3)], rng)
    assert img.shape == (3, 32, 32) and img.dtype == np.uint8
    tl, br = img[:, :16, :16], img[:, 16:, 16:]
    assert tl[0].max() > 200 and tl[2].max() < 60  # red: red channel only (up to the tint's 50)
    assert br[2].max() > 200 and br[0].max() < 80  # blue
    assert img[:, :16, 16:].max() == 0 and img[:, 16:, :16].max() == 0  # empty quadrants stay black


@pytest.mark.parametrize("kind", NOISE_KINDS)
def test_corruption_changes_exactly_what_its_kind_says(kind):
    rng = np.random.default_rng(1)
    probs = np.full(10, 0.1)
    for _ in range(50):
        objs = sorted(sample_objects(rng, probs, [1, 1, 1]), key=lambda o: o.position)
        claimed = sorted(corrupt(objs, kind, rng, probs, [1, 1, 1]), key=lambda o: o.position)
        if kind == "clean":
            assert claimed == objs
        elif kind == "unrelated":
            assert caption(claimed) != caption(objs)
        else:
            diff = [(a, b) for a, b in zip(objs, claimed) if a != b]
            assert len(claimed) == len(objs) and len(diff) == 1
            a, b = diff[0]
            field = "colour" if kind == "wrong_colour" else "digit"
            other = "digit" if field == "colour" else "colour"
            assert getattr(a, field) != getattr(b, field) and getattr(a, other) == getattr(b, other)
            assert (a.size, a.position) == (b.size, b.position)


def test_split_noise_shares_ground_truth_and_determinism(bank):
    noise = {"wrong_colour": 0.1, "wrong_digit": 0.2, "unrelated": 0.3}
    a = make_split(bank, 200, 5, noise, np.full(10, 0.1), [1, 1, 1])
    b = make_split(bank, 200, 5, noise, np.full(10, 0.1), [1, 1, 1])
    assert a["caption"] == b["caption"] and all((x == y).all() for x, y in zip(a["image"], b["image"]))
    assert Counter(a["noise"]) == {"clean": 80, "wrong_colour": 20, "wrong_digit": 40, "unrelated": 60}
    for cap, true, kind, digits, colours in zip(a["caption"], a["true_caption"], a["noise"], a["digits"],
                                                 a["colours"]):
        assert (cap == true) == (kind == "clean")
        _, objs = parse(true)
        assert [o[2] for o in objs] == digits and [o[1] for o in objs] == colours


def test_long_tail():
    p = long_tail_probs(30.0)
    assert p.sum() == pytest.approx(1.0) and p[0] / p[9] == pytest.approx(30.0)
    assert (np.diff(p) < 0).all()


def test_build_and_load_splits(tmp_path):
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.round(d.images * 255 / 16).astype(np.uint8)
    cfg = SimpleNamespace(heldout_digits=300, n_hq=40, n_pool=300, n_probe_train=20, n_test=30,
                          pool_noise={"wrong_colour": 0.1, "wrong_digit": 0.1, "unrelated": 0.2}, tail_ratio=30.0,
                          count_probs=[1, 1, 1], test_count_probs=[2, 1, 1], seed=0)
    build_scenes(x, d.target, cfg, tmp_path / "scenes")
    hq, pool, probe, test = (load_scenes(tmp_path / "scenes", s) for s in ("hq", "pool", "probe_train", "test"))
    assert (len(hq), len(pool), len(probe), len(test)) == (40, 300, 20, 30)
    assert hq.clean.all() and probe.clean.all() and test.clean.all() and not pool.clean.all()
    assert (probe.count == 1).all() and hq.images.shape[1:] == (3, 32, 32)
    assert pool.clean.mean() == pytest.approx(0.6)
    digits = Counter(v for ds in pool.digits for v in ds)
    assert digits[0] > 5 * digits[9]  # the pool's long tail
    sub = pool.subset([3, 1])
    assert sub.captions == [pool.captions[3], pool.captions[1]] and (sub.images[0] == pool.images[3]).all()


def test_missing_scenes_name_the_stage(tmp_path):
    from common.data import MissingDataError

    with pytest.raises(MissingDataError, match="build_scenes"):
        load_scenes(tmp_path / "nowhere", "hq")


def test_vocabulary_covers_every_word():
    from common.scenes import vocabulary_texts

    words = {w for t in vocabulary_texts() for w in t.replace(":", " ").replace(",", " ").split()}
    assert set(COLOURS) | set(SIZES) | set(DIGIT_WORDS) <= words
    assert {"top", "bottom", "left", "right", "digit", "digits"} <= words
