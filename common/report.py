"""Markdown reports that render on a code-hosting site: one per paper, plus the index of all.

`write_paper_report` writes `reports/<name>/README.md` and `verdicts.json`; `update_index`
rebuilds `reports/README.md` from every `reports/*/verdicts.json`, so any stage that writes a
report refreshes the index. Figures are PNGs beside the report (matplotlib, Agg backend).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np

from .claims import BY_DESIGN, COUNTED, Verdict, counts, verdicts_to_json

BADGE = {"reproduced": "✅ reproduced", "not reproduced": "❌ not reproduced", "inconclusive": "❔ inconclusive",
         "by design": "📐 by design", "at ceiling": "⛔ at ceiling"}
PROTOCOL_LINK = "[docs/verdicts.md](../../docs/verdicts.md)"


def fmt(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "n/a"
    if isinstance(x, (int, np.integer)):
        return str(x)
    return f"{x:.{digits}g}" if abs(x) < 1e-2 or abs(x) >= 1e4 else f"{x:.{digits}f}"


def table(header: Sequence[str], rows: Iterable[Sequence]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        lines.append("| " + " | ".join(fmt(v) if isinstance(v, (float, np.floating)) else str(v) for v in r) + " |")
    return "\n".join(lines)


def _interval(ci) -> str:
    return f"[{fmt(ci[0])}, {fmt(ci[1])}]"


def verdict_table(verdicts: List[Verdict]) -> str:
    """The counted claims: effect, raw and Holm-adjusted intervals, the design's power, the label and why."""
    rows = []
    for v in verdicts:
        paper = ", ".join(f"{k}: {val}" for k, val in v.paper.items())
        unit = " (relative)" if v.detail.get("relative") else ""
        metric = v.detail.get("metric", "")
        label = f"**{BADGE[v.verdict]}**: {v.reason}"
        if v.below_resolution:
            label += f"; ⚠ below resolution ({fmt(v.detail['abs_diff'])} < real-vs-real {fmt(v.detail['floor'])})"
        paper_effect = "" if v.paper_effect is None else f"; paper {fmt(v.paper_effect)}"
        rows.append([f"`{v.id}`", v.statement, v.source, paper, f"`{metric}`", f"{fmt(v.effect)}{unit}",
                     _interval(v.ci_raw), f"{_interval(v.ci)} @ {100 * (1 - v.level):.4g}%",
                     f"{fmt(v.mde)}{paper_effect}", f"{v.n_units} × {v.unit}", label])
    return table(["claim", "statement", "paper source", "paper numbers", "our metric", "our effect", "95% CI",
                  "adjusted CI (Holm)", "detectable (80% power)", "units", "verdict"], rows)


def design_table(verdicts: List[Verdict]) -> str:
    """Facts fixed by construction and metrics at their ceiling: shown, never counted as reproductions."""
    rows = []
    for v in verdicts:
        bound = {k: v.detail[k] for k in ("max", "min") if k in v.detail}
        per_unit = v.detail.get("per_unit") or {p["unit"]: p["method"] for p in v.detail.get("pairs", [])}
        values = ", ".join(fmt(x) for x in dict(per_unit).values())
        holds = {True: "holds", False: "fails"}.get(v.detail.get("holds"), "")
        rows.append([f"`{v.id}`", v.statement, f"`{v.detail.get('metric', '')}`", values,
                     ", ".join(f"{k} {val}" for k, val in bound.items()), f"{BADGE[v.verdict]} ({holds}): {v.reason}"
                     if holds else f"{BADGE[v.verdict]}: {v.reason}"])
    return table(["claim", "statement", "our metric", "value per unit", "bound", "status"], rows)


def verdict_sections(verdicts: List[Verdict]) -> List[str]:
    counted = [v for v in verdicts if v.verdict in COUNTED]
    apart = [v for v in verdicts if v.verdict not in COUNTED]
    n = counts(verdicts)
    summary = ", ".join(f"{k} {c}" for k, c in n.items() if c) or "none counted"
    md = [f"## Verdicts ({summary})", "",
          f"Rule: {PROTOCOL_LINK}. Effects are per replication unit (inner seeds averaged first); the verdict "
          "uses the Holm-adjusted interval across this paper's counted claims; *detectable* is the smallest "
          "effect this design finds with 80% power.", "",
          verdict_table(counted) if counted else "_No counted claims._", ""]
    if apart:
        md += [f"### By design or at ceiling ({len(apart)}, not counted)", "", design_table(apart), ""]
    return md


def select(rows: List[dict], **where) -> List[dict]:
    """The result rows whose fields equal every `where` value."""
    return [r for r in rows if all(r.get(k) == v for k, v in where.items())]


def per_unit(rows: List[dict], metric: str, unit: str = "seed", **where) -> List[float]:
    """`metric` averaged within each replication unit (e.g. the sampling seeds of one training seed)."""
    groups: Dict[object, List[float]] = {}
    for r in select(rows, **where):
        groups.setdefault(r[unit], []).append(r[metric])
    return [float(np.mean(v)) for _, v in sorted(groups.items(), key=lambda kv: str(kv[0]))]


def ci_cell(values: Sequence[float]) -> str:
    """'mean [lo, hi]' with a Student-t 95% interval over repeats (seeds)."""
    from .stats import mean_ci

    m, lo, hi = mean_ci(values)
    return f"{fmt(m)} [{fmt(lo)}, {fmt(hi)}]"


