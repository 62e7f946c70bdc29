"""New knowledge and hallucinations (Gekhman et al., 2024): SliCK against hand-computed P_correct,
the exact-match normaliser, the study's fine-tuning sets, Eq. 1 on synthetic data, and the tiny
pipeline (build_knowledge -> pretrain_lm -> categorize -> finetune -> report) in a temporary copy."""

import json

import numpy as np
import pytest
from tinyrepo import inside, make_tiny_repo

from common.claims import LABELS
from papers.new_knowledge.method import (
    HIGHLY_KNOWN,
    MAYBE_KNOWN,
    UNKNOWN,
    WEAKLY_KNOWN,
    early_stop_epoch,
    exact_match,
    exemplar_sets,
    few_shot_prompt,
    fit_linear_model,
    normalize_answer,
    p_correct,
    sample_hits,
    slick_category,
    unknown_share_variants,
)


# --------------------------------------------------------------------------- SliCK (Fig. 2)
def _category(n_greedy_correct: int, n_sample_correct: int, n_prompts: int = 10, n_samples: int = 16) -> str:
    """A question whose 10 greedy answers have `n_greedy_correct` hits and 160 samples `n_sample_correct`."""
    greedy = [True] * n_greedy_correct + [False] * (n_prompts - n_greedy_correct)
    hits = [0] * n_prompts
    for i in range(n_sample_correct):
        hits[i % n_prompts] += 1
    return slick_category(*p_correct(greedy, hits, n_samples))


@pytest.mark.parametrize("greedy, samples, expected", [
    (10, 160, HIGHLY_KNOWN), (10, 0, HIGHLY_KNOWN),  # P(T=0) = 1, whatever the samples say
    (3, 40, MAYBE_KNOWN), (1, 0, MAYBE_KNOWN), (9, 160, MAYBE_KNOWN),  # 0 < P(T=0) < 1
    (0, 1, WEAKLY_KNOWN), (0, 150, WEAKLY_KNOWN),  # greedy never, sampling sometimes
    (0, 0, UNKNOWN),
])
def test_slick_categories_from_the_notes(greedy, samples, expected):
    assert _category(greedy, samples) == expected


def test_p_correct_hand_computed():
    pg, ps = p_correct([True, False, True, False, False, False, False, False, False, True], [16, 0, 3] + [0] * 7, 16)
    assert pg == pytest.approx(0.3) and ps == pytest.approx(19 / 160)
    assert slick_category(pg, ps) == MAYBE_KNOWN
    assert slick_category(0.0, 1 / 160) == WEAKLY_KNOWN and slick_category(0.0, 0.0) == UNKNOWN


def test_sample_hits_is_binomial():
    rng = np.random.default_rng(0)
    assert sample_hits(np.zeros(5), 16, rng).tolist() == [0] * 5
    assert sample_hits(np.ones(5), 16, rng).tolist() == [16] * 5
    h = sample_hits(np.full(20000, 0.25), 16, rng)
    assert h.mean() == pytest.approx(4.0, abs=0.05) and h.var() == pytest.approx(3.0, abs=0.1)


# --------------------------------------------------------------------------- exact match
@pytest.mark.parametrize("a, b, same", [
    ("Paris", "paris", True), ("The Valley", "valley", True), ("St. John's", "St . John ' s", True),
    ("Port of Spain", "Port-of-Spain", True), ("  Buenos   Aires ", "Buenos Aires", True), ("an Euro", "euro", True),
    ("Paris", "Paris, France", False), ("33", "330", False), ("Niger", "Nigeria", False), ("", "Paris", False),
])
def test_exact_match_normaliser(a, b, same):
    assert exact_match(a, b) is same


def test_normalize_answer_values():
    assert normalize_answer("The  Capital: A.B.") == "capital b"  # punctuation -> space, articles dropped
    assert normalize_answer("Côte d'Ivoire") == "côte d ivoire"


def test_few_shot_prompt_format_and_exemplars():
    pool = [(f"q{i}?", f"a{i}") for i in range(6)]
    sets = exemplar_sets(pool, 10, 4, np.random.default_rng(0))
    assert len(sets) == 10 and all(len(s) == 4 and len(set(s)) == 4 for s in sets)
    assert sets == exemplar_sets(pool, 10, 4, np.random.default_rng(0))
    assert few_shot_prompt(pool[:2], "Where?") == "Q: q0? A: a0\nQ: q1? A: a1\nQ: Where? A:"
    assert len(exemplar_sets(pool[:2], 3, 4, np.random.default_rng(0))[0]) == 2  # small pools: all of them


