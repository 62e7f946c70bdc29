"""common/claims.py: claims.yaml validation and the verdict rules."""

from pathlib import Path

import pytest

from common.claims import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    REPRODUCED,
    decide,
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
    assert v.ci[0] > 0 and v.n_seeds == 3
    assert v.detail["pairs"][0] == {"seed": 0, "baseline": 10.0, "method": 8.0}


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


def test_min_effect():
    rows = _pairs([10.0, 10.1, 9.9], [9.5, 9.55, 9.4])  # effect ~0.5, clearly > 0
    assert _one(_claim(min_effect=0.3), rows).verdict == REPRODUCED
    assert _one(_claim(min_effect=1.0), rows).verdict == NOT_REPRODUCED  # interval entirely below 1
    # interval straddles the minimum effect: positive but not clearly large enough
    rows = _pairs([10.0, 10.0, 10.0], [9.4, 9.3, 9.2])  # effects 0.6, 0.7, 0.8: interval ~[0.45, 0.95]
    v = _one(_claim(min_effect=0.5), rows)
    assert v.ci[0] > 0 and v.effect >= 0.5 and v.ci[1] > 0.8
    assert v.verdict == REPRODUCED
    assert _one(_claim(min_effect=0.8), rows).verdict == INCONCLUSIVE


def test_relative_effect():
    rows = _pairs([100.0, 101.0, 99.0], [99.0, 100.0, 98.0])  # 1 FID point out of ~100
    v = _one(_claim(relative=True), rows)
    assert v.effect == pytest.approx(1.0 / 3 * (1 / 100 + 1 / 101 + 1 / 99))
    assert v.detail["relative"] is True
    assert _one(_claim(relative=True, min_effect=0.05), rows).verdict == NOT_REPRODUCED
    assert _one(_claim(relative=False, min_effect=0.05), rows).verdict == REPRODUCED


def test_where_filter_and_unpaired_seeds():
    rows = _pairs([10.0, 10.0, 10.0], [8.0, 8.1, 7.9], nfe=20) + _pairs([10.0, 10.0, 10.0], [12.0, 12.0, 12.0], nfe=50)
    assert _one(_claim(where={"nfe": 20}), rows).verdict == REPRODUCED
    assert _one(_claim(where={"nfe": 50}), rows).verdict == NOT_REPRODUCED
    # a seed with only one arm is ignored; one paired seed is not enough for an interval
    v = _one(_claim(), [{"seed": 0, "arm": "baseline", FID: 10.0}, {"seed": 0, "arm": "method", FID: 8.0},
                        {"seed": 1, "arm": "baseline", FID: 10.0}])
    assert v.n_seeds == 1 and v.verdict == INCONCLUSIVE


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
    assert v.effect == pytest.approx((9.5 - 8.0 + 9.6 - 8.1 + 9.4 - 7.9) / 3)
    # the same curve fails a threshold the minimiser does not exceed
    assert _one(_u_claim(argmin_above=1.01), rows).verdict == NOT_REPRODUCED


def test_u_shape_edge_minimum_not_reproduced():
    rows = _curves([[10.0, 9.0, 8.0, 7.0], [10.1, 9.1, 8.1, 7.2], [9.9, 8.9, 7.9, 6.9]])
    v = _one(_u_claim(), rows)
    assert v.verdict == NOT_REPRODUCED
    assert v.detail["argmin"] == 1.03 and not v.detail["interior"]


def test_u_shape_too_few_points():
    rows = _curves([[10.0, 8.0], [10.0, 8.0]], grid=(1.0, 1.01))
    assert _one(_u_claim(), rows).verdict == INCONCLUSIVE


def test_decide_rules():
    assert decide([1.0, 1.1, 0.9])[0] == REPRODUCED
    assert decide([-1.0, -1.1, -0.9])[0] == NOT_REPRODUCED
    assert decide([1.0, -1.0, 0.5])[0] == INCONCLUSIVE
    assert decide([1.0])[0] == INCONCLUSIVE


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
    from common.claims import evaluate_claims

    claim = {"id": "cheap", "source": "s", "paper": {}, "test": {"kind": "bound", "metric": "overhead", "max": 0.1}}
    small = [{"seed": s, "overhead": o} for s, o in ((1, 0.02), (1, 0.03), (2, 0.01), (3, 0.04))]
    large = [{"seed": s, "overhead": o} for s, o in ((1, 0.5), (2, 0.6), (3, 0.55))]
    assert evaluate_claims([claim], small)[0].verdict == "reproduced"
    assert evaluate_claims([claim], small)[0].detail["per_seed"][1] == pytest.approx(0.025)
    assert evaluate_claims([claim], large)[0].verdict == "not reproduced"
