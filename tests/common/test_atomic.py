"""common/atomic.py: a folder or file appears under its final name only when its writer succeeded."""

import os

import pytest

from common.atomic import atomic_dir, atomic_file, temp_sibling, write_dir_atomic


class _Boom(Exception):
    pass


def test_atomic_dir_renames_on_success_and_replaces_the_old(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "stale.bin").write_text("old")
    with atomic_dir(target) as tmp:
        assert tmp == temp_sibling(target) == tmp_path / ".model.tmp" and tmp.is_dir()
        assert (target / "stale.bin").is_file()  # the old output stays valid while the new one is written
        (tmp / "weights.bin").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["weights.bin"]
    assert not temp_sibling(target).exists()


def test_atomic_dir_failure_keeps_the_old_output_and_removes_the_temp(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "weights.bin").write_text("old")
    with pytest.raises(_Boom), atomic_dir(target) as tmp:
        (tmp / "weights.bin").write_text("half")
        raise _Boom
    assert (target / "weights.bin").read_text() == "old"
    assert not temp_sibling(target).exists()


def test_atomic_dir_clears_a_killed_writers_leftover(tmp_path):
    target = tmp_path / "data"
    temp_sibling(target).mkdir()
    (temp_sibling(target) / "junk").write_text("x")
    seen = []
    write_dir_atomic(target, lambda path: seen.append(sorted(os.listdir(path))))
    assert seen == [[]] and target.is_dir() and not temp_sibling(target).exists()


def test_atomic_dir_with_several_processes(tmp_path):
    """Only the main process prepares and renames; the barrier runs after preparing and before renaming."""
    events = []
    target = tmp_path / "ckpt"
    with atomic_dir(target, is_main=False, sync=lambda: events.append("sync")) as tmp:
        assert not tmp.exists()  # a non-main process does not create it
        events.append("write")
    assert events == ["sync", "write", "sync"] and not target.exists()
    with atomic_dir(target, is_main=True, sync=lambda: events.append("sync")) as tmp:
        (tmp / "state").write_text("s")
    assert (target / "state").is_file()


def test_atomic_file(tmp_path):
    target = tmp_path / "results.json"
    target.write_text("old")
    with pytest.raises(_Boom), atomic_file(target) as tmp:
        tmp.write_text("half")
        raise _Boom
    assert target.read_text() == "old" and not temp_sibling(target).exists()
    with atomic_file(target) as tmp:
        assert not tmp.exists()
        tmp.write_text("new")
    assert target.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]
