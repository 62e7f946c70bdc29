"""common/experiment.py: the real-vs-real floor (the metric's resolution) on a small prepared dataset.

A stub scorer records what it is given, so no metric classifier is needed.
"""

from types import SimpleNamespace

import pytest
import torch

from common.data import load_split, prepare
from common.experiment import BaseModelExperiment, real_floor, real_subset


class StubScorer:
    """Records each call; returns every metric `SampleScorer.score` returns, keyed with a backbone."""

    def __init__(self):
        self.calls = []

    def score(self, images, labels=None):
        self.calls.append((images.clone(), None if labels is None else labels.clone()))
        m = float(images.float().mean())
        return {"fid[stub]": m, "kid[stub]": m / 100, "precision[stub]": 0.8, "recall[stub]": 0.7,
                "class_acc[stub]": 1.0}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("floor") / "prepared"
    prepare("digits", resolution=8, num_heldout=200, seed=0, out_dir=out)
    return out


def _rows_of(images, x_train):
    """Index in the train split of each image (images are distinct enough at 8x8 to identify)."""
    flat = x_train.flatten(1)
    return [int(torch.nonzero((flat == im.flatten()).all(1)).flatten()[0]) for im in images]


def test_real_floor_scores_a_class_balanced_subset(data_dir):
    x_tr, y_tr = load_split(data_dir, "train")
    scorer = StubScorer()
    floors = real_floor(scorer, data_dir, 100, 10, seed=3)
    assert len(scorer.calls) == 1
    images, labels = scorer.calls[0]
    assert images.shape == (100, *x_tr.shape[1:]) and images.dtype == torch.uint8
    # the labels of a generated sample set, in its order: 0, 1, .., 9, 0, 1, ..
    assert torch.equal(labels, torch.arange(100) % 10)
    assert torch.equal(torch.bincount(labels, minlength=10), torch.full((10,), 10))
    # real training images with their own labels, none twice
    rows = _rows_of(images, x_tr)
    assert torch.equal(y_tr[rows], labels)
    assert len(set(rows)) == 100
    # only the distances are a resolution: precision, recall and class accuracy of real images are not
    assert set(floors) == {"fid[stub]", "kid[stub]"}
    assert floors["fid[stub]"] == pytest.approx(float(images.float().mean()))


def test_real_floor_deterministic_per_seed(data_dir):
    a, b, c = StubScorer(), StubScorer(), StubScorer()
    fa = real_floor(a, data_dir, 60, 10, seed=0)
    fb = real_floor(b, data_dir, 60, 10, seed=0)
    real_floor(c, data_dir, 60, 10, seed=1)
    assert fa == fb
    assert torch.equal(a.calls[0][0], b.calls[0][0]) and torch.equal(a.calls[0][1], b.calls[0][1])
    assert not torch.equal(a.calls[0][0], c.calls[0][0])  # another seed, other images
    assert torch.equal(a.calls[0][1], c.calls[0][1])  # same class balance


def test_real_subset_unconditional_is_a_uniform_draw(data_dir):
    x_tr, y_tr = load_split(data_dir, "train")
    x, y = real_subset(data_dir, 200, 0, seed=5)
    x2, _ = real_subset(data_dir, 200, 0, seed=5)
    assert x.shape[0] == 200 and torch.equal(x, x2)
    rows = _rows_of(x, x_tr)
    assert len(set(rows)) == 200 and torch.equal(y_tr[rows], y)
    assert len(set(y.tolist())) == 10  # the data's own class mix, not one class


def test_method_uses_the_experiments_scorer_data_and_classes(data_dir):
    exp = object.__new__(BaseModelExperiment)  # no model or classifier to load
    exp.scorer, exp.data_dir, exp.num_classes = StubScorer(), data_dir, 10
    floors = exp.real_floor(SimpleNamespace(seed=3), 100)
    ref = StubScorer()
    assert floors == real_floor(ref, data_dir, 100, 10, seed=3)
    assert torch.equal(exp.scorer.calls[0][0], ref.calls[0][0])
