"""How a stage talks to its user: one-line errors, `--help`, and checking a pipeline's params up front.

Every stage entry point ends with

    if __name__ == "__main__":
        from common.cli import run_main

        run_main(main)

so a `UserError` (a bad parameter, a missing or unreadable input; common/config.py) prints one line on
stderr and exits with status 2, while any other exception keeps its traceback. `--help`/`-h` and
`--cfg job` are handled by `load_config` (the first thing every stage does), which calls `print_help`.

`python -m common.config --check [--all-profiles] [papers/<name> ...] [key=value ...]` loads the config
of every stage of the given DVC pipelines (default: the root one and every paper's) and reports every
error, so a pipeline can fail in seconds instead of after its first long stage. Under `dvc repro` (which
sets `DVC_STAGE`), `run_main` does this check for every pipeline before the stage's own work, once per
state of the params and config files (a stamp in `.dvc/tmp/`), so a bad value anywhere stops the run at
its first stage, not after the 15-minute base model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import inspect
import io
import os
import shlex
import sys
import textwrap
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Type

import yaml

from common.config import PROFILES, ConfigError, RootConfig, UserError, load_config, repo_root

EXIT_USER_ERROR = 2


def one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def run_main(main: Callable, argv: Optional[Sequence[str]] = None) -> None:
    """Run a stage's `main` (with `argv` when given, else it reads sys.argv): a `UserError` becomes one line
    on stderr and exit status 2; other exceptions propagate with their traceback."""
    try:
        if os.environ.get("DVC_STAGE"):
            check_params_once()
        main() if argv is None else main(list(argv))
    except UserError as e:
        sys.stdout.flush()
        print(f"error: {one_line(e)}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)


def check_params_once(root: Optional[Path] = None) -> None:
    """Validate every pipeline's params (the `--check` above) unless this exact state of the params and config
    files already passed; raise one UserError listing the problems. About a second, then free."""
    root = Path(root) if root else repo_root()
    files = sorted([root / "params.yaml", *root.glob("papers/*/params.yaml"), *root.glob("papers/*/config.py"),
                    root / "common" / "config.py"])
    digest = hashlib.sha1(b"".join(f.read_bytes() for f in files if f.is_file())).hexdigest()[:16]
    stamp = root / ".dvc" / "tmp" / f"params-ok-{digest}"
    if stamp.is_file():
        return
    report = io.StringIO()
    if check(root=root, out=report):
        problems = [line for line in report.getvalue().splitlines() if line.startswith("error:")]
        raise UserError("params check failed before running the stage (python -m common.config --check): "
                        + "; ".join(p[len("error: "):] for p in problems))
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.touch()


# --------------------------------------------------------------------------- --help
def _first_paragraph(doc: Optional[str]) -> str:
    text = inspect.cleandoc(doc or "").strip()
    return text.split("\n\n", 1)[0].strip() if text else "(no description: the module has no docstring)"


def _example_override(schema: type, cfg=None) -> Optional[str]:
    """`section.key=<value>` for the first scalar the schema adds to the root one (root: None); values from
    the loaded `cfg` (the schema's fields may have no default: their values live in params.yaml)."""
    root = {f.name for f in dataclasses.fields(RootConfig)}
    cfg = schema() if cfg is None else cfg
    for f in dataclasses.fields(schema):
        if f.name in root:
            continue
        key, obj = f.name, getattr(cfg, f.name)
        while dataclasses.is_dataclass(obj):
            sub = next((g for g in dataclasses.fields(obj)
                        if isinstance(getattr(obj, g.name), (int, float, str)) or dataclasses.is_dataclass(getattr(obj, g.name))), None)
            if sub is None:
                break
            key, obj = f"{key}.{sub.name}", getattr(obj, sub.name)
        if isinstance(obj, (bool, int, float)) or (isinstance(obj, str) and obj):
            return f"{key}={str(obj).lower() if isinstance(obj, bool) else obj}"
    return None


def _dvc_stage_of(module: str, root: Path, paper: Optional[str]) -> Tuple[Optional[str], List[str]]:
    """(`<dvc.yaml>:<stage>` whose cmd runs `module`, the params keys it declares) or (None, [])."""
    dvc_file = f"papers/{paper}/dvc.yaml" if paper else "dvc.yaml"
    try:
        stages = (yaml.safe_load((root / dvc_file).read_text()) or {}).get("stages") or {}
    except (OSError, yaml.YAMLError):
        return None, []
    for name, st in stages.items():
        if any(m == module for m, _ in _stage_modules((st or {}).get("cmd"))):
            plain: List[str] = []
            per_file: List[str] = []
            for entry in (st or {}).get("params") or []:
                if isinstance(entry, dict):  # {params file: [keys]}
                    per_file += [f"{file}: {', '.join(map(str, ks or []))}" for file, ks in entry.items()]
                else:
                    plain.append(str(entry))
            return f"{dvc_file}:{name}", ([", ".join(plain)] if plain else []) + per_file
    return None, []


def print_help(module: str, doc: Optional[str], schema: type, files: Sequence[str], root: Path,
               paper: Optional[str], out=None) -> None:
    """What the stage does (its docstring's first paragraph), how to call it, and which params it reads."""
    out = out or sys.stdout
    try:
        profile = (yaml.safe_load((root / "params.yaml").read_text()) or {}).get("profile", "cpu")
    except (OSError, yaml.YAMLError, AttributeError):
        profile = "cpu"
    try:
        schema_file = str(Path(inspect.getsourcefile(schema)).resolve().relative_to(root))
    except (TypeError, ValueError):
        schema_file = f"{schema.__module__}.{schema.__qualname__}"
    try:  # the help of a stage whose params do not load still prints (without an example value)
        from common.config import load_config

        cfg = load_config(schema, paper=paper, root=root)
    except Exception:  # noqa: BLE001
        cfg = None
    example = " ".join(x for x in ("profile=tiny", _example_override(schema, cfg)) if x)
    stage, stage_keys = _dvc_stage_of(module, root, paper)
    wrap = lambda text, indent="": textwrap.fill(text, 100, initial_indent=indent, subsequent_indent=indent)  # noqa: E731
    lines = [
        f"usage: python -m {module} [KEY=VALUE ...] [--cfg job] [-h]",
        "",
        wrap(_first_paragraph(doc)),
        "",
        wrap(f"Parameters: {' and '.join(files)}, then the `profiles.<profile>` overlays in them (current profile: "
             f"{profile}; one of {', '.join(PROFILES)}), then KEY=VALUE overrides in Hydra's grammar "
             f"(dotted keys, lists as [1,2]), e.g."),
        f"  python -m {module} {example}",
    ]
    if stage:
        lines.append(wrap(f"DVC stage {stage} depends on the params {'; '.join(stage_keys) or '(none listed)'}"))
    lines += [
        f"Top-level keys (types and allowed ranges: {schema_file}):",
        wrap(", ".join(f.name for f in dataclasses.fields(schema)), "  "),
        "",
        "options:",
        "  -h, --help   show this help and exit",
        "  --cfg job    print the resolved config (files, profile and overrides applied) as YAML and exit",
        "",
        f"Check the params of every stage of this pipeline: "
        f"python -m common.config --check {f'papers/{paper}' if paper else '.'}",
    ]
    print("\n".join(lines), file=out)


# --------------------------------------------------------------------------- --check
def _stage_modules(cmd) -> List[Tuple[str, List[str]]]:
    """(module, args) of each `python -m <module> args` / `accelerate launch ... -m <module> args` in a DVC cmd."""
    out = []
    for line in ([cmd] if isinstance(cmd, str) else list(cmd or [])):
        for part in str(line).replace("&&", ";").split(";"):
            try:
                words = shlex.split(part)
            except ValueError:
                continue
            for flag in ("-m", "--module"):
                if flag in words and words.index(flag) + 1 < len(words):
                    i = words.index(flag)
                    out.append((words[i + 1], words[i + 2:]))
                    break
    return out


def paper_schema(paper: Optional[str]) -> Type[RootConfig]:
    """The schema a paper's stages load: the RootConfig subclass of papers/<paper>/config.py no other extends."""
    if not paper:
        return RootConfig
    mod = importlib.import_module(f"papers.{paper}.config")
    found = [c for c in vars(mod).values()
             if isinstance(c, type) and issubclass(c, RootConfig) and c.__module__ == mod.__name__]
    leaves = [c for c in found if not any(o is not c and issubclass(o, c) for o in found)]
    if len(leaves) != 1:
        raise ConfigError(f"papers/{paper}/config.py: expected one RootConfig subclass, found "
                          f"{[c.__name__ for c in leaves] or 'none'}")
    return leaves[0]


def _pipelines(args: Sequence[str], root: Path) -> List[Tuple[str, Optional[str]]]:
    """(dvc.yaml path relative to root, paper or None) of each requested pipeline; none: all of them."""
    if not args:
        return [("dvc.yaml", None)] + [(f"papers/{p.parent.name}/dvc.yaml", p.parent.name)
                                       for p in sorted((root / "papers").glob("*/dvc.yaml"))]
    out = []
    for a in args:
        p = Path(a.rstrip("/"))
        if p.name == "dvc.yaml":
            p = p.parent
        if str(p) in (".", "", "common"):
            out.append(("dvc.yaml", None))
            continue
        name = p.name
        if not (root / "papers" / name / "dvc.yaml").is_file():
            raise ConfigError(f"--check: no pipeline papers/{name}/dvc.yaml (give papers/<name>, <name> or .)")
        out.append((f"papers/{name}/dvc.yaml", name))
    return out


def check(pipelines: Sequence[str] = (), overrides: Sequence[str] = (), all_profiles: bool = False,
          root: Optional[Path] = None, out=None) -> int:
    """Load the config of every stage of the pipelines; print one line per problem (or per pipeline that is
    fine). 0 when everything loads, EXIT_USER_ERROR otherwise."""
    out = out or sys.stdout
    root = Path(root) if root else repo_root()
    profiles = [f"profile={p}" for p in PROFILES] if all_profiles else [None]
    failed = False
    for dvc_file, paper in _pipelines(pipelines, root):
        try:
            stages = (yaml.safe_load((root / dvc_file).read_text()) or {}).get("stages") or {}
        except (OSError, yaml.YAMLError) as e:
            print(f"error: {dvc_file}: cannot read it: {one_line(e)}", file=out)
            failed = True
            continue
        runs: Dict[Tuple[str, ...], List[str]] = {}  # stage arguments -> stages (stages without any share a load)
        for name, st in stages.items():
            for module, args in _stage_modules((st or {}).get("cmd")):
                if module.split(".")[0] in ("common", "papers"):
                    runs.setdefault(tuple(args), []).append(name)
        for prof in profiles:
            label = f"{dvc_file} ({prof or 'current profile'})"
            errors: Dict[str, List[str]] = {}
            for args, names in runs.items():
                ovs = [a for a in args if "=" in a and not a.startswith("-")] + list(overrides)
                if prof and not any(o.startswith("profile=") for o in ovs):
                    ovs = [prof] + ovs
                try:
                    load_config(paper_schema(paper), paper=paper, overrides=ovs, root=root)
                except ConfigError as e:
                    for msg in e.errors:
                        errors.setdefault(msg, []).extend(names)
                except UserError as e:
                    errors.setdefault(one_line(e), []).extend(names)
            for msg, names in errors.items():
                print(f"error: {msg} [{label}: stage{'s' if len(names) > 1 else ''} {', '.join(names)}]", file=out)
            if errors:
                failed = True
            else:
                n = sum(len(v) for v in runs.values())
                print(f"ok: {label}: {n} stage{'s' if n != 1 else ''}", file=out)
    return EXIT_USER_ERROR if failed else 0


CHECK_USAGE = """usage: python -m common.config --check [--all-profiles] [PIPELINE ...] [KEY=VALUE ...]

Load the parameters of every stage of the DVC pipelines (PIPELINE: papers/<name>, <name>, or . for the
root dvc.yaml; none: the root pipeline and every paper's) under the current profile, or under each of
cpu, tiny and full with --all-profiles, and report every error. Exit 0 when all load, 2 otherwise.
KEY=VALUE overrides (Hydra's grammar, e.g. profile=tiny) apply to every stage."""


def check_main(argv: Sequence[str]) -> int:
    args = list(argv)
    if "-h" in args or "--help" in args:
        print(CHECK_USAGE)
        return 0
    if not args or args[0] != "--check":
        print(CHECK_USAGE, file=sys.stderr)
        return EXIT_USER_ERROR
    args = args[1:]
    all_profiles = "--all-profiles" in args
    args = [a for a in args if a != "--all-profiles"]
    overrides = [a for a in args if "=" in a]
    pipelines = [a for a in args if "=" not in a]
    try:
        return check(pipelines, overrides, all_profiles)
    except UserError as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(check_main(sys.argv[1:]))
