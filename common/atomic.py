"""Atomic outputs: write into a temporary sibling, rename it into place on success.

A stage killed mid-write (or a failing writer) must never leave a half-written model, dataset or
results file under its final name, where the next stage or a resumed run would take it as complete.
`atomic_dir` / `atomic_file` hand the writer a temporary path beside the target (same folder, so the
rename is atomic on one file system); on success the old target is replaced, on failure the temporary
is removed and the old target, if any, is left untouched.
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Union

PathLike = Union[str, Path]


def temp_sibling(target: PathLike) -> Path:
    """`.<name>.tmp` beside `target`: hidden, so globs over the folder's outputs do not see it."""
    target = Path(target)
    return target.with_name(f".{target.name}.tmp")


def _remove(path: Path):
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextmanager
def atomic_dir(target: PathLike, *, is_main: bool = True, sync: Callable[[], None] = lambda: None) -> Iterator[Path]:
    """Yield an empty temporary folder to write `target`'s contents into; on success it becomes `target`
    (replacing an old one), on an exception it is removed.

    Several processes can write one folder together (an Accelerate checkpoint): each enters with the
    same `target`, only the main one (`is_main`) prepares and renames, and `sync` (a barrier such as
    `accelerator.wait_for_everyone`) runs after the folder is prepared and again before the rename.
    """
    target = Path(target)
    tmp = temp_sibling(target)
    if is_main:
        _remove(tmp)  # a leftover of a killed writer
        tmp.mkdir(parents=True)
    sync()
    try:
        yield tmp
    except BaseException:
        if is_main:
            _remove(tmp)
        raise
    sync()
    if is_main:
        _remove(target)
        tmp.rename(target)


@contextmanager
def atomic_file(target: PathLike) -> Iterator[Path]:
    """Yield a temporary path to write `target` to (the file does not exist yet); on success it replaces
    `target` (`os.replace`), on an exception it is removed."""
    target = Path(target)
    tmp = temp_sibling(target)
    _remove(tmp)
    try:
        yield tmp
    except BaseException:
        _remove(tmp)
        raise
    os.replace(tmp, target)


def write_dir_atomic(target: PathLike, write: Callable[[str], None]):
    """`write(path)` of a writer that fills a folder (`save_to_disk`, `save_pretrained`), atomically."""
    with atomic_dir(target) as tmp:
        write(str(tmp))
