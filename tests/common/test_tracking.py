"""MLflow logging: same numbers as the metrics JSON, tags, and concurrent writers on one sqlite store."""

import subprocess
import sys
import textwrap

import mlflow

SCRIPT = textwrap.dedent("""
    import sys
    from common.config import RootConfig
    from common.tracking import log_run
    cfg = RootConfig()
    cfg.tracking.uri = sys.argv[1]
    for i in range(3):
        log_run(cfg, "concurrency", f"{sys.argv[2]}-{i}", {"a": {"b": i}}, {"fid[mnist-classifier]": 1.5 + i},
                seed=i, history=[{"step": 1, "loss": 0.5}, {"step": 2, "loss": 0.25}])
""")


def test_two_processes_log_at_once(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    procs = [subprocess.Popen([sys.executable, "-c", SCRIPT, uri, name], cwd=tmp_path.parent)
             for name in ("left", "right")]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("concurrency")
    runs = client.search_runs([exp.experiment_id])
    assert sorted(r.info.run_name for r in runs) == sorted(f"{n}-{i}" for n in ("left", "right") for i in range(3))
    for r in runs:
        i = int(r.info.run_name[-1])
        assert r.data.metrics["fid.mnist-classifier"] == 1.5 + i  # brackets are not allowed in MLflow names
        assert r.data.params["a.b"] == str(i)
        assert r.data.tags["seed"] == str(i) and r.data.tags["profile"] == "cpu" and "git_sha" in r.data.tags
        assert [m.value for m in client.get_metric_history(r.info.run_id, "loss")] == [0.5, 0.25]
