"""common/data.py: deterministic stratified splits, resizing, prepare -> load_split, value ranges."""

import numpy as np
import pytest
import torch

from common.data import (
    SOURCES,
    MissingDataError,
    load_split,
    prepare,
    resize_uint8,
    split_indices,
    to_model_range,
    to_uint8,
)


def test_split_indices_deterministic_and_stratified():
    labels = np.repeat(np.arange(10), 50)  # 10 classes x 50
    tr, ho = split_indices(labels, 100, seed=3)
    tr2, ho2 = split_indices(labels, 100, seed=3)
    np.testing.assert_array_equal(tr, tr2)
    np.testing.assert_array_equal(ho, ho2)
    assert len(ho) == 100 and len(tr) == 400
    assert len(np.intersect1d(tr, ho)) == 0
    np.testing.assert_array_equal(np.union1d(tr, ho), np.arange(500))
    # stratified: every class keeps its share (10 of 50) in the held-out split
    np.testing.assert_array_equal(np.bincount(labels[ho], minlength=10), np.full(10, 10))
    # another seed, another split
    _, ho3 = split_indices(labels, 100, seed=4)
    assert not np.array_equal(ho, ho3)


def test_resize_uint8():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (3, 1, 28, 28), dtype=np.uint8)
    y = resize_uint8(x, 16)
    assert y.shape == (3, 1, 16, 16) and y.dtype == np.uint8
    assert resize_uint8(x, 28) is x  # same size: untouched
    const = np.full((2, 3, 12, 12), 77, dtype=np.uint8)
    np.testing.assert_array_equal(resize_uint8(const, 5), np.full((2, 3, 5, 5), 77, dtype=np.uint8))
    # an antialiased (area-like) downscale keeps each image's mean intensity
    np.testing.assert_allclose(y.mean(axis=(1, 2, 3)), x.mean(axis=(1, 2, 3)), atol=3.0)
    # and smooths: less pixel variance than plain subsampling of the noise image
    assert y.astype(float).std() < x[..., ::2, ::2][..., :16, :16].astype(float).std() * 0.8


def test_prepare_digits_roundtrip(tmp_path):
    out = tmp_path / "prepared"
    prepare("digits", resolution=8, num_heldout=200, seed=0, out_dir=out)
    assert (out / "dataset_dict.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prepared"]  # no temporary left beside it
    x_tr, y_tr = load_split(out, "train")
    x_ho, y_ho = load_split(out, "heldout")
    assert x_tr.shape == (1797 - 200, 1, 8, 8) and x_ho.shape == (200, 1, 8, 8)
    assert x_tr.dtype == torch.uint8 and y_tr.dtype == torch.int64
    assert y_ho.shape == (200,)
    assert set(y_ho.tolist()) == set(range(10))
    assert int(x_tr.max()) == 255 and int(x_tr.min()) == 0  # full uint8 range from 0..16 digits

    # the stored images are the source images at the split's indices
    x_src, y_src = SOURCES["digits"](None)
    _, ho = split_indices(y_src, 200, 0)
    np.testing.assert_array_equal(x_ho.numpy(), x_src[ho])
    np.testing.assert_array_equal(y_ho.numpy(), y_src[ho])

    # preparing again over an existing output replaces it cleanly
    prepare("digits", resolution=4, num_heldout=100, seed=1, out_dir=out)
    assert load_split(out, "heldout")[0].shape == (100, 1, 4, 4)


def test_prepare_unknown_dataset(tmp_path):
    with pytest.raises(KeyError, match="nope"):
        prepare("nope", 8, 10, 0, tmp_path / "x")


def test_load_split_missing_names_stage(tmp_path):
    with pytest.raises(MissingDataError) as e:
        load_split(tmp_path / "absent", "train")
    assert "prepare_data" in str(e.value)
    assert isinstance(e.value, FileNotFoundError)


def test_model_range_roundtrip():
    x = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16)
    f = to_model_range(x)
    assert f.dtype == torch.float32
    assert float(f.min()) == -1.0 and float(f.max()) == 1.0
    torch.testing.assert_close(to_uint8(f), x, rtol=0, atol=0)
    # out-of-range floats are clamped
    assert to_uint8(torch.tensor([-3.0, 0.0, 2.0])).tolist() == [0, 128, 255]


def test_full_profile_source_loads_through_datasets_from_a_path(tmp_path):
    """CIFAR-10-style data (PIL images + labels) saved with `datasets` at a local path goes through prepare()."""
    import datasets
    import numpy as np
    from PIL import Image

    from common.data import load_split, prepare

    rng = np.random.default_rng(0)
    imgs = [Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(40)]
    src = tmp_path / "cifar_like"
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"img": imgs, "label": [i % 10 for i in range(40)]})}
                         ).save_to_disk(str(src))
    prepare("cifar10", 16, 10, 0, tmp_path / "prepared", source=str(src))
    x, y = load_split(tmp_path / "prepared", "train")
    assert x.shape == (30, 3, 16, 16) and x.dtype.is_floating_point is False and len(y) == 30


# --------------------------------------------------------------------------- the full profile's data check
def _full_cfg(tmp_path, monkeypatch, **values):
    from types import SimpleNamespace

    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    return SimpleNamespace(profile="full", study=SimpleNamespace(dataset=values.get("dataset")),
                           pool=values.get("pool"))


def test_check_full_data_names_the_key_the_file_and_what_to_do(tmp_path, monkeypatch):
    from common.data import MissingDataError, check_full_data

    cfg = _full_cfg(tmp_path, monkeypatch, dataset="data/cc3m")
    assert check_full_data(_full_cfg(tmp_path, monkeypatch), "p", ("study.dataset", "pool"), "x") == {
        "study.dataset": None, "pool": None}  # null: the offline data
    with pytest.raises(MissingDataError) as e:
        check_full_data(cfg, "catlip", ("pool", "study.dataset"), needs="CC3M shards")
    msg = str(e.value)
    assert "\n" not in msg and "papers/catlip/params.yaml" in msg and "`study.dataset: data/cc3m`" in msg
    assert str(tmp_path / "data/cc3m") in msg and "CC3M shards" in msg and "profile: cpu" in msg


def test_check_full_data_returns_the_paths_it_found(tmp_path, monkeypatch):
    from common.data import check_full_data

    (tmp_path / "pool").mkdir()
    cfg = _full_cfg(tmp_path, monkeypatch, pool=str(tmp_path / "pool"))  # an absolute path
    assert check_full_data(cfg, "dfn", ("pool",), needs="shards") == {"pool": tmp_path / "pool"}


def test_photo_patches_load_offline_from_every_listed_photo():
    """The `photo_patches` registry entry reads common/image_patches.py's photo list (it once named a
    skimage.data photograph that scikit-image 0.26 does not have, and failed)."""
    from common.image_patches import PHOTOS

    x, y = SOURCES["photo_patches"](None)
    assert x.dtype == np.uint8 and x.shape[1:] == (3, 64, 64)
    assert sorted(set(y.tolist())) == list(range(len(PHOTOS)))
