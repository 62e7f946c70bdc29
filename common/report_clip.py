"""Stock report pieces of the papers on the CLIP/scene and LM substrates (catlip, dfn, qqt_data_filtering,
scaling_down_clip, ssl_data_curation, new_knowledge): mean-and-interval bands and bars from per-seed values,
stacked ground-truth shares, and 'mean [95% CI]' cells over result rows. Used with common/report_stage.py."""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np

from .report import ci_cell
from .stats import mean_ci


def values_band(ax, xs: Sequence, values: Sequence[Sequence], label: str, color=None, marker: Optional[str] = None):
    """Mean line with a shaded 95% Student-t band; values[j] = the repeats (seeds) at xs[j], None skipped."""
    stats = [mean_ci([v for v in vs if v is not None]) for vs in values]
    m, lo, hi = (np.array(v, dtype=float) for v in zip(*stats))
    ax.plot(xs, m, label=label, color=color, marker=marker)
    ok = np.isfinite(lo) & np.isfinite(hi)
    if ok.any():
        ax.fill_between(np.asarray(xs, dtype=float)[ok], lo[ok], hi[ok], alpha=0.2, color=color)
    return m


def ci_bars(ax, x: Sequence[float], per_seed: Sequence[Sequence[float]], width: float, **bar):
    """Bars of the mean over seeds with 95% error bars; per_seed: [seeds][len(x)] (no interval: no bar)."""
    m, lo, hi = (np.array(v) for v in zip(*(mean_ci(col) for col in np.asarray(per_seed, dtype=float).T)))
    lo, hi = np.where(np.isfinite(lo), lo, m), np.where(np.isfinite(hi), hi, m)
    ax.bar(x, m, width, yerr=[m - lo, hi - m], capsize=2, **bar)


def stacked_shares(ax, names: Sequence[str], parts: Sequence[Tuple[str, Sequence[float], str]],
                   legend_loc: Optional[str] = None, fontsize: Optional[float] = None):
    """One stacked bar per name; parts = (label, values per name, colour), bottom-up. The legend goes
    outside the axes on the right unless `legend_loc` is given."""
    bottom = np.zeros(len(names))
    for label, values, color in parts:
        ax.bar(range(len(names)), values, bottom=bottom, color=color, label=label)
        bottom += np.asarray(values, dtype=float)
    ax.set_xticks(range(len(names)), names, fontsize=fontsize)
    where = {"loc": legend_loc} if legend_loc else {"loc": "upper left", "bbox_to_anchor": (1, 1)}
    ax.legend(fontsize=7, **where)


def cells(rows: List[dict], keys: Sequence[str]) -> List[str]:
    """'mean [95% CI]' of each key over `rows` (one row per replication unit)."""
    return [ci_cell([r[k] for r in rows]) for k in keys]


def mean_of(rows: List[dict], key: str) -> float:
    return float(np.mean([r[key] for r in rows]))