# --------------------------------------------------------------------------- the study design
def _pool():
    cats, rels = {}, {}
    layout = {"capital": (30, 12), "currency": (8, 20), "continent": (25, 0)}  # (#Known, #Unknown)
    for rel, (k, u) in layout.items():
        for i in range(k):
            cats[f"{rel}:k{i}"] = [HIGHLY_KNOWN, MAYBE_KNOWN, WEAKLY_KNOWN][i % 3]
            rels[f"{rel}:k{i}"] = rel
        for i in range(u):
            cats[f"{rel}:u{i}"], rels[f"{rel}:u{i}"] = UNKNOWN, rel
    return cats, rels


def test_unknown_share_variants_fixed_size_per_relation():
    cats, rels = _pool()
    shares = [0.0, 0.25, 0.5, 0.75, 1.0]
    variants, sizes = unknown_share_variants(cats, rels, shares, seed=0)
    assert sizes == {"capital": 12, "currency": 8, "continent": 0}  # min(#Known, #Unknown)
    for s, ids in variants.items():
        assert len(ids) == 20 and len(set(ids)) == 20  # |D| fixed
        for rel, n in sizes.items():
            unk = sum(1 for i in ids if rels[i] == rel and cats[i] == UNKNOWN)
            assert unk == int(np.floor(s * n + 0.5))
            assert sum(1 for i in ids if rels[i] == rel) == n
    # nested: a higher share only swaps Known examples for Unknown ones
    for a, b in zip(shares, shares[1:]):
        unk_a = {i for i in variants[a] if cats[i] == UNKNOWN}
        unk_b = {i for i in variants[b] if cats[i] == UNKNOWN}
        kn_a = {i for i in variants[a] if cats[i] != UNKNOWN}
        kn_b = {i for i in variants[b] if cats[i] != UNKNOWN}
        assert unk_a <= unk_b and kn_b <= kn_a
    assert variants == unknown_share_variants(cats, rels, shares, seed=0)[0]
    assert variants[0.5] != unknown_share_variants(cats, rels, shares, seed=1)[0][0.5]
    capped, sizes = unknown_share_variants(cats, rels, shares, seed=0, cap_per_relation=5)
    assert sizes["capital"] == 5 and len(capped[1.0]) == 10


def test_early_stop_is_the_first_best_dev_epoch():
    assert early_stop_epoch([10.0, 30.0, 30.0, 20.0], [1, 2, 3, 4]) == 2


def test_linear_model_recovers_planted_coefficients():
    """Eq. 1 on synthetic epochs: acc = 36.9 + 7.3 kn - 8.3 unk (+ small noise) -> the paper's betas back."""
    rng = np.random.default_rng(0)
    kn = rng.uniform(0, 1, 200)
    unk = rng.uniform(0, 1, 200) * (1 - kn)
    acc = 36.9 + 7.3 * kn - 8.3 * unk + rng.normal(0, 0.05, 200)
    fit = fit_linear_model(kn, unk, acc)
    assert fit["beta_0"] == pytest.approx(36.9, abs=0.05)
    assert fit["beta_kn"] == pytest.approx(7.3, abs=0.05)
    assert fit["beta_unk"] == pytest.approx(-8.3, abs=0.05)
    assert fit["r2"] > 0.999
    exact = fit_linear_model([0, 1, 0, 1], [0, 0, 1, 1], [1.0, 3.0, 0.0, 2.0])  # 1 + 2 kn - 1 unk, hand-solved
    assert [exact[k] for k in ("beta_0", "beta_kn", "beta_unk", "r2")] == pytest.approx([1, 2, -1, 1])


# --------------------------------------------------------------------------- the tiny pipeline
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """build_knowledge -> pretrain_lm -> categorize -> finetune -> report, in process, on the tiny profile."""
    root = make_tiny_repo(tmp_path_factory.mktemp("new_knowledge"))
    with inside(root):
        from common.stages import build_knowledge, pretrain_lm
        from papers.new_knowledge import categorize, finetune, report

        for stage in (build_knowledge, pretrain_lm, categorize, finetune, report):
            stage.main(["tracking.enabled=false"])
    return root


