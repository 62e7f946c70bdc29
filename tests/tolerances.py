"""Tolerances for comparing two float32 computations of the same result that may round differently.

Use them only where two runs legitimately differ in the order of the arithmetic: another batch size,
another shard of the samples (process count), another thread count, another SIMD width (AVX-512 here,
AVX2 or SSE elsewhere). Such changes re-block the reductions inside convolutions, matmuls and norms,
and float addition is not associative. The same computation on the same machine (same seed, same
batch, same threads) is bit-identical: compare it with torch.equal, not with a tolerance.

The estimate

    tol = FP32_EPS * scale * steps * amplification

- FP32_EPS = 2**-23 ~ 1.19e-7: the spacing of float32 numbers relative to their size (one rounding).
- scale: the size of the values whose rounding differs. Samples clipped to [-1, 1], unit-variance
  noise and eps predictions, cosine similarities: 1.
- steps: how many such roundings add up along the computation. Summed in another order, a reduction
  of K terms changes by about sqrt(K) roundings. This is the probabilistic bound of Higham & Mary
  (SIAM J. Sci. Comput. 2019); the worst case, K roundings, is not met in practice. A network call
  counts as sqrt(K) of its longest dot product (`network_roundings`). A sampler that calls the
  network N times adds N such errors: steps = N * network_roundings(net). The errors of the N calls
  are added linearly, each with the largest amplification, so this is a bound rather than an
  average.
- amplification: how much the rest of the computation magnifies an error. Classifier-free guidance
  eps_u + w (eps_c - eps_u) = (1 - w) eps_u + w eps_c takes |w| + |1 - w| times an error of size 1 in
  either branch (`guidance_gain`; the often-quoted 1 + w is its root-mean-square for w = 4). A DDPM or
  DDIM step predicts x0 = (x_t - sqrt(1 - ab_t) eps) / sqrt(ab_t), which divides an error in eps by
  sqrt(ab_t). The x updates that follow multiply errors in x by sqrt(ab_t' / ab_t), and these factors
  telescope. So a sampler that starts at t_0 magnifies errors by at most 1 / sqrt(ab_{t_0}): 157 for
  t_0 = 999 on the linear schedule (`sampler_gain`). Clipping x0 to [-1, 1] only lowers it.

What the parts were checked against (tiny untrained UNets of the tests, AVX-512 EPYC): one UNet call
differs across batch sizes by at most 4 roundings of its largest output, within sqrt(288) = 17.
Perturbing every network output by one rounding moved the samples by at most about 100 roundings per
call, within the bound of 157 (157 * 7 with guidance w = 4). The bound leaves out the network's own
response to an error in its input; that measurement includes it.

The settings: torch.set_num_threads 1 and 2, OMP_NUM_THREADS=1, ATEN_CPU_CAPABILITY=avx2 and
=default, and the AVX2 and SSE paths of oneDNN and MKL (ONEDNN_MAX_CPU_ISA, MKL_ENABLE_INSTRUCTIONS).
In every setting the differences the tests measure stay at least 14x under these tolerances (mostly
30-300x). The differences that break the properties these tests guard are of order 1: a per-batch
seed instead of per-sample seeds, or samples mixed up across a batch. The tests assert that the
tolerance stays at least NEGATIVE_CONTROL = 100 times below such a difference.
"""

from __future__ import annotations

import math

import torch

FP32_EPS = float(torch.finfo(torch.float32).eps)  # 2**-23 = 1.1920929e-07

# A tolerance must stay this many times below the difference a real bug makes (another seed, another sample).
NEGATIVE_CONTROL = 100.0


def fp32_tolerance(scale: float = 1.0, steps: float = 1.0, amplification: float = 1.0) -> float:
    """Absolute tolerance FP32_EPS * scale * steps * amplification (see the module docstring).

    scale: size of the values that are rounded; steps: roundings that add up (N network calls of
    `network_roundings` each, ...); amplification: the gain of everything after them
    (`guidance_gain`, `sampler_gain`, ...).
    """
    if scale < 0 or steps < 0 or amplification < 0:
        raise ValueError(f"scale, steps and amplification must be >= 0, got {scale}, {steps}, {amplification}")
    return FP32_EPS * float(scale) * float(steps) * float(amplification)


def network_roundings(net: torch.nn.Module) -> float:
    """Roundings per network call: sqrt(K) of its longest dot product, K = the largest fan-in of a
    Conv / Linear layer (in_channels / groups * kernel area, or in_features)."""
    fan_in = [m.weight[0].numel() for m in net.modules()
              if isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.Linear))]
    if not fan_in:
        raise ValueError("network_roundings: no Conv/Linear layer in the network")
    return math.sqrt(max(fan_in))


def guidance_gain(w: float) -> float:
    """Gain of classifier-free guidance eps_u + w (eps_c - eps_u) on an error in either branch: |w| + |1 - w|."""
    return abs(w) + abs(1.0 - w)


def sampler_gain(schedule, t_first: int) -> float:
    """Gain of a DDPM/DDIM sampler that starts at timestep t_first: 1 / sqrt(ab_{t_first})."""
    return float(1.0 / schedule.alpha_bar(t_first).sqrt())
