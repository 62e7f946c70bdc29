"""The shared evaluation stage: rows, wall time and an atomic results file."""

import json

import pytest

from common.eval_stage import EvalStage


def test_rows_and_results_are_written_atomically(tmp_path, capsys):
    st = EvalStage(cfg=None, paper="x", out=tmp_path)
    st.add(arm="baseline", seed=0, fid=1.5)
    st.add(arm="method", seed=0, fid=1.25)
    assert [json.loads(line)["arm"] for line in capsys.readouterr().out.splitlines()] == ["baseline", "method"]
    path = st.write(metric="fid")
    res = json.loads(path.read_text())
    assert res["metric"] == "fid" and [r["fid"] for r in res["rows"]] == [1.5, 1.25] and res["eval_seconds"] >= 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]  # no temp file left


def test_a_failed_write_keeps_the_previous_results(tmp_path):
    st = EvalStage(cfg=None, paper="x", out=tmp_path)
    st.write(metric="fid")
    before = (tmp_path / "results.json").read_text()
    with pytest.raises(TypeError):
        st.write(metric=object())  # not JSON-serialisable: fails before the rename
    assert (tmp_path / "results.json").read_text() == before


def test_log_prints_without_recording_a_row(tmp_path, capsys):
    st = EvalStage(cfg=None, paper="x", out=tmp_path)
    st.log(stage="sweep", fid=2.0)
    assert json.loads(capsys.readouterr().out) == {"stage": "sweep", "fid": 2.0} and st.rows == []


def test_other_outputs_are_written_atomically(tmp_path):
    np = pytest.importorskip("numpy")
    st = EvalStage(cfg=None, paper="x", out=tmp_path)
    (tmp_path / "samples").mkdir()
    st.write_json("window.json", {"window": 3})
    st.write_arrays("samples/brightness.npz", data=np.arange(3.0))
    assert json.loads((tmp_path / "window.json").read_text()) == {"window": 3}
    with np.load(tmp_path / "samples" / "brightness.npz") as z:
        assert z["data"].tolist() == [0.0, 1.0, 2.0]
    with pytest.raises(TypeError):
        st.write_json("window.json", {"window": object()})
    assert json.loads((tmp_path / "window.json").read_text()) == {"window": 3}
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["brightness.npz", "samples", "window.json"]
