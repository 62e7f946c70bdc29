"""Data Filtering Networks (papers/dfn): the score, thresholding semantics, quality metrics, heuristic, config."""

from pathlib import Path

import numpy as np
import pytest
import torch
from tolerances import NEGATIVE_CONTROL, fp32_tolerance, network_roundings

from common.claims import evaluate_claims, load_claims
from papers.dfn import method

ROOT = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- thresholding (reference check)


def test_datacomp_fixture_keeps_three_ours_two():
    """DataComp's `get_threshold` (mlfoundations/datacomp, baselines/apply_filter.py) by hand:
    [.9, .8, .8, .7, .1] at fraction .4: n = int(5 * .4) = 2, threshold = descending score at position 2 = .8."""
    s = np.array([0.9, 0.8, 0.8, 0.7, 0.1])
    assert method.datacomp_threshold(s, 0.4) == pytest.approx(0.8)
    assert method.datacomp_keep(s, 0.4).tolist() == [0, 1, 2]  # n + 1 plus ties
    assert method.keep_top_fraction(s, 0.4).tolist() == [0, 1]  # exactly round(f N), ties by index


def test_datacomp_rule_is_n_plus_one_without_ties():
    s = np.random.default_rng(0).permutation(100).astype(float)
    assert len(method.datacomp_keep(s, 0.15)) == 16
    assert len(method.keep_top_fraction(s, 0.15)) == 15
    assert set(method.keep_top_fraction(s, 0.15)) == set(np.argsort(-s)[:15])


# --------------------------------------------------------------------------- the score


def test_scores_are_cosines_of_l2_normalised_embeddings():
    g = torch.Generator().manual_seed(0)
    img, txt = torch.randn(50, 8, generator=g), torch.randn(50, 8, generator=g)
    s = method.dfn_scores(img, txt)
    ref = torch.nn.functional.cosine_similarity(img, txt, dim=-1)
    assert torch.allclose(s, ref, atol=1e-6)
    scale = torch.rand(50, 1, generator=g) * 100 + 0.01  # per-pair norms must not change the ranking
    assert torch.allclose(method.dfn_scores(img * scale, txt / scale), s, atol=1e-5)
    assert torch.allclose(method.dfn_scores(img, img), torch.ones(50), atol=1e-6)
    assert s.abs().max() <= 1 + 1e-6


def test_score_pairs_matches_common_pair_scores():
    from common.clip import build_clip, build_tokenizer, pair_scores
    from common.config import ClipModelConfig
    from common.scenes import Scenes

    tok = build_tokenizer()
    spec = ClipModelConfig(cnn_widths=[4, 8], embed_dim=8, image_tower="cnn", text_width=8, text_layers=1, text_heads=2,
                           context_length=32)
    model = build_clip(spec, tok, seed=0).eval()
    imgs = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    caps = ["one digit: small red seven top left"] * 3 + ["two digits: large blue one top left, small red two top right"] * 3
    sc = Scenes(imgs, caps, caps, np.array(["clean"] * 6), np.zeros(6, int), np.ones(6, int), [[7]] * 6, [["red"]] * 6)
    ours = method.score_pairs(model, tok, imgs, caps, spec.context_length, batch=4)
    ref = pair_scores(model, tok, sc, spec.context_length).numpy()
    # batches of 4 + 2 vs 6 round differently inside the towers: one call of each, cosines <= 1, and the two
    # normalisations by |img| and |txt| pass each embedding's relative error on once each
    tol = fp32_tolerance(scale=1.0, steps=network_roundings(model), amplification=2)
    np.testing.assert_allclose(ours, ref, atol=tol, rtol=0)
    assert np.abs(ours - ref[::-1]).max() > NEGATIVE_CONTROL * tol  # pairs mixed up: far outside


# --------------------------------------------------------------------------- filtering quality


def test_roc_auc_matches_sklearn_with_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    y = rng.random(300) < 0.4
    s = np.round(rng.normal(size=300) + y, 1)  # many ties
    assert method.roc_auc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_filtering_quality_perfect_and_random():
    clean = np.arange(100) < 40
    q = method.filtering_quality(clean.astype(float), clean, 0.15, severity=np.where(clean, 0, 3))
    assert q["precision"] == 1.0 and q["auc"] == 1.0 and q["n_keep"] == 15
    assert q["recall"] == pytest.approx(15 / 40) and q["kept_share_severity_0"] == 1.0
    q = method.filtering_quality(-clean.astype(float), clean, 0.15)
    assert q["precision"] == 0.0 and q["auc"] == 0.0


