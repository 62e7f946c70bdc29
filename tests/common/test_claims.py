"""common/claims.py: claims.yaml validation and the verdict rules."""

from pathlib import Path

import numpy as np
import pytest

from common import stats
from common.claims import (
    AT_CEILING,
    BY_DESIGN,
    INCONCLUSIVE,
    NOT_REPRODUCED,
    REPRODUCED,
    counts,
    evaluate_claims,
    load_claims,
    verdicts_to_json,
)

FID = "fid[mnist-classifier]"


def _claim(**test):
    return {"id": "c", "source": "Table 1", "paper": {"baseline": 10.0, "method": 8.0, "metric": "FID"},
            "test": {"metric": "fid", "compare": "method < baseline", **test}}


def _pairs(baseline, method, metric=FID, **extra):
    rows = []
    for seed, (b, m) in enumerate(zip(baseline, method)):
        rows.append({"seed": seed, "arm": "baseline", metric: b, **extra})
        rows.append({"seed": seed, "arm": "method", metric: m, **extra})
    return rows


def _one(claim, rows):
    (v,) = evaluate_claims([claim], rows)
    return v


def test_clear_improvement_reproduced():
    v = _one(_claim(), _pairs([10.0, 10.2, 9.9], [8.0, 8.1, 7.9]))
    assert v.verdict == REPRODUCED
    assert v.effect == pytest.approx((2.0 + 2.1 + 2.0) / 3)  # mean of (baseline - method)
    assert v.ci[0] > 0 and v.n_units == 3 and v.unit == "seed"
    assert v.detail["pairs"][0] == {"unit": 0, "baseline": 10.0, "method": 8.0, "inner": 1}


def test_clear_degradation_not_reproduced():
    v = _one(_claim(), _pairs([10.0, 10.2, 9.9], [12.0, 12.1, 11.8]))
    assert v.verdict == NOT_REPRODUCED
    assert v.effect < 0 and v.ci[1] < 0


def test_noisy_straddling_inconclusive():
    v = _one(_claim(), _pairs([10.0, 10.0, 10.0], [8.0, 12.0, 9.5]))
    assert v.verdict == INCONCLUSIVE
    assert v.ci[0] < 0 < v.ci[1]


def test_greater_is_better():
    claim = _claim(compare="method > baseline", metric="precision")
    rows = _pairs([0.5, 0.52, 0.51], [0.6, 0.61, 0.62], metric="precision[mnist-classifier]")
    assert _one(claim, rows).verdict == REPRODUCED
    assert _one(_claim(metric="precision"), rows).verdict == NOT_REPRODUCED  # the other direction


def test_min_effect_is_compared_with_the_interval_not_the_mean():
    rows = _pairs([10.0, 10.1, 9.9], [9.5, 9.55, 9.4])  # effect ~0.5, clearly > 0
    assert _one(_claim(min_effect=0.3), rows).verdict == REPRODUCED
    v = _one(_claim(min_effect=1.0), rows)
    assert v.verdict == NOT_REPRODUCED and "minimum effect" in v.reason  # interval entirely below 1
    # interval straddles the minimum effect: the mean clears it, the lower bound does not
    rows = _pairs([10.0, 10.0, 10.0], [9.4, 9.3, 9.2])  # effects 0.6, 0.7, 0.8: interval ~[0.45, 0.95]
    v = _one(_claim(min_effect=0.5), rows)
    assert v.ci[0] < 0.5 <= v.effect
    assert v.verdict == INCONCLUSIVE
    assert _one(_claim(min_effect=0.4), rows).verdict == REPRODUCED


def test_negative_min_effect_is_a_non_inferiority_margin():
    """'keeps precision within 0.05': method > baseline - 0.05 on the interval."""
    claim = _claim(compare="method > baseline", metric="precision", min_effect=-0.05)
    rows = _pairs([0.90, 0.91, 0.92], [0.89, 0.905, 0.91], metric="precision[mnist-classifier]")
    assert _one(claim, rows).verdict == REPRODUCED
    worse = _pairs([0.90, 0.91, 0.92], [0.80, 0.82, 0.81], metric="precision[mnist-classifier]")
    v = _one(claim, worse)
    assert v.verdict == NOT_REPRODUCED and "opposite" in v.reason


