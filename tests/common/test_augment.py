"""E-LatentLPIPS's augmentation (common/augment.py) against the official AdaAugment, op by op.

Where the frozen numbers come from: mingukkang/elatentlpips@f64cd65fce (elatentlpips/ada_aug.py AdaAugment, presets
from elatentlpips.py `ada_augpipe`) run on CPU outside this repository (a `pkg_resources` stub for its
conv2d_gradfix import; the CUDA ops fall back to their reference implementations), on the `probe()` input below:
for each op alone (probability multiplier 1, p = 1) at debug_percentile 0.1 / 0.5 / 0.9 after torch.manual_seed(0),
and for the presets bg / bgc / bgco seeded with torch.manual_seed(0 or 1). Recorded: the sum of the output
and six entries (PTS). The official code gave identical outputs for its two identical inputs in every case.
"""

import pytest
import torch

from common.augment import PRESETS, DiffAugment

PTS = [(0, 0, 0, 0), (0, 1, 3, 4), (1, 2, 7, 1), (1, 3, 5, 6), (0, 3, 2, 7), (1, 0, 4, 4)]

OFFICIAL_OPS = {
    "xflip@0.1": (107.782365, [0.0, 1.1735431, 1.2136394, 1.3934542, -0.1490736, 0.6010212]),
    "xflip@0.5": (106.992619, [0.3489035, 0.3620089, 1.2075322, 1.2175194, 0.5089708, 1.035006]),
    "xflip@0.9": (106.992619, [0.3489035, 0.3620089, 1.2075322, 1.2175194, 0.5089708, 1.035006]),
    "rotate90@0.1": (107.782365, [0.0, 1.1735431, 1.2136394, 1.3934542, -0.1490736, 0.6010212]),
    "rotate90@0.5": (105.608513, [1.2869219, 0.92089, -0.0786725, -0.7020764, -0.6941495, 0.5810382]),
    "rotate90@0.9": (106.431119, [-0.9838341, 0.3185505, 0.9193677, 0.1607772, -0.5251903, 1.0321858]),
    "xint@0.1": (135.401685, [0.9155473, -0.1414793, 0.937969, 0.5704643, -0.5068285, -0.8391863]),
    "xint@0.5": (107.782365, [0.0, 1.1735431, 1.2136394, 1.3934542, -0.1490736, 0.6010212]),
    "xint@0.9": (79.218372, [0.9155473, -0.3271025, 0.0178375, -0.3369836, -0.2065212, 0.6346896]),
    "scale@0.1": (110.068339, [0.5609537, 1.1512177, 0.869778, 1.3237129, -0.4360322, 0.5166297]),
    "scale@0.5": (107.782365, [0.0, 1.1735431, 1.2136394, 1.3934542, -0.1490736, 0.6010212]),
    "scale@0.9": (100.482279, [0.4395887, 1.1492572, 1.1414887, 1.0558845, -0.1972534, 0.6745524]),
    "rotate@0.1": (43.358723, [0.1109999, 0.5218096, -0.3908707, 0.1096721, 0.0170644, 0.8473736]),
    "rotate@0.5": (107.782365, [0.0, 1.1735431, 1.2136394, 1.3934542, -0.1490736, 0.6010212]),
    "rotate@0.9": (82.82735, [-0.5897931, 1.1374468, 0.744078, -0.156246, 1.1319853, 0.5779206]),
    "aniso@0.1": (93.307397, [0.5240192, 1.1599389, 0.8911197, 1.3098673, -0.2760425, 0.5889434]),
    "aniso@0.5": (107.782365, [0.0, 1.1735431, 1.2136394, 1.3934542, -0.1490736, 0.6010212]),
    "aniso@0.9": (111.935645, [0.4794677, 1.131821, 1.1655068, 1.2702918, -0.3739385, 0.6063547]),
    "xfrac@0.1": (132.376296, [0.8934271, 0.0394106, 0.9379347, 0.7013659, -0.406459, -0.7679496]),
    "xfrac@0.5": (107.782365, [0.0, 1.1735431, 1.2136394, 1.3934542, -0.1490736, 0.6010212]),
    "xfrac@0.9": (82.021128, [0.8934277, -0.143674, 0.1780969, -0.1725787, -0.3086823, 0.746807]),
    "cutout@0.1": (97.920784, [0.0, 1.1735433, 1.21364, 1.3934543, -0.1490737, 0.6010212]),
    "cutout@0.5": (64.676621, [0.0, 0.0, 1.21364, 1.3934543, -0.1490737, 0.0]),
    "cutout@0.9": (66.700197, [0.0, 1.1735433, 1.21364, 0.0, -0.1490737, 0.6010212]),
}
OFFICIAL_SEEDED = {
    "bg@0": (93.124264, [0.5829755, -0.4293711, -0.149321, 0.6486183, 1.3691506, 0.6055201]),
    "bg@1": (104.633555, [0.6371639, 0.6118698, -0.3465543, 0.1727615, 0.3562985, 0.4188045]),
    "bgc@0": (-65.352051, [0.586187, -0.9522308, -0.483514, 0.5030487, 1.2860681, 0.459186]),
    "bgc@1": (102.99482, [0.3109729, 0.2598571, -0.1501148, 0.3472371, 0.1371283, 0.7713383]),
    "bgco@0": (-43.619267, [0.586187, -0.0, -0.483514, 0.5030487, 1.2860681, 0.459186]),
    "bgco@1": (111.633937, [0.3109729, 0.0, -0.1501148, 0.0, 0.0, 0.7713383]),
}


