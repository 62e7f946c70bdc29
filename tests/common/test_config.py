"""common/config.py: typed params, errors that name the key and the file, profiles, overrides."""

import dataclasses
import shutil
import typing
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from common.config import Bounds, ConfigError, RootConfig, bounds_of, load_config, range_violations, to_dict

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


# --------------------------------------------------------------------------- ranges (declarative bounds)
def _paper_root(root, paper):
    """`root` plus a copy of the real papers/<paper>/params.yaml."""
    (root / "papers" / paper).mkdir(parents=True)
    shutil.copy(REPO / "papers" / paper / "params.yaml", root / "papers" / paper / "params.yaml")
    return root


def test_range_error_in_a_file_names_file_key_value_and_range(root):
    _edit(root / "params.yaml", lambda d: d["knowledge"].update(max_entities=-5))
    with pytest.raises(ConfigError) as e:
        load_config(RootConfig, root=root)
    assert str(e.value) == "params.yaml: knowledge.max_entities = -5 must be >= 0"


def test_range_error_from_an_override_names_the_file_that_holds_the_key(root):
    with pytest.raises(ConfigError) as e:
        load_config(RootConfig, root=root, overrides=["knowledge.max_entities=-5"])
    assert str(e.value) == ("params.yaml: knowledge.max_entities = -5 must be >= 0 "
                            "(command line override 'knowledge.max_entities=-5')")


@pytest.mark.parametrize("override, message", [
    ("slick.n_prompts=-1", "papers/new_knowledge/params.yaml: slick.n_prompts = -1 must be >= 1"),
    ("study.epochs=-3", "papers/new_knowledge/params.yaml: study.epochs = -3 must be >= 1"),
    ("study.lr=0", "papers/new_knowledge/params.yaml: study.lr = 0.0 must be > 0"),
    ("study.unknown_shares=[0.0,1.5]",
     "papers/new_knowledge/params.yaml: study.unknown_shares[1] = 1.5 must be in [0, 1]"),
    ("study.seeds=[]", "papers/new_knowledge/params.yaml: study.seeds = [] must not be empty"),
    ("slick.temperature=-0.5", "papers/new_knowledge/params.yaml: slick.temperature = -0.5 must be > 0"),
    ("knowledge.qa_share=2", "params.yaml: knowledge.qa_share = 2.0 must be in [0, 1]"),
])
def test_paper_range_errors(root, override, message):
    from papers.new_knowledge.config import NewKnowledgeConfig

    _paper_root(root, "new_knowledge")
    with pytest.raises(ConfigError) as e:
        load_config(NewKnowledgeConfig, paper="new_knowledge", root=root, overrides=[override])
    assert str(e.value) == f"{message} (command line override '{override}')"
    assert "\n" not in str(e.value)


def test_range_error_in_a_profile_overlay_names_the_overlay(root):
    _edit(root / "params.yaml", lambda d: d["profiles"]["tiny"]["base_model"]["eval"].update(weak_fraction=0.0))
    load_config(RootConfig, root=root)  # the cpu profile does not read the tiny overlay
    with pytest.raises(ConfigError) as e:
        load_config(RootConfig, root=root, overrides=["profile=tiny"])
    assert str(e.value) == "params.yaml (profiles.tiny): base_model.eval.weak_fraction = 0.0 must be in (0, 1]"


def test_range_errors_in_lists_dicts_and_nested_lists(root):
    from papers.cads.config import CADSConfig
    from papers.catlip.config import CatlipConfig

    with pytest.raises(ConfigError, match=r"^params\.yaml: scenes\.pool_noise\.unrelated = 1\.5 must be in \[0, 1\]"):
        load_config(RootConfig, root=root, overrides=["scenes.pool_noise.unrelated=1.5"])
    _paper_root(root, "catlip")
    with pytest.raises(ConfigError, match=r"^papers/catlip/params\.yaml: study\.epochs\[1\] = -3 must be >= 1"):
        load_config(CatlipConfig, paper="catlip", root=root, overrides=["study.epochs=[5,-3]"])
    _paper_root(root, "cads")
    with pytest.raises(ConfigError, match=r"^papers/cads/params\.yaml: sweep\.windows\[0\]\[1\] = 1\.2 must be in \[0, 1\]"):
        load_config(CADSConfig, paper="cads", root=root, overrides=["sweep.windows=[[0.6,1.2]]"])


