"""Keep every DVC stage's `.py` deps equal to the repository modules its entry point imports.

Rule (docs/decisions.md): a stage's DVC deps cover every repository module it imports. Hand-written lists
drift (a report stage imports `common.claims`, which imports `common.evaluation`; forget the
second and editing it leaves the stage "up to date"), so the `.py` part of each list is derived:

    python -m common.dvc_deps --check   # exit 1 and list, per dvc.yaml and stage, what is missing / stale
    python -m common.dvc_deps --write   # rewrite the .py deps of every stage to exactly the closure
    python -m common.dvc_deps --closure papers.cads.report   # print one module's closure

Run `--write` after adding or removing an import; tests/common/test_dvc_deps.py runs the check.

Which stages: every stage of the root `dvc.yaml` and of `papers/*/dvc.yaml` whose `cmd` runs
`python -m <module>` (any `python*` executable, options before `-m` allowed, arguments after the
module ignored) or `accelerate launch [options] -m|--module <module>`; a `cmd` list or `&&`/`;`-chained
commands contribute the union of their modules. Other stages, and modules outside the repository
packages (`python -m pytest`), are left alone; a module name with DVC templating (`${...}`) too.

The closure (static, with `ast`; nothing is imported): starting from the entry module's file,
follow every `import` statement anywhere in the file -- module level, inside functions, in
`try`/`if` blocks, `if TYPE_CHECKING:` included (listing one module too many only costs a rerun) --
plus `importlib.import_module("literal")` / `__import__("literal")`, restricted to the top-level
packages `common` and `papers` (REPO_PACKAGES):
  - `import a.b.c` -> a/b/c.py (or a/b/c/__init__.py);
  - `from a.b import c` -> a/b.py, plus a/b/c.py when `c` is a submodule (else it is an attribute);
  - `from . import x`, `from .x import y`, `from ..x import y` -> resolved against the importing
    module's package, same two cases;
  - `from a import *` -> a's __init__.py only (submodules named in `__all__` are not followed);
  - importing a module runs every enclosing package's `__init__.py`, and they are followed too.
A module's markdown template (`papers/x/report.md` beside `papers/x/report.py`, the report
prose) is listed with its module: editing the prose must rerun the report stage.
A paper's stage (`papers.x.<stage>`) also depends on `papers/x/config.py`, its params schema, which
`ReportStage.load` imports by name (`common.cli.paper_schema`) rather than by an import statement.
Package `__init__.py` files are listed only when they hold code: a file that is empty or holds only
a docstring/comments cannot change behaviour, so it is followed (trivially) but not listed. Adding
code to one makes it a dep of every stage that imports below it, and `--check` says so.

What is rewritten: deps entries ending in `.py` are owned by this tool, all others (data folders,
claims.yaml, models/..., `${...}` templates, dict entries) are kept verbatim in their original
order after the sorted `.py` entries. Paths are written relative to the stage's working directory
(the dvc.yaml's folder joined with `wdir`), which for this repository is the repository root.
The rewrite is a line splice guided by the YAML parser's node positions: every line outside a
rewritten deps list stays byte-identical; a kept entry keeps its own line, trailing comment
included, and full-line comments between entries move with the entry below them (comments above
the first entry stay where they are). A stage with a Python entry but no `deps:` gets one inserted
after `cmd:`. Flow-style lists (`deps: [a, b]`) and deps shared through YAML aliases are refused
with a message. Stdlib + PyYAML only, so the check runs before anything heavy is installed (a
ruamel.yaml round trip would re-emit the whole file; the splice cannot touch anything else).
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
REPO_PACKAGES = ("common", "papers")
_PYTHON_EXE = re.compile(r"^python(\d+(\.\d+)*)?$")


class DepsError(Exception):
    """A dvc.yaml or module the tool cannot handle (message says which and why)."""


# ----------------------------------------------------------------------------------------------
# Import closure
# ----------------------------------------------------------------------------------------------

def module_file(root: Path, name: str, packages: Sequence[str] = REPO_PACKAGES) -> Optional[Path]:
    """The file of repository module `name` (a/b/c.py or a/b/c/__init__.py), or None."""
    parts = name.split(".")
    if not name or parts[0] not in packages or not all(p.isidentifier() for p in parts):
        return None
    base = root.joinpath(*parts)
    if (base.parent / (parts[-1] + ".py")).is_file():
        return base.parent / (parts[-1] + ".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def _has_code(tree: ast.Module) -> bool:
    """Anything besides a module docstring."""
    body = tree.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        body = body[1:]
    return bool(body)


def _parse(path: Path) -> ast.Module:
    try:
        return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except SyntaxError as exc:
        raise DepsError(f"{path}: cannot parse ({exc.msg}, line {exc.lineno})") from exc


def _imported_names(tree: ast.Module, name: str, is_package: bool) -> Iterable[Tuple[str, Tuple[str, ...]]]:
    """(module, names imported from it) for every import in `tree`, relative ones resolved.

    `names` are the candidate submodules (`from m import a, b` -> ("a", "b")); plain imports give ().
    """
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, ()
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".") if package else []
                if node.level - 1 > len(parts) or (node.level - 1 == len(parts) and not node.module):
                    continue  # beyond the top-level package: an ImportError at runtime, not ours
                base_parts = parts[:len(parts) - (node.level - 1)]
                if node.module:
                    base_parts = base_parts + node.module.split(".")
                base = ".".join(base_parts)
            else:
                base = node.module or ""
            yield base, tuple(a.name for a in node.names if a.name != "*")
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            fname = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if fname in ("import_module", "__import__") and not node.args[0].value.startswith("."):
                yield node.args[0].value, ()


@dataclass
class Closure:
    """Repository-relative files (posix) imported by an entry module, and names that did not resolve."""
    files: Set[str] = field(default_factory=set)
    unresolved: Set[str] = field(default_factory=set)


def import_closure(root: Path, entry: str, packages: Sequence[str] = REPO_PACKAGES,
                   _cache: Optional[Dict[str, Tuple[bool, list]]] = None) -> Closure:
    """The repository modules that `python -m entry` imports (see the module docstring for the rules)."""
    root = Path(root)
    cache = _cache if _cache is not None else {}
    out = Closure()
    seen: Set[str] = set()
    todo: List[str] = []

    def add(name: str) -> bool:
        """Queue module `name` and its enclosing packages; False if `name` is not a repository module."""
        if module_file(root, name, packages) is None:
            return False
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            prefix = ".".join(parts[:i])
            if prefix not in seen and module_file(root, prefix, packages) is not None:
                seen.add(prefix)
                todo.append(prefix)
        return True

    if not add(entry):
        raise DepsError(f"entry module {entry!r} not found under {root}")
    parts = entry.split(".")
    if parts[0] == "papers" and len(parts) > 2:  # its config is loaded by name (common.cli.paper_schema)
        add(f"papers.{parts[1]}.config")
    main = f"{entry}.__main__"
    entry_file = module_file(root, entry, packages)
    if entry_file.name == "__init__.py" and module_file(root, main, packages) is not None:
        add(main)  # `python -m package` runs package/__main__.py
    while todo:
        name = todo.pop()
        path = module_file(root, name, packages)
        if name not in cache:
            tree = _parse(path)
            is_package = path.name == "__init__.py"
            cache[name] = (_has_code(tree) or not is_package, list(_imported_names(tree, name, is_package)))
        listed, imports = cache[name]
        if listed:
            out.files.add(path.relative_to(root).as_posix())
            template = path.with_suffix(".md")
            if path.name != "__init__.py" and template.is_file():  # a module's template (report.py -> report.md)
                out.files.add(template.relative_to(root).as_posix())
        for base, names in imports:
            if not base or base.split(".")[0] not in packages:
                continue
            if not add(base):
                # `import common.x.y` where common.x.y does not exist: keep what does, and say so
                parts = base.split(".")
                while parts and not add(".".join(parts)):
                    parts.pop()
                out.unresolved.add(base)
                continue
            for sub in names:
                add(f"{base}.{sub}")  # a submodule if such a file exists, else an attribute: skipped
    return out


# ----------------------------------------------------------------------------------------------
# Stage commands
# ----------------------------------------------------------------------------------------------

def _command_segments(cmd: str) -> List[List[str]]:
    """Split a shell command on `&&`, `||`, `;`, `|` into token lists."""
    lex = shlex.shlex(cmd, posix=True, punctuation_chars=";&|")
    lex.whitespace_split = True
    segments, current = [], []
    for tok in lex:
        if tok and set(tok) <= set(";&|"):
            segments.append(current)
            current = []
        else:
            current.append(tok)
    segments.append(current)
    return [s for s in segments if s]


def _python_module(args: List[str]) -> Optional[str]:
    """MOD in `python [interpreter options] -m MOD ...`; None for a script, `-c` or `-` (stdin)."""
    i = 0
    while i < len(args):
        tok = args[i]
        if tok == "-m":
            return args[i + 1] if i + 1 < len(args) else None
        if tok.startswith("-m"):
            return tok[2:]
        if tok in ("-W", "-X"):
            i += 2  # options that take a value
            continue
        if not tok.startswith("-") or tok == "-" or tok.startswith("-c"):
            return None  # a script, stdin or -c: runs no module
        i += 1
    return None


def entry_modules(cmd) -> List[str]:
    """Modules run with `python [opts] -m MOD ...` or `accelerate launch [opts] -m MOD ...` in `cmd`."""
    cmds = cmd if isinstance(cmd, list) else [cmd]
    found = []
    for one in cmds:
        if not isinstance(one, str):
            continue
        try:
            segments = _command_segments(one)
        except ValueError:
            continue  # unbalanced quotes: not ours to judge
        for toks in segments:
            while toks and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", toks[0]):
                toks = toks[1:]  # VAR=value prefixes
            if toks and toks[0] == "env":
                toks = toks[1:]
                while toks and "=" in toks[0]:
                    toks = toks[1:]
            if not toks:
                continue
            exe = os.path.basename(toks[0])
            if _PYTHON_EXE.match(exe):
                module = _python_module(toks[1:])
            elif exe == "accelerate" and len(toks) > 1 and toks[1] == "launch":
                # accelerate's options take values: look for its -m/--module flag before any script
                head = next((toks[:i] for i, t in enumerate(toks) if t.endswith(".py")), toks)
                flags = [i for i, t in enumerate(head) if t in ("-m", "--module")]
                module = toks[flags[0] + 1] if flags and flags[0] + 1 < len(toks) else None
            else:
                module = None
            if module and not module.startswith("-"):
                found.append(module)
    return found


# ----------------------------------------------------------------------------------------------
# dvc.yaml files
# ----------------------------------------------------------------------------------------------

def dvc_files(root: Path) -> List[Path]:
    """The root dvc.yaml and papers/*/dvc.yaml, in a fixed order."""
    root = Path(root)
    files = [root / "dvc.yaml"] if (root / "dvc.yaml").is_file() else []
    return files + sorted(root.glob("papers/*/dvc.yaml"))


