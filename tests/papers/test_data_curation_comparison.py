"""The data-curation comparison page: each selector's setting by its own paper's rule (params override it, a missing
upstream output names its stage), the selectors are the papers' own functions, reused DFN students are recognised,
and a tiny end-to-end run of the stage's loop, its claim pairs and its report on tiny scenes (seconds)."""

import json
from types import SimpleNamespace as NS

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from common.config import ConfigError, MissingInputError, load_config
from common.scenes import DigitBank, Scenes, make_split
from papers.data_curation_comparison import evaluate as ev
from papers.data_curation_comparison.config import DataCurationComparisonConfig
from papers.qqt_data_filtering import method as qqt

NAME = "data_curation_comparison"


def cfg_with(**kw):
    base = dict(fractions=None, seeds=None, dfn_dirty_share=None, qqt_buckets=None, catlip=True)
    return NS(**{**base, **kw})


def papers_fixture(seeds=(0, 1)):
    """The fields of the five papers' configs the selection reads (values as in their params.yaml)."""
    law = NS(tau_times_p=True, sort_by_utility=False, normalizer=24.0)
    return {"dfn": NS(student=NS(keep_fraction=0.15, seeds=list(seeds), train=NS(samples=25600)),
                      filter=NS(dirty_shares=[0.0, 0.5, 0.9], seeds=list(seeds))),
            "scaling_down_clip": NS(quality=NS(compare_pct=40)),
            "qqt_data_filtering": NS(buckets=NS(size=3072, n_buckets=4), law=law),
            "ssl_data_curation": NS(curation=NS(tail_digits=[7, 8, 9]))}


def qqt_results(tmp_path, fits):
    (tmp_path / "qqt_data_filtering").mkdir(parents=True, exist_ok=True)
    (tmp_path / "qqt_data_filtering" / "results.json").write_text(json.dumps({"fits": fits}))
    return tmp_path


# Seed-0 and seed-1 laws as papers/qqt_data_filtering fitted them on the cpu profile (reports/qqt_data_filtering/
# results.json, rounded): at 25,600 samples its own mix_errors picks 2 buckets for seed 0 and 3 for seed 1.
FITS = [{"seed": 0, "bucket": i + 1, "a": 0.01, "d": 0.15, "b": b, "tau": t}
        for i, (b, t) in enumerate([(-0.63, 6.834), (-0.58, 7.558), (-0.445, 9.593), (-0.37, 10.0)])]


def test_null_params_take_each_papers_own_choice(tmp_path):
    fits = FITS + [{**f, "seed": 1, "b": f["b"] * 1.3} for f in FITS]
    s = ev.settings(cfg_with(), papers_fixture(), qqt_results(tmp_path, fits))
    assert s.fractions == [0.15, 0.4]  # DFN's keep_fraction and Scaling (Down) CLIP's Top 40%
    assert s.seeds == [0, 1] and s.dfn_dirty_share == 0.0 and s.tail_digits == [7, 8, 9]  # clean DFN, SSL's tail
    for seed in (0, 1):  # QQT: its own estimate_best_pool rule on that seed's laws at the student's budget
        f = [x for x in fits if x["seed"] == seed]
        want = qqt.best_pool_count(qqt.mix_errors(25600, 0.01, [x["b"] for x in f], [x["tau"] for x in f], 0.15, 3072,
                                                  True, False, 24.0))
        assert s.qqt_buckets[seed] == want
    assert s.qqt_buckets[0] == 2  # the value the stage uses on the cpu profile for seed 0


def test_an_override_in_params_wins(tmp_path):
    s = ev.settings(cfg_with(fractions=[0.4, 0.1, 0.1], seeds=[1], dfn_dirty_share=0.5, qqt_buckets=4),
                    papers_fixture(), tmp_path / "nowhere")  # no QQT results needed when qqt_buckets is set
    assert (s.fractions, s.seeds, s.dfn_dirty_share, s.qqt_buckets) == ([0.1, 0.4], [1], 0.5, {1: 4})
    with pytest.raises(ConfigError, match="dfn_dirty_share=0.3 is not one of papers/dfn"):
        ev.settings(cfg_with(dfn_dirty_share=0.3), papers_fixture(), tmp_path)
    with pytest.raises(ConfigError, match="qqt_buckets=5 exceeds"):
        ev.settings(cfg_with(qqt_buckets=5), papers_fixture(), tmp_path)
    with pytest.raises(ConfigError, match=r"seeds \[7\] have no DFN filter"):
        ev.settings(cfg_with(seeds=[7], qqt_buckets=1), papers_fixture(), tmp_path)