def test_relative_effect():
    rows = _pairs([100.0, 101.0, 99.0], [99.0, 100.0, 98.0])  # 1 FID point out of ~100
    v = _one(_claim(relative=True), rows)
    assert v.effect == pytest.approx(1.0 / 3 * (1 / 100 + 1 / 101 + 1 / 99))
    assert v.detail["relative"] is True
    assert _one(_claim(relative=True, min_effect=0.05), rows).verdict == NOT_REPRODUCED  # below the minimum
    assert _one(_claim(relative=False, min_effect=0.05), rows).verdict == REPRODUCED


def test_where_filter_and_unpaired_seeds():
    rows = _pairs([10.0, 10.0, 10.0], [8.0, 8.1, 7.9], nfe=20) + _pairs([10.0, 10.0, 10.0], [12.0, 12.0, 12.0], nfe=50)
    assert _one(_claim(where={"nfe": 20}), rows).verdict == REPRODUCED
    assert _one(_claim(where={"nfe": 50}), rows).verdict == NOT_REPRODUCED
    # a seed with only one arm is ignored; one paired seed is not enough for an interval
    v = _one(_claim(), [{"seed": 0, "arm": "baseline", FID: 10.0}, {"seed": 0, "arm": "method", FID: 8.0},
                        {"seed": 1, "arm": "baseline", FID: 10.0}])
    assert v.n_units == 1 and v.verdict == INCONCLUSIVE


def test_where_matching_nothing_is_an_error_naming_claim_and_file(tmp_path):
    p = tmp_path / "claims.yaml"
    p.write_text(GOOD)
    (claim,) = load_claims(p)
    with pytest.raises(ValueError, match=r"claims.yaml: claim 'a'.*matches no results row"):
        evaluate_claims([claim], _pairs([10.0, 10.0, 10.0], [8.0, 8.0, 8.0], nfe=50))


def test_two_units_are_too_few_even_when_both_clearly_differ():
    v = _one(_claim(), _pairs([10.0, 10.2], [8.0, 8.1]))
    assert v.verdict == INCONCLUSIVE and v.reason.startswith("too few units (2")


def test_nested_units_average_inner_seeds_first():
    """2 training seeds x 2 sampling seeds are 2 replication units, not 4."""
    rows = []
    for train_seed, shift in ((0, 0.0), (1, 3.0)):  # the training seed moves both arms together
        for sample_seed, noise in ((1, 0.1), (2, -0.1)):
            rows.append({"seed": f"{train_seed}/{sample_seed}", "train_seed": train_seed, "arm": "baseline",
                         FID: 10.0 + shift + noise})
            rows.append({"seed": f"{train_seed}/{sample_seed}", "train_seed": train_seed, "arm": "method",
                         FID: 12.0 + shift + noise})
    flat = _one(_claim(), rows)  # wrong unit: 4 cells counted as independent
    nested = _one(_claim(unit="train_seed"), rows)
    assert flat.n_units == 4 and flat.verdict == NOT_REPRODUCED
    assert nested.n_units == 2 and nested.verdict == INCONCLUSIVE and "too few units" in nested.reason
    assert nested.detail["pairs"][1] == {"unit": 1, "baseline": 13.0, "method": 15.0, "inner": 2}
    with pytest.raises(KeyError, match="train_seed"):
        _one(_claim(unit="train_seed"), _pairs([1.0, 1.0, 1.0], [0.5, 0.5, 0.5]))


def test_bad_compare_rejected():
    with pytest.raises(ValueError, match="compare"):
        _one(_claim(compare="method << baseline"), _pairs([1.0, 1.0], [0.5, 0.5]))


def test_metric_lookup_with_and_without_backbone():
    rows = _pairs([10.0, 10.2, 9.9], [8.0, 8.1, 7.9])
    assert _one(_claim(metric=FID), rows).verdict == REPRODUCED  # the full key
    assert _one(_claim(metric="fid"), rows).verdict == REPRODUCED  # the bare name
    with pytest.raises(KeyError, match="kid"):
        _one(_claim(metric="kid"), rows)
    # two backbones: the bare name is ambiguous
    both = [{**r, "fid[inception]": r[FID]} for r in rows]
    with pytest.raises(KeyError):
        _one(_claim(metric="fid"), both)
    assert _one(_claim(metric="fid[inception]"), both).verdict == REPRODUCED