def test_every_range_error_is_collected_on_one_line(root):
    with pytest.raises(ConfigError) as e:
        load_config(RootConfig, root=root, overrides=["classifier.lr=0", "base_model.eval.seeds=[]"])
    assert e.value.errors == [
        "params.yaml: classifier.lr = 0.0 must be > 0 (command line override 'classifier.lr=0')",
        "params.yaml: base_model.eval.seeds = [] must not be empty (command line override 'base_model.eval.seeds=[]')",
    ]
    assert "\n" not in str(e.value) and str(e.value).startswith(e.value.errors[0])


def test_a_subclass_that_only_changes_a_default_keeps_the_bounds():
    from dataclasses import dataclass

    from common.config import TrainConfig, bounds_of

    @dataclass
    class ShortTrain(TrainConfig):
        steps: int = 10  # re-declared without metadata

    assert bounds_of(ShortTrain, "steps") == bounds_of(TrainConfig, "steps") and bounds_of(ShortTrain, "steps").ge == 1
    assert list(range_violations(ShortTrain(steps=0))) == [("steps", 0, "must be >= 1")]


def test_optional_fields_are_checked_only_when_set(root):
    from papers.exposure_bias.config import ExposureBiasConfig

    _paper_root(root, "exposure_bias")
    assert load_config(ExposureBiasConfig, paper="exposure_bias", root=root).es_b is None
    with pytest.raises(ConfigError, match=r"es_b = -1\.0 must be > 0"):
        load_config(ExposureBiasConfig, paper="exposure_bias", root=root, overrides=["es_b=-1.0"])


def test_bounds_describe_and_admit():
    assert Bounds(ge=1).describe() == "must be >= 1"
    assert Bounds(gt=0).describe() == "must be > 0"
    assert Bounds(ge=0, le=1).describe() == "must be in [0, 1]"
    assert Bounds(gt=0, le=100).describe() == "must be in (0, 100]"
    assert Bounds(ge=0, lt=0.5).describe() == "must be in [0, 0.5)"
    assert not Bounds(ge=0).admits(float("nan")) and Bounds(ge=0).admits(0) and not Bounds(gt=0).admits(0)


def _numeric(t) -> bool:
    return t in (int, float) or any(_numeric(a) for a in typing.get_args(t))


def _unbounded_numeric_fields(cls, seen):
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        t = hints[f.name]
        if dataclasses.is_dataclass(t):
            yield from _unbounded_numeric_fields(t, seen)
        elif _numeric(t) and bounds_of(cls, f.name) is None and (cls, f.name) not in seen:
            seen.add((cls, f.name))
            yield f"{cls.__module__}.{cls.__qualname__}.{f.name}"


def test_every_numeric_field_of_every_schema_has_bounds():
    """A new numeric parameter gets a range (bounded / unit / seed_list) or a reason to be listed here."""
    from common.cli import paper_schema

    no_obvious_range = {"papers.qqt_data_filtering.config.LawConfig.b_range"}  # official grid of negative exponents
    seen: set = set()
    schemas = [RootConfig] + [paper_schema(p.parent.name) for p in sorted((REPO / "papers").glob("*/config.py"))]
    missing = {name for s in schemas for name in _unbounded_numeric_fields(s, seen)}
    assert missing == no_obvious_range


def test_every_schema_default_is_in_range():
    from common.cli import paper_schema

    schemas = [RootConfig] + [paper_schema(p.parent.name) for p in sorted((REPO / "papers").glob("*/config.py"))]
    assert {s.__name__: list(range_violations(s())) for s in schemas} == {s.__name__: [] for s in schemas}
    bad = RootConfig()
    bad.base_model.train.steps, bad.scenes.pool_noise["unrelated"] = 0, 1.5
    assert list(range_violations(bad)) == [("base_model.train.steps", 0, "must be >= 1"),
                                           ("scenes.pool_noise.unrelated", 1.5, "must be in [0, 1]")]


