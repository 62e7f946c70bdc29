"""Provenance: the commit (refusing an uncommitted tree), content hashes of inputs, and the environment."""

import hashlib
import re
import subprocess

import pytest

from common import provenance
from common.provenance import DirtyTreeError, environment, git_commit, input_hashes
from common.tracking import git_sha


def _git(root, *args):
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false", *args],
                          cwd=root, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A throwaway git repository that `common.config.repo_root()` resolves to (via DVC_ROOT)."""
    root = tmp_path / "repo"
    root.mkdir()
    (root / "code.py").write_text("x = 1\n")
    _git(root, "init", "-q")
    _git(root, "add", "code.py")
    _git(root, "commit", "-q", "-m", "first")
    monkeypatch.setenv("DVC_ROOT", str(root))
    return root


def test_clean_tree_gives_head(repo):
    head = _git(repo, "rev-parse", "HEAD")
    (repo / "untracked.txt").write_text("outputs are not code\n")  # untracked files do not make a tree dirty
    assert git_commit(allow_dirty=False) == head
    assert git_commit(allow_dirty=True) == head
    assert git_sha() == head


def test_modified_tracked_file_is_refused_unless_allowed(repo):
    head = _git(repo, "rev-parse", "HEAD")
    (repo / "code.py").write_text("x = 2\n")
    with pytest.raises(DirtyTreeError) as e:
        git_commit(allow_dirty=False)
    msg = str(e.value)
    assert isinstance(e.value, RuntimeError) and "\n" not in msg
    assert "clean committed tree" in msg and "commit first" in msg and "rerun the report stage" in msg
    assert "profile tiny" in msg and "code.py" in msg
    assert git_commit(allow_dirty=True) == head + "-dirty"
    assert git_sha() == head + "-dirty"  # tracking's tag keeps its old behaviour


def test_no_repository_or_no_git_gives_unknown(tmp_path, monkeypatch):
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))  # no repository above tmp either
    assert git_commit(allow_dirty=False) == "unknown"
    assert git_sha() == "unknown"
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))  # git not installed
    assert git_commit(allow_dirty=False) == "unknown"


def test_input_hashes_of_files_and_folders(tmp_path):
    d = tmp_path / "data"
    (d / "sub").mkdir(parents=True)
    (d / "a.bin").write_bytes(b"\x00\x01")
    (d / "sub" / "b.txt").write_text("b\n")
    other = tmp_path / "other.txt"
    other.write_text("unrelated\n")

    first = input_hashes([d, d / "a.bin", str(tmp_path / "nope")])
    assert first[(d / "a.bin").as_posix()] == hashlib.md5(b"\x00\x01").hexdigest()
    assert first[str(tmp_path / "nope")] == "missing"
    assert first[d.as_posix()].endswith(".dir")

    other.write_text("changed, but not inside data/\n")
    assert input_hashes([d]) == {d.as_posix(): first[d.as_posix()]}

    (d / "sub" / "b.txt").write_text("B\n")
    changed = input_hashes([d])[d.as_posix()]
    assert changed != first[d.as_posix()]

    (d / "sub" / "b.txt").rename(d / "sub" / "c.txt")  # same content, other name: another folder
    assert input_hashes([d])[d.as_posix()] not in (first[d.as_posix()], changed)


def test_folder_hash_is_dvcs(tmp_path):
    """The folder hash equals DVC's own, so it can be matched against dvc.lock."""
    pytest.importorskip("dvc_data")
    from dvc_data.hashfile.build import build
    from dvc_data.hashfile.db import HashFileDB
    from dvc_objects.fs.local import LocalFileSystem

    d = tmp_path / "data"
    (d / "z" / "y").mkdir(parents=True)
    (d / "b.txt").write_bytes(b"windows\r\nline\n")
    (d / "z" / "y" / "a.npy").write_bytes(bytes(range(256)))
    fs = LocalFileSystem()
    _, _, obj = build(HashFileDB(fs, str(tmp_path / "cache")), str(d), fs, "md5")
    assert input_hashes([d])[d.as_posix()] == obj.hash_info.value


def test_environment_has_cpu_packages_and_key_versions():
    env = environment()
    assert isinstance(env["cpu_model"], str) and env["cpu_model"]
    assert set(env["cpu_flags"]) <= set(provenance.FLOAT_FLAGS)
    assert env["cpu_count"] >= 1 and env["python"].count(".") == 2
    assert env["torch_threads"] >= 1 and env["torch_build"].startswith(env["torch"])
    pkgs = env["packages"]
    assert "torch" in pkgs and env["torch"] == pkgs["torch"]
    assert list(pkgs) == sorted(pkgs)
    assert env["open_clip_torch"] == pkgs["open-clip-torch"]  # key libraries under their import-ish names
    assert re.fullmatch(r"[0-9a-f]{12}", env["packages_digest"])
    assert env["packages_digest"] == provenance.packages_digest(pkgs)
    assert provenance.packages_digest({**pkgs, "torch": "0.0.1"}) != env["packages_digest"]


def test_cpuinfo_parsing(tmp_path):
    """x86 names its model and `flags`; arm64 often has no model name and lists `Features`."""
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nmodel name\t: AMD EPYC 9654\nflags\t\t: fpu sse4_2 avx avx2 fma avx512f amx_tile\n\n"
                   "processor\t: 1\nmodel name\t: AMD EPYC 9654\nflags\t\t: fpu\n")
    assert provenance._cpuinfo(x86) == {"cpu_model": "AMD EPYC 9654",
                                        "cpu_flags": ["sse4_2", "fma", "avx", "avx2", "avx512f", "amx_tile"]}
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm aes\nCPU part\t: 0xd0c\n")
    info = provenance._cpuinfo(arm)
    assert info["cpu_flags"] == ["asimd"] and info["cpu_model"]
    assert provenance._cpuinfo(tmp_path / "absent")["cpu_flags"] == []  # not Linux: no flags, still a model


def test_report_provenance_refuses_a_dirty_tree_outside_the_tiny_profile(repo):
    """common.publish.provenance: what every report stage records, and where it refuses."""
    from types import SimpleNamespace

    from common.publish import provenance

    head = _git(repo, "rev-parse", "HEAD")
    prov = provenance(SimpleNamespace(profile="cpu"), [repo / "code.py", repo / "absent.json"])
    assert prov["commit"] == head and list(prov["inputs"]) == ["code.py"]  # absent inputs are skipped
    assert prov["environment"]["packages_digest"]
    (repo / "code.py").write_text("x = 2\n")
    with pytest.raises(DirtyTreeError):
        provenance(SimpleNamespace(profile="cpu"))
    assert provenance(SimpleNamespace(profile="tiny"))["commit"] == head + "-dirty"


def test_pipeline_outputs_do_not_make_the_tree_dirty(repo):
    """DVC deletes and rewrites reports, metrics and lock files while `dvc repro` runs; code and params count."""
    for rel in ("reports/p/README.md", "metrics/m.json", "dvc.lock", "papers/p/dvc.lock", "params.yaml"):
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text("a\n")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "outputs")
    head = _git(repo, "rev-parse", "HEAD")
    for rel in ("reports/p/README.md", "metrics/m.json", "dvc.lock", "papers/p/dvc.lock"):
        (repo / rel).write_text("b\n")
    (repo / "reports/p/README.md").unlink()
    assert git_commit(allow_dirty=False) == head
    (repo / "params.yaml").write_text("b\n")
    with pytest.raises(DirtyTreeError, match="params.yaml"):
        git_commit(allow_dirty=False)