def _u_claim(**test):
    return {"id": "u", "source": "Fig. 3", "paper": {},
            "test": {"kind": "u_shape", "metric": "fid", "param": "b", **test}}


def _curves(values_per_seed, grid=(1.0, 1.01, 1.02, 1.03)):
    return [{"seed": s, "b": b, FID: y} for s, ys in enumerate(values_per_seed) for b, y in zip(grid, ys)]


def test_u_shape_interior_minimum_reproduced():
    rows = _curves([[10.0, 8.0, 8.5, 9.5], [10.2, 8.1, 8.4, 9.6], [9.9, 7.9, 8.6, 9.4]])
    v = _one(_u_claim(argmin_above=1.0), rows)
    assert v.verdict == REPRODUCED
    assert v.detail["argmin"] == 1.01 and v.detail["interior"]
    # best interior point 1.01 against the better end 1.03; the interval pays for the choice (2 x 2 pairs)
    assert v.detail["best_interior"] == 1.01 and v.detail["best_end"] == 1.03 and v.detail["selections"] == 4
    assert v.effect == pytest.approx((9.5 - 8.0 + 9.6 - 8.1 + 9.4 - 7.9) / 3)
    assert v.level == pytest.approx(0.05 / 4)
    # above 1.01 only 1.02 is a candidate: still below both ends on every unit
    v = _one(_u_claim(argmin_above=1.01), rows)
    assert v.detail["best_interior"] == 1.02 and v.detail["selections"] == 2


def test_u_shape_edge_minimum_not_reproduced_only_when_the_edge_clearly_wins():
    rows = _curves([[10.0, 9.0, 8.0, 7.0], [10.1, 9.1, 8.1, 7.2], [9.9, 8.9, 7.9, 6.9]])
    v = _one(_u_claim(), rows)
    assert v.verdict == NOT_REPRODUCED and v.ci[1] < 0
    assert v.detail["argmin"] == 1.03 and not v.detail["interior"]


def test_u_shape_flat_curve_with_edge_argmin_is_inconclusive():
    """The old rule forced 'not reproduced' whenever the argmin sat on an edge, whatever the noise."""
    rows = _curves([[0.343, 0.3429, 0.35, 0.36], [0.34, 0.35, 0.345, 0.355], [0.342, 0.345, 0.36, 0.35]])
    v = _one(_u_claim(), rows)
    assert not v.detail["interior"]
    assert v.verdict == INCONCLUSIVE


def test_u_shape_too_few_points():
    rows = _curves([[10.0, 8.0], [10.0, 8.0], [10.0, 8.0]], grid=(1.0, 1.01))
    assert _one(_u_claim(), rows).verdict == INCONCLUSIVE


def test_verdicts_to_json():
    (d,) = verdicts_to_json(evaluate_claims([_claim()], _pairs([10.0, 10.2, 9.9], [8.0, 8.1, 7.9])))
    assert d["verdict"] == REPRODUCED and d["id"] == "c" and len(d["ci"]) == 2


GOOD = """
- id: a
  source: "Table 1"
  paper: {baseline: 10.36, method: 5.15, metric: FID}
  test: {metric: fid, compare: method < baseline, where: {nfe: 20}, min_effect: 0.0, relative: true}
"""


def test_load_claims(tmp_path):
    p = tmp_path / "claims.yaml"
    p.write_text(GOOD)
    (c,) = load_claims(p)
    assert c["id"] == "a" and c["test"]["where"] == {"nfe": 20}


@pytest.mark.parametrize("text, match", [
    (GOOD.replace("  source:", "  sorce:"), "sorce"),  # unknown (and missing required) claim key
    (GOOD + "  extra: 1\n", "extra"),  # unknown claim key
    (GOOD.replace("relative: true", "relatve: true"), "relatve"),  # unknown test key
    (GOOD + GOOD, "duplicate"),
    ("a: 1\n", "list"),
])
def test_load_claims_rejects(tmp_path, text, match):
    p = tmp_path / "claims.yaml"
    p.write_text(text)
    with pytest.raises(ValueError, match=match):
        load_claims(p)


