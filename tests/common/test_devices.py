"""Device placement without a GPU: the loss, the samplers and the training loop on a stand-in device.

A GPU run fails at the first op that mixes a CPU tensor into CUDA work. Two stand-ins catch that on
the CPU:
- torch's FakeTensorMode with fake CUDA tensors: no data, no driver, but the same device rules as a
  GPU (a CPU tensor in a CUDA op raises FakeTensorDeviceMismatchError; CPU scalars are allowed). The
  real UNet, loss and samplers run on it.
- an Accelerator whose device is `meta`: `train` must hand the loss function its batches, and keep
  the model and the EMA weights, on `accelerator.device`.
The CPU numbers themselves are pinned by test_diffusion.py / test_training.py (unchanged).
"""

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorDeviceMismatchError, FakeTensorMode

from common.config import TrainConfig, UNetConfig
from common.devices import DEVICE_ENV, default_device, module_device
from common.diffusion import NoiseSchedule, denoising_loss, unet_fn
from common.models import build_unet
from common.sampling import Hooks, SamplingSpec, ddpm_step, generate_all
from common.training import step_generator, train

UNET = UNetConfig(block_out_channels=[8, 16], attention_levels=[False, True], layers_per_block=1, num_classes=10,
                  norm_num_groups=4, attention_head_dim=4)
CUDA = torch.device("cuda", 0)


@pytest.fixture(scope="module")
def schedule():
    return NoiseSchedule()


@pytest.fixture
def fake_cuda():
    """(mode, class-conditional UNet on fake cuda:0); tensors made inside `with mode:` are fake."""
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    with mode, torch.device("cuda"):
        unet = build_unet(UNET, 8, 1)
    assert module_device(unet) == CUDA
    return mode, unet


def test_fake_cuda_catches_a_cpu_tensor(fake_cuda):
    """Negative control: the stand-in rejects what a GPU rejects."""
    mode, unet = fake_cuda
    with mode, pytest.raises(FakeTensorDeviceMismatchError):
        unet(torch.zeros(2, 1, 8, 8), torch.zeros(2, dtype=torch.long), class_labels=torch.zeros(2, dtype=torch.long))


@pytest.mark.parametrize("gamma", [0.0, 0.1])
def test_loss_runs_on_the_data_device(fake_cuda, schedule, gamma):
    mode, unet = fake_cuda
    gen = step_generator(0, 3, 0, 0)
    with mode:
        x0, y = torch.zeros(4, 1, 8, 8, device="cuda"), torch.arange(4, device="cuda")
        def perturb(eps, g):  # DDPM-IP's kind of hook: a CPU draw moved to the data's device
            return eps + gamma * torch.randn(eps.shape, generator=g).to(eps.device)

        loss = denoising_loss(unet_fn(unet), schedule, x0, y, gen, 0.5, 10, noise_input=perturb if gamma else None)
    assert loss.device == CUDA and gen.device.type == "cpu"


def test_unet_fn_hands_back_on_the_callers_device(fake_cuda):
    """A caller holding CPU tensors (a paper's own sampler) can use a network that lives on the GPU."""
    mode, unet = fake_cuda
    with mode:
        out = unet_fn(unet)(torch.zeros(2, 1, 8, 8), torch.tensor([5, 7]), torch.tensor([1, 10]))
    assert out.device.type == "cpu" and out.shape == (2, 1, 8, 8)


class _Record(Hooks):
    """Records the device of x at each step; optionally returns per-sample CPU timesteps (Time-Shift's kind)."""

    def __init__(self, per_sample=False):
        self.per_sample, self.devices = per_sample, []

    def model_output(self, eps, x, i, t):
        self.devices.append((x.device, eps.device))
        return eps

    def next_timestep(self, x, i, t, t_next):
        return torch.tensor([t_next] * x.shape[0]) if self.per_sample and t_next >= 0 else t_next