def ci_curve(rows: List[dict], x_key: str, xs: Sequence, metric: str, unit: str = "seed", **where):
    """(mean, lo, hi) arrays of `metric` over replication units at each x, for plots with intervals."""
    from .stats import mean_ci

    stats = [mean_ci(per_unit(rows, metric, unit, **{x_key: x}, **where)) for x in xs]
    return tuple(np.array(v) for v in zip(*stats))


def save_grid(images_uint8, path: Path, nrow: int = 10):
    """A PNG grid of uint8 [N, C, H, W] images, upscaled 4x so small digits are legible."""
    import torch.nn.functional as F
    from torchvision.utils import save_image

    x = images_uint8.float() / 255.0
    x = F.interpolate(x, scale_factor=4, mode="nearest")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_image(x, str(path), nrow=nrow, padding=2, pad_value=1.0)


def class_grid(images_uint8, labels, per_class: int = 10, num_classes: int = 10):
    """Reorder images so that, in a grid of `num_classes` columns, column j holds class j."""
    import torch

    cols = [images_uint8[labels == c][:per_class] for c in range(num_classes)]
    rows = min(len(c) for c in cols)
    return torch.stack([cols[c][r] for r in range(rows) for c in range(num_classes)])


def plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as p

    return p


def side_by_side(left: Path, right: Path, out: Path, titles: Sequence[str]):
    """Two PNG grids next to each other with titles (e.g. baseline vs method on the same noise)."""
    from PIL import Image

    p = plt()
    fig, axes = p.subplots(1, 2, figsize=(10, 5.4))
    for ax, path, title in zip(axes, (left, right), titles):
        ax.imshow(Image.open(path), cmap="gray")
        ax.set_title(title)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    p.close(fig)


def protocol_table(protocol: Dict[str, object]) -> str:
    return table(["", ""], [[k, v] for k, v in protocol.items()])


def environment_card(env: Dict[str, object]) -> Dict[str, object]:
    """The environment as protocol rows: key libraries, the CPU and a digest of every package version."""
    keys = ("python", "torch", "diffusers", "transformers", "accelerate", "datasets", "open_clip_torch", "scipy",
            "numpy", "statsmodels")
    card = {k: env[k] for k in keys if env.get(k)}
    card["packages"] = f"{len(env.get('packages', {}))} pinned, digest `{env.get('packages_digest')}` (all in verdicts.json)"
    card["cpu"] = f"{env.get('cpu_model')}, {env.get('cpus_usable')} cores, flags {' '.join(env.get('cpu_flags', []))}"
    card["torch threads"] = env.get("torch_threads")
    return card


def write_paper_report(reports_dir: Path, name: str, title: str, intro: str, verdicts: List[Verdict],
                       sections: Sequence[str], protocol: Dict[str, object],
                       provenance: Optional[Dict[str, object]] = None) -> Path:
    """reports/<name>/README.md + verdicts.json (verdicts, commit, input hashes, environment), then the index."""
    from .provenance import environment

    out = Path(reports_dir) / name
    out.mkdir(parents=True, exist_ok=True)
    prov = dict(provenance or {})
    env = prov.get("environment") or environment()
    prov["environment"] = env
    inputs = prov.get("inputs") or {}
    card = {**protocol, **({"commit": f"`{prov['commit']}`"} if "commit" in prov else {})}
    card.update({f"input `{k}`": f"md5 `{h}`" for k, h in inputs.items()})
    md = [f"# {title}", "", "*Generated by `dvc repro`; do not edit by hand.*", "", intro, ""]
    md += verdict_sections(verdicts)
    md += [s.rstrip() + "\n" for s in sections]
    md += ["## Protocol and provenance", "", protocol_table({**card, **environment_card(env)}), ""]
    (out / "README.md").write_text("\n".join(md))
    (out / "verdicts.json").write_text(json.dumps(
        {"name": name, "title": title, "profile": protocol.get("profile"),
         "git_sha": prov.get("commit", protocol.get("git sha")), "generated": time.strftime("%Y-%m-%d %H:%M:%S"),
         "counts": counts(verdicts), "verdicts": verdicts_to_json(verdicts), "provenance": prov}, indent=2,
        default=str))
    update_index(reports_dir)
    return out / "README.md"


def update_index(reports_dir: Path) -> Path:
    """Rebuild reports/README.md from every reports/*/verdicts.json."""
    reports_dir = Path(reports_dir)
    rows = []
    for vj in sorted(reports_dir.glob("*/verdicts.json")):
        d = json.loads(vj.read_text())
        vs = d.get("verdicts", [])
        n = {**counts(vs), BY_DESIGN: sum(v["verdict"] not in COUNTED for v in vs)}
        cell = " · ".join(f"{BADGE[k]} {c}" for k, c in n.items() if c) or "—"
        if vs and "counts" not in d:  # written before docs/verdicts.md's rule; its pipeline has to rerun
            cell += " (previous verdict rule, rerun pending)"
        rows.append([f"[{d['name']}]({vj.parent.name}/README.md)", d["title"], cell, d.get("profile", ""),
                     f"`{str(d.get('git_sha', ''))[:10]}`"])
    md = ["# Reports", "", "Generated by the report stages (`dvc repro`); one row per paper or shared stage. "
          "How a verdict is reached: [docs/verdicts.md](../docs/verdicts.md); design facts and ceiling flags "
          f"({BADGE[BY_DESIGN]}) are shown but not counted.", "",
          table(["report", "title", "verdicts", "profile", "git sha"], rows), ""]
    path = reports_dir / "README.md"
    path.write_text("\n".join(md))
    return path