def test_tiny_pipeline_outputs(tiny):
    out = tiny / "reports" / "new_knowledge"
    slick = json.loads((out / "slick.json").read_text())
    facts = json.loads((tiny / "metrics" / "knowledge.json").read_text())["facts"]
    assert sum(slick["counts"]["train"].values()) == facts["train"]
    assert sum(slick["counts"]["test"].values()) == facts["test"]
    assert slick["inferences"] == slick["forward_passes"] * (1 + 4)  # tiny: 3 prompts x (1 greedy + 4 samples)
    # never-stated facts are (almost all) Unknown; frequently stated ones mostly not
    f0, f24 = slick["by_frequency"]["0"], slick["by_frequency"]["24"]
    assert f0[UNKNOWN] / sum(f0.values()) > 0.8 and f24[UNKNOWN] / sum(f24.values()) < 0.5
    res = json.loads((out / "results.json").read_text())
    assert len(res["runs"]) == 3 * 3  # shares [0, .5, 1] x seeds [0, 1, 2]
    for r in res["runs"]:
        assert [c["epoch"] for c in r["curve"]] == [0, 1, 2, 3]
        assert 1 <= r["early_stop_epoch"] <= 3
    sizes = {r["size"] for r in res["runs"]}
    assert len(sizes) == 1  # |D| fixed across shares and seeds
    assert {r["n_unknown"] for r in res["runs"] if r["share"] == 0.0} == {0}
    assert {r["n_unknown"] for r in res["runs"] if r["share"] == 1.0} == sizes
    verdicts = json.loads((out / "verdicts.json").read_text())["verdicts"]
    assert [v["id"] for v in verdicts] == ["unknown-fitted-slower", "unknown-hurts-at-convergence",
                                           "early-stop-mitigates", "linear-model-beta-unk-negative",
                                           "linear-model-beta-kn-positive"]
    assert all(v["n_units"] == 3 and v["verdict"] in LABELS
               for v in verdicts)
    for fig in ("slick_by_frequency.png", "train_acc_by_category.png", "test_acc_vs_unknown.png",
                "test_acc_over_epochs.png", "linear_model.png"):
        assert (out / "figures" / fig).stat().st_size > 1000
    readme = (out / "README.md").read_text()
    assert "HighlyKnown" in readme and "unknown-fitted-slower" in readme


def test_tiny_finetune_resumes_run_by_run(tiny, monkeypatch):
    """A second finetune reuses every finished run (curve.json with the same fingerprint) and writes the same results."""
    out = tiny / "reports" / "new_knowledge" / "results.json"
    before = json.loads(out.read_text())
    with inside(tiny):
        from papers.new_knowledge import finetune

        def no_training(*args, **kwargs):
            raise AssertionError("a finished run was trained again")

        monkeypatch.setattr(finetune, "train", no_training)  # read back, not retrained (no wall-clock limit)
        finetune.main(["tracking.enabled=false"])
    after = json.loads(out.read_text())
    assert after["runs"] == before["runs"] and after["rows"] == before["rows"]


def test_teacher_forced_and_decode_estimators_agree(tiny):
    """On the tiny knowledge LM: the greedy hits of the shortcut equal literal greedy decoding + exact match,
    and the sample hit rates agree within sampling noise."""
    from types import SimpleNamespace

    from common.knowledge import load_knowledge_base
    from common.lm import load_lm
    from papers.new_knowledge.categorize import per_prompt_hits

    model, tok, _ = load_lm(tiny / "models" / "knowledge_lm")
    kb = load_knowledge_base(tiny / "data" / "knowledge" / "facts")
    pool = [(r["question"], r["object"]) for r in kb["dev"] if r["relation"] == "continent"]
    rows = [r for r in kb["train"] + kb["test"] if r["relation"] in ("continent", "capital")]
    prompts = [few_shot_prompt(pool[:2], r["question"]) for r in rows]
    answers = [r["object"] for r in rows]
    s = SimpleNamespace(estimator="teacher_forced", temperature=0.5, top_k=10, n_samples=200, batch_size=64,
                        max_new_tokens=8)
    g_tf, h_tf = per_prompt_hits(model, tok, prompts, answers, s, np.random.default_rng(0))
    s.estimator = "decode"
    g_dec, h_dec = per_prompt_hits(model, tok, prompts, answers, s, np.random.default_rng(0))
    assert g_tf.tolist() == g_dec.tolist() and 0 < g_tf.sum() < len(rows)
    assert abs(h_tf.sum() - h_dec.sum()) < 4 * np.sqrt(h_tf.sum() + 1) + 5
    for a, b in zip(h_tf, h_dec):  # per prompt: two Binomial(200, p) draws
        p = (a + b) / 400
        assert abs(int(a) - int(b)) <= 5 * np.sqrt(2 * 200 * p * (1 - p)) + 2
    s.estimator = "nope"
    with pytest.raises(ValueError, match="slick.estimator"):
        per_prompt_hits(model, tok, prompts[:1], answers[:1], s, np.random.default_rng(0))