def test_a_bad_value_fails_before_the_stage_does_any_work(tmp_path, monkeypatch, capsys):
    """`study.epochs=-3` used to write a stray curve.json before failing; now load_config stops it first."""
    from common.cli import run_main
    from papers.new_knowledge import finetune

    root = _paper_root(tmp_path, "new_knowledge")
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    (root / "common").mkdir()
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    monkeypatch.setenv("DVC_ROOT", str(root))
    with pytest.raises(SystemExit) as e:
        run_main(finetune.main, ["study.epochs=-3"])
    assert e.value.code == 2
    assert capsys.readouterr().err == ("error: papers/new_knowledge/params.yaml: study.epochs = -3 must be >= 1 "
                                       "(command line override 'study.epochs=-3')\n")
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before


def test_user_errors_are_one_class_and_keep_their_builtin_bases():
    from common.config import MissingInputError, UnreadableInputError, UserError
    from common.data import MissingDataError

    assert issubclass(ConfigError, UserError) and issubclass(ConfigError, ValueError)
    assert issubclass(MissingDataError, MissingInputError) and issubclass(MissingDataError, FileNotFoundError)
    assert issubclass(UnreadableInputError, UserError) and issubclass(MissingInputError, UserError)


# --------------------------------------------------------------------------- each default written once
def _schemas():
    """(params file, schema, module whose dataclasses that file owns) for the root and every paper."""
    from common.cli import paper_schema

    yield "params.yaml", RootConfig, "common.config"
    for params in sorted((REPO / "papers").glob("*/params.yaml")):
        yield f"papers/{params.parent.name}/params.yaml", paper_schema(params.parent.name), \
            f"papers.{params.parent.name}.config"


def _written_twice(typ, default_obj, data, module, prefix=""):
    """Each key `data` (a params file's body) writes whose dataclass field also holds a value: the same value
    (written twice), or a default of the file's own schema module that params.yaml always replaces (dead)."""
    import dataclasses

    from common.config import REQUIRED

    for f in dataclasses.fields(typ):
        if f.name not in data:
            continue
        d = getattr(default_obj, f.name)
        if dataclasses.is_dataclass(d) and isinstance(data[f.name], dict):
            yield from _written_twice(type(d), d, data[f.name], module, f"{prefix}{f.name}.")
        elif d == REQUIRED or isinstance(d, dict) and d and all(v == REQUIRED for v in d.values()):
            continue  # a schema-only field: its value lives in params.yaml
        elif d == data[f.name]:
            yield f"{prefix}{f.name}: {d!r} in both the dataclass and params.yaml"
        elif typ.__module__ == module:
            yield f"{prefix}{f.name}: dataclass default {d!r} is never used (params.yaml sets {data[f.name]!r})"


@pytest.mark.parametrize("params, schema, module", list(_schemas()), ids=lambda v: str(v).split("/")[-2]
                         if "/" in str(v) else None)
def test_each_value_is_written_once(params, schema, module):
    """Each default written once: a key params.yaml sets is a `required()` / REQUIRED field of the schema
    (docs/full_profile.md), or an override of a shared class's default with a different value."""
    data = {k: v for k, v in yaml.safe_load((REPO / params).read_text()).items() if k != "profiles"}
    bad = list(_written_twice(schema, schema(), data, module))
    assert not bad, f"{params}:\n" + "\n".join(bad)


def test_the_written_once_check_fails_on_a_duplicate():
    from papers.cads.config import CADSConfig

    data = {"diversity_k": 5, "sampler": {"nfe": 20}}
    cfg = CADSConfig()
    cfg.diversity_k = 5  # as if the dataclass still held the default
    assert list(_written_twice(CADSConfig, cfg, data, "papers.cads.config")) == [
        "diversity_k: 5 in both the dataclass and params.yaml"]
    cfg.diversity_k = 3
    assert "never used" in list(_written_twice(CADSConfig, cfg, data, "papers.cads.config"))[0]
