"""common/config.py: typed params, errors that name the key and the file, profiles, overrides."""

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from common.config import ConfigError, RootConfig, load_config, to_dict

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def root(tmp_path):
    """A throw-away repository root: a copy of the real params.yaml next to an empty common/."""
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "common").mkdir()
    return tmp_path


def _edit(path: Path, fn):
    data = yaml.safe_load(path.read_text())
    fn(data)
    path.write_text(yaml.safe_dump(data))


def test_load_root_params(root):
    cfg = load_config(RootConfig, root=root)
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    assert isinstance(cfg, RootConfig)
    assert cfg.profile == "cpu"
    # values come from the file, not from the dataclass defaults
    assert cfg.base_model.unet.block_out_channels == raw["base_model"]["unet"]["block_out_channels"]
    assert cfg.classifier.steps == raw["classifier"]["steps"]
    assert cfg.data.name == raw["data"]["name"]
    assert to_dict(cfg)["base_model"]["train"]["steps"] == raw["base_model"]["train"]["steps"]


def test_unknown_key_names_key_and_file(root):
    _edit(root / "params.yaml", lambda d: d["base_model"]["train"].update(stepz=3))
    with pytest.raises(ConfigError) as e:
        load_config(RootConfig, root=root)
    msg = str(e.value)
    assert "base_model.train.stepz" in msg
    assert "params.yaml" in msg


def test_mistyped_value_names_key_and_file(root):
    _edit(root / "params.yaml", lambda d: d["base_model"]["train"].update(steps="abc"))
    with pytest.raises(ConfigError) as e:
        load_config(RootConfig, root=root)
    assert "base_model.train.steps" in str(e.value)
    assert "params.yaml" in str(e.value)


def test_unknown_key_in_profile_overlay_names_the_overlay(root):
    _edit(root / "params.yaml", lambda d: d["profiles"]["tiny"]["data"].update(nmae="digits"))
    load_config(RootConfig, root=root)  # the cpu profile does not read the tiny overlay
    with pytest.raises(ConfigError) as e:
        load_config(RootConfig, root=root, overrides=["profile=tiny"])
    assert "data.nmae" in str(e.value)
    assert "profiles.tiny" in str(e.value)


def test_missing_params_file(tmp_path):
    (tmp_path / "common").mkdir()
    with pytest.raises(ConfigError, match="not found"):
        load_config(RootConfig, root=tmp_path)


def test_override_applies(root):
    cfg = load_config(RootConfig, root=root, overrides=["base_model.train.steps=7", "base_model.eval.seeds=[5,6]"])
    assert cfg.base_model.train.steps == 7
    assert cfg.base_model.eval.seeds == [5, 6]


def test_override_unknown_key_fails(root):
    with pytest.raises(ConfigError) as e:
        load_config(RootConfig, root=root, overrides=["base_model.train.stepz=7"])
    assert "base_model.train.stepz" in str(e.value)
    assert "command line" in str(e.value)


def test_override_mistyped_value_fails(root):
    with pytest.raises(ConfigError, match="base_model.train.steps"):
        load_config(RootConfig, root=root, overrides=["base_model.train.steps=abc"])


def test_profile_tiny_overlay(root):
    raw = yaml.safe_load((root / "params.yaml").read_text())["profiles"]["tiny"]
    cfg = load_config(RootConfig, root=root, overrides=["profile=tiny"])
    assert cfg.profile == "tiny"
    assert cfg.data.name == raw["data"]["name"] == "digits"
    assert cfg.data.resolution == raw["data"]["resolution"]
    assert cfg.base_model.train.steps == raw["base_model"]["train"]["steps"]
    assert cfg.base_model.unet.block_out_channels == raw["base_model"]["unet"]["block_out_channels"]
    # keys the overlay does not name keep the file's value
    cpu = load_config(RootConfig, root=root)
    assert cfg.base_model.train.lr == cpu.base_model.train.lr
    # command-line overrides win over the profile overlay
    cfg = load_config(RootConfig, root=root, overrides=["profile=tiny", "base_model.train.steps=3"])
    assert cfg.base_model.train.steps == 3


def test_profile_set_in_file(root):
    _edit(root / "params.yaml", lambda d: d.update(profile="tiny"))
    assert load_config(RootConfig, root=root).data.name == "digits"


def test_bad_profile_fails(root):
    with pytest.raises(ConfigError) as e:
        load_config(RootConfig, root=root, overrides=["profile=huge"])
    assert "profile" in str(e.value) and "huge" in str(e.value)


# a paper schema extends the root one; errors in the paper's file name that file
@dataclass
class _ToyMethod:
    strength: float = 1.0
    steps: int = 4


@dataclass
class _ToyPaperConfig(RootConfig):
    method: _ToyMethod = field(default_factory=_ToyMethod)


def test_paper_params_and_errors(root):
    paper = root / "papers" / "toy"
    paper.mkdir(parents=True)
    (paper / "params.yaml").write_text(
        "method: {strength: 2.5}\nprofiles:\n  tiny: {method: {steps: 2}}\n")
    cfg = load_config(_ToyPaperConfig, paper="toy", root=root)
    assert cfg.method.strength == 2.5 and cfg.method.steps == 4
    assert load_config(_ToyPaperConfig, paper="toy", root=root, overrides=["profile=tiny"]).method.steps == 2

    (paper / "params.yaml").write_text("method: {strenght: 2.5}\n")
    with pytest.raises(ConfigError) as e:
        load_config(_ToyPaperConfig, paper="toy", root=root)
    assert "method.strenght" in str(e.value)
    assert str(Path("papers") / "toy" / "params.yaml") in str(e.value)


def test_full_profile_adm_cifar10_unet_size():
    """The full profile's UNet is the ADM network DDPM-IP / ADM-ES train on CIFAR-10.

    Reference: 57,094,662 parameters, counted from the official guided-diffusion `UNetModel`
    built with the DDPM-IP README CIFAR-10 flags (num_channels 128, num_res_blocks 3,
    channel_mult 1,2,2,2, attention_resolutions 16,8, num_head_channels 32, learn_sigma,
    use_scale_shift_norm, resblock_updown, dropout 0.3). Our diffusers UNet2DModel measures
    55,960,966 (-2.0%: diffusers' block layout differs slightly from ADM's).
    """
    from common.models import build_unet, count_parameters

    cfg = load_config(RootConfig, root=REPO, overrides=["profile=full"])
    n = count_parameters(build_unet(cfg.base_model.unet, 32, 3, meta=True))
    ref = 57_094_662
    assert abs(n - ref) / ref < 0.03, n