def _mapping_get(node, key: str):
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == key:
                return k, v
    return None, None


def _is_py(dep: str) -> bool:
    """A dep this tool owns: a module, or a module's markdown template (`report.md` beside `report.py`)."""
    return "${" not in dep and (dep.endswith(".py") or (dep.endswith(".md") and Path(dep).name != "README.md"))


@dataclass
class StagePlan:
    """One stage's current and wanted deps, with the line positions needed to rewrite them."""
    name: str
    modules: List[str]
    workdir: Path
    wanted_py: List[str]                   # sorted, workdir-relative
    unresolved: Set[str]
    deps_key: Optional[yaml.Node]          # None: the stage has no deps key
    deps_node: Optional[yaml.Node]
    cmd_key: yaml.Node
    cmd_node: yaml.Node
    current: List[Tuple[Optional[str], yaml.Node]]   # (string value or None for non-strings, node)

    @property
    def current_py(self) -> List[str]:
        return [os.path.normpath(v) for v, _ in self.current if v is not None and _is_py(v)]

    @property
    def missing(self) -> List[str]:
        have = set(self.current_py)
        return [p for p in self.wanted_py if p not in have]

    @property
    def stale(self) -> List[str]:
        want = set(self.wanted_py)
        return sorted({p for p in self.current_py if p not in want})

    @property
    def duplicates(self) -> List[str]:
        py = self.current_py
        return sorted({p for p in py if py.count(p) > 1})

    @property
    def in_sync(self) -> bool:
        return not (self.missing or self.stale or self.duplicates)


