"""run_clip: a finished run is read back instead of retrained, a different subset retrains, intermediate
score cards land at the requested budgets; top_fraction keeps exactly n with a fixed tie rule."""

import numpy as np
import pytest

from common import clip
from common.clip_runs import run_clip, subset_digest, top_fraction
from common.config import ClipModelConfig, ClipTrainConfig
from common.scenes import DigitBank, Scenes, make_split


@pytest.fixture(scope="module")
def scenes():
    from sklearn.datasets import load_digits
    import torch

    d = load_digits()
    bank = DigitBank(np.round(d.images * 255 / 16).astype(np.uint8), d.target)

    def split(n, seed, counts):
        c = make_split(bank, n, seed, {}, np.full(10, 0.1), counts)
        return Scenes(torch.from_numpy(np.stack(c["image"])), c["caption"], c["true_caption"], np.array(c["noise"]),
                      np.array(c["severity"]), np.array(c["count"]), c["digits"], c["colours"])

    return split(64, 0, [1, 1, 1]), split(40, 1, [1.0]), split(40, 2, [2, 1, 1])


def test_run_is_cached_and_curve_recorded(scenes, tmp_path):
    train, probe, test = scenes
    spec = ClipModelConfig(embed_dim=8, cnn_widths=[4, 8], text_width=8, text_layers=1, text_heads=2)
    t = ClipTrainConfig(samples=128, batch_size=16, checkpoint_every=4, log_every=2)
    tok = clip.build_tokenizer()
    kw = dict(spec=spec, t=t, seed=0, run_dir=tmp_path, tok=tok, probe=probe, test=test)
    a = run_clip("a", train, eval_samples=[32, 96], **kw)
    assert a["samples_seen"] == 128 and a["n_train"] == 64
    assert [p["samples_seen"] for p in a["curve"]] == [32, 96]
    assert 0.0 <= a["zero_shot_digit"] <= 1.0 and "linear_probe_digit" in a["curve"][0]
    again = run_clip("a", train, eval_samples=[32, 96], **kw)
    assert again == a  # read back: same train_seconds, nothing retrained
    other = run_clip("a", train.subset(np.arange(32)), eval_samples=[32, 96], **kw)
    assert other["fingerprint"] != a["fingerprint"] and other["n_train"] == 32
    assert subset_digest(train) != subset_digest(train.subset(np.arange(32)))


def test_top_fraction():
    s = np.array([0.9, 0.8, 0.8, 0.7, 0.1])
    assert top_fraction(s, 0.4).tolist() == [0, 1]  # exactly round(0.4 * 5) = 2; the tie at 0.8 -> lower index
    assert top_fraction(s, 1.0).tolist() == [0, 1, 2, 3, 4] and top_fraction(s, 0.0).tolist() == []
    rng = np.random.default_rng(0)
    x = rng.normal(size=1000)
    keep = top_fraction(x, 0.15)
    assert len(keep) == 150 and x[keep].min() >= np.sort(x)[-150]