def test_repository_claim_files_are_valid():
    root = Path(__file__).resolve().parents[2]
    files = sorted(root.glob("papers/*/claims.yaml")) + sorted(root.glob("common/stages/*claims.yaml"))
    assert files
    for f in files:
        assert load_claims(f), f


def test_bound_claim_on_overhead():
    claim = {"id": "cheap", "source": "s", "paper": {}, "test": {"kind": "bound", "metric": "overhead", "max": 0.1}}
    small = [{"seed": s, "overhead": o} for s, o in ((1, 0.02), (1, 0.03), (2, 0.01), (3, 0.04))]
    large = [{"seed": s, "overhead": o} for s, o in ((1, 0.5), (2, 0.6), (3, 0.55))]
    assert evaluate_claims([claim], small)[0].verdict == REPRODUCED
    assert evaluate_claims([claim], small)[0].detail["per_unit"][1] == pytest.approx(0.025)
    assert evaluate_claims([claim], large)[0].verdict == NOT_REPRODUCED
    positive = {"id": "pos", "source": "s", "paper": {}, "test": {"kind": "bound", "metric": "beta", "min": 0.0}}
    assert evaluate_claims([positive], [{"seed": s, "beta": b} for s, b in enumerate((0.3, 0.4, 0.35))])[0].verdict \
        == REPRODUCED
    with pytest.raises(ValueError, match="exactly one"):
        evaluate_claims([{**claim, "test": {**claim["test"], "min": 0.0}}], small)


def test_design_facts_and_ceilings_are_reported_not_counted():
    fact = {"id": "f", "source": "s", "paper": {}, "by_design": "fixed by the architecture",
            "test": {"kind": "bound", "metric": "params_ratio", "max": 0.1, "where": {"stage": "cost"}}}
    ceil = _claim(compare="method > baseline", metric="class_acc", min_effect=-0.05, ceiling=1.0, where={"stage": "a"})
    rows = [{"seed": s, "params_ratio": 0.015, "stage": "cost"} for s in range(3)]
    rows += _pairs([1.0, 1.0, 1.0], [1.0, 1.0, 1.0], metric="class_acc[mnist-classifier]", stage="a")
    rows += _pairs([10.0, 10.2, 9.9], [8.0, 8.1, 7.9], stage="b")
    vs = evaluate_claims([fact, {**ceil, "id": "ceil"}, _claim(where={"stage": "b"})], rows)
    assert [v.verdict for v in vs] == [BY_DESIGN, AT_CEILING, REPRODUCED]
    assert vs[0].detail["holds"] and vs[0].reason == "fixed by the architecture"
    assert counts(vs) == {REPRODUCED: 1, NOT_REPRODUCED: 0, INCONCLUSIVE: 0}
    assert np.isnan(vs[0].p_value) and vs[2].level == pytest.approx(0.05)  # a family of one


def test_holm_widens_intervals_across_claims():
    rows = []
    for nfe, shift in ((10, 2.0), (20, 1.0), (50, 0.3)):
        rows += _pairs([10.0, 10.3, 9.8, 10.1], [10.0 - shift, 10.1 - shift, 9.9 - shift, 9.95 - shift], nfe=nfe)
    claims = [{**_claim(where={"nfe": n}), "id": f"c{n}"} for n in (10, 20, 50)]
    vs = evaluate_claims(claims, rows)
    levels = sorted(v.level for v in vs)
    assert levels == pytest.approx([0.05 / 3, 0.05 / 2, 0.05])  # Holm's step-down levels
    for v in vs:
        assert v.ci[0] <= v.ci_raw[0] and v.ci[1] >= v.ci_raw[1]
        assert v.p_adjusted >= v.p_value


