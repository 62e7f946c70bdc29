"""Family comparison pages (papers/*_comparison): one results table of methods x units, and the paired rows
their claims read.

A comparison page runs several papers' methods on one substrate (same model, data, budget and seeds). Its
`results.json` holds one row per method x replication unit (x setting, e.g. a kept fraction or an NFE) with the
method's name in `arm`, so that the report's MLflow experiment has one child run per method x unit. Its claims
are pairwise ("A beats B at equal compute"); the claim protocol (common/claims.py) compares `arm: method` with
`arm: baseline` inside a `comparison`, so `pairs.json` relabels the two methods' rows that way, one comparison
per claim. The report stage reads it with `ReportStage.load(also=["pairs.json"])`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Sequence, Tuple

from .atomic import atomic_file


def pair_rows(rows: Sequence[Mapping], comparison: str, method: str, baseline: str, unit: str,
              **where) -> List[dict]:
    """Copies of the rows of arm `method` and arm `baseline` (matching `where`), relabelled `arm: method` /
    `arm: baseline` with `comparison` set and the two names kept in `method_name` / `baseline_name`. Only
    units that both arms have are kept: the claim's effect is paired within a unit (same seed, same data)."""
    def pick(arm):
        return [r for r in rows if r.get("arm") == arm and all(r.get(k) == v for k, v in where.items())]

    a, b = pick(method), pick(baseline)
    if not a or not b:
        raise ValueError(f"comparison {comparison!r}: no rows for arm {method if not a else baseline!r} "
                         f"where {where}")
    shared = {r[unit] for r in a} & {r[unit] for r in b}
    names = {"method_name": method, "baseline_name": baseline}
    return [{**r, "comparison": comparison, "arm": label, **names}
            for label, side in (("method", a), ("baseline", b)) for r in side if r[unit] in shared]


def write_pairs(path: Path, rows: Sequence[Mapping], pairs: Iterable[Tuple[str, str, str, Dict]],
                unit: str, more: Sequence[Mapping] = ()) -> List[dict]:
    """pairs.json: the paired rows of every (comparison, method, baseline, where) in `pairs`, plus `more`
    (paired rows built with another unit, e.g. benchmark rounds)."""
    out = [p for comparison, method, baseline, where in pairs
           for p in pair_rows(rows, comparison, method, baseline, unit, **where)] + [dict(r) for r in more]
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps({"unit": unit, "rows": out}, indent=1))
    return out
