"""Claims as data (`claims.yaml`) -> verdicts from per-seed results.

A claim names the paper's numbers verbatim (`paper:`) and how we test it (`test:`):

  - id: es-lowers-fid-nfe20
    source: "Table 1, ADM on CIFAR-10, T'=20"
    paper: {baseline: 10.36, method: 5.15, metric: FID}
    test: {metric: fid, compare: method < baseline, where: {nfe: 20},
           min_effect: 0.0, relative: true}

`metric` may omit the backbone (`fid` matches `fid[mnist-classifier]`).
`compare` claims pair the `baseline` and `method` arms of the results rows seed by seed; the
effect is (baseline - method) for `<` (method - baseline for `>`), optionally relative to the
baseline, and its Student-t interval over seeds decides:
  reproduced      interval above 0 and mean effect >= min_effect
  not reproduced  interval below 0, or entirely below min_effect
  inconclusive    otherwise
`bound` claims check a per-seed quantity stays below `max` (e.g. a cost overhead): the effect per seed
is max - value, tested as above.
`u_shape` claims take rows with a swept parameter: the minimiser p* of the seed-mean curve must be
an interior grid point (and above `argmin_above` if given); the effect per seed is
min(y(first), y(last)) - y(p*), tested as above.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List

import numpy as np
import yaml

from .evaluation import mean_ci

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"
_CLAIM_KEYS = {"id", "source", "paper", "test", "statement"}
_TEST_KEYS = {"kind", "metric", "compare", "where", "min_effect", "relative", "param", "argmin_above", "max"}


@dataclass
class Verdict:
    id: str
    statement: str
    source: str
    paper: dict
    verdict: str
    effect: float
    ci: List[float]
    n_seeds: int
    detail: dict = field(default_factory=dict)


def load_claims(path: Path) -> List[dict]:
    path = Path(path)
    claims = yaml.safe_load(path.read_text()) or []
    if not isinstance(claims, list):
        raise ValueError(f"{path}: expected a list of claims")
    seen = set()
    for i, c in enumerate(claims):
        where = f"{path}: claim #{i} ({c.get('id', '?')})"
        unknown = set(c) - _CLAIM_KEYS
        if unknown or not {"id", "source", "paper", "test"} <= set(c):
            raise ValueError(f"{where}: keys must be {sorted(_CLAIM_KEYS)}; unknown {sorted(unknown)}")
        bad = set(c["test"]) - _TEST_KEYS
        if bad:
            raise ValueError(f"{where}: unknown test key(s) {sorted(bad)}; allowed {sorted(_TEST_KEYS)}")
        if c["id"] in seen:
            raise ValueError(f"{where}: duplicate id")
        seen.add(c["id"])
    return claims


def _value(row: dict, metric: str):
    """row[metric], or row['metric[<backbone>]'] when the claim names the metric without its backbone."""
    if metric in row:
        return row[metric]
    keys = [k for k in row if k.startswith(metric + "[")]
    if len(keys) != 1:
        raise KeyError(f"metric '{metric}' not in results (have {sorted(row)})")
    return row[keys[0]]


def _matches(row: dict, where: dict) -> bool:
    return all(row.get(k) == v for k, v in (where or {}).items())


def decide(effects: List[float], min_effect: float = 0.0):
    mean, lo, hi = mean_ci(effects)
    if len(effects) < 2 or not np.isfinite(lo):
        return INCONCLUSIVE, mean, [lo, hi]
    if lo > 0 and mean >= min_effect:
        v = REPRODUCED
    elif hi < 0 or hi < min_effect:
        v = NOT_REPRODUCED
    else:
        v = INCONCLUSIVE
    return v, mean, [lo, hi]


def _compare(claim: dict, rows: List[dict]) -> Verdict:
    t = claim["test"]
    metric, op = t["metric"], t.get("compare", "method < baseline").replace(" ", "")
    if op not in ("method<baseline", "method>baseline"):
        raise ValueError(f"claim {claim['id']}: compare must be 'method < baseline' or 'method > baseline'")
    by_seed: Dict[int, Dict[str, float]] = defaultdict(dict)
    for r in rows:
        if _matches(r, t.get("where")) and r.get("arm") in ("baseline", "method"):
            by_seed[r["seed"]][r["arm"]] = _value(r, metric)
    effects, pairs = [], []
    for seed, arms in sorted(by_seed.items()):
        if len(arms) == 2:
            b, m = arms["baseline"], arms["method"]
            e = (b - m) if op == "method<baseline" else (m - b)
            effects.append(e / abs(b) if t.get("relative") else e)
            pairs.append({"seed": seed, "baseline": b, "method": m})
    v, mean, ci = decide(effects, t.get("min_effect", 0.0))
    return Verdict(claim["id"], claim.get("statement", ""), claim["source"], claim["paper"], v, mean, ci,
                   len(effects), {"pairs": pairs, "metric": metric, "relative": bool(t.get("relative"))})


def _u_shape(claim: dict, rows: List[dict]) -> Verdict:
    t = claim["test"]
    metric, p = t["metric"], t["param"]
    curves: Dict[int, Dict[float, float]] = defaultdict(dict)
    for r in rows:
        if _matches(r, t.get("where")) and p in r:
            curves[r["seed"]][r[p]] = _value(r, metric)
    grid = sorted({x for c in curves.values() for x in c})
    seeds = [s for s, c in sorted(curves.items()) if set(c) == set(grid)]
    if len(grid) < 3 or not seeds:
        return Verdict(claim["id"], claim.get("statement", ""), claim["source"], claim["paper"], INCONCLUSIVE,
                       float("nan"), [float("nan")] * 2, 0, {"reason": "fewer than 3 grid points"})
    mean_curve = [float(np.mean([curves[s][x] for s in seeds])) for x in grid]
    k = int(np.argmin(mean_curve))
    p_star = grid[k]
    effects = [min(curves[s][grid[0]], curves[s][grid[-1]]) - curves[s][p_star] for s in seeds]
    v, mean, ci = decide(effects, t.get("min_effect", 0.0))
    interior = 0 < k < len(grid) - 1
    above = t.get("argmin_above")
    if not interior or (above is not None and not p_star > above):
        v = NOT_REPRODUCED
    return Verdict(claim["id"], claim.get("statement", ""), claim["source"], claim["paper"], v, mean, ci, len(seeds),
                   {"metric": metric, "param": p, "grid": grid, "mean_curve": mean_curve, "argmin": p_star,
                    "interior": interior})


def _bound(claim: dict, rows: List[dict]) -> Verdict:
    t = claim["test"]
    per_seed: Dict[int, List[float]] = defaultdict(list)
    for r in rows:
        if _matches(r, t.get("where")):
            per_seed[r["seed"]].append(_value(r, t["metric"]))
    values = {s: float(np.mean(v)) for s, v in sorted(per_seed.items())}
    v, mean, ci = decide([t["max"] - x for x in values.values()], t.get("min_effect", 0.0))
    return Verdict(claim["id"], claim.get("statement", ""), claim["source"], claim["paper"], v, mean, ci,
                   len(values), {"metric": t["metric"], "max": t["max"], "per_seed": values})


KINDS = {"compare": _compare, "u_shape": _u_shape, "bound": _bound}


def evaluate_claims(claims: List[dict], rows: List[dict]) -> List[Verdict]:
    out = []
    for c in claims:
        kind = c["test"].get("kind", "compare")
        if kind not in KINDS:
            raise ValueError(f"claim {c['id']}: unknown test kind '{kind}' (one of {sorted(KINDS)})")
        out.append(KINDS[kind](c, rows))
    return out


def verdicts_to_json(verdicts: List[Verdict]) -> List[dict]:
    return [asdict(v) for v in verdicts]
