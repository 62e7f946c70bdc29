"""Where the networks run, and how tensors get there: one rule for training, sampling and scoring.

Random numbers are always drawn from CPU `torch.Generator`s (training: `common.training.step_generator`;
sampling: `common.sampling.SampleNoise`) and then moved to the device where they are used. So a seed
means the same noise on every device, and a CPU run is bit-identical whether or not a GPU exists.

The device: `REPLICATE_DEVICE` (DEVICE_ENV) = `cpu`, `cuda`, `cuda:1`, ...; unset or `auto`: this
process's GPU when CUDA is available (`LOCAL_RANK` under `accelerate launch`), else the CPU.
Training runs where Accelerate puts the model (`accelerator.device`: a GPU when one is available,
the CPU when REPLICATE_DEVICE=cpu); `BaseModelExperiment` samples and `SampleScorer` extracts
features on `default_device()`. Results handed back to callers (trained models, samples,
features) are on the CPU.
"""

from __future__ import annotations

import os
from typing import Union

import torch

DEVICE_ENV = "REPLICATE_DEVICE"
DeviceLike = Union[str, torch.device, None]


def default_device() -> torch.device:
    """The configured device (see the module docstring)."""
    name = os.environ.get(DEVICE_ENV, "").strip().lower()
    if name and name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count())
    return torch.device("cpu")


def as_device(device: DeviceLike) -> torch.device:
    """`device` as a torch.device; None: `default_device()`."""
    return default_device() if device is None else torch.device(device)


def module_device(module: torch.nn.Module) -> torch.device:
    """The device of a module's first parameter (or buffer); the CPU for a module with neither."""
    for t in module.parameters():
        return t.device
    for t in module.buffers():
        return t.device
    return torch.device("cpu")


def to_device(x, device: Union[str, torch.device]):
    """A tensor `x` on `device` (a tensor already there is returned as is); anything else (None, a
    Python number) passes through unchanged."""
    return x.to(device) if torch.is_tensor(x) else x