def test_a_missing_upstream_output_names_its_stage(tmp_path):
    with pytest.raises(MissingInputError, match="papers/qqt_data_filtering/dvc.yaml:experiment"):
        ev.settings(cfg_with(), papers_fixture(), tmp_path)
    with pytest.raises(ConfigError, match="no fitted laws for seed 1"):
        ev.settings(cfg_with(), papers_fixture(), qqt_results(tmp_path, FITS))


def test_the_committed_params_are_all_the_papers_choices():
    cfg = load_config(DataCurationComparisonConfig, paper=NAME)
    assert (cfg.fractions, cfg.seeds, cfg.dfn_dirty_share, cfg.qqt_buckets) == (None, None, None, None)
    papers = ev.paper_configs([])
    assert papers["dfn"].student.keep_fraction == 0.15 and papers["scaling_down_clip"].quality.compare_pct == 40


# --------------------------------------------------------------------------- selectors and rows on tiny scenes


def tiny_pool(n=200):
    """Tiny scenes from scikit-learn's 8x8 digits, with caption noise and a long tail over digits."""
    d = load_digits()
    bank = DigitBank(np.round(d.images * 255 / 16).astype(np.uint8), d.target)

    def split(n, seed, noise, probs, counts):
        c = make_split(bank, n, seed, noise, probs, counts)
        return Scenes(torch.from_numpy(np.stack(c["image"])), c["caption"], c["true_caption"], np.array(c["noise"]),
                      np.array(c["severity"]), np.array(c["count"]), c["digits"], c["colours"])

    tail = 30.0 ** (-np.arange(10) / 9)
    pool = split(n, 0, {"wrong_colour": 0.2, "wrong_digit": 0.2, "unrelated": 0.2}, tail / tail.sum(), [1, 1, 1])
    return pool, split(40, 1, {}, np.full(10, 0.1), [1.0]), split(40, 2, {}, np.full(10, 0.1), [2, 1, 1])


@pytest.fixture(scope="module")
def tiny():
    pool, probe, test = tiny_pool()
    rng = np.random.default_rng(0)
    clean = pool.clean.astype(float)
    inp = NS(pool=pool, probe=probe, test=test, teacher=clean + 0.3 * rng.random(len(pool)),
             features=rng.normal(size=(len(pool), 8)), dfn_rows=[], ssl_subsets={},
             dfn_scores={s: clean + rng.random(len(pool)) for s in (0, 1)})
    return inp


def test_selectors_are_the_papers_functions(tiny):
    from papers.dfn.method import keep_top_fraction
    from papers.scaling_down_clip.method import top_x_subset

    c = NS(n_clusters=[12, 4], sample_sizes=[1, 2], n_resamples=[1, 2], n_iters=[5, 5], resample_strategy="closest",
           sampling_strategy="r")
    levels = ev.kmeans_levels(tiny.features, c, 0)
    assert np.array_equal(ev.select("topx", 30, 0, tiny, levels, c), top_x_subset(tiny.teacher, 15.0))
    assert np.array_equal(ev.select("dfn", 30, 1, tiny, levels, c), keep_top_fraction(tiny.dfn_scores[1], 0.15))
    for arm in ev.SELECTORS:
        idx = ev.select(arm, 30, 0, tiny, levels, c)
        assert len(idx) == len(set(idx.tolist())) == 30
    assert np.array_equal(ev.select("random", 30, 0, tiny, levels, c), ev.select("random", 30, 0, tiny, levels, c))
    k = ev.kept(tiny.pool, np.arange(len(tiny.pool)), [7, 8, 9])
    assert k["clean_share"] == pytest.approx(0.4) and 0 < k["tail_share"] < 0.3


def test_dfn_students_are_reused_only_for_the_same_training_set():
    rows = [{"stage": "student", "data": "dfn_p000", "seed": 0, "n_train": 4500, "zero_shot_mean": 0.6},
            {"stage": "filter", "data": "dfn_p000", "seed": 0, "n_train": 4500}]
    assert ev.dfn_row(rows, "dfn_p000", 0, 4500) is rows[0]
    assert ev.dfn_row(rows, "dfn_p000", 0, 12000) is None and ev.dfn_row(rows, "dfn_p000", 1, 4500) is None