@pytest.mark.parametrize("method,eta,scale,per_sample", [
    ("ddim", 0.0, 1.0, False), ("ddim", 0.0, 2.0, False), ("ddim", 1.0, 1.0, False), ("ddpm", 0.0, 2.0, False),
    ("ddim", 0.0, 1.0, True),  # per-sample CPU timesteps from a hook
])
def test_sampler_runs_on_the_model_device(fake_cuda, schedule, method, eta, scale, per_sample):
    mode, unet = fake_cuda
    hooks = []

    def factory():
        hooks.append(_Record(per_sample))
        return hooks[-1]

    with mode:
        x, y = generate_all(unet_fn(unet), schedule, SamplingSpec(5, 3, method, eta, guidance_scale=scale),
                            (1, 8, 8), 10, batch_size=3, hooks_factory=factory, device="cuda")
    assert x.device.type == "cpu" and x.shape == (5, 1, 8, 8) and y.device.type == "cpu"
    assert len(hooks) == 2 and all(d == (CUDA, CUDA) for h in hooks for d in h.devices)
    assert len(hooks[0].devices) == 3


def test_ddpm_step_with_per_sample_cpu_times(fake_cuda, schedule):
    """The DDPM noise mask of per-sample target times (some on data, -1) is built on x's device."""
    mode, _ = fake_cuda
    with mode:
        x = torch.zeros(3, 1, 8, 8, device="cuda")
        out = ddpm_step(schedule, x, x, x, torch.tensor([10, 10, 10]), torch.tensor([5, -1, 3]), 0.0, x)
    assert out.device == CUDA


def _meta_accelerator():
    """An Accelerator (CPU, one process) that reports `meta` as its device, so `prepare` moves the model there,
    and keeps what `train` registers for checkpointing (the LR scheduler, the EMA weights)."""
    from accelerate import Accelerator

    class MetaAccelerator(Accelerator):
        @property
        def device(self):
            return torch.device("meta")

        def register_for_checkpointing(self, *objects):
            self.registered = [*getattr(self, "registered", []), *objects]
            super().register_for_checkpointing(*objects)

    return MetaAccelerator(cpu=True)


class _Stop(Exception):
    pass


def test_train_moves_batches_model_and_ema_to_the_accelerator_device(tmp_path):
    from diffusers.training_utils import EMAModel

    acc = _meta_accelerator()
    seen = {}

    def loss_fn(model, xb, yb, gen):
        ema = next(o for o in acc.registered if isinstance(o, EMAModel))
        seen.update(batch={xb.device, yb.device}, model={p.device for p in model.parameters()},
                    ema={p.device for p in ema.shadow_params}, generator=gen.device)
        raise _Stop  # the step itself cannot run on meta (the loss is read with .item())

    cfg = TrainConfig(steps=2, batch_size=4, lr=1e-3, warmup_steps=0, lr_schedule="constant_with_warmup", ema_decay=0.995,
                      cond_dropout=0.1, checkpoint_every=2, seed=0, log_every=1)
    data = (torch.zeros(8, 1, 8, 8), torch.zeros(8, dtype=torch.long))
    with pytest.raises(_Stop):
        train(build_unet(UNET, 8, 1), loss_fn, data, cfg, tmp_path / "ckpt", accelerator=acc)
    meta = {torch.device("meta")}
    assert seen == {"batch": meta, "model": meta, "ema": meta, "generator": torch.device("cpu")}
    assert data[0].device.type == "cpu"  # the data set itself stays in CPU memory


def test_default_device(monkeypatch):
    monkeypatch.setenv(DEVICE_ENV, "cpu")
    assert default_device() == torch.device("cpu")
    monkeypatch.setenv(DEVICE_ENV, "cuda:1")
    assert default_device() == torch.device("cuda", 1)
    monkeypatch.delenv(DEVICE_ENV)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert default_device() == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert default_device() == torch.device("cuda", 1)


def test_feature_extraction_device_flag():
    from common.evaluation import _fidelity_cuda

    assert _fidelity_cuda(None) is False and _fidelity_cuda("cpu") is False
    assert _fidelity_cuda("cuda") is True  # torch-fidelity's `.cuda()`: the current device
    with pytest.raises(ValueError, match="CPU or a CUDA device"):
        _fidelity_cuda("meta")
