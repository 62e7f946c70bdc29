"""The report stage every paper shares: a paper's `report.py` is its figures and tables, nothing else.

`ReportStage.load` reads the config, the paper's `results.json` and `claims.yaml` (-> verdicts) and makes
the figures folder; `figure` is the figure context; `publish` renders the paper's markdown template
(`papers/<name>/report.md`, Jinja2 with placeholders for tables, numbers and figures) and writes the
report, its provenance and the MLflow runs (common/publish.py). Report prose lives in the template, so
a reader edits sentences without reading Python, and `python -m common.dvc_deps` lists the template as
a dep of the report stage (editing it reruns the stage).

Template shape: the first line is `# Title`; the text before the first `## ` heading is the intro
(the verdict tables are inserted after it); each `## ` heading starts a section. A placeholder that
the stage does not provide is an error naming the template (Jinja2 StrictUndefined), not a blank.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from .claims import Verdict, evaluate_claims, load_claims
from .config import UserError, load_config, read_json, repo_root, resolve
from .report import ci_cell, ci_curve, fmt, per_unit, plt, select, table


class TemplateError(UserError):
    """A report template that does not render (unknown placeholder, syntax error): names the file."""


def render_template(path: Path, **values) -> Tuple[str, str, List[str]]:
    """(title, intro, sections) of the markdown template at `path` rendered with `values`."""
    import jinja2

    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True,
                             lstrip_blocks=True, autoescape=False)
    env.filters.update(fmt=fmt, pct=lambda x, digits=1: f"{x:+.{digits}%}", abs=abs)
    try:
        text = env.from_string(Path(path).read_text()).render(**values)
    except jinja2.TemplateError as e:
        line = f" line {e.lineno}" if getattr(e, "lineno", None) else ""
        raise TemplateError(f"{path}{line}: {type(e).__name__}: {e}") from e
    lines = text.strip("\n").split("\n")
    if not lines[0].startswith("# "):
        raise TemplateError(f"{path}: the first line must be the report title ('# Title')")
    title, body = lines[0][2:].strip(), "\n".join(lines[1:])
    chunks = ("\n" + body).split("\n## ")
    return title, chunks[0].strip(), [f"## {c.strip()}" for c in chunks[1:]]


def errorbar_curve(ax, rows: List[dict], x_key: str, xs: Sequence, metric: str, unit: str, label: str,
                   **where):
    """Stock plot: `metric` vs `x_key`, mean and 95% interval over replication units, one line per arm."""
    style = {k: where.pop(k) for k in ("color", "marker", "ls", "mfc", "lw") if k in where}
    m, lo, hi = ci_curve(rows, x_key, xs, metric, unit=unit, **where)
    ax.errorbar(list(xs), m, yerr=[m - lo, hi - m], capsize=3, label=label, **{"marker": "o", **style})
    return m


def ci_table(rows: List[dict], groups: Sequence[Tuple[Any, Dict[str, Any]]], metrics: Sequence[str],
             unit: str) -> List[List[str]]:
    """One table row per (label, where) group: the label, then 'mean [95% CI]' over units for each metric.

    A tuple label fills several leading columns (e.g. `(sampler, nfe, arm)`)."""
    return [[*(label if isinstance(label, tuple) else (label,)),
             *(ci_cell(per_unit(rows, k, unit, **where)) for k in metrics)] for label, where in groups]


def nfe_axis(ax, nfes: Sequence[int], ylabel: str, xlabel: str = "sampling steps (NFE)", **kw):
    """Stock axis for metric-vs-NFE plots: log x, ticked and labelled at exactly the evaluated NFEs."""
    from matplotlib.ticker import NullFormatter

    xs = sorted(set(nfes))
    ax.set(xlabel=xlabel, ylabel=ylabel, xscale="log", xticks=xs, xticklabels=[str(n) for n in xs], **kw)
    ax.xaxis.set_minor_formatter(NullFormatter())


@dataclass
class ReportStage:
    """What every report stage loads before its paper-specific figures and tables."""

    cfg: Any
    paper: str
    out: Path                       # reports/<paper>: results.json, samples/, figures/, README.md
    results: dict
    verdicts: List[Verdict]
    template: Path
    artifacts: List[Path] = field(default_factory=list)

    @classmethod
    def load(cls, config_cls, paper: str, argv: Optional[Sequence[str]] = None, *, results: str = "results.json",
             claims: Union[Path, None, bool] = None, template: Optional[Path] = None, out: Optional[Path] = None,
             also: Sequence[str] = ()):
        """`also`: other JSON outputs of the paper (e.g. curation.json) whose rows the claims read too;
        `claims=False`: a page without claims (a comparison across papers)."""
        cfg = load_config(config_cls, paper=paper, overrides=sys.argv[1:] if argv is None else list(argv))
        here = repo_root() / "papers" / paper
        out = Path(out) if out is not None else resolve(cfg, cfg.paths.reports, paper)
        res = read_json(out / results, keys=("rows",))
        rows = res["rows"] + [r for name in also for r in read_json(out / name, keys=("rows",))["rows"]]
        verdicts = [] if claims is False else evaluate_claims(load_claims(claims or here / "claims.yaml"), rows,
                                                              res.get("floors"))
        (out / "figures").mkdir(parents=True, exist_ok=True)
        return cls(cfg, paper, out, res, verdicts, template or here / "report.md", [out / n for n in (results, *also)])

    @property
    def rows(self) -> List[dict]:
        return self.results["rows"]

    @property
    def figures(self) -> Path:
        return self.out / "figures"

    def read(self, name: str, keys: Sequence[str] = ()) -> dict:
        """Another JSON output of this paper (e.g. train.json), also logged as an artifact."""
        self.artifacts.append(self.out / name)
        return read_json(self.out / name, keys=keys)

    def select(self, **where) -> List[dict]:
        return select(self.rows, **where)

    @contextmanager
    def figure(self, name: str, figsize=(5.4, 3.6), **subplots):
        """`with stage.figure("fid_vs_nfe") as ax:` draws, lays out and saves figures/<name>.png."""
        p = plt()
        fig, ax = p.subplots(figsize=figsize, **subplots)
        try:
            yield ax
            for a in ax.flat if hasattr(ax, "flat") else [ax]:
                if a.get_legend() is None and a.get_legend_handles_labels()[0]:
                    a.legend(fontsize=8)
            fig.tight_layout()
            fig.savefig(self.figures / f"{name}.png", dpi=120)
        finally:
            p.close(fig)

    def publish(self, protocol: Dict[str, object], params: dict, metrics: Dict[str, float],
                inputs: Sequence[Path] = (), **values) -> Path:
        """Render the template with `values` (plus cfg, results, verdicts, table) and write the report."""
        from .publish import publish

        title, intro, sections = render_template(
            self.template, cfg=self.cfg, res=self.results, verdicts={v.id: v for v in self.verdicts}, table=table,
            **values)
        path = publish(self.cfg, self.paper, title, intro, self.verdicts, sections, protocol, params, metrics,
                       [self.figures, *self.artifacts], inputs)
        print(f"wrote {path}")
        return path
