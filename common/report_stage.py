"""The report stage every paper shares: a paper's `report.py` is its figures and tables, nothing else.

`ReportStage.load` reads the config, the paper's `results.json` and `claims.yaml` (-> verdicts) and makes
the figures folder; `figure` is the figure context; `publish` renders the paper's markdown template
(`papers/<name>/report.md`, Jinja2 with placeholders for tables, numbers and figures) and writes the
report, its provenance and the MLflow runs (common/publish.py). Report prose lives in the template, so
a reader edits sentences without reading Python, and `python -m common.dvc_deps` lists the template as
a dep of the report stage (editing it reruns the stage).

Template shape: the first line is `# Title`; the text before the first `## ` heading is the intro
(the verdict tables are inserted after it); each `## ` heading starts a section. A `## Protocol`
section holds the protocol card as `- key: value` lines (`{{ sampling_card }}` expands to the lines
every sampling paper on the base model shares); it is moved into the report's "Protocol and
provenance" table, after `profile`. A placeholder that the stage does not provide is an error naming
the template (Jinja2 StrictUndefined), not a blank.
"""

from __future__ import annotations

import dataclasses
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


PROTOCOL_HEADING = "## Protocol"


def split_protocol(path: Path, sections: List[str]) -> Tuple[List[str], Dict[str, str]]:
    """(the other sections, the `- key: value` lines of the template's `## Protocol` section as a dict)."""
    rest, card = [], {}
    for sec in sections:
        head, _, body = sec.partition("\n")
        if head.strip() != PROTOCOL_HEADING:
            rest.append(sec)
            continue
        for line in filter(str.strip, body.split("\n")):
            key, sep, value = line.removeprefix("- ").partition(": ")
            if not line.startswith("- ") or not sep:
                raise TemplateError(f"{path}: protocol line {line!r} is not '- key: value'")
            card[key.strip()] = value.strip()
    return rest, card


def sampling_card(res: dict) -> str:
    """The protocol lines of a sampling paper on the shared base model, from its results.json fields."""
    return "\n".join([f"- base model: models/base_model (step {res['base_model_step']})",
                      f"- feature extractor: {res['backbone']}",
                      f"- reference set: held-out split, {res['num_reference']} images",
                      f"- model calls: {res['model_calls']:,}", f"- wall time (evaluate): {res['eval_seconds']:.0f} s"])


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


def _calling_paper() -> str:
    """<paper> of the module `papers.<paper>.report` that called ReportStage.load (also under `python -m`)."""
    frame = sys._getframe(2)
    spec = frame.f_globals.get("__spec__")
    parts = (spec.name if spec is not None else frame.f_globals.get("__name__", "")).split(".")
    if len(parts) < 3 or parts[0] != "papers":
        raise ValueError(f"ReportStage.load: cannot tell the paper of module {'.'.join(parts)!r}; pass paper=")
    return parts[1]


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
    def load(cls, argv: Optional[Sequence[str]] = None, *, paper: Optional[str] = None, results: str = "results.json",
             claims: Union[Path, None, bool] = None, template: Optional[Path] = None, out: Optional[Path] = None,
             also: Sequence[str] = ()):
        """The paper is the calling module's package (`papers.<paper>.report`) unless given, its schema that of
        papers/<paper>/config.py. `also`: other JSON outputs of the paper (e.g. curation.json) whose rows the
        claims read too; `claims=False`: a page without claims (a comparison across papers)."""
        from .cli import paper_schema

        paper = paper or _calling_paper()
        cfg = load_config(paper_schema(paper), paper=paper, overrides=sys.argv[1:] if argv is None else list(argv))
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

    def ci_table(self, header: Sequence[str], groups: Sequence[Tuple[Any, Dict[str, Any]]], metrics: Sequence[str],
                 unit: str = "seed", rows: Optional[List[dict]] = None) -> str:
        """A markdown table: one row per (label, where) group, 'mean [95% CI]' over units per metric."""
        return table(header, ci_table(self.rows if rows is None else rows, groups, metrics, unit))

    def curves(self, name: str, x_key: str, xs: Sequence, metric: str, arms: Dict[str, Dict[str, Any]],
               unit: str = "seed", nfe: bool = False, figsize=(5.2, 3.5), **where):
        """Stock figure: `metric` vs `x_key` with 95% intervals over units, one line per arm
        (label -> its row filter and line style); log NFE axis if `nfe`. Returns the axes."""
        with self.figure(name, figsize=figsize) as ax:
            for label, arm in arms.items():
                errorbar_curve(ax, self.rows, x_key, xs, metric, unit, label, **where, **arm)
            if nfe:
                nfe_axis(ax, xs, metric)
            else:
                ax.set(xlabel=x_key, ylabel=metric)
        return ax

    def publish(self, protocol: Optional[Dict[str, object]] = None, params: Optional[dict] = None,
                metrics: Optional[Dict[str, float]] = None, inputs: Sequence[Path] = (), **values) -> Path:
        """Render the template with `values` (plus cfg, results, verdicts, table, sampling_card) and write
        the report. The protocol card is the template's `## Protocol` section (plus `protocol`); the MLflow
        params default to the paper's own config sections, the metrics always include results.json's
        top-level wall times (`*seconds`)."""
        from .config import RootConfig, to_dict
        from .publish import publish

        card = sampling_card(self.results) if "base_model_step" in self.results else ""
        title, intro, sections = render_template(
            self.template, cfg=self.cfg, res=self.results, verdicts={v.id: v for v in self.verdicts}, table=table,
            sampling_card=card, **values)
        sections, card = split_protocol(self.template, sections)
        protocol = {"profile": self.cfg.profile, **card, **(protocol or {})}
        if params is None:
            root = {f.name for f in dataclasses.fields(RootConfig)}
            params = {k: v for k, v in to_dict(self.cfg).items() if k not in root}
        seconds = {k: float(v) for k, v in self.results.items() if k.endswith("seconds") and isinstance(v, (int, float))}
        path = publish(self.cfg, self.paper, title, intro, self.verdicts, sections, protocol, params,
                       {**seconds, **(metrics or {})}, [self.figures, *self.artifacts], inputs)
        print(f"wrote {path}")
        return path
