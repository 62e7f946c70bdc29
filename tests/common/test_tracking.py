"""MLflow logging: same numbers as the metrics JSON, tags, and concurrent writers on one sqlite store."""

import subprocess
import sys
import textwrap

import mlflow

SCRIPT = textwrap.dedent("""
    import sys
    from common.config import RootConfig
    from common.tracking import log_run
    cfg = RootConfig(profile="cpu")
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


# ---------------------------------------------------------------- experiments, results tables, training runs
def _cfg(tmp_path):
    from common.config import RootConfig

    cfg = RootConfig(profile="cpu")
    cfg.tracking.uri = f"sqlite:///{tmp_path}/mlflow.db"
    return cfg


def _table():
    """A baseline/method x 3 seeds results table (the shape of reports/<paper>/results.json rows)."""
    rows = []
    for arm in ("baseline", "method"):
        for seed in (0, 1, 2):
            rows.append({"stage": "sweep", "arm": arm, "seed": seed, "nfe": 10, "group": "main",
                         "fid[mnist-classifier]": 10.0 + seed + (arm == "method"), "seconds": 1.5,
                         "overhead": None if arm == "baseline" else 0.1})
    return rows


def test_log_rows_reads_back_as_comparable_runs(tmp_path):
    from common.tracking import EXPERIMENT_KIND_TAG, EXPERIMENT_KIND_TRAINING, NOTE_TAG, PARENT_RUN_TAG, log_rows

    cfg = _cfg(tmp_path)
    (tmp_path / "table.json").write_text("[]")
    parent_id = log_rows(cfg, "new_knowledge", "evaluate", _table(), params={"study": {"epochs": 3}},
                         artifacts=[tmp_path / "table.json"])
    client = mlflow.MlflowClient(tracking_uri=cfg.tracking.uri)
    exp = client.get_experiment_by_name("new_knowledge")
    assert exp.tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND_TRAINING == "custom_model_development"
    assert EXPERIMENT_KIND_TAG == "mlflow.experimentKind" and NOTE_TAG == "mlflow.note.content"
    note = exp.tags[NOTE_TAG]
    assert note.startswith("# New knowledge and hallucinations (SliCK)")  # papers/new_knowledge/README.md title
    assert "Does Fine-Tuning LLMs on New Knowledge Encourage Hallucinations?" in note  # its first paragraph
    assert "**Idea.**" in note and "reports/new_knowledge/README.md" in note  # the claim and the report

    parent = client.get_run(parent_id)
    assert parent.info.run_name == "evaluate" and parent.data.params["study.epochs"] == "3"
    assert [a.path for a in client.list_artifacts(parent_id)] == ["table.json"]
    children = client.search_runs([exp.experiment_id], f"tags.`{PARENT_RUN_TAG}` = '{parent_id}'")
    assert len(children) == 6 and all(c.info.status == "FINISHED" for c in children)
    by_arm = {arm: [c for c in children if c.data.params["arm"] == arm] for arm in ("baseline", "method")}
    assert [len(v) for v in by_arm.values()] == [3, 3]
    keys = {arm: {frozenset(c.data.metrics) for c in v} for arm, v in by_arm.items()}
    assert keys["baseline"] == keys["method"] == {frozenset({"fid.mnist-classifier", "seconds", "overhead"})}
    for c in children:
        p = c.data.params
        assert {"arm", "seed", "nfe", "group", "stage"} <= set(p) and "fid.mnist-classifier" not in p
        assert c.info.run_name == f"evaluate/sweep/arm={p['arm']}/nfe=10/group=main/seed={p['seed']}"
        assert c.data.tags["arm"] == p["arm"] and c.data.tags["seed"] == p["seed"]
        fid = 10.0 + int(p["seed"]) + (p["arm"] == "method")
        assert c.data.metrics["fid.mnist-classifier"] == fid  # the numbers of the table, unchanged
    assert sorted(c.data.params["seed"] for c in by_arm["method"]) == ["0", "1", "2"]


def test_experiment_tags_are_set_on_existing_experiments_once(tmp_path, monkeypatch):
    from common.tracking import EXPERIMENT_KIND_TAG, NOTE_TAG, SHARED_DESCRIPTION, log_run

    cfg = _cfg(tmp_path)
    client = mlflow.MlflowClient(tracking_uri=cfg.tracking.uri)
    exp_id = client.create_experiment("shared")  # made before the tags existed: no kind, no description
    client.set_experiment_tag(exp_id, EXPERIMENT_KIND_TAG, "genai_development")
    run_id = log_run(cfg, "shared", "train_base_model", {"a": 1}, {"m": 1.0}, seed=0)
    exp = client.get_experiment(exp_id)
    assert exp.tags[EXPERIMENT_KIND_TAG] == "custom_model_development" and exp.tags[NOTE_TAG] == SHARED_DESCRIPTION
    assert client.get_run(run_id).info.run_name == "train_base_model"  # a single-model stage keeps its name
    writes = []
    real = mlflow.MlflowClient.set_experiment_tag
    monkeypatch.setattr(mlflow.MlflowClient, "set_experiment_tag", lambda self, *a: writes.append(a) or real(self, *a))
    log_run(cfg, "shared", "train_base_model", {"a": 1}, {"m": 1.0}, seed=0)
    assert writes == []  # idempotent: nothing rewritten when the tags are right
    arm = log_run(cfg, "shared", "train", {"arm": "method", "gamma": 0.1}, {"m": 1.0}, seed=1)
    assert client.get_run(arm).info.run_name == "train/arm=method/seed=1"


def test_log_training_logs_curve_and_config(tmp_path):
    from common.tracking import log_training
    from common.training import TrainResult

    cfg = _cfg(tmp_path)
    res = TrainResult(model=None, history=[{"step": 2, "loss": 0.5, "lr": 0.1}, {"step": 4, "loss": 0.25, "lr": 0.1}],
                      resumed_from=2, steps=4, train_seconds=3.0, segment_seconds=1.0)
    curve = [{"epoch": 1, "test_acc[Known]": 50.0}, {"epoch": 2, "test_acc[Known]": 60.0}]
    run_id = log_training(cfg, "new_knowledge", "finetune", res, {"study": {"lr": 0.001}}, seed=1,
                          settings={"share": 0.5}, curve=curve, curve_step=lambda r: 2 * r["epoch"],
                          metrics={"test_acc": 60.0, "note": "text is ignored"})
    client = mlflow.MlflowClient(tracking_uri=cfg.tracking.uri)
    run = client.get_run(run_id)
    assert run.info.run_name == "finetune/share=0.5/seed=1"
    assert run.data.params == {"study.lr": "0.001", "share": "0.5", "seed": "1"}
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "loss")] == [(2, 0.5), (4, 0.25)]
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "test_acc.Known")] == [(2, 50.0), (4, 60.0)]
    m = run.data.metrics
    assert m["train_seconds"] == 3.0 and m["segment_seconds"] == 1.0 and m["resumed_from_step"] == 2
    assert m["test_acc"] == 60.0 and "note" not in m


def test_log_rows_is_fast_for_a_hundred_rows(tmp_path, monkeypatch):
    from common.tracking import log_rows, log_run

    cfg = _cfg(tmp_path)
    log_run(cfg, "speed", "warm-up", {}, {})  # the store's first-time schema creation is not log_rows' cost
    rows = [{"arm": a, "seed": s, "nfe": n, "fid": float(n + s), "kid": 0.1} for a in ("baseline", "method")
            for s in range(5) for n in range(10)]
    writes = []

    def counted(name, real):
        return lambda self, *a, **k: writes.append(name) or real(self, *a, **k)

    for name in ("log_batch", "log_param", "log_metric", "log_params", "log_metrics"):
        if hasattr(mlflow.MlflowClient, name):
            monkeypatch.setattr(mlflow.MlflowClient, name, counted(name, getattr(mlflow.MlflowClient, name)))
    log_rows(cfg, "speed", "evaluate", rows)
    # fast by construction, not by a wall-clock limit (timings belong in benchmarks/): one batched write per run
    assert writes == ["log_batch"] * (1 + len(rows))


def test_dvc_stage_target(monkeypatch):
    from common.tracking import dvc_stage_target, run_label

    monkeypatch.delenv("DVC_STAGE", raising=False)
    assert dvc_stage_target() is None
    monkeypatch.setenv("DVC_STAGE", "papers/dfn/dvc.yaml:experiment")
    assert dvc_stage_target() == ("dfn", "experiment")
    monkeypatch.setenv("DVC_STAGE", "pretrain_lm")
    assert dvc_stage_target() == ("shared", "pretrain_lm")
    assert run_label("train", {"arm": "method", "seed": 1}) == "train/arm=method/seed=1"
    assert run_label("evaluate", {"seed": 0, "stage": "evaluate", "guidance": 1.5, "arm": "cads"}) == \
        "evaluate/arm=cads/guidance=1.5/seed=0"