def probe():
    """A smooth, asymmetric B x C x H x W = 2 x 4 x 8 x 8 input (the latent size of the shared autoencoder)."""
    b, c, h, w = 2, 4, 8, 8
    bi = torch.arange(b).view(b, 1, 1, 1).float()
    ci = torch.arange(c).view(1, c, 1, 1).float()
    i = torch.arange(h).view(1, 1, h, 1).float()
    j = torch.arange(w).view(1, 1, 1, w).float()
    return torch.sin(0.7 * i + 1.3 * j + 0.5 * ci + 0.9 * bi) + 0.1 * ci + 0.05 * i * j / 8


def _check(out: torch.Tensor, ref):
    total, pts = ref
    assert out.double().sum().item() == pytest.approx(total, abs=2e-4)
    assert [out[p].item() for p in PTS] == pytest.approx(pts, abs=1e-5)


@pytest.mark.parametrize("case", sorted(OFFICIAL_OPS))
def test_each_op_matches_the_official_adaaugment_at_fixed_percentiles(case):
    op, q = case.split("@")
    x = probe()
    a, b = DiffAugment({op: 1})(x, x.clone(), torch.Generator().manual_seed(0), debug_percentile=float(q))
    assert torch.equal(a, b)
    _check(a, OFFICIAL_OPS[case])


@pytest.mark.parametrize("case", sorted(OFFICIAL_SEEDED))
def test_seeded_presets_match_the_official_random_draws(case):
    preset, seed = case.split("@")
    x = probe()
    a, b = DiffAugment.preset(preset)(x, x.clone(), torch.Generator().manual_seed(int(seed)))
    assert torch.equal(a, b)
    _check(a, OFFICIAL_SEEDED[case])


def test_one_transform_per_sample_shared_by_both_inputs():
    x0, x1 = torch.randn(6, 4, 8, 8), torch.randn(6, 4, 8, 8)
    aug = DiffAugment.preset("bgco")
    a0, a1 = aug(x0, x1, torch.Generator().manual_seed(3))
    b0, _ = aug(x0, x0.clone(), torch.Generator().manual_seed(3))
    assert torch.equal(a0, b0)  # x0's transform does not depend on what it is paired with
    assert not torch.allclose(a1, x1)  # (draws are batched as in the official code: a sample's T depends on its batch)
    assert set(PRESETS["bg"]) == {"xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac"}
    with pytest.raises(ValueError):
        DiffAugment({"hue": 1})
