"""Claims as data (`claims.yaml`) -> verdicts from results rows. The protocol is docs/verdicts.md.

A claim quotes the paper (`paper:`, verbatim) and says how we test it (`test:`):

  - id: es-lowers-fid-nfe20
    source: "Table 1, ADM on CIFAR-10, T'=20"
    paper: {baseline: 10.36, method: 5.15, metric: FID}
    test: {metric: fid, compare: method < baseline, where: {nfe: 20}, relative: true,
           unit: seed, min_effect: 0.0, margin: 0.12}

Test keys (all but `metric` optional):
  kind        compare (default) | u_shape | bound
  metric      results key; `fid` matches `fid[mnist-classifier]` (the backbone stays in the name)
  where       row filter; a filter that matches no row is an error naming the claim and the file
  unit        the replication unit's field (default `seed`): the training seed for claims about a
              training method. Rows sharing a unit (inner seeds) are averaged first.
  compare     `method < baseline` | `method > baseline`; effect per unit = improvement of method
  relative    effect divided by |baseline|
  min_effect  smallest effect that counts (negative: a non-inferiority margin, "keeps X within d")
  margin      equivalence margin, declared before the run: |effect| < margin shown by TOST is
              "not reproduced (no effect)". Default for relative claims quoting the paper's baseline
              and method: a quarter of the paper's relative effect (from its numbers, never ours)
  ceiling     value at which the metric saturates: a claim with every value of both arms within
              CEILING_TOL of it is flagged "at ceiling" and not counted
  param, argmin_above   u_shape: the swept parameter; the optimum must lie above this value
  max / min   bound: the per-unit value stays below `max` (above `min`); effect = distance to it
A claim with `by_design: <why>` is a fact fixed by construction (a parameter or FLOP ratio): it is
computed and shown in its own table, never counted as a reproduction.

Labels (docs/verdicts.md): intervals are Student-t over units, Holm-adjusted across the paper's
empirical claims.
  reproduced      adjusted interval above min_effect (and Holm's step-down reaches the claim)
  not reproduced  adjusted interval on the wrong side (below 0, or below min_effect), or inside
                  (-margin, margin) (TOST equivalence); `reason` says which
  inconclusive    otherwise, with the reason: too few units (< 3), underpowered (the minimal
                  detectable effect exceeds the paper's), or the interval straddles
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional

import numpy as np
import yaml

from . import stats

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"
BY_DESIGN, AT_CEILING = "by design", "at ceiling"
COUNTED = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE)
LABELS = (*COUNTED, BY_DESIGN, AT_CEILING)
MIN_UNITS = 3
ALPHA = 0.05
POWER = 0.8
CEILING_TOL = 0.01  # "at the ceiling": within 0.01 of it (1% of the samples, for an accuracy or a share)
MARGIN_SHARE = 0.25  # default equivalence margin: a quarter of the paper's own relative effect
_CLAIM_KEYS = {"id", "source", "paper", "test", "statement", "by_design"}
_TEST_KEYS = {"kind", "metric", "compare", "where", "min_effect", "relative", "param", "argmin_above", "max", "min",
              "unit", "margin", "ceiling"}


@dataclass
class Verdict:
    id: str
    statement: str
    source: str
    paper: dict
    verdict: str
    effect: float                 # mean over units of the per-unit effect
    ci: List[float]               # Holm-adjusted interval (the verdict uses this one)
    n_units: int
    unit: str = "seed"
    ci_raw: List[float] = field(default_factory=lambda: [stats.NAN, stats.NAN])  # unadjusted 95%
    level: float = ALPHA          # two-sided level of the adjusted interval (Holm)
    p_value: float = stats.NAN
    p_adjusted: float = stats.NAN
    mde: float = stats.NAN        # minimal detectable effect: 80% power at the Bonferroni level
    paper_effect: Optional[float] = None
    min_effect: float = 0.0
    margin: Optional[float] = None
    reason: str = ""
    below_resolution: Optional[bool] = None
    detail: dict = field(default_factory=dict)


@dataclass
class _Evidence:
    effects: Dict[object, float]  # per replication unit
    detail: dict
    at_ceiling: bool = False
    selections: int = 1  # comparisons the tested effect was chosen from (Bonferroni factor)


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
        c["_file"] = str(path)
    return claims


def _value(row: dict, metric: str):
    """row[metric], or row['metric[<backbone>]'] when the claim names the metric without its backbone."""
    if metric in row:
        return row[metric]
    keys = [k for k in row if k.startswith(metric + "[")]
    if len(keys) != 1:
        raise KeyError(f"metric '{metric}' not in results (have {sorted(row)})")
    return row[keys[0]]


def _metric_key(rows: List[dict], metric: str) -> str:
    """The results key a claim's metric resolves to (`fid` -> `fid[mnist-classifier]`), so reports name the backbone."""
    for r in rows:
        if metric in r:
            return metric
        keys = [k for k in r if k.startswith(metric + "[")]
        if len(keys) == 1:
            return keys[0]
    return metric


