"""A throw-away copy of the repository switched to the `tiny` profile, for end-to-end tests."""

import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SKIP = {".venv", ".ci-venv", ".git", "data", "models", "runs", "metrics", "reports", "mlflow.db", "mlartifacts",
        ".pytest_cache", "benchmarks", "__pycache__", ".dvc"}


def make_tiny_repo(dest: Path, git: bool = False) -> Path:
    """Copy code + params into `dest`, set `profile: tiny`, optionally `git init` + `dvc init`."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for item in ROOT.iterdir():
        if item.name in SKIP or item.name.endswith(".lock") or (item / "pyvenv.cfg").is_file():
            continue  # virtual environments (.venv, .ci-venv, ...) are never part of the copy
        if item.is_dir():
            shutil.copytree(item, dest / item.name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(item, dest / item.name)
    params = dest / "params.yaml"
    params.write_text(params.read_text().replace("\nprofile: cpu\n", "\nprofile: tiny\n"))
    assert "\nprofile: tiny\n" in params.read_text()
    if git:
        env = env_for(dest)
        for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                    ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "tiny"],
                    [sys.executable, "-m", "dvc", "init", "-q"],
                    [sys.executable, "-m", "dvc", "config", "core.analytics", "false"]):
            subprocess.run(cmd, cwd=dest, check=True, env=env, capture_output=True)
    return dest


def env_for(root: Path) -> dict:
    """Environment for a subprocess working in `root`: its own MLflow store and DVC root."""
    env = dict(os.environ)
    env.update({"DVC_ROOT": str(root), "MLFLOW_TRACKING_URI": f"sqlite:///{root}/mlflow.db",
                "PYTHONPATH": str(root), "DVC_NO_ANALYTICS": "1", "TQDM_DISABLE": "1"})
    env.pop("REPLICATE_KILL_AT_STEP", None)
    if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
        # pytest -n: the workers already fill the cores; a stage with one thread per core each would
        # oversubscribe them (tiny tensors run ~10x slower on contended threads than on one free one)
        env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    return env


def run_stage(root: Path, module: str, *args: str, env_extra=None, check=True, launcher=None, timeout=600):
    env = env_for(root)
    env.update(env_extra or {})
    cmd = (launcher or [sys.executable, "-m"]) + [module, *args]
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


@contextmanager
def inside(root: Path):
    """Run stage `main()`s in-process as if in `root`: its cwd, DVC root and MLflow store; restored after."""
    saved, cwd = dict(os.environ), os.getcwd()
    os.environ.update({k: v for k, v in env_for(root).items() if k in ("DVC_ROOT", "MLFLOW_TRACKING_URI")})
    os.chdir(root)
    try:
        yield root
    finally:
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(saved)


def tiny_params_root(dest: Path, monkeypatch) -> Path:
    """A bare repository root for in-process root stages: the tiny-profile params.yaml and dvc.yaml only (no code
    copy; the stages import from this checkout), DVC_ROOT pointing at it for the test."""
    root = dest / "repo"
    (root / "common").mkdir(parents=True)
    text = (ROOT / "params.yaml").read_text().replace("\nprofile: cpu\n", "\nprofile: tiny\n")
    (root / "params.yaml").write_text(text)
    shutil.copy(ROOT / "dvc.yaml", root / "dvc.yaml")
    monkeypatch.setenv("DVC_ROOT", str(root))
    return root
