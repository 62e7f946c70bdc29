"""One table with every paper and shared stage: verdicts, freshness, expected CPU time, report.

    python -m common.status              # plain text table
    python -m common.status --markdown   # the same table as Markdown (the README's table)
    python -m common.status --json       # every field, for scripts
    python -m common.status --no-dvc     # skip `dvc status` (the "up to date" column reads "not checked")

Rows: every paper with a `papers/<name>/dvc.yaml`, then every stage of the root `dvc.yaml`.
Columns:
  reproduced / not reproduced / inconclusive
                 counted labels of reports/<name>/verdicts.json (none: "no report yet")
  by design, at ceiling
                 claims reported apart and never counted (design facts, saturated metrics)
  up to date     from ONE `dvc status --json` call over the whole repository, mapped to the paper's
                 own stages and everything upstream of them (shared stages, other papers' stages)
  CPU min        expected wall minutes of `dvc repro papers/<name>/dvc.yaml` on the reference
                 machine (2 CPU cores, cpu profile) with the shared stages cached
  shared stages  the root stages the paper pulls in, with their expected minutes together
  from scratch   the paper + its shared stages + the papers it pulls in (nothing cached)
  full profile   "configured, smoke-tested" (set up at paper scale, never run on GPUs: docs/gpu.md; its
                 paper-scale networks and two steps on a miniature of its data run in
                 tests/test_full_profile.py, docs/full_profile.md) or "stage raises; smoke-tested" (the
                 models, loaders and steps are tested the same way, but the stage entry point still stops
                 with an error naming the missing data or model)

Expected minutes, shared-stage lists and full-profile needs are data in papers/catalog.yaml. A paper
with a dvc.yaml but no catalog entry is an error naming the paper. The shared-stage lists are also
derived here from the dvc.yaml files (a dependency on a root stage's output, transitively); a
disagreement is printed as a warning (and fails tests/common/test_status.py).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Set

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
CATALOG = Path("papers") / "catalog.yaml"
ROOT_DVC = "dvc.yaml"

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"
BY_DESIGN, AT_CEILING = "by design", "at ceiling"
COUNTED = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE)
APART = (BY_DESIGN, AT_CEILING)  # reported, never counted
LABELS = COUNTED + APART

CONFIGURED, RAISES = "configured, never run", "not runnable yet (raises)"
FULL_STATUSES = (CONFIGURED, RAISES)
_PAPER_KEYS = {"title", "expected_cpu_minutes", "measured", "shared_stages", "upstream_papers", "full_profile"}
_PAPER_REQUIRED = {"title", "expected_cpu_minutes", "shared_stages", "full_profile"}
_SHARED_KEYS = {"title", "expected_cpu_minutes", "measured", "full_profile"}
_FULL_KEYS = {"status", "data", "weights", "scale", "gpu_hours"}


class StatusError(Exception):
    """The catalog, a dvc.yaml or a verdicts.json cannot be read as expected (the message says which)."""


# ----------------------------------------------------------------------------------------------
# DVC stage graph (static: the YAML files only)
# ----------------------------------------------------------------------------------------------

@dataclass
class Stage:
    key: str             # DVC's address, as `dvc status` prints it: `name` (root) or `papers/x/dvc.yaml:name`
    name: str
    paper: Optional[str]  # None for a root stage
    deps: List[str]      # repository-relative POSIX paths
    outs: List[str]


def _entry_paths(entries) -> List[str]:
    """Paths of a deps/outs/metrics/plots list: plain strings or {path: options} mappings."""
    out = []
    for e in entries or []:
        if isinstance(e, str):
            out.append(e)
        elif isinstance(e, Mapping):
            out.extend(str(k) for k in e)
    return out


def _norm(base: Path, path: str, root: Path) -> str:
    p = os.path.normpath(os.path.join(str(base), path))
    return Path(os.path.relpath(p, str(root))).as_posix()


def paper_dvc_files(root: Path) -> List[Path]:
    return sorted(Path(root).glob("papers/*/dvc.yaml"))


def load_stages(root: Path) -> Dict[str, Stage]:
    """Every stage of the root dvc.yaml and of papers/*/dvc.yaml, keyed by DVC's address, in file order."""
    root = Path(root)
    files = ([root / ROOT_DVC] if (root / ROOT_DVC).is_file() else []) + paper_dvc_files(root)
    stages: Dict[str, Stage] = {}
    for f in files:
        try:
            doc = yaml.safe_load(f.read_text()) or {}
        except yaml.YAMLError as e:
            raise StatusError(f"{f.relative_to(root)}: not valid YAML: {e}") from e
        rel = f.relative_to(root).as_posix()
        paper = None if rel == ROOT_DVC else f.parent.name
        for name, st in (doc.get("stages") or {}).items():
            st = st or {}
            if "foreach" in st or "matrix" in st:
                raise StatusError(f"{rel}: stage {name!r} uses foreach/matrix, which common/status.py does not expand")
            base = f.parent / str(st.get("wdir", "."))
            key = name if paper is None else f"{rel}:{name}"
            stages[key] = Stage(
                key=key, name=name, paper=paper,
                deps=[_norm(base, p, root) for p in _entry_paths(st.get("deps"))],
                outs=[_norm(base, p, root) for k in ("outs", "metrics", "plots") for p in _entry_paths(st.get(k))],
            )
    return stages


def _overlaps(a: str, b: str) -> bool:
    """DVC's rule for a dependency on an output: the same path, or one inside the other."""
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def upstream_graph(stages: Mapping[str, Stage]) -> Dict[str, Set[str]]:
    """stage key -> keys of the stages whose outputs it depends on (direct edges)."""
    return {k: {o.key for o in stages.values() if o.key != k and any(_overlaps(d, out) for d in s.deps for out in o.outs)}
            for k, s in stages.items()}


def closure(graph: Mapping[str, Set[str]], start: Iterable[str]) -> Set[str]:
    """Every stage upstream of `start` (not including `start` itself unless it is upstream of itself)."""
    seen: Set[str] = set()
    todo = [u for s in start for u in graph.get(s, ())]
    while todo:
        k = todo.pop()
        if k not in seen:
            seen.add(k)
            todo.extend(graph.get(k, ()))
    return seen


@dataclass
class Pulls:
    own: List[str]              # the paper's own stage keys
    upstream: List[str]         # every stage key upstream of them (shared and other papers')
    shared_stages: List[str]    # root stage names among `upstream`, in root dvc.yaml order
    upstream_papers: List[str]  # other papers among `upstream`, sorted


def pulls(stages: Mapping[str, Stage], graph: Mapping[str, Set[str]], paper: Optional[str],
          own: Optional[Sequence[str]] = None) -> Pulls:
    """What `dvc repro` of a paper (or of one root stage, `own=[name]`) pulls in."""
    own = list(own) if own is not None else [k for k, s in stages.items() if s.paper == paper]
    up = [k for k in stages if k in closure(graph, own) and k not in own]
    return Pulls(own=own, upstream=up,
                 shared_stages=[stages[k].name for k in up if stages[k].paper is None],
                 upstream_papers=sorted({stages[k].paper for k in up if stages[k].paper not in (None, paper)}))


# ----------------------------------------------------------------------------------------------
# Catalog
# ----------------------------------------------------------------------------------------------

def _check_minutes(where: str, v) -> None:
    if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0):
        raise StatusError(f"{where}: expected_cpu_minutes must be a number of minutes >= 0 or null, got {v!r}")


def load_catalog(root: Path, papers: Sequence[str], root_stages: Sequence[str]) -> dict:
    """papers/catalog.yaml, validated against the papers that have a dvc.yaml and the root stages."""
    path = Path(root) / CATALOG
    if not path.is_file():
        raise StatusError(f"{CATALOG} not found under {root}: it lists every paper's title, expected CPU minutes, "
                          f"shared stages and full-profile needs")
    try:
        cat = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise StatusError(f"{CATALOG}: not valid YAML: {e}") from e
    if not isinstance(cat, Mapping) or set(cat) - {"papers", "shared_stages"}:
        raise StatusError(f"{CATALOG}: top-level keys must be `papers` and `shared_stages`, "
                          f"got {sorted(cat) if isinstance(cat, Mapping) else type(cat).__name__}")
    cp, cs = cat.get("papers") or {}, cat.get("shared_stages") or {}

    missing = [p for p in papers if p not in cp]
    if missing:
        raise StatusError(
            f"{CATALOG} has no entry for paper{'s' if len(missing) > 1 else ''} "
            + ", ".join(f"'{p}' (papers/{p}/dvc.yaml exists)" for p in missing)
            + ": add title, expected_cpu_minutes, shared_stages and full_profile")
    extra = [p for p in cp if p not in papers]
    if extra:
        raise StatusError(f"{CATALOG} lists paper{'s' if len(extra) > 1 else ''} {', '.join(map(repr, extra))} "
                          f"with no papers/<name>/dvc.yaml: remove the entry or add the pipeline")
    missing = [s for s in root_stages if s not in cs]
    if missing:
        raise StatusError(f"{CATALOG}: shared_stages has no entry for root dvc.yaml stage{'s' if len(missing) > 1 else ''} "
                          f"{', '.join(map(repr, missing))}: add title and expected_cpu_minutes")
    extra = [s for s in cs if s not in root_stages]
    if extra:
        raise StatusError(f"{CATALOG}: shared_stages lists {', '.join(map(repr, extra))}, not a stage of the root dvc.yaml")

    for s, e in cs.items():
        where = f"{CATALOG}: shared stage '{s}'"
        if not isinstance(e, Mapping):
            raise StatusError(f"{where}: expected a mapping")
        if set(e) - _SHARED_KEYS:
            raise StatusError(f"{where}: unknown key(s) {sorted(set(e) - _SHARED_KEYS)} (allowed: {sorted(_SHARED_KEYS)})")
        if "expected_cpu_minutes" not in e:
            raise StatusError(f"{where}: expected_cpu_minutes is missing (null if not measured)")
        _check_minutes(where, e["expected_cpu_minutes"])
    for p, e in cp.items():
        where = f"{CATALOG}: paper '{p}'"
        if not isinstance(e, Mapping):
            raise StatusError(f"{where}: expected a mapping")
        if set(e) - _PAPER_KEYS:
            raise StatusError(f"{where}: unknown key(s) {sorted(set(e) - _PAPER_KEYS)} (allowed: {sorted(_PAPER_KEYS)})")
        if _PAPER_REQUIRED - set(e):
            raise StatusError(f"{where}: missing key(s) {sorted(_PAPER_REQUIRED - set(e))}")
        _check_minutes(where, e["expected_cpu_minutes"])
        for key, known in (("shared_stages", root_stages), ("upstream_papers", papers)):
            v = e.get(key) or []
            if not isinstance(v, list) or any(x not in known for x in v):
                raise StatusError(f"{where}: {key} must be a list of {'root dvc.yaml stages' if key == 'shared_stages' else 'papers'}"
                                  f", got {v!r} (known: {', '.join(known)})")
        fp = e["full_profile"]
        if not isinstance(fp, Mapping) or fp.get("status") not in FULL_STATUSES or set(fp) - _FULL_KEYS:
            raise StatusError(f"{where}: full_profile must be a mapping with keys {sorted(_FULL_KEYS)} and status one of "
                              f"{FULL_STATUSES}, got {fp!r}")
    return {"papers": dict(cp), "shared_stages": dict(cs)}


def catalog_warnings(catalog: Mapping, derived: Mapping[str, Pulls]) -> List[str]:
    """Where the catalog's shared_stages / upstream_papers differ from what the dvc.yaml files pull in."""
    out = []
    for p, d in derived.items():
        e = catalog["papers"][p]
        for key, have in (("shared_stages", d.shared_stages), ("upstream_papers", d.upstream_papers)):
            listed = list(e.get(key) or [])
            if set(listed) != set(have):
                out.append(f"{CATALOG}: paper '{p}' lists {key} {listed}, but its dvc.yaml pulls in {have}")
    return out


# ----------------------------------------------------------------------------------------------
# Verdicts and DVC status
# ----------------------------------------------------------------------------------------------

def verdict_counts(path: Path) -> Optional[dict]:
    """{label: count for every label, "profile": ...} of a verdicts.json; None when the file is absent."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise StatusError(f"{path}: not valid JSON: {e}") from e
    counts = dict.fromkeys(LABELS, 0)
    for i, v in enumerate(doc.get("verdicts") or []):
        label = v.get("verdict") if isinstance(v, Mapping) else None
        if label not in counts:
            vid = v.get("id", "?") if isinstance(v, Mapping) else repr(v)
            raise StatusError(f"{path}: verdict {i} (id {vid}) has label "
                              f"{label!r}; known labels: {', '.join(LABELS)}")
        counts[label] += 1
    return {"counts": counts, "profile": doc.get("profile"), "generated": doc.get("generated")}


def dvc_status(root: Path, timeout: float = 900) -> Dict[str, list]:
    """One `dvc status --json` over the whole repository: {stage key: changes} for every stage not up to date."""
    try:
        r = subprocess.run([sys.executable, "-m", "dvc", "status", "--json"], cwd=str(root), capture_output=True,
                           text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise StatusError(f"`dvc status --json` took longer than {timeout:.0f} s") from e
    if r.returncode != 0:
        msg = (r.stderr or r.stdout).strip().splitlines()
        raise StatusError(f"`dvc status --json` failed (exit {r.returncode}): {msg[-1] if msg else 'no output'}")
    text = r.stdout.strip()
    start = text.find("{")  # anything DVC prints before its JSON
    try:
        return json.loads(text[start:]) if start >= 0 else {}
    except json.JSONDecodeError as e:
        raise StatusError(f"`dvc status --json` printed something that is not JSON: {text[:200]!r}") from e


def _reasons(entry) -> List[str]:
    """`changed deps` -> `deps`, `always changed` -> `always changed`, ... of one stage's `dvc status` entry."""
    out = []
    for item in entry if isinstance(entry, list) else [entry]:
        for k in (item if isinstance(item, Mapping) else [item]):
            out.append(str(k).replace("changed ", "", 1) if str(k).startswith("changed ") else str(k))
    return out


def freshness(p: Pulls, changed: Mapping[str, object], stages: Mapping[str, Stage]) -> dict:
    own = [stages[k].name for k in p.own if k in changed]
    up = [k for k in p.upstream if k in changed]
    reasons = sorted({r for k in p.own if k in changed for r in _reasons(changed[k])})
    return {"up_to_date": not own and not up, "stale_own": own, "stale_upstream": up, "reasons": reasons,
            "own_total": len(p.own), "upstream_total": len(p.upstream)}


def freshness_text(f: Optional[dict]) -> str:
    if f is None:
        return "not checked"
    if f["up_to_date"]:
        return "yes"
    parts = []
    if f["stale_own"]:
        why = f" ({', '.join(f['reasons'])})" if f.get("reasons") else ""
        parts.append(f"{len(f['stale_own'])}/{f['own_total']} own{why}")
    if f["stale_upstream"]:
        parts.append(f"{len(f['stale_upstream'])}/{f['upstream_total']} upstream")
    return "no: " + "; ".join(parts) + " stale"


# ----------------------------------------------------------------------------------------------
# Rows
# ----------------------------------------------------------------------------------------------

@dataclass
class Row:
    kind: str                          # "paper" | "shared"
    name: str
    title: str
    counts: Optional[Dict[str, int]]   # None: no verdicts.json yet
    verdict_profile: Optional[str]
    dvc: Optional[dict]                # None: not checked
    cpu_minutes: Optional[float]
    shared_stages: List[str]
    shared_minutes: Optional[float]    # None when one of them is not measured
    upstream_papers: List[str]
    from_scratch_minutes: Optional[float]
    full_profile: Optional[str]        # status for papers, the catalog's note for shared stages
    report: Optional[str]              # repository-relative path of the report's README.md
    measured: Optional[str] = None
    full_profile_detail: Optional[dict] = None


def _sum(values: Iterable[Optional[float]]) -> Optional[float]:
    vals = list(values)
    return None if any(v is None for v in vals) else round(float(sum(vals)), 2)


def _report(root: Path, folder: str) -> Optional[str]:
    """The folder's README.md if it exists, else the folder itself if it exists (e.g. a figure only)."""
    p = Path(folder) / "README.md"
    if (Path(root) / p).is_file():
        return p.as_posix()
    return folder.rstrip("/") + "/" if (Path(root) / folder).is_dir() else None


def report_folder(stage: Stage) -> Optional[str]:
    """reports/<x> when the stage writes into it (its README.md / verdicts.json or the whole folder)."""
    for o in stage.outs:
        parts = o.split("/")
        if len(parts) >= 2 and parts[0] == "reports":
            return "/".join(parts[:2])
    return None


def build(root: Path = REPO_ROOT, dvc: bool = True, changed: Optional[Mapping[str, object]] = None) -> dict:
    """The status of every paper and shared stage. `changed` (a `dvc status --json` dict) skips the DVC call."""
    root = Path(root)
    stages = load_stages(root)
    graph = upstream_graph(stages)
    papers = [f.parent.name for f in paper_dvc_files(root)]
    root_stages = [s.name for s in stages.values() if s.paper is None]
    cat = load_catalog(root, papers, root_stages)
    cp, cs = cat["papers"], cat["shared_stages"]
    derived = {p: pulls(stages, graph, p) for p in papers}
    warnings = catalog_warnings(cat, derived)

    dvc_error = None
    if changed is None and dvc:
        try:
            changed = dvc_status(root)
        except StatusError as e:
            dvc_error = str(e)
            warnings.append(f"up-to-date column not filled: {e}")
    checked = changed is not None

    def shared_min(names):
        return _sum(cs[s]["expected_cpu_minutes"] for s in names)

    rows: List[Row] = []
    for p in [p for p in cp if p in papers]:  # catalog order (grouped by family)
        e = cp[p]
        shared, ups = list(e.get("shared_stages") or []), list(e.get("upstream_papers") or [])
        own = e["expected_cpu_minutes"]
        v = verdict_counts(root / "reports" / p / "verdicts.json")
        rows.append(Row(
            kind="paper", name=p, title=e["title"], counts=v and v["counts"], verdict_profile=v and v["profile"],
            dvc=freshness(derived[p], changed, stages) if checked else None,
            cpu_minutes=own, shared_stages=shared, shared_minutes=shared_min(shared), upstream_papers=ups,
            from_scratch_minutes=_sum([own, shared_min(shared)] + [cp[u]["expected_cpu_minutes"] for u in ups]),
            full_profile=e["full_profile"]["status"], report=_report(root, f"reports/{p}"),
            measured=e.get("measured"), full_profile_detail=dict(e["full_profile"])))
    for s in root_stages:
        e = cs[s]
        pl = pulls(stages, graph, None, own=[s])
        folder = report_folder(stages[s])
        v = verdict_counts(root / folder / "verdicts.json") if folder else None
        own = e["expected_cpu_minutes"]
        rows.append(Row(
            kind="shared", name=s, title=e.get("title", ""), counts=v and v["counts"],
            verdict_profile=v and v["profile"], dvc=freshness(pl, changed, stages) if checked else None,
            cpu_minutes=own, shared_stages=pl.shared_stages, shared_minutes=shared_min(pl.shared_stages),
            upstream_papers=[], from_scratch_minutes=_sum([own, shared_min(pl.shared_stages)]),
            full_profile=e.get("full_profile"), report=_report(root, folder) if folder else None,
            measured=e.get("measured")))

    prow = [r for r in rows if r.kind == "paper"]
    totals = {
        "counts": {k: sum((r.counts or {}).get(k, 0) for r in prow) for k in LABELS},
        "papers_cpu_minutes": _sum(r.cpu_minutes for r in prow),
        "shared_cpu_minutes": _sum(cs[s]["expected_cpu_minutes"] for s in root_stages),
        "up_to_date": (sum(1 for r in prow if r.dvc and r.dvc["up_to_date"]) if checked else None),
        "papers": len(prow),
    }
    t = totals
    t["everything_minutes"] = _sum([t["papers_cpu_minutes"], t["shared_cpu_minutes"]])
    return {"rows": rows, "totals": totals, "dvc_checked": checked, "dvc_error": dvc_error, "warnings": warnings}


# ----------------------------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------------------------

HEADER = ["paper / stage", "reproduced", "not reproduced", "inconclusive", "by design", "at ceiling", "up to date",
          "CPU min", "shared stages it pulls in", "from scratch min", "full profile", "report"]


def _min(v: Optional[float]) -> str:
    if v is None:
        return "not measured"
    return f"{v:.2g}" if v < 1 else f"{v:.1f}"


def _cells(r: Row, markdown: bool) -> List[str]:
    c = r.counts
    if c is not None:
        counts = [str(c[k]) for k in LABELS]
    elif r.kind == "paper":
        counts = ["no report yet"] + [""] * (len(LABELS) - 1)
    else:  # a shared stage that makes no claims
        counts = ["–"] * len(LABELS)
    pulled = ", ".join(r.shared_stages) if r.shared_stages else "none"
    if r.shared_stages:
        pulled += f" ({_min(r.shared_minutes)} min)"
    if r.upstream_papers:
        pulled += "; papers: " + ", ".join(r.upstream_papers)
    name = r.name if r.kind == "paper" else f"{r.name} (shared)"
    if markdown:
        name = f"[{r.name}](papers/{r.name})" if r.kind == "paper" else f"`{r.name}` (shared)"
    report = r.report or "none"
    if markdown and r.report:
        report = f"[report]({r.report})"
    full = {CONFIGURED: "configured, smoke-tested", RAISES: "stage raises; smoke-tested"}.get(r.full_profile, "–")
    return [name, *counts, freshness_text(r.dvc), _min(r.cpu_minutes), pulled, _min(r.from_scratch_minutes), full, report]


def _total_cells(s: dict) -> List[str]:
    t = s["totals"]
    up = "not checked" if t["up_to_date"] is None else f"{t['up_to_date']}/{t['papers']} papers"
    return [f"all {t['papers']} papers", *[str(t["counts"][k]) for k in LABELS], up, _min(t["papers_cpu_minutes"]),
            f"all shared stages ({_min(t['shared_cpu_minutes'])} min)", _min(t["everything_minutes"]), "", ""]


def to_markdown(s: dict) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for r in s["rows"]:
        lines.append("| " + " | ".join(_cells(r, True)) + " |")
    lines.append("| " + " | ".join(f"**{c}**" if c else "" for c in _total_cells(s)) + " |")
    return "\n".join(lines) + "\n"


def to_text(s: dict) -> str:
    table = [HEADER] + [_cells(r, False) for r in s["rows"]] + [_total_cells(s)]
    widths = [max(len(row[i]) for row in table) for i in range(len(HEADER))]
    fmt = lambda row: "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()
    sep = "  ".join("-" * w for w in widths)
    body = [fmt(table[0]), sep] + [fmt(r) for r in table[1:-1]] + [sep, fmt(table[-1])]
    return "\n".join(body) + "\n"


def to_json(s: dict) -> str:
    return json.dumps({**s, "rows": [asdict(r) for r in s["rows"]]}, indent=2, ensure_ascii=False) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m common.status", description=__doc__.split("\n\n")[0])
    fmt = ap.add_mutually_exclusive_group()
    fmt.add_argument("--markdown", action="store_true", help="print the table as Markdown (for the README)")
    fmt.add_argument("--json", action="store_true", help="print every field as JSON")
    ap.add_argument("--no-dvc", action="store_true", help="skip `dvc status` (the up-to-date column is not filled)")
    ap.add_argument("--root", type=Path, default=REPO_ROOT, help="repository root (default: this checkout)")
    a = ap.parse_args(argv)
    try:
        s = build(a.root, dvc=not a.no_dvc)
    except StatusError as e:
        print(f"common.status: error: {e}", file=sys.stderr)
        return 2
    for w in s["warnings"]:
        print(f"common.status: warning: {w}", file=sys.stderr)
    sys.stdout.write(to_json(s) if a.json else to_markdown(s) if a.markdown else to_text(s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
