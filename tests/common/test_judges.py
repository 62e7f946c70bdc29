"""The judges of common/judges.py: the Bradley-Terry loss against its closed form, the oracle on hand-made
scenes (synonyms included), the pixel reader on rendered scenes, preference pairs, and MiniLM offline."""

import math

import numpy as np
import pytest
import torch

from common.judges import (
    REJECT_KINDS,
    MiniLMJudge,
    OracleJudge,
    agreement,
    bradley_terry_loss,
    preference_pairs,
    read_objects,
    rejected_objects,
)
from common.prompts import parse_prompt
from common.scenes import DigitBank, Obj, caption


def test_bradley_terry_loss_equals_the_closed_form():
    s_c, s_r = torch.tensor([2.0, -1.0, 0.5]), torch.tensor([1.0, 1.0, 0.5])
    closed = np.mean([-math.log(1 / (1 + math.exp(-(c - r)))) for c, r in zip(s_c.tolist(), s_r.tolist())])
    assert abs(bradley_terry_loss(s_c, s_r).item() - closed) < 1e-6
    assert abs(bradley_terry_loss(torch.tensor([0.0]), torch.tensor([0.0])).item() - math.log(2)) < 1e-7


SCENE = [Obj(7, "red", "large", 0), Obj(1, "blue", "small", 3)]


@pytest.mark.parametrize("prompt,expected", [
    (caption(SCENE), 1.0),
    ("couple numerals: big crimson sieben upper leftmost, tiny azure uno lower east", 1.0),  # synonyms
    ("two digits: large red seven top left, small green one bottom right", 8 / 9),  # one colour wrong (9 checks)
    ("one digit: large red seven top left", 4 / 5),  # count wrong, the stated object right
    ("two digits: large red seven top right, small blue one bottom right", 5 / 9),  # nothing top right: 4 fail
    ("red seven", 1.0),  # partial prompt: position-free object matched in reading order
    ("", 1.0),  # states nothing
])
def test_oracle_agreement_on_hand_made_scenes(prompt, expected):
    assert abs(agreement(parse_prompt(prompt), SCENE) - expected) < 1e-9
    assert abs(OracleJudge()(torch.zeros(1, 3, 32, 32), [prompt], [SCENE]).item() - expected) < 1e-6


@pytest.fixture(scope="module")
def bank():
    from sklearn.datasets import load_digits

    d = load_digits()
    return DigitBank(np.round(d.images * 255 / 16).astype(np.uint8), d.target)


def test_reader_recovers_colour_size_position_of_rendered_scenes(bank):
    rng = np.random.default_rng(0)
    scenes = [[Obj(3, "green", "large", 1)], [Obj(0, "magenta", "small", 2), Obj(5, "yellow", "large", 3)],
              [Obj(2, "cyan", "small", 0), Obj(8, "red", "small", 1), Obj(9, "blue", "large", 2)]]
    images = torch.from_numpy(np.stack([bank.render(s, rng) for s in scenes]))
    read = read_objects(images)
    for truth, got in zip(scenes, read):
        assert [(o.colour, o.size, o.position) for o in got] == [(o.colour, o.size, o.position) for o in truth]
        assert all(o.digit == -1 for o in got)  # no classifier: digits unread


def test_preference_pairs_differ_in_one_attribute(bank):
    rng = np.random.default_rng(1)
    objs = [Obj(4, "red", "small", 0), Obj(6, "blue", "large", 2)]
    for kind in ("digit", "colour", "position"):
        bad = rejected_objects(objs, kind, rng)
        assert len(bad) == 2 and sum(a != b for a, b in zip(objs, bad)) == 1
    assert len(rejected_objects(objs, "count", rng)) in (1, 3)
    pairs = preference_pairs(bank, 10, seed=0)
    assert pairs["kind"] == list(REJECT_KINDS) * 2 and pairs["chosen"].shape == (10, 3, 32, 32)
    oracle = OracleJudge()
    s_c = oracle(pairs["chosen"], pairs["prompt"], pairs["chosen_truth"])
    s_r = oracle(pairs["rejected"], pairs["prompt"], pairs["rejected_truth"])
    assert (s_c == 1).all() and ((s_r < 1) == torch.tensor([k != "degraded" for k in pairs["kind"]])).all()


def test_minilm_judge_offline():
    import os

    os.environ["HF_HUB_OFFLINE"] = "1"
    judge = MiniLMJudge()
    truth = [SCENE, SCENE]
    s = judge(torch.zeros(2, 3, 32, 32), [caption(SCENE), "one digit: small cyan zero bottom left"], truth)
    assert abs(s[0].item() - 1.0) < 1e-4 and s[1] < s[0]
    with pytest.raises(ValueError, match="rendered scenes"):
        judge(torch.zeros(1, 3, 32, 32), ["x"])