def test_tiny_end_to_end(tiny, tmp_path):
    """The stage's loop (students trained through common.clip_runs at the tiny profile's sizes), its claim pairs
    and the report, on 200 tiny scenes; the first student of seed 0 on the full pool comes from a DFN row."""
    from papers.data_curation_comparison import report

    papers = ev.paper_configs(["profile=tiny"])
    papers["ssl_data_curation"].curation.n_clusters = [12, 4]  # the tiny profile's 60 clusters need >= 60 points
    papers["ssl_data_curation"].curation.sample_sizes = [1, 2]
    papers["ssl_data_curation"].curation.n_resamples = [1, 2]
    papers["ssl_data_curation"].curation.n_iters = [5, 5]
    papers["ssl_data_curation"].curation.target_size = 40
    papers["dfn"].student.train.samples = 64
    cfg = load_config(DataCurationComparisonConfig, paper=NAME, overrides=[
        "profile=tiny", f"paths.runs={tmp_path / 'runs'}", f"paths.reports={tmp_path / 'reports'}",
        "tracking.enabled=false"])
    s = ev.Settings([0.15, 0.4], [0, 1], 0.0, {0: 1, 1: 2}, 30, [7, 8, 9])
    card = {"zero_shot_mean": 0.5, "zero_shot_digit": 0.1, "zero_shot_colour": 0.9, "zero_shot_count": 0.5,
            "linear_probe_digit": 0.2, "retrieval_i2t_r1": 0.3, "retrieval_t2i_r1": 0.5, "samples_seen": 64,
            "train_seconds": 1.0}
    tiny.dfn_rows = [{"stage": "student", "data": "unfiltered", "seed": 0, "n_train": 200, **card}]
    rows = ev.run(cfg, papers, s, tiny)
    arms = [r["arm"] for r in rows]
    assert arms.count("full") == 2 and arms.count("qqt") == 2 and arms.count("catlip_dfn") == 2
    assert {(r["arm"], r["fraction"]) for r in rows if r["arm"] in ev.SELECTORS} == {
        (a, f) for a in ev.SELECTORS for f in (0.15, 0.4)}
    full0 = [r for r in rows if r["arm"] == "full" and r["seed"] == 0][0]
    assert full0["source"] == "dfn" and full0["retrieval_r1"] == pytest.approx(0.4)
    assert [r["n_train"] for r in rows if r["arm"] == "qqt"] == [30, 60]  # p* buckets of S = 30
    assert all(r["source"] == NAME for r in rows if r["arm"] != "full")
    assert all("zero_shot_mean" not in r and 0 <= r["linear_probe_digit"] <= 1 for r in rows if "catlip" in r["arm"])
    pairs = ev.claim_pairs(rows, s)
    assert {p["comparison"] for p in pairs} == {"dfn_vs_random", "dfn_vs_topx", "kmeans_vs_topx", "topx_vs_full",
                                                  "qqt_vs_topx"}
    assert len([p for p in pairs if p["comparison"] == "topx_vs_full"]) == 4  # 2 seeds x (method, baseline)
    out = tmp_path / "reports" / NAME
    out.mkdir(parents=True)
    ev.write_pairs(out / "pairs.json", rows, [], unit="seed", more=pairs)
    res = {"fractions": s.fractions, "seeds": s.seeds, "dfn_dirty_share": 0.0, "qqt_buckets": {"0": 1, "1": 2},
           "bucket_size": 30, "tail_digits": [7, 8, 9], "pool_size": 200, "pool_clean_share": 0.4,
           "student_samples": 64, "student_batch": 32, "dfn_keep_fraction": 0.15, "topx_compare_pct": 40,
           "ssl_curation": {"n_clusters": [12, 4], "sample_sizes": [1, 2], "n_resamples": [1, 2],
                            "sampling_strategy": "r", "target_size": 40}, "catlip_v_tau": 2, "n_reused": 1, "n_trained_here": len(rows) - 1,
           "new_train_seconds": 1.0, "rows": rows, "eval_seconds": 1.0}
    (out / "results.json").write_text(json.dumps(res))
    report.main(["profile=tiny", f"paths.reports={tmp_path / 'reports'}", "tracking.enabled=false"])
    page = (out / "README.md").read_text()
    assert "| DFN filter | 0.15 |" in page and "QQT buckets (law's p*)" in page
    assert (out / "figures" / "quality_vs_kept_fraction.png").stat().st_size > 1000
    verdicts = json.loads((out / "verdicts.json").read_text())["verdicts"]
    assert [v["id"] for v in verdicts] == ["dfn-beats-no-filtering", "dfn-beats-teacher-top-x", "top-x-beats-all-data",
                                           "balanced-kmeans-raises-tail-share", "qqt-choice-beats-aggressive-filter"]
    assert all(v["n_units"] == 2 for v in verdicts)
