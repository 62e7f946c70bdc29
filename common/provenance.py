"""Provenance: where a result came from -- the commit, the input files and the software and hardware.

Why: a committed report is only worth something if someone else can tell exactly what produced
it. Three things decide a number here: the code (a git commit, and it must be a *committed*
tree, or the sha names code that nobody can check out), the inputs (datasets, models and metrics
files, identified by content hash so a silently retrained model is visible), and the
environment (library versions and the CPU's float kernels: a different `transformers` or a
machine with AVX-512 instead of AVX2 changes trained weights and sampled metrics). This module
only *collects* these facts; the report stage decides what to print and when to refuse.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Union

from .config import UserError, repo_root

#: CPU flags that select the float kernels of torch/oneDNN/OpenBLAS (x86) or NEON paths (arm).
#: Results that differ across machines usually differ along these.
FLOAT_FLAGS = ("sse4_2", "fma", "avx", "avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "neon", "asimd")

#: Libraries whose versions are reported as their own keys in `environment()` (the ones whose
#: upgrades have changed numbers in this repository, or that write the results).
KEY_LIBRARIES = ("torch", "diffusers", "transformers", "accelerate", "datasets", "open_clip_torch", "scipy",
                 "numpy", "statsmodels", "mlflow", "dvc")

_GIT_TIMEOUT = 10  # seconds; a hung git must not hang a pipeline stage


#: Pipeline outputs that DVC rewrites while `dvc repro` runs (reports, metrics, lock files): a change
#: there is a result, not code, so it does not make the tree dirty. Code and params files do.
OUTPUT_PATHSPECS = (":(exclude)reports", ":(exclude)metrics", ":(exclude)dvc.lock", ":(exclude,glob)**/dvc.lock")


class DirtyTreeError(UserError, RuntimeError):
    """The working tree has uncommitted changes to tracked files, so HEAD does not name the code that ran."""


# --------------------------------------------------------------------------- code
def _git(args: List[str], cwd: Path) -> Optional[str]:
    """stdout of `git <args>` in `cwd`, or None when git is missing, times out or fails (e.g. not a repository)."""
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=_GIT_TIMEOUT)
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return out.stdout if out.returncode == 0 else None


def git_commit(allow_dirty: bool) -> str:
    """The HEAD commit of the repository, refusing a tree whose tracked files differ from it.

    Why refuse: a report that says "commit abc123" while it was computed from edited files names
    code that nobody can check out, so a reader cannot reproduce it. Untracked files (runs/,
    data/, caches) are ignored: they are outputs, not code. `allow_dirty=True` is for logging
    and tests: it returns the sha with `-dirty` appended instead of raising.

    Returns "unknown" (never raises) when there is no git, no repository or no commit yet:
    provenance is then simply not known, which is not the same as known-dirty.
    """
    try:
        root = repo_root()
    except ValueError:  # ConfigError: not inside the repository
        return "unknown"
    sha = _git(["rev-parse", "--verify", "HEAD"], root)
    sha = sha.strip() if sha else ""
    if not sha:
        return "unknown"
    status = _git(["status", "--porcelain", "--untracked-files=no", "--", ".", *OUTPUT_PATHSPECS], root)
    if status is None:
        return "unknown"
    changed = [line[3:] for line in status.splitlines() if line.strip()]
    if not changed:
        return sha
    if allow_dirty:
        return sha + "-dirty"
    shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
    raise DirtyTreeError(
        f"reports are generated only from a clean committed tree, but {root} has uncommitted changes to "
        f"tracked files ({shown}): commit first, then rerun the report stage; or use profile tiny for tests"
    )


# --------------------------------------------------------------------------- inputs
def _md5_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _md5_dir(path: Path) -> str:
    """One md5 for a folder, computed the way DVC 3 computes a directory's hash.

    The folder's files are listed with their paths relative to it (POSIX separators) and their
    own md5s, sorted by path; the md5 of that list as JSON, with `.dir` appended, is the
    folder's hash. So renaming, adding, removing or editing any file changes it, and the value
    can be compared with the `md5:` of the same output in dvc.lock.
    """
    entries = []
    for dirpath, dirnames, filenames in os.walk(path, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if d != ".git")
        for name in filenames:
            full = Path(dirpath) / name
            if not full.is_file():  # a dangling link or a socket is not content
                continue
            entries.append({"md5": _md5_file(full), "relpath": full.relative_to(path).as_posix()})
    entries.sort(key=lambda e: e["relpath"])
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode()).hexdigest() + ".dir"


def input_hashes(paths: Iterable[Union[str, os.PathLike]]) -> Dict[str, str]:
    """Content hashes of the files and folders a result was computed from, keyed by the path as given.

    Why: a report records *what* it was computed from, not only *which code*: two runs of the same
    commit on a retrained model or a re-prepared dataset give different numbers, and the hashes
    show it. A file's value is its md5, a folder's is one md5 over its sorted relative file paths
    and their md5s (DVC's `.dir` hash, see `_md5_dir`), a path that does not exist is "missing".
    Relative paths are taken from the current directory (the repository root inside a DVC stage).
    """
    out: Dict[str, str] = {}
    for p in paths:
        path = Path(p)
        key = str(p) if not isinstance(p, Path) else p.as_posix()
        if path.is_dir():
            out[key] = _md5_dir(path)
        elif path.is_file():
            out[key] = _md5_file(path)
        else:
            out[key] = "missing"
    return out


# --------------------------------------------------------------------------- environment
def _cpuinfo(path: Union[str, os.PathLike] = "/proc/cpuinfo") -> Dict[str, object]:
    """The CPU model name and its float-kernel flags from /proc/cpuinfo (Linux); platform's guess elsewhere."""
    model, flags = "", set()
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip().lower(), value.strip()
        if not model and key in ("model name", "hardware", "cpu model", "processor") and not value.isdigit():
            model = value
        elif key in ("flags", "features") and not flags:  # x86 "flags", arm "Features"
            flags = set(value.split())
    if not model:
        model = platform.processor() or platform.machine() or "unknown"
    return {"cpu_model": model, "cpu_flags": [f for f in FLOAT_FLAGS if f in flags]}


def _canonical(name: str) -> str:
    """PEP 503 name: `Open_Clip_Torch` and `open-clip-torch` are one distribution."""
    return re.sub(r"[-_.]+", "-", name).lower()


@lru_cache(maxsize=1)
def _packages() -> Dict[str, str]:
    """name -> version of every installed distribution, names canonical, sorted by name (read once per process)."""
    found: Dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"] if dist.metadata else None
        if not name:
            continue
        found.setdefault(_canonical(name), dist.version)  # first on sys.path wins, as for import
    return dict(sorted(found.items()))


def packages_digest(packages: Dict[str, str]) -> str:
    """First 12 hex chars of the sha256 of the sorted `name==version` lines: equal digests, equal installs."""
    lines = "\n".join(sorted(f"{n}=={v}" for n, v in packages.items()))
    return hashlib.sha256(lines.encode()).hexdigest()[:12]


def environment() -> Dict[str, object]:
    """The software and hardware a result was computed on.

    Why: the same commit and inputs still give different numbers on a different library release
    (a fresh install picked up a newer `transformers` and retrained a model to different weights)
    or on a CPU with other vector units (torch dispatches float kernels on AVX2 / AVX-512 /
    AMX / NEON, and their summation orders differ). So the report records the interpreter,
    platform, torch and its thread count, the CPU model, its float-kernel flags, the core count,
    the key libraries' versions as their own keys, every installed distribution under `packages`,
    and `packages_digest` to compare two installs at a glance.
    """
    pkgs = _packages()
    env: Dict[str, object] = {
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        **_cpuinfo(),
        "cpu_count": os.cpu_count() or 0,
    }
    if hasattr(os, "sched_getaffinity"):
        env["cpus_usable"] = len(os.sched_getaffinity(0))
    try:
        import torch

        env["torch_build"] = torch.__version__  # with the local tag the wheel name lacks: +cpu, +cu130
        env["torch_threads"] = torch.get_num_threads()
        env["torch_interop_threads"] = torch.get_num_interop_threads()
    except ImportError:  # torch missing is worth recording, not failing on
        pass
    for lib in KEY_LIBRARIES:
        version = pkgs.get(_canonical(lib))
        if version is not None:
            env[lib] = version
    env["packages_digest"] = packages_digest(pkgs)
    env["packages"] = pkgs
    return env
