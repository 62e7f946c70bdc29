"""common/comparison.py: pairwise claim rows of a family comparison page."""

import json

import pytest

from common.claims import evaluate_claims
from common.comparison import pair_rows, write_pairs

ROWS = [{"arm": a, "seed": s, "frac": f, "acc": v} for a, base in (("dfn", 0.6), ("random", 0.5), ("qqt", 0.55))
        for s in range(4) for f, v in ((0.15, base + 0.01 * s), (0.3, base))]


def test_pairs_relabel_the_two_methods_on_shared_units_only():
    rows = ROWS + [{"arm": "dfn", "seed": 9, "frac": 0.15, "acc": 0.9}]  # a unit the baseline lacks
    out = pair_rows(rows, "dfn_vs_random", "dfn", "random", "seed", frac=0.15)
    assert sorted({(r["arm"], r["method_name"], r["baseline_name"]) for r in out}) == [
        ("baseline", "dfn", "random"), ("method", "dfn", "random")]
    assert sorted(r["seed"] for r in out if r["arm"] == "method") == [0, 1, 2, 3]
    assert all(r["frac"] == 0.15 and r["comparison"] == "dfn_vs_random" for r in out)


def test_a_missing_method_is_an_error_naming_it():
    with pytest.raises(ValueError, match="'catlip'"):
        pair_rows(ROWS, "x", "catlip", "random", "seed")


def test_claims_read_the_written_pairs(tmp_path):
    out = write_pairs(tmp_path / "pairs.json", ROWS, [("dfn_vs_random", "dfn", "random", {"frac": 0.15}),
                                                     ("qqt_vs_dfn", "qqt", "dfn", {"frac": 0.15})], unit="seed")
    assert json.loads((tmp_path / "pairs.json").read_text())["rows"] == out
    claims = [{"id": c, "statement": c, "source": "s", "paper": {},
               "test": {"metric": "acc", "compare": "method > baseline", "where": {"comparison": c}}}
              for c in ("dfn_vs_random", "qqt_vs_dfn")]
    v = {x.id: x for x in evaluate_claims(claims, out)}
    assert v["dfn_vs_random"].effect == pytest.approx(0.1) and v["dfn_vs_random"].n_units == 4
    assert v["qqt_vs_dfn"].effect == pytest.approx(-0.05) and v["qqt_vs_dfn"].verdict == "not reproduced"
