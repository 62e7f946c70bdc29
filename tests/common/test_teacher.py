"""common/teacher.py: the shared scene CLIP's outputs as the data papers read them."""

import json
from types import SimpleNamespace

import numpy as np
import pytest

from common.config import UnreadableInputError
from common.data import MissingDataError
from common.teacher import teacher_embeddings, teacher_meta, teacher_scores


@pytest.fixture
def cfg(tmp_path, monkeypatch):
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    (tmp_path / "models" / "scene_clip").mkdir(parents=True)
    return SimpleNamespace(paths=SimpleNamespace(models="models"))


def test_reads_what_the_stage_writes(cfg, tmp_path):
    out = tmp_path / "models" / "scene_clip"
    np.save(out / "pool_scores.npy", np.arange(5, dtype=np.float32))
    np.save(out / "pool_image_embeddings.npy", np.ones((5, 3), dtype=np.float32))
    (out / "meta.json").write_text(json.dumps({"config": {}, "metrics": {"auc": 0.9}}))
    np.testing.assert_array_equal(teacher_scores(cfg, 5), np.arange(5, dtype=np.float32))
    assert teacher_embeddings(cfg, 5).shape == (5, 3)
    assert teacher_meta(cfg)["metrics"] == {"auc": 0.9}


def test_missing_names_the_file_and_the_stage(cfg):
    with pytest.raises(MissingDataError, match=r"pool_scores.npy is missing .*train_scene_clip"):
        teacher_scores(cfg, 5)


def test_rows_must_match_the_pool(cfg, tmp_path):
    np.save(tmp_path / "models" / "scene_clip" / "pool_scores.npy", np.arange(4, dtype=np.float32))
    with pytest.raises(UnreadableInputError, match="4 rows for a pool of 5 pairs.*train_scene_clip"):
        teacher_scores(cfg, 5)
    np.save(tmp_path / "models" / "scene_clip" / "pool_scores.npy", np.ones((5, 2), dtype=np.float32))
    with pytest.raises(UnreadableInputError, match="shape"):
        teacher_scores(cfg, 5)
