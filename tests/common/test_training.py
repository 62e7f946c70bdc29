"""The shared Accelerate loop: determinism, resume after a kill, NaN guard, corrupt checkpoints,
step counting, and a real 2-process run (torchrun + gloo on CPU)."""

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from tinyrepo import make_tiny_repo, run_stage

from common.config import TrainConfig, budget_config, steps_for, warmup_for
from common.training import (
    COMPLETE,
    CorruptCheckpointError,
    NonFiniteLossError,
    completed_run,
    global_batch_indices,
    list_checkpoints,
    resume_step,
    train,
)


def _toy(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    g = torch.Generator().manual_seed(123)
    x = torch.randn(64, 4, generator=g)
    y = x.sum(1, keepdim=True)
    return model, (x, y)


def _loss(m, xb, yb, gen):
    noise = 0.01 * torch.randn(xb.shape, generator=gen)
    return torch.mean((m(xb + noise) - yb) ** 2)


def _cfg(**kw):
    base = dict(steps=12, batch_size=16, lr=1e-2, warmup_steps=2, checkpoint_every=4, keep_checkpoints=2, seed=3,
                log_every=2, ema_decay=0.9, lr_schedule="constant_with_warmup", cond_dropout=0.1)
    base.update(kw)
    return TrainConfig(**base)


def _weights(m):
    return torch.cat([p.detach().flatten() for p in m.parameters()])


def test_same_seed_same_weights(tmp_path):
    a = train(*_toy()[:1], _loss, _toy()[1], _cfg(), tmp_path / "a")
    b = train(*_toy()[:1], _loss, _toy()[1], _cfg(), tmp_path / "b")
    assert torch.equal(_weights(a.model), _weights(b.model))
    assert a.history == b.history
    c = train(*_toy()[:1], _loss, _toy()[1], _cfg(seed=4), tmp_path / "c")
    assert not torch.equal(_weights(a.model), _weights(c.model))


def test_batches_are_a_pure_function_of_step():
    n, b = 10, 4
    stream = [global_batch_indices(s, b, n, seed=1) for s in range(5)]
    assert all(len(s) == b for s in stream)
    first_epoch = torch.tensor(list(stream[0]) + list(stream[1]) + list(stream[2][:2]))
    assert sorted(first_epoch.tolist()) == list(range(n))  # each epoch is a permutation
    assert (global_batch_indices(3, b, n, seed=1) == stream[3]).all()


class _Interrupt(Exception):
    pass


def _interrupted(ckpt_dir, at_step, sleep=0.0, fp="", **kw):
    """Run `_cfg(**kw)` and stop it (an exception, like a crash) when step `at_step` begins."""
    calls = [0]

    def loss(m, xb, yb, gen):
        calls[0] += 1  # one micro-batch per step (grad_accum 1)
        if calls[0] > at_step:
            raise _Interrupt
        time.sleep(sleep)
        return _loss(m, xb, yb, gen)

    with pytest.raises(_Interrupt):
        train(*_toy()[:1], loss, _toy()[1], _cfg(**kw), ckpt_dir, run_fingerprint=fp)


def test_resume_in_process_matches_uninterrupted(tmp_path):
    """Stopped when step 9 begins (last checkpoint: 8), then rerun: resumes at 8, same weights and history."""
    full = train(*_toy()[:1], _loss, _toy()[1], _cfg(), tmp_path / "full")
    _interrupted(tmp_path / "part", 9)
    assert [p.name for p in list_checkpoints(tmp_path / "part")] == ["checkpoint-0000004", "checkpoint-0000008"]
    assert resume_step(tmp_path / "part") == 8 and completed_run(tmp_path / "part") is None
    resumed = train(*_toy()[:1], _loss, _toy()[1], _cfg(), tmp_path / "part")
    assert resumed.resumed_from == 8
    assert torch.equal(_weights(full.model), _weights(resumed.model))
    assert full.history == resumed.history


def test_checkpoints_of_another_run_are_not_resumed(tmp_path):
    """A rerun after a code or parameter change must start afresh, not continue the old run."""
    _interrupted(tmp_path / "ck", 9, fp="old")
    again = train(*_toy()[:1], _loss, _toy()[1], _cfg(), tmp_path / "ck", run_fingerprint="old")
    assert again.resumed_from == 8
    _interrupted(tmp_path / "ck2", 9, fp="old")  # an unfinished run of the old configuration
    assert resume_step(tmp_path / "ck2", "old") == 8 and resume_step(tmp_path / "ck2", "new") == 0
    fresh = train(*_toy()[:1], _loss, _toy()[1], _cfg(), tmp_path / "ck2", run_fingerprint="new")
    ref = train(*_toy()[:1], _loss, _toy()[1], _cfg(), tmp_path / "ref", run_fingerprint="new")
    assert fresh.resumed_from is None
    assert torch.equal(_weights(fresh.model), _weights(ref.model))


def test_finished_run_is_retrained_not_resumed(tmp_path):
    """`dvc repro --force` of a finished stage (runs/ persisted): same folder, same fingerprint -> retrain
    from scratch (not a 0-step "resume" from the final checkpoint), same weights, a true train_seconds."""
    first = train(*_toy()[:1], _loss, _toy()[1], _cfg(), tmp_path / "ck", run_fingerprint="fp")
    done = completed_run(tmp_path / "ck")
    assert done["steps"] == 12 and done["fingerprint"] == "fp" and done["resumed_from_step"] == 0
    assert resume_step(tmp_path / "ck", "fp") == 0  # nothing to resume: the run is finished
    calls = [0]

    def counting(m, xb, yb, gen):
        calls[0] += 1
        time.sleep(0.01)
        return _loss(m, xb, yb, gen)

    again = train(*_toy()[:1], counting, _toy()[1], _cfg(), tmp_path / "ck", run_fingerprint="fp")
    assert calls[0] == 12  # every step trained again
    assert again.resumed_from is None and again.resumed_from_step == 0
    assert again.train_seconds >= 12 * 0.01 and again.train_seconds == pytest.approx(again.segment_seconds, abs=0.5)
    assert torch.equal(_weights(first.model), _weights(again.model)) and first.history == again.history
    assert [p.name for p in list_checkpoints(tmp_path / "ck")] == ["checkpoint-0000008", "checkpoint-0000012"]
    assert (tmp_path / "ck" / COMPLETE).is_file()


def test_resumed_run_reports_total_time_over_segments(tmp_path):
    """Interrupted after 9 slow steps (checkpoint 8), resumed: train_seconds counts both segments."""
    _interrupted(tmp_path / "ck", 9, sleep=0.05)
    state = json.loads((list_checkpoints(tmp_path / "ck")[-1] / "train_state.json").read_text())
    assert state["step"] == 8 and state["train_seconds"] >= 8 * 0.05
    res = train(*_toy()[:1], _loss, _toy()[1], _cfg(), tmp_path / "ck")
    assert res.resumed_from == 8 and res.resumed_from_step == 8
    assert res.train_seconds >= state["train_seconds"] + res.segment_seconds - 1e-6
    done = completed_run(tmp_path / "ck")
    assert done["resumed_from_step"] == 8 and done["train_seconds"] == res.train_seconds


def test_nan_loss_stops_and_keeps_last_checkpoint(tmp_path):
    calls = [0]

    def bad_loss(m, xb, yb, gen):
        calls[0] += 1
        loss = _loss(m, xb, yb, gen)
        return loss * float("nan") if calls[0] > 6 else loss

    with pytest.raises(NonFiniteLossError, match=r"step 6.*checkpoint-0000004"):
        train(*_toy()[:1], bad_loss, _toy()[1], _cfg(), tmp_path / "ck")
    assert [p.name for p in list_checkpoints(tmp_path / "ck")] == ["checkpoint-0000004"]


def test_corrupt_checkpoint_is_named(tmp_path):
    _interrupted(tmp_path / "ck", 5)  # unfinished, last checkpoint 4: the rerun resumes from it
    last = list_checkpoints(tmp_path / "ck")[-1]
    weights = next(last.glob("model*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CorruptCheckpointError, match=str(last)):
        train(*_toy()[:1], _loss, _toy()[1], _cfg(), tmp_path / "ck")


def test_half_written_checkpoint_is_ignored(tmp_path):
    train(*_toy()[:1], _loss, _toy()[1], _cfg(steps=4), tmp_path / "ck")
    (tmp_path / "ck" / "checkpoint-0000008").mkdir()  # no train_state.json: an interrupted save
    assert [p.name for p in list_checkpoints(tmp_path / "ck")] == ["checkpoint-0000004"]


# ---------------------------------------------------------------- the real stage, killed and resumed
@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    root = make_tiny_repo(tmp_path_factory.mktemp("tiny"))
    run_stage(root, "common.stages.prepare_data")
    return root


def _unet_weights(path: Path):
    return load_file(str(path / "diffusion_pytorch_model.safetensors"))


def test_killed_training_resumes_to_identical_weights(tiny_root):
    # uninterrupted reference run
    run_stage(tiny_root, "common.stages.train_base_model", "paths.models=models_ref", "paths.runs=runs_ref")
    # killed at step 14 (checkpoints every 10), then rerun: resumes from step 10
    killed = run_stage(tiny_root, "common.stages.train_base_model", env_extra={"REPLICATE_KILL_AT_STEP": "14"},
                       check=False)
    assert killed.returncode != 0
    assert [p.name for p in list_checkpoints(tiny_root / "runs/base_model/checkpoints")] == ["checkpoint-0000010"]
    assert not (tiny_root / "models/base_model").exists()  # nothing half-written that looks valid
    out = run_stage(tiny_root, "common.stages.train_base_model")
    assert json.loads(out.stdout.strip().splitlines()[-1])["resumed_from"] == 10
    ref, res = _unet_weights(tiny_root / "models_ref/base_model"), _unet_weights(tiny_root / "models/base_model")
    assert ref.keys() == res.keys()
    assert all(torch.equal(ref[k], res[k]) for k in ref)
    # `dvc repro --force` of the finished stage (runs/ is persisted): retrained from scratch, same weights
    assert (tiny_root / "runs/base_model/checkpoints/complete.json").is_file()
    out = run_stage(tiny_root, "common.stages.train_base_model")
    assert json.loads(out.stdout.strip().splitlines()[-1])["resumed_from"] == 0
    again = _unet_weights(tiny_root / "models/base_model")
    assert all(torch.equal(ref[k], again[k]) for k in ref)


def test_two_process_cpu_run(tiny_root):
    """torchrun starts 2 processes; Accelerator(cpu=True) joins their gloo group; steps are counted once."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517", "-m"]
    run_stage(tiny_root, "common.stages.train_base_model", "paths.models=models_2p", "paths.runs=runs_2p",
              launcher=launcher)
    ck = list_checkpoints(tiny_root / "runs_2p/base_model/checkpoints")[-1]
    state = json.loads((ck / "train_state.json").read_text())
    assert state["step"] == 20
    sched = torch.load(ck / "custom_checkpoint_0.pkl", weights_only=False)  # the LR scheduler
    assert sched["last_epoch"] == 20  # LR scheduler stepped once per optimizer step, not once per process
    assert (tiny_root / "models_2p/base_model/diffusion_pytorch_model.safetensors").is_file()
    assert sorted(p.name for p in ck.glob("random_states_*.pkl")) == ["random_states_0.pkl", "random_states_1.pkl"]


# ---------------------------------------------------------------- one warm-up rule, one budget config
def test_warmup_rule_reproduces_the_former_per_site_rules():
    """warmup_for(steps, w, f) = min(w, floor(f * steps)): f = 0.1 is the former steps // 10 (LM, classifier),
    f = 0.2 the former steps // 5 (CLIP runs), exactly, at every length up to 200k steps."""
    steps = np.arange(1, 200_001)
    for frac, div in ((0.1, 10), (0.2, 5)):
        got = np.array([warmup_for(int(n), 10**9, frac) for n in steps])
        np.testing.assert_array_equal(got, steps // div)
    assert warmup_for(1260, 50) == 50 and warmup_for(30, 50) == 3 and warmup_for(600, 50) == 50
    assert warmup_for(79, 20, 0.2) == 15 and warmup_for(240, 20, 0.2) == 20 and warmup_for(100, 0) == 0


def test_budget_config_equals_the_hand_built_configs_it_replaces():
    """The former constructions of common/stages/train_classifier.py, common/stages/pretrain_lm.py,
    common.clip.train_config and papers/new_knowledge/finetune.py, at the cpu and tiny profiles' sizes."""
    from common import clip
    from common.config import ClipTrainConfig

    for n in (400, 30):  # classifier steps: cpu, tiny
        old = TrainConfig(steps=n, ema_decay=0.0, batch_size=128, lr=2e-3, warmup_steps=min(50, n // 10), lr_schedule="cosine",
                          seed=0, checkpoint_every=max(n, 1), keep_checkpoints=1, cond_dropout=0.0, grad_clip=1.0,
                          log_every=max(1, n // 20))
        assert budget_config(n, warmup_steps=50, batch_size=128, lr=2e-3, lr_schedule="cosine", seed=0,
                             checkpoint_every=n, keep_checkpoints=1, grad_clip=1.0, log_every=max(1, n // 20)) == old
    for n, w in ((1260, 50), (290, 10), (7, 10)):  # knowledge LM
        old = TrainConfig(steps=n, ema_decay=0.0, batch_size=32, lr=1e-2, warmup_steps=min(w, n // 10), lr_schedule="cosine",
                          weight_decay=0.0, grad_clip=1.0, cond_dropout=0.0, checkpoint_every=min(200, n),
                          keep_checkpoints=1, seed=0, log_every=min(20, n))
        assert budget_config(n, warmup_steps=w, batch_size=32, lr=1e-2, lr_schedule="cosine", weight_decay=0.0,
                             grad_clip=1.0, checkpoint_every=200, keep_checkpoints=1, seed=0, log_every=20) == old
    for samples, bs, w in ((61440, 256, 20), (20000, 256, 20), (24000, 256, 20), (256, 32, 2), (640, 32, 4)):
        t = ClipTrainConfig(samples=samples, batch_size=bs, warmup_steps=w, lr=2e-3, lr_schedule="cosine",
                            weight_decay=1e-4, seed=0)
        n = max(1, int(np.ceil(samples / bs)))
        old = TrainConfig(steps=n, ema_decay=0.0, batch_size=bs, lr=t.lr, warmup_steps=min(w, n // 5), lr_schedule=t.lr_schedule,
                          weight_decay=t.weight_decay, grad_clip=t.grad_clip, cond_dropout=0.0,
                          checkpoint_every=min(t.checkpoint_every, n), keep_checkpoints=t.keep_checkpoints,
                          seed=t.seed, log_every=min(t.log_every, n))
        assert clip.train_config(t) == old and steps_for(samples, bs) == n
    old = TrainConfig(steps=48, ema_decay=0.0, batch_size=16, lr=1e-3, warmup_steps=0, lr_schedule="constant", weight_decay=0.0,
                      grad_clip=1.0, cond_dropout=0.0, checkpoint_every=48, keep_checkpoints=1, seed=3, log_every=16)
    assert budget_config(48, batch_size=16, lr=1e-3, lr_schedule="constant", weight_decay=0.0, grad_clip=1.0,
                         checkpoint_every=48, keep_checkpoints=1, seed=3, log_every=16) == old  # new_knowledge
