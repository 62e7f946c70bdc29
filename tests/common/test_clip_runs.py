"""run_clip: a finished run is read back instead of retrained, a different subset retrains, intermediate
score cards land at the requested budgets; top_fraction keeps exactly n with a fixed tie rule."""

import numpy as np
import pytest
from tiny_scenes import tiny_scenes

from common import clip
from common.clip_runs import run_clip, subset_digest, top_fraction
from common.config import ClipModelConfig, ClipTrainConfig


@pytest.fixture(scope="module")
def scenes():
    return tiny_scenes()


def test_run_is_cached_and_curve_recorded(scenes, tmp_path):
    train, probe, test = scenes
    spec = ClipModelConfig(embed_dim=8, image_tower="cnn", cnn_widths=[4, 8], text_width=8, text_layers=1, text_heads=2,
                           context_length=32)
    t = ClipTrainConfig(samples=128, batch_size=16, lr=2e-3, warmup_steps=20, lr_schedule="cosine", weight_decay=1e-4,
                        seed=0, checkpoint_every=4, log_every=2)
    tok = clip.build_tokenizer()
    kw = dict(spec=spec, t=t, seed=0, run_dir=tmp_path, tok=tok, probe=probe, test=test)
    a = run_clip("a", train, eval_samples=[32, 96], **kw)
    assert a["samples_seen"] == 128 and a["n_train"] == 64
    assert [p["samples_seen"] for p in a["curve"]] == [32, 96]
    assert 0.0 <= a["zero_shot_digit"] <= 1.0 and "linear_probe_digit" in a["curve"][0]
    again = run_clip("a", train, eval_samples=[32, 96], **kw)
    assert again == a  # read back: same train_seconds, nothing retrained
    other = run_clip("a", train.subset(np.arange(32)), eval_samples=[32, 96], **kw)
    assert other["fingerprint"] != a["fingerprint"] and other["n_train"] == 32
    assert subset_digest(train) != subset_digest(train.subset(np.arange(32)))


def test_top_fraction():
    s = np.array([0.9, 0.8, 0.8, 0.7, 0.1])
    assert top_fraction(s, 0.4).tolist() == [0, 1]  # exactly round(0.4 * 5) = 2; the tie at 0.8 -> lower index
    assert top_fraction(s, 1.0).tolist() == [0, 1, 2, 3, 4] and top_fraction(s, 0.0).tolist() == []
    rng = np.random.default_rng(0)
    x = rng.normal(size=1000)
    keep = top_fraction(x, 0.15)
    assert len(keep) == 150 and x[keep].min() >= np.sort(x)[-150]


class _Interrupt(Exception):
    pass


def test_interrupted_run_resumes_and_finished_run_retrains(scenes, tmp_path):
    """Stopped at step 7 (checkpoint 4, score card of step 6 already written): the rerun resumes at 4 and
    ends with the uninterrupted run's numbers, one score card per budget. Without result.json, a finished
    run is trained again from scratch (not 'resumed' at its last step in no time)."""
    import mlflow

    from common.config import RootConfig
    from common.training import COMPLETE

    train, probe, test = scenes
    spec = ClipModelConfig(embed_dim=8, image_tower="cnn", cnn_widths=[4, 8], text_width=8, text_layers=1, text_heads=2,
                           context_length=32)
    t = ClipTrainConfig(samples=128, batch_size=16, lr=2e-3, warmup_steps=20, lr_schedule="cosine", weight_decay=1e-4,
                        seed=0, checkpoint_every=4, log_every=2)
    tok = clip.build_tokenizer()
    kw = dict(spec=spec, t=t, seed=0, tok=tok, probe=probe, test=test, eval_samples=[32, 96])
    ref = run_clip("a", train, run_dir=tmp_path / "ref", **kw)

    calls = [0]

    def stopped(*x):  # the same loss (not part of the run's identity), stopped when step 8 begins
        calls[0] += 1
        if calls[0] > 7:
            raise _Interrupt
        return clip.clip_loss(*x)

    with pytest.raises(_Interrupt):
        run_clip("a", train, run_dir=tmp_path / "run", loss=stopped, **kw)
    cfg = RootConfig()
    cfg.tracking.uri = f"sqlite:///{tmp_path}/mlflow.db"
    res = run_clip("a", train, run_dir=tmp_path / "run", tracking_cfg=cfg, experiment="clips", **kw)
    assert res["resumed_from"] == 4
    assert [p["samples_seen"] for p in res["curve"]] == [32, 96]  # the step-6 card is not duplicated
    assert res["curve"] == ref["curve"] and res["zero_shot_digit"] == ref["zero_shot_digit"]
    assert res["train_seconds"] > 0

    # the resumed run is logged: its loss curve, its score cards at their steps, the final card at step 8
    client = mlflow.MlflowClient(tracking_uri=cfg.tracking.uri)
    (run,) = client.search_runs([client.get_experiment_by_name("clips").experiment_id])
    assert run.info.run_name == "run_clip/clip=a/seed=0" and run.data.params["train.batch_size"] == "16"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [2, 4, 6, 8]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "zero_shot_digit")] == [2, 6, 8]
    assert run.data.metrics["resumed_from_step"] == 4 and run.data.metrics["train_seconds"] == res["train_seconds"]

    # finished, result.json lost (e.g. evaluation crashed after training): retrained, not resumed at step 8
    assert (tmp_path / "run" / "a" / "checkpoints" / COMPLETE).is_file()
    (tmp_path / "run" / "a" / "result.json").unlink()
    again = run_clip("a", train, run_dir=tmp_path / "run", **kw)
    assert again["resumed_from"] is None and again["curve"] == ref["curve"]
    assert again["zero_shot_digit"] == ref["zero_shot_digit"]