def test_underpowered_and_mde_and_equivalence():
    claim = {**_claim(relative=True), "paper": {"baseline": 10.0, "method": 9.0, "metric": "FID"}}  # paper: 10%
    noisy = _pairs([10.0, 10.0, 10.0], [8.0, 12.0, 9.5])
    v = _one(claim, noisy)
    assert v.paper_effect == pytest.approx(0.1)
    assert v.verdict == INCONCLUSIVE and v.reason.startswith("underpowered") and v.mde > 0.1
    precise = _pairs([10.0, 10.0, 10.0, 10.0, 10.0], [10.01, 9.99, 10.0, 10.005, 9.995])
    v = _one(claim, precise)  # default margin: a quarter of the paper's 10%
    assert v.margin == pytest.approx(0.025)
    assert v.verdict == NOT_REPRODUCED and "equivalent" in v.reason and v.mde < 0.025
    assert _one({**claim, "test": {**claim["test"], "margin": 0.0001}}, precise).verdict == INCONCLUSIVE


def test_effects_below_the_real_vs_real_floor_are_marked():
    rows = _pairs([0.40, 0.41, 0.42], [0.393, 0.403, 0.413])  # 0.007 FID apart
    (v,) = evaluate_claims([_claim()], rows, floors={FID: 0.13})
    assert v.verdict == REPRODUCED and v.below_resolution is True
    assert v.detail["abs_diff"] == pytest.approx(0.007) and v.detail["floor"] == 0.13
    (v,) = evaluate_claims([_claim()], _pairs([10.0, 10.2, 9.9], [8.0, 8.1, 7.9]), floors={"fid": 0.13})
    assert v.below_resolution is False


# ------------------------------------------------------------------ the rule on simulated data with known truth
DRAWS = 3000
MC = 3 * np.sqrt(0.025 * 0.975 / DRAWS)  # three Monte Carlo standard errors at the nominal 2.5%


def _simulate(effect, n, sd=1.0, seed=0, draws=DRAWS):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(draws):
        e = rng.normal(effect, sd, n)
        (v,) = evaluate_claims([_claim(compare="method > baseline", metric="m")],
                               _pairs(np.zeros(n), e, metric="m"))
        out.append(v.verdict if v.verdict != NOT_REPRODUCED else "opposite" if "opposite" in v.reason else "other")
    return {k: out.count(k) / draws for k in (REPRODUCED, "opposite", INCONCLUSIVE, "other")}


@pytest.mark.parametrize("n", [3, 5])
def test_null_effect_labels_stay_within_their_nominal_rate(n):
    rates = _simulate(0.0, n)
    assert rates[REPRODUCED] <= 0.025 + MC and rates["opposite"] <= 0.025 + MC
    assert rates[INCONCLUSIVE] >= 0.95 - MC


def test_at_the_mde_reproduced_is_about_80_percent():
    n = 5
    mde = stats.min_detectable_effect(1.0, n, 0.025)
    rates = _simulate(mde, n, seed=1)
    assert rates[REPRODUCED] == pytest.approx(0.8, abs=3 * np.sqrt(0.16 / DRAWS))


def test_u_shape_on_a_flat_curve_says_not_reproduced_at_most_at_the_nominal_rate():
    rng = np.random.default_rng(2)
    grid = (5, 10, 20, 40, 70, 100)
    labels = []
    for _ in range(1000):
        rows = _curves(rng.normal(0.35, 0.01, (3, len(grid))).tolist(), grid=grid)
        labels.append(_one({**_u_claim(), "test": {**_u_claim()["test"], "param": "b"}}, rows).verdict)
    assert labels.count(NOT_REPRODUCED) / 1000 <= 0.025 + 3 * np.sqrt(0.025 * 0.975 / 1000)
    assert labels.count(REPRODUCED) / 1000 <= 0.025 + 3 * np.sqrt(0.025 * 0.975 / 1000)


def test_holm_keeps_the_familywise_error_under_the_null():
    rng = np.random.default_rng(3)
    m, draws, any_false = 6, 600, 0
    claims = [{**_claim(compare="method > baseline", metric="m", where={"k": k}), "id": f"c{k}"} for k in range(m)]
    for _ in range(draws):
        rows = [r for k in range(m) for r in _pairs(np.zeros(4), rng.normal(0, 1, 4), metric="m", k=k)]
        any_false += any(v.verdict != INCONCLUSIVE for v in evaluate_claims(claims, rows))
    assert any_false / draws <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / draws)