def plan_file(dvc_yaml: Path, root: Path = REPO_ROOT, packages: Sequence[str] = REPO_PACKAGES,
              _cache=None) -> Tuple[str, List[StagePlan]]:
    """The text of `dvc_yaml` and the plans of its Python stages (see plan_text)."""
    text = Path(dvc_yaml).read_text(encoding="utf-8")
    return text, plan_text(text, dvc_yaml, root, packages, _cache)


def plan_text(text: str, dvc_yaml: Path, root: Path = REPO_ROOT, packages: Sequence[str] = REPO_PACKAGES,
              _cache=None) -> List[StagePlan]:
    """Parse dvc.yaml `text` (at path `dvc_yaml`, which anchors `wdir`) keeping node positions, and
    compute every Python stage's wanted `.py` deps."""
    dvc_yaml, root = Path(dvc_yaml), Path(root)
    try:
        doc = yaml.compose(text)
    except yaml.YAMLError as exc:
        raise DepsError(f"{dvc_yaml}: not valid YAML: {exc}") from exc
    _, stages = _mapping_get(doc, "stages")
    plans: List[StagePlan] = []
    seen_deps: Set[int] = set()
    cache = _cache if _cache is not None else {}
    if not isinstance(stages, yaml.MappingNode):
        return plans
    for key, body in stages.value:
        name = key.value
        _, do = _mapping_get(body, "do")
        if do is not None:
            continue  # foreach/matrix templates: the module name is templated, out of scope
        cmd_key, cmd = _mapping_get(body, "cmd")
        if cmd is None:
            continue
        if isinstance(cmd, yaml.ScalarNode):
            cmd_value = cmd.value
        elif isinstance(cmd, yaml.SequenceNode):
            cmd_value = [c.value for c in cmd.value if isinstance(c, yaml.ScalarNode)]
        else:
            continue
        modules = [m for m in entry_modules(cmd_value)
                   if "${" not in m and m.split(".")[0] in packages]
        if not modules:
            continue
        _, wdir = _mapping_get(body, "wdir")
        workdir = (dvc_yaml.parent / (wdir.value if isinstance(wdir, yaml.ScalarNode) else ".")).resolve()
        files, unresolved = set(), set()
        for m in modules:
            try:
                closure = import_closure(root, m, packages, cache)
            except DepsError as exc:
                raise DepsError(f"{dvc_yaml}: stage {name}: {exc}") from exc
            files |= closure.files
            unresolved |= closure.unresolved
        wanted = sorted({Path(os.path.relpath(root.resolve() / f, workdir)).as_posix() for f in files})
        deps_key, deps = _mapping_get(body, "deps")
        current: List[Tuple[Optional[str], yaml.Node]] = []
        if deps is not None:
            if isinstance(deps, yaml.ScalarNode) and deps.value in ("", "~", "null"):
                deps = None  # `deps:` with nothing after it
            elif not isinstance(deps, yaml.SequenceNode):
                raise DepsError(f"{dvc_yaml}: stage {name}: deps is not a list")
            elif deps.flow_style and deps.value:
                raise DepsError(f"{dvc_yaml}: stage {name}: deps is a flow-style list ([...]); "
                                "write it as a block list (one `- path` per line)")
            elif id(deps) in seen_deps:
                raise DepsError(f"{dvc_yaml}: stage {name}: deps shared with another stage through a YAML "
                                "alias; give each stage its own list")
            else:
                seen_deps.add(id(deps))
                current = [(item.value if isinstance(item, yaml.ScalarNode) else None, item)
                           for item in deps.value]
        plans.append(StagePlan(name=name, modules=modules, workdir=workdir, wanted_py=wanted,
                               unresolved=unresolved, deps_key=deps_key, deps_node=deps, cmd_key=cmd_key,
                               cmd_node=cmd, current=current))
    return plans


