"""One Accelerate training loop for every paper.

What it guarantees (each one is tested in tests/common/test_training.py):
- The data order and every random draw of step `s` derive from (seed, s, micro-step, rank), not
  from loader state: a run killed mid-way and resumed from its last checkpoint ends with the
  same weights as an uninterrupted one.
- `steps` counts optimizer steps. The LR scheduler is stepped once per optimizer step, whatever
  the number of processes or accumulation steps (the diffusers multi-GPU warm-up bug).
- The global batch is split across processes, so 1 or N processes see the same samples per step.
- Checkpoints go through `accelerator.save_state` into `checkpoint-<step>` (written to a temp dir,
  then renamed, so a half-written one never looks valid); the newest `keep` are kept.
- A non-finite loss stops the run with `NonFiniteLossError` before any update; the last good
  checkpoint stays on disk.
- Resume is for INTERRUPTED runs only. A run that reaches its last step writes `complete.json` in
  its checkpoint folder (after the final checkpoint); the next call on that folder -- a rerun of a
  finished run, e.g. `dvc repro --force` of a stage whose `runs/` folder DVC keeps (`persist: true`)
  -- deletes the old checkpoints and the marker and trains from scratch. Checkpoints of another
  fingerprint (configuration or code) are also discarded. So a resumed run is always one that was
  killed (or failed) before its last step, and the final weights never depend on a previous run.
- `TrainResult.train_seconds` is the true training wall time: for an uninterrupted run, the time of
  this call; for an interrupted-then-resumed run, the total over its segments (each segment counts
  up to its last checkpoint: the steps redone after a kill are counted once, when they are redone),
  with `resumed_from` (= `resumed_from_step`) the step it resumed from and `segment_seconds` the
  time of this call alone. The same numbers are in `complete.json`.
- Devices: the model, the optimizer and the EMA weights live on `accelerator.device` (a GPU when one
  is available, see common/devices.py). The data stays in CPU memory and each micro-batch is moved
  there when it is used; the random numbers still come from the CPU generators of `step_generator`
  (loss functions move their draws to the batch's device), so a seed means the same batch and the
  same noise on every device and the CPU path is unchanged. The returned model (and a snapshot's)
  is on the CPU, where the caller built it.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import numpy as np
import torch

from .atomic import atomic_dir, atomic_file, write_dir_atomic
from .config import TrainConfig
from .devices import default_device, module_device

CKPT_PREFIX = "checkpoint-"
COMPLETE = "complete.json"  # in the checkpoint folder: the run reached its last step (see module docstring)
FAULT_ENV = "REPLICATE_KILL_AT_STEP"  # tests: SIGKILL the process when this step begins


class NonFiniteLossError(RuntimeError):
    pass


class CorruptCheckpointError(RuntimeError):
    pass


# --------------------------------------------------------------------------- the loop
def step_generator(seed: int, *keys: int) -> torch.Generator:
    """A torch Generator seeded from (seed, *keys): the randomness of one micro-step on one rank."""
    s = np.random.SeedSequence([int(seed), *map(int, keys)]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(s) >> 1)


def global_batch_indices(step: int, batch_size: int, n: int, seed: int) -> np.ndarray:
    """Indices of the global batch of optimizer step `step`: consecutive slices of a stream of
    per-epoch permutations (epoch e shuffled with (seed, e)), so it is a pure function of `step`."""
    start, stop = step * batch_size, (step + 1) * batch_size
    out, pos = [], start
    while pos < stop:
        epoch, off = divmod(pos, n)
        perm = np.random.default_rng([seed, epoch]).permutation(n)
        take = min(stop - pos, n - off)
        out.append(perm[off : off + take])
        pos += take
    return np.concatenate(out)


def fingerprint(config: dict, files: Sequence[Path] = ()) -> str:
    """Identity of a training run: its configuration and the source files that define it.

    Checkpoints carry it; `train` resumes only from checkpoints with the same fingerprint, so a
    rerun after a code or parameter change (DVC keeps `persist: true` folders) starts afresh
    instead of silently continuing the old run.
    """
    import hashlib

    h = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    for f in files:
        h.update(Path(f).read_bytes())
    return h.hexdigest()[:16]


def list_checkpoints(ckpt_dir: Path) -> List[Path]:
    """Complete checkpoints (those with train_state.json), oldest first."""
    if not Path(ckpt_dir).is_dir():
        return []
    c = [p for p in Path(ckpt_dir).iterdir() if p.name.startswith(CKPT_PREFIX) and (p / "train_state.json").is_file()]
    return sorted(c, key=lambda p: int(p.name[len(CKPT_PREFIX):]))


def completed_run(ckpt_dir: Path) -> Optional[dict]:
    """The `complete.json` of a finished run in `ckpt_dir` (None while it is unfinished or absent)."""
    f = Path(ckpt_dir) / COMPLETE
    if not f.is_file():
        return None
    try:
        return json.loads(f.read_text())
    except ValueError:
        return {}  # unreadable marker: still a finished run (it is only written after the last checkpoint)


def resume_step(ckpt_dir: Path, run_fingerprint: str = "") -> int:
    """The step `train` would resume from with these arguments: 0 when it would start from scratch
    (no checkpoint, checkpoints of another fingerprint, or a finished run)."""
    ckpts = list_checkpoints(ckpt_dir)
    if not ckpts or completed_run(ckpt_dir) is not None:
        return 0
    state = json.loads((ckpts[-1] / "train_state.json").read_text())
    return int(state["step"]) if state.get("fingerprint", "") == run_fingerprint else 0


@dataclass
class TrainResult:
    model: torch.nn.Module  # unwrapped, with EMA weights copied in
    history: List[dict] = field(default_factory=list)  # {step, loss, lr}
    resumed_from: Optional[int] = None  # step this call resumed from; None: trained from scratch
    steps: int = 0
    is_main_process: bool = True  # only the main process writes final outputs
    train_seconds: float = 0.0  # training wall time, total over the segments of a resumed run
    segment_seconds: float = 0.0  # wall time of this call alone (= train_seconds when not resumed)

    @property
    def resumed_from_step(self) -> int:
        """`resumed_from` as a number for metrics files: 0 when the run was not resumed."""
        return self.resumed_from or 0


def train(
    model: torch.nn.Module,
    loss_fn: Callable[[torch.nn.Module, torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor],
    data: Sequence[torch.Tensor],
    cfg: TrainConfig,
    ckpt_dir: Path,
    *,
    desc: str = "train",
    use_ema: bool = True,
    ema_snapshots: Sequence[int] = (),
    snapshot_fn: Optional[Callable[[int, torch.nn.Module], None]] = None,
    accelerator=None,
    run_fingerprint: str = "",
) -> TrainResult:
    """Train `model` for `cfg.steps` optimizer steps on in-memory tensors `data` (same first dim).

    loss_fn(model, *batch, generator) -> scalar loss for one micro-batch; the batch is on the model's
    device (`accelerator.device`), the generator a CPU one (move what it draws to the batch's device).
    `snapshot_fn(step, ema_model)` is called at each step in `ema_snapshots` (e.g. the weak-model
    checkpoint); write snapshots inside the persistent run folder, since a resumed run does not
    pass that step again. `run_fingerprint` (see `fingerprint`) guards resume; a finished run (its
    `complete.json`) is never resumed but retrained from scratch. Returns the unwrapped model with EMA
    weights (if `use_ema`), the loss history and the true training time (see the module docstring).
    """
    t_start = time.time()
    from accelerate import Accelerator
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel
    from tqdm.auto import tqdm

    acc = accelerator or Accelerator(cpu=default_device().type == "cpu", mixed_precision=cfg.mixed_precision)
    ckpt_dir = Path(ckpt_dir)
    n = data[0].shape[0]
    P, A, B = acc.num_processes, cfg.grad_accum, cfg.batch_size
    if B % (P * A):
        raise ValueError(f"train.batch_size={B} must be divisible by processes x grad_accum = {P} x {A}")
    micro = B // (P * A)

    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = get_scheduler(cfg.lr_schedule, opt, num_warmup_steps=cfg.warmup_steps, num_training_steps=cfg.steps)
    ema = EMAModel(model.parameters(), decay=cfg.ema_decay) if use_ema else None
    model, opt = acc.prepare(model, opt)  # moves the model to acc.device
    if ema is not None:
        ema.to(acc.device)  # its shadow weights were copied from the model before the move
    acc.register_for_checkpointing(sched)  # stepped by hand: once per optimizer step
    if ema is not None:
        acc.register_for_checkpointing(ema)

    start, history, resumed, prior_seconds = 0, [], None, 0.0
    ckpts = list_checkpoints(ckpt_dir)
    finished = completed_run(ckpt_dir)
    if finished is not None:
        why = (f"{desc}: the run in {ckpt_dir} finished (step {finished.get('steps', '?')}); "
               "resume is only for interrupted runs, so this rerun trains from scratch")
    elif ckpts and json.loads((ckpts[-1] / "train_state.json").read_text()).get("fingerprint", "") != run_fingerprint:
        why = f"{desc}: checkpoints in {ckpt_dir} belong to another configuration or code version; starting afresh"
    else:
        why = None
    if why:
        acc.print(why)
        acc.wait_for_everyone()
        if acc.is_main_process:
            (ckpt_dir / COMPLETE).unlink(missing_ok=True)
            for c in ckpts:
                shutil.rmtree(c, ignore_errors=True)
        acc.wait_for_everyone()
        ckpts = []
    if ckpts:
        last = ckpts[-1]
        try:
            acc.load_state(str(last))
            state = json.loads((last / "train_state.json").read_text())
        except Exception as e:
            raise CorruptCheckpointError(
                f"cannot resume from checkpoint {last}: {type(e).__name__}: {e}. "
                f"Delete that folder to resume from the previous checkpoint (or the whole {ckpt_dir} to restart)."
            ) from e
        if ema is not None:
            ema.to(acc.device)  # load_state restores the EMA weights as saved / on the CPU
        start, history, resumed = state["step"], state["history"], state["step"]
        prior_seconds = float(state.get("train_seconds", 0.0))

    def elapsed() -> float:  # training time of the run so far, all segments
        return prior_seconds + (time.time() - t_start)

    def save(step: int):
        acc.wait_for_everyone()
        with atomic_dir(ckpt_dir / f"{CKPT_PREFIX}{step:07d}", is_main=acc.is_main_process,
                        sync=acc.wait_for_everyone) as tmp:
            acc.save_state(str(tmp))
            if acc.is_main_process:
                (tmp / "train_state.json").write_text(
                    json.dumps({"step": step, "history": history, "fingerprint": run_fingerprint,
                                "train_seconds": elapsed()}))
        if acc.is_main_process:
            for old in list_checkpoints(ckpt_dir)[: -cfg.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
        acc.wait_for_everyone()

    def ema_model(final: bool = False):
        """The model with EMA weights, on the CPU (a copy, except the trained model itself at the end without EMA)."""
        import copy

        m = acc.unwrap_model(model)
        if ema is not None:
            m = copy.deepcopy(m)
            ema.copy_to(m.parameters())
        elif not final and module_device(m).type != "cpu":
            m = copy.deepcopy(m)  # a snapshot: the live model keeps training on its device
        return m.to("cpu")

    model.train()
    kill_at = int(os.environ.get(FAULT_ENV, -1))
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc=desc, disable=not acc.is_local_main_process)
    for step in bar:
        if step == kill_at:
            os.kill(os.getpid(), 9)
        idx = global_batch_indices(step, B, n, cfg.seed)
        total = 0.0
        for k in range(A):
            lo = (k * P + acc.process_index) * micro
            batch = [d[idx[lo : lo + micro]].to(acc.device) for d in data]
            gen = step_generator(cfg.seed, step, k, acc.process_index)
            ctx = acc.no_sync(model) if k < A - 1 else nullcontext()
            with ctx:
                loss = loss_fn(model, *batch, gen)
                check = acc.reduce(loss.detach().reshape(1), "mean")
                if not torch.isfinite(check).all():
                    last = list_checkpoints(ckpt_dir)
                    raise NonFiniteLossError(
                        f"{desc}: non-finite loss ({check.item()}) at step {step}; no update was applied. "
                        f"Last good checkpoint: {last[-1] if last else 'none'}. Lower train.lr or check the data."
                    )
                acc.backward(loss / A)
            total += check.item() / A
        if cfg.grad_clip > 0:
            acc.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()
        if ema is not None:
            ema.step(acc.unwrap_model(model).parameters())
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.steps:
            history.append({"step": done, "loss": total, "lr": sched.get_last_lr()[0]})
            bar.set_postfix(loss=f"{total:.4f}")
        if snapshot_fn is not None and done in set(ema_snapshots) and acc.is_main_process:
            snapshot_fn(done, ema_model())
        if done % cfg.checkpoint_every == 0 or done == cfg.steps:
            save(done)
    bar.close()
    acc.wait_for_everyone()
    now = time.time()
    seconds, segment = prior_seconds + (now - t_start), now - t_start
    if acc.is_main_process:  # after the final checkpoint: from now on this folder holds a finished run
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        with atomic_file(ckpt_dir / COMPLETE) as tmp:
            tmp.write_text(json.dumps({"steps": cfg.steps, "fingerprint": run_fingerprint, "train_seconds": seconds,
                                       "resumed_from_step": resumed or 0}, indent=1))
    acc.wait_for_everyone()
    return TrainResult(model=ema_model(final=True), history=history, resumed_from=resumed, steps=cfg.steps,
                       is_main_process=acc.is_main_process, train_seconds=seconds,
                       segment_seconds=segment)


def save_model_atomic(model, out_dir: Path):
    """`save_pretrained` into a temp dir, then rename: a half-written model never looks valid."""
    write_dir_atomic(out_dir, model.save_pretrained)