def _matching(claim: dict, rows: List[dict]) -> List[dict]:
    where = claim["test"].get("where") or {}
    out = [r for r in rows if all(r.get(k) == v for k, v in where.items())]
    if not out:
        raise ValueError(f"{claim.get('_file', 'claims.yaml')}: claim '{claim['id']}': where {where} matches no "
                         f"results row")
    return out


def _unit_of(claim: dict, row: dict):
    unit = claim["test"].get("unit", "seed")
    if unit not in row:
        raise KeyError(f"{claim.get('_file', 'claims.yaml')}: claim '{claim['id']}': results rows have no "
                       f"unit field '{unit}' (have {sorted(row)})")
    return row[unit]


def _sorted_units(units):
    return sorted(units, key=lambda u: (isinstance(u, str), u))


def _compare(claim: dict, rows: List[dict]) -> _Evidence:
    t = claim["test"]
    metric, op = t["metric"], t.get("compare", "method < baseline").replace(" ", "")
    if op not in ("method<baseline", "method>baseline"):
        raise ValueError(f"claim {claim['id']}: compare must be 'method < baseline' or 'method > baseline'")
    cells: Dict[object, Dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for r in _matching(claim, rows):
        if r.get("arm") in ("baseline", "method"):
            cells[_unit_of(claim, r)][r["arm"]].append(float(_value(r, metric)))
    effects, pairs = {}, []
    for u in _sorted_units(cells):
        arms = cells[u]
        if len(arms) < 2:
            continue  # a unit with one arm only has no paired effect
        b, m = float(np.mean(arms["baseline"])), float(np.mean(arms["method"]))
        e = (b - m) if op == "method<baseline" else (m - b)
        effects[u] = e / abs(b) if t.get("relative") else e
        pairs.append({"unit": u, "baseline": b, "method": m, "inner": len(arms["baseline"])})
    values = [v for p in pairs for v in (p["baseline"], p["method"])]
    ceiling = t.get("ceiling")
    at_ceiling = bool(values) and ceiling is not None and all(abs(v - ceiling) <= CEILING_TOL for v in values)
    key = _metric_key(_matching(claim, rows), metric)
    return _Evidence(effects, {"pairs": pairs, "metric": key, "relative": bool(t.get("relative"))}, at_ceiling)


def _u_shape(claim: dict, rows: List[dict]) -> _Evidence:
    """Interior optimum: the best interior grid point against the better end of the grid.

    p* is the interior point (above `argmin_above`) and e* the end with the lowest mean curve; the
    effect of unit u is y_u(e*) - y_u(p*): > 0, the interior beats both ends; < 0, an end beats
    even the best interior point. Both are chosen on the same units that are tested, so the
    interval is widened for the choice: Bonferroni over the 2K (end, interior point) pairs it was
    made from (`selections`). Without it, a flat noisy curve looks shaped (the minimum of noisy
    points is biased low) and an end argmin forced "not reproduced" on a third of flat curves.
    """
    t = claim["test"]
    metric, p = t["metric"], t["param"]
    cells: Dict[object, Dict[float, list]] = defaultdict(lambda: defaultdict(list))
    for r in _matching(claim, rows):
        if p in r:
            cells[_unit_of(claim, r)][r[p]].append(float(_value(r, metric)))
    grid = sorted({x for c in cells.values() for x in c})
    units = [u for u in _sorted_units(cells) if set(cells[u]) == set(grid)]
    curves = {u: {x: float(np.mean(cells[u][x])) for x in grid} for u in units}
    above = t.get("argmin_above")
    candidates = [x for x in grid[1:-1] if above is None or x > above]
    mean = {x: float(np.mean([curves[u][x] for u in units])) for x in grid} if units else {}
    detail = {"metric": _metric_key(_matching(claim, rows), metric), "param": p, "grid": grid,
              "mean_curve": [mean.get(x) for x in grid],
              "argmin": min(grid, key=mean.get) if mean else None}
    if len(grid) < 3 or not candidates or not units:
        detail["reason"] = "fewer than 3 grid points, no interior candidate, or no unit with the whole grid"
        return _Evidence({}, detail)
    p_star, end = min(candidates, key=mean.get), min((grid[0], grid[-1]), key=mean.get)
    detail.update({"interior": grid[0] < detail["argmin"] < grid[-1], "best_interior": p_star, "best_end": end})
    effects = {u: curves[u][end] - curves[u][p_star] for u in units}
    return _Evidence(effects, detail, selections=2 * len(candidates))


def _bound(claim: dict, rows: List[dict]) -> _Evidence:
    t = claim["test"]
    if ("max" in t) == ("min" in t):
        raise ValueError(f"claim {claim['id']}: a bound needs exactly one of 'max' or 'min'")
    per_unit: Dict[object, list] = defaultdict(list)
    for r in _matching(claim, rows):
        per_unit[_unit_of(claim, r)].append(float(_value(r, t["metric"])))
    values = {u: float(np.mean(per_unit[u])) for u in _sorted_units(per_unit)}
    effects = {u: (t["max"] - x) if "max" in t else (x - t["min"]) for u, x in values.items()}
    bound = {"max": t["max"]} if "max" in t else {"min": t["min"]}
    return _Evidence(effects, {"metric": _metric_key(_matching(claim, rows), t["metric"]), **bound, "per_unit": values})


KINDS = {"compare": _compare, "u_shape": _u_shape, "bound": _bound}


def _paper_effect(claim: dict) -> Optional[float]:
    """The paper's own relative effect (from its quoted baseline/method numbers), for relative claims."""
    t, p = claim["test"], claim.get("paper") or {}
    b, m = p.get("baseline"), p.get("method")
    if not t.get("relative") or not all(isinstance(x, (int, float)) for x in (b, m)) or b == 0:
        return None
    e = (b - m) if t.get("compare", "method < baseline").replace(" ", "") == "method<baseline" else (m - b)
    return e / abs(b)


def _base(claim: dict, ev: _Evidence) -> Verdict:
    t = claim["test"]
    e = list(ev.effects.values())
    mean, lo, hi = stats.mean_ci(e, ALPHA)
    paper_effect = _paper_effect(claim)
    margin = t.get("margin", None if paper_effect is None or paper_effect <= 0 else MARGIN_SHARE * paper_effect)
    return Verdict(claim["id"], claim.get("statement", ""), claim["source"], claim["paper"], INCONCLUSIVE, mean,
                   [lo, hi], len(e), t.get("unit", "seed"), [lo, hi], ALPHA,
                   paper_effect=paper_effect, min_effect=float(t.get("min_effect", 0.0)), margin=margin,
                   detail={**ev.detail, "effects": {str(u): x for u, x in ev.effects.items()}})


def _label(v: Verdict) -> None:
    """Set v.verdict and v.reason from the adjusted interval (v.ci) and the Holm-adjusted p-value."""
    lo, hi = v.ci
    wrong = min(0.0, v.min_effect)  # below this the method is on the wrong side
    if v.n_units < MIN_UNITS:
        v.verdict, v.reason = INCONCLUSIVE, f"too few units ({v.n_units} < {MIN_UNITS})"
    elif lo > v.min_effect and v.p_adjusted < ALPHA:
        v.verdict, v.reason = REPRODUCED, f"adjusted interval above {stats_fmt(v.min_effect)}"
    elif hi < wrong and v.p_adjusted < ALPHA:
        v.verdict, v.reason = NOT_REPRODUCED, "opposite direction: adjusted interval below " + stats_fmt(wrong)
    elif v.min_effect > 0 and hi < v.min_effect:
        v.verdict, v.reason = NOT_REPRODUCED, f"smaller than the minimum effect {stats_fmt(v.min_effect)}"
    elif v.margin is not None and -v.margin < lo and hi < v.margin:
        v.verdict, v.reason = NOT_REPRODUCED, f"no effect: equivalent to 0 within ±{stats_fmt(v.margin)} (TOST)"
    elif lo > v.min_effect or hi < wrong:
        v.verdict, v.reason = INCONCLUSIVE, "Holm's step-down stopped at a claim with stronger evidence"
    elif v.paper_effect is not None and np.isfinite(v.mde) and v.mde > v.paper_effect:
        v.verdict, v.reason = INCONCLUSIVE, (f"underpowered: detects {stats_fmt(v.mde)} at 80% power, the paper's "
                                             f"effect is {stats_fmt(v.paper_effect)}")
    else:
        v.verdict, v.reason = INCONCLUSIVE, f"adjusted interval straddles {stats_fmt(v.min_effect if lo > wrong else wrong)}"


def stats_fmt(x: float) -> str:
    return f"{x:.3g}"


def evaluate_claims(claims: List[dict], rows: List[dict], floors: Optional[Mapping[str, float]] = None) -> List[Verdict]:
    """Verdicts for a paper's claims. `floors`: metric -> real-vs-real value at the same sample count.

    Holm's family is the paper's empirical claims with at least MIN_UNITS units; design facts and
    metrics at their ceiling are outside it.
    """
    verdicts, evidence = [], []
    for c in claims:
        kind = c["test"].get("kind", "compare")
        if kind not in KINDS:
            raise ValueError(f"claim {c['id']}: unknown test kind '{kind}' (one of {sorted(KINDS)})")
        ev = KINDS[kind](c, rows)
        v = _base(c, ev)
        if c.get("by_design"):
            v.verdict, v.reason = BY_DESIGN, str(c["by_design"])
            v.detail["holds"] = bool(ev.effects) and all(x > v.min_effect for x in ev.effects.values())
        elif ev.at_ceiling:
            v.verdict, v.reason = AT_CEILING, (f"every value of both arms is within {CEILING_TOL} of the ceiling "
                                               f"{c['test']['ceiling']}")
        v.detail["selections"] = ev.selections
        verdicts.append(v)
        evidence.append(list(ev.effects.values()))
    tested = [i for i, v in enumerate(verdicts) if v.verdict == INCONCLUSIVE and v.n_units >= MIN_UNITS]
    p = np.full(len(verdicts), np.nan)
    for i in tested:
        v, e = verdicts[i], evidence[i]
        wrong = min(0.0, v.min_effect)
        sel = v.detail["selections"]
        p[i] = min(1.0, sel * 2 * min(stats.p_greater(e, v.min_effect), stats.p_greater([-x for x in e], -wrong)))
    adjusted, levels = stats.holm(p), stats.holm_levels(p, ALPHA)
    m = max(len(tested), 1)
    for i, v in enumerate(verdicts):
        e, sel = evidence[i], v.detail["selections"]
        if len(e) >= 2:
            sd = float(np.std(e, ddof=1))
            v.mde = v.min_effect + stats.min_detectable_effect(sd, len(e), ALPHA / (2 * m * sel), POWER)
        if v.verdict not in COUNTED:
            continue
        if i in tested:
            v.p_value, v.p_adjusted, v.level = float(p[i]), float(adjusted[i]), float(levels[i]) / sel
            _, lo, hi = stats.mean_ci(e, v.level)
            v.ci = [lo, hi]
        _label(v)
        metric = v.detail.get("metric")
        ev_floor = _floor(floors, metric)
        pairs = v.detail.get("pairs")
        if ev_floor is not None and pairs:
            diff = abs(np.mean([q["baseline"] for q in pairs]) - np.mean([q["method"] for q in pairs]))
            v.below_resolution = bool(diff < ev_floor)
            v.detail["abs_diff"], v.detail["floor"] = float(diff), float(ev_floor)
    return verdicts


def _floor(floors: Optional[Mapping[str, float]], metric: Optional[str]) -> Optional[float]:
    if not floors or not metric:
        return None
    for key in (metric, metric.split("[")[0]):  # keyed like the results ('fid[mnist-classifier]') or bare ('fid')
        if key in floors:
            return floors[key]
    keys = [k for k in floors if k.startswith(metric + "[")]  # a bare claim metric, floors with the backbone
    return floors[keys[0]] if len(keys) == 1 else None


def counts(verdicts) -> Dict[str, int]:
    """Counted labels only: design facts and ceiling flags are reported, not counted."""
    labels = [v["verdict"] if isinstance(v, dict) else v.verdict for v in verdicts]
    return {k: labels.count(k) for k in COUNTED}


def verdicts_to_json(verdicts: List[Verdict]) -> List[dict]:
    return [asdict(v) for v in verdicts]