def _blank_or_comment(line: str) -> bool:
    s = line.strip()
    return not s or s.startswith("#")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _block_end(lines: List[str], start: int, column: int) -> int:
    """End (exclusive) of the YAML block whose first line is `start` and whose key or dash sits at
    `column`: the lines after it indented deeper (or `- ` items at `column`, for an indentless list
    under a key), without the blank/comment lines just before the next content line."""
    end = start + 1
    while end < len(lines) and (_blank_or_comment(lines[end]) or _indent(lines[end]) > column
                                or (_indent(lines[end]) == column and lines[end].lstrip().startswith("- ")
                                    and not lines[start].lstrip().startswith("-"))):
        end += 1
    while end > start + 1 and _blank_or_comment(lines[end - 1]):
        end -= 1
    return end


def _rewrite_lines(lines: List[str], plan: StagePlan, newline: str) -> List[str]:
    """`lines` with this stage's deps list replaced (or inserted); lines outside it untouched."""
    if plan.deps_node is None or not plan.current:
        # Insert (or fill) a deps key after cmd: `deps:` at the cmd key's column, items 2 further in.
        indent = " " * plan.cmd_key.start_mark.column
        new = [f"{indent}  - {p}{newline}" for p in plan.wanted_py]
        if plan.deps_key is not None:  # `deps:` present but empty: fill in after its line
            at = plan.deps_key.start_mark.line
            line = lines[at]
            key_text = line.split("#", 1)[0].rstrip()
            if not key_text.endswith(":"):  # `deps: []` / `deps: null`: rewrite the key line
                lines = lines[:at] + [f"{indent}deps:{newline}"] + lines[at + 1:]
            return lines[:at + 1] + new + lines[at + 1:]
        at = _block_end(lines, plan.cmd_key.start_mark.line, plan.cmd_key.start_mark.column)
        return lines[:at] + [f"{indent}deps:{newline}"] + new + lines[at:]

    items = plan.current
    starts = [node.start_mark.line for _, node in items]
    for s, (_, node) in zip(starts, items):
        if not lines[s][:node.start_mark.column].rstrip().endswith("-"):
            raise DepsError(f"stage {plan.name}: deps entry at line {s + 1} does not start its line with `- `")
    # End of the last entry: the first content line indented no deeper than the dashes (the next key),
    # minus the blank/comment lines before it (they stay put). Node end marks point at the next token,
    # so they are not used here.
    last_end = _block_end(lines, starts[-1], lines[starts[0]].index("-"))
    # Each entry owns [lead, end): the full-line comments just above it, then its own lines.
    chunks: List[Tuple[int, int]] = []
    prev_end = starts[0]  # comments above the first entry are not part of it
    for i, s in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else last_end
        while end > s + 1 and _blank_or_comment(lines[end - 1]):
            end -= 1
        lead = s
        while lead > prev_end and _blank_or_comment(lines[lead - 1]):
            lead -= 1
        chunks.append((lead, end))
        prev_end = end
    block_start, block_end = starts[0], last_end
    prefix = lines[starts[0]][:items[0][1].start_mark.column]

    kept_py: Dict[str, List[str]] = {}
    others: List[List[str]] = []
    for (value, _), (lead, end) in zip(items, chunks):
        if value is not None and _is_py(value):
            kept_py.setdefault(os.path.normpath(value), lines[lead:end])
        else:
            others.append(lines[lead:end])
    body: List[str] = []
    for p in plan.wanted_py:
        body += kept_py.get(p, [f"{prefix}{p}{newline}"])
    for chunk in others:
        body += chunk
    return lines[:block_start] + body + lines[block_end:]