def test_pollute_replaces_the_share():
    a = method.pollute(1000, 5000, 0.9, seed=3)
    assert len(a["hq"]) == 100 and len(a["pool"]) == 900 and len(set(a["pool"])) == 900
    b = method.pollute(1000, 5000, 0.9, seed=3)
    assert all((a[k] == b[k]).all() for k in a)
    assert len(method.pollute(10, 5, 0.0, seed=0)["hq"]) == 10
    with pytest.raises(ValueError, match="dirty_shares"):
        method.pollute(10, 5, 1.5, seed=0)


# --------------------------------------------------------------------------- heuristic


@pytest.fixture(scope="module")
def small_scenes():
    from sklearn.datasets import load_digits

    from common.scenes import DigitBank, make_split

    d = load_digits()
    imgs = np.round(d.images / 16.0 * 255).astype(np.uint8)
    bank = DigitBank(imgs, d.target)
    cols = make_split(bank, 400, 0, {"wrong_colour": 0.25, "wrong_digit": 0.25, "unrelated": 0.25},
                      np.full(10, 0.1), [1.0, 1.0, 1.0])
    return torch.from_numpy(np.stack(cols["image"])), cols["caption"], np.array(cols["severity"])


def test_heuristic_rejects_wrong_colours_and_unrelated_but_not_wrong_digits(small_scenes):
    images, captions, sev = small_scenes
    keep = np.zeros(len(captions), bool)
    keep[method.heuristic_keep(images, captions)] = True
    rate = [keep[sev == k].mean() for k in range(4)]
    assert rate[0] > 0.8  # clean pairs pass
    assert rate[1] < 0.1 and rate[3] < 0.2  # caption colours / count disagree with the image
    assert rate[2] > 0.7  # a rule on hues and blobs cannot see the digit
    colour_only = np.zeros(len(captions), bool)
    colour_only[method.heuristic_keep(images, captions, rules=["colour"])] = True
    assert colour_only.sum() >= keep.sum()
    with pytest.raises(ValueError, match="heuristic.rules"):
        method.heuristic_keep(images, captions, rules=["shape"])


def test_caption_parsing():
    cols, count = method.caption_colours_and_count(
        ["two digits: large red seven top left, small cyan one bottom right", "one digit: small red two top left"])
    from common.scenes import COLOURS

    names = list(COLOURS)
    assert count.tolist() == [2, 1]
    assert {names[i] for i in np.flatnonzero(cols[0])} == {"red", "cyan"}


# --------------------------------------------------------------------------- config, claims


def test_profiles_load_and_full_names_missing_data(tmp_path, monkeypatch):
    from common.config import load_config
    from common.data import MissingDataError
    from papers.dfn.config import DfnConfig
    from papers.dfn.experiment import check_sources

    monkeypatch.delenv("DVC_ROOT", raising=False)
    cpu = load_config(DfnConfig, paper="dfn", overrides=["profile=cpu"], root=ROOT)
    assert cpu.student.keep_fraction == 0.15 and 0.0 in cpu.filter.dirty_shares
    assert len(cpu.student.seeds) >= 2 and len(cpu.filter.seeds) >= 2
    load_config(DfnConfig, paper="dfn", overrides=["profile=tiny"], root=ROOT)
    full = load_config(DfnConfig, paper="dfn", overrides=["profile=full"], root=ROOT)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    with pytest.raises(MissingDataError, match="pool"):
        check_sources(full)


def test_claims_evaluate_on_claim_rows():
    from papers.dfn.experiment import claim_rows

    m = "zero_shot_mean"
    filters = [{"dirty_share": p, "seed": s, m: acc, "precision": prec}
               for s in (0, 1, 2) for p, acc, prec in ((0.0, 0.60 + 0.01 * s, 0.90), (0.9, 0.58, 0.50 + 0.01 * s))]
    students = [{"data": d, "seed": s, m: v + 0.005 * s}
                for s in (0, 1, 2) for d, v in (("unfiltered", 0.40), ("heuristic", 0.45), ("dfn_p000", 0.50),
                                                ("dfn_p090", 0.42))]
    rows = claim_rows(filters, students, m, [0.0, 0.9])
    verdicts = {v.id: v for v in evaluate_claims(load_claims(ROOT / "papers/dfn/claims.yaml"), rows)}
    assert set(verdicts) == {"dfn-beats-unfiltered", "dfn-beats-heuristic", "accuracy-does-not-predict-quality",
                             "accuracy-does-not-predict-student"}
    assert all(v.n_units == 3 for v in verdicts.values())
    assert verdicts["dfn-beats-unfiltered"].effect == pytest.approx(0.10)
    assert verdicts["accuracy-does-not-predict-quality"].verdict == "reproduced"