def rewrite_text(text: str, plans: List[StagePlan]) -> str:
    """The dvc.yaml text with every out-of-sync stage's `.py` deps set to its closure."""
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith(("\n", "\r")):
        lines[-1] += "\n"
        trailing_fix = True
    else:
        trailing_fix = False
    newline = "\r\n" if "\r\n" in text else "\n"
    # Bottom-up, so earlier stages' line numbers stay valid.
    for plan in sorted(plans, key=lambda p: p.cmd_key.start_mark.line, reverse=True):
        if not plan.in_sync:
            lines = _rewrite_lines(lines, plan, newline)
    out = "".join(lines)
    return out[:-1] if trailing_fix and out.endswith("\n") else out


# ----------------------------------------------------------------------------------------------
# check / write
# ----------------------------------------------------------------------------------------------

@dataclass
class Problem:
    """One stage whose `.py` deps differ from its import closure."""
    dvc_yaml: str
    stage: str
    missing: List[str]
    stale: List[str]
    duplicates: List[str]

    def lines(self) -> List[str]:
        out = []
        if self.missing:
            out.append(f"  {self.stage}: missing {', '.join(self.missing)}")
        if self.stale:
            out.append(f"  {self.stage}: stale (not imported) {', '.join(self.stale)}")
        if self.duplicates:
            out.append(f"  {self.stage}: listed twice {', '.join(self.duplicates)}")
        return out


def _rel(path: Path, root: Path) -> str:
    try:
        return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return str(path)


def check(root: Path = REPO_ROOT, files: Optional[Sequence[Path]] = None,
          packages: Sequence[str] = REPO_PACKAGES) -> Tuple[List[Problem], List[str]]:
    """Problems (stages out of sync) and warnings (imports of repository modules that do not exist)."""
    root = Path(root)
    problems, warnings, cache = [], [], {}
    for f in files if files is not None else dvc_files(root):
        _, plans = plan_file(f, root, packages, cache)
        for p in plans:
            if not p.in_sync:
                problems.append(Problem(_rel(f, root), p.name, p.missing, p.stale, p.duplicates))
            for u in sorted(p.unresolved):
                warnings.append(f"{_rel(f, root)}: stage {p.name}: import of {u} does not resolve to a file")
    return problems, warnings


def write(root: Path = REPO_ROOT, files: Optional[Sequence[Path]] = None,
          packages: Sequence[str] = REPO_PACKAGES) -> List[str]:
    """Rewrite every dvc.yaml whose Python stages are out of sync; the files changed (repo-relative)."""
    root = Path(root)
    changed, cache = [], {}
    for f in files if files is not None else dvc_files(root):
        text, plans = plan_file(f, root, packages, cache)
        new = rewrite_text(text, plans)
        if new != text:
            check_plans = plan_text(new, f, root, packages, cache)
            bad = [p.name for p in check_plans if not p.in_sync]
            if bad or yaml.safe_load(new) is None:
                raise DepsError(f"{f}: rewrite did not converge for stages {bad}; file left unchanged")
            f.write_text(new, encoding="utf-8", newline="")
            changed.append(_rel(f, root))
    return changed


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m common.dvc_deps", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="report stages whose .py deps differ; exit 1 if any")
    mode.add_argument("--write", action="store_true", help="rewrite the .py deps of every out-of-sync stage")
    mode.add_argument("--closure", metavar="MODULE", help="print the repository files MODULE imports")
    ap.add_argument("--root", type=Path, default=REPO_ROOT, help="repository root (default: this checkout)")
    ap.add_argument("files", nargs="*", type=Path,
                    help="dvc.yaml files (default: ROOT/dvc.yaml and ROOT/papers/*/dvc.yaml)")
    args = ap.parse_args(argv)
    root = args.root.resolve()
    files = [f.resolve() for f in args.files] or None
    try:
        if args.closure:
            closure = import_closure(root, args.closure)
            print("\n".join(sorted(closure.files)))
            for u in sorted(closure.unresolved):
                print(f"warning: import of {u} does not resolve to a file", file=sys.stderr)
            return 0
        if args.write:
            changed = write(root, files)
            print("\n".join(f"rewrote deps in {c}" for c in changed) or "all dvc.yaml deps already match the imports")
        problems, warnings = check(root, files)
    except DepsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    if not problems:
        if args.check:
            print("ok: every Python stage's .py deps match its import closure")
        return 0
    by_file: Dict[str, List[Problem]] = {}
    for p in problems:
        by_file.setdefault(p.dvc_yaml, []).append(p)
    for f, ps in by_file.items():
        print(f"{f}:")
        for p in ps:
            print("\n".join(p.lines()))
    print(f"{len(problems)} stage(s) in {len(by_file)} file(s) out of sync with their imports; "
          "run `python -m common.dvc_deps --write`")
    return 1


if __name__ == "__main__":
    sys.exit(main())
