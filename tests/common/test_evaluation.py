"""common/evaluation.py: FID against its closed form, metric keys, bootstrap intervals, the torch-fidelity extractor."""

import numpy as np
import pytest
import scipy.linalg
import torch

from common.evaluation import (
    bootstrap_ci,
    classifier_accuracy,
    ensure_registered,
    extract_features,
    fid_from_features,
    load_classifier,
    metric_key,
    metrics_from_features,
    save_classifier,
)
from common.models import Classifier


def frechet_analytic(mu1, s1, mu2, s2) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^{1/2})."""
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * covmean))


def _gaussians():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4, 4))
    b = rng.normal(size=(4, 4))
    s1 = a @ a.T + 0.5 * np.eye(4)  # general (non-diagonal) covariances
    s2 = b @ b.T + 0.3 * np.eye(4)
    return np.array([0.0, 1.0, -0.5, 2.0]), s1, np.array([0.5, 0.0, 0.0, 1.0]), s2


def _with_exact_moments(rng, n, mu, s):
    """n samples whose sample mean is mu and sample covariance (ddof=1) is exactly s."""
    z = rng.normal(size=(n, len(mu)))
    z -= z.mean(0)
    lz = np.linalg.cholesky(np.cov(z, rowvar=False))
    z = z @ np.linalg.inv(lz).T  # sample covariance now exactly I
    return mu + z @ np.linalg.cholesky(s).T


def test_fid_closed_form_exact_moments():
    mu1, s1, mu2, s2 = _gaussians()
    rng = np.random.default_rng(1)
    x1 = torch.from_numpy(_with_exact_moments(rng, 500, mu1, s1))
    x2 = torch.from_numpy(_with_exact_moments(rng, 700, mu2, s2))
    ref = frechet_analytic(mu1, s1, mu2, s2)
    assert ref > 1.0
    assert fid_from_features(x1, x2) == pytest.approx(ref, rel=1e-8, abs=1e-8)


def test_fid_closed_form_large_samples():
    mu1, s1, mu2, s2 = _gaussians()
    rng = np.random.default_rng(2)
    x1 = torch.from_numpy(rng.multivariate_normal(mu1, s1, size=20000)).float()
    x2 = torch.from_numpy(rng.multivariate_normal(mu2, s2, size=20000)).float()
    ref = frechet_analytic(mu1, s1, mu2, s2)
    assert fid_from_features(x1, x2) == pytest.approx(ref, rel=0.02)
    # diagonal covariances: FID = ||dmu||^2 + sum (sqrt(a) - sqrt(b))^2
    d1, d2 = np.array([1.0, 4.0, 0.25, 2.0]), np.array([2.0, 1.0, 1.0, 0.5])
    y1 = rng.normal(size=(20000, 4)) * np.sqrt(d1) + mu1
    y2 = rng.normal(size=(20000, 4)) * np.sqrt(d2) + mu2
    ref_diag = float(np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(d1) - np.sqrt(d2)) ** 2))
    assert ref_diag == pytest.approx(frechet_analytic(mu1, np.diag(d1), mu2, np.diag(d2)))
    assert fid_from_features(torch.from_numpy(y1), torch.from_numpy(y2)) == pytest.approx(ref_diag, rel=0.02)


def test_fid_self_zero_and_monotone_in_corruption():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2000, 8, generator=g) @ torch.randn(8, 8, generator=g)
    assert abs(fid_from_features(x, x)) < 1e-6
    noise = torch.randn(x.shape, generator=g)
    fids = [fid_from_features(x + s * noise, x) for s in (0.1, 0.3, 1.0, 3.0)]
    assert all(a < b for a, b in zip(fids, fids[1:])), fids
    assert fids[0] > 0


def test_metrics_from_features():
    g = torch.Generator().manual_seed(0)
    ref = torch.randn(300, 8, generator=g)
    same = metrics_from_features(ref, ref, kid_subset_size=100)
    assert set(same) == {"fid", "kid", "precision", "recall"}
    assert abs(same["fid"]) < 1e-6
    assert same["precision"] == pytest.approx(1.0) and same["recall"] == pytest.approx(1.0)
    near = metrics_from_features(ref + 1.0, ref, kid_subset_size=100)  # FID = ||shift||^2 = 8
    far = metrics_from_features(ref + 5.0, ref, kid_subset_size=100)  # FID = 200
    assert near["fid"] == pytest.approx(8.0) and far["fid"] == pytest.approx(200.0)
    # KID is unbiased (noisy around 0 for equal sets) and grows with the shift
    assert abs(same["kid"]) < 0.05 * near["kid"] and near["kid"] < far["kid"]
    assert 0.2 < near["precision"] < 0.9 and 0.2 < near["recall"] < 0.9
    assert far["precision"] < 0.05 and far["recall"] < 0.05


def test_metric_key_and_accuracy():
    assert metric_key("fid", "mnist-classifier") == "fid[mnist-classifier]"
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0], [0.0, 5.0]])
    assert classifier_accuracy(logits, torch.tensor([0, 1, 1, 1])) == 0.75


def test_bootstrap_ci():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(400, generator=g) + 2.0
    stat = lambda v: float(v.mean())  # noqa: E731
    lo, hi = bootstrap_ci(stat, [a], n_boot=300, seed=5)
    assert lo < stat(a) < hi
    se = float(a.std() / np.sqrt(len(a)))
    assert hi - lo == pytest.approx(2 * 1.96 * se, rel=0.25)  # percentile bootstrap ~ normal interval
    assert bootstrap_ci(stat, [a], n_boot=300, seed=5) == (lo, hi)
    assert bootstrap_ci(stat, [a], n_boot=300, seed=6) != (lo, hi)
    # several arrays are resampled independently: difference of means
    b = torch.randn(300, generator=g)
    lo2, hi2 = bootstrap_ci(lambda u, v: float(u.mean() - v.mean()), [a, b], n_boot=300, seed=0)
    assert lo2 < float(a.mean() - b.mean()) < hi2


# ------------------------------------------------------------------ torch-fidelity feature extractor
class _UInt8Images(torch.utils.data.Dataset):
    def __init__(self, x):
        self.x = x

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i]


@pytest.fixture
def random_backbone(tmp_path):
    torch.manual_seed(0)
    model = Classifier(1, (8, 16), feature_dim=8, num_classes=10).eval()
    with torch.no_grad():  # random features barely vary between images; spread them out
        model.proj.weight.mul_(50.0)
    weights = tmp_path / "clf"
    save_classifier(model, weights, {"in_channels": 1, "channels": [8, 16], "feature_dim": 8, "num_classes": 10})
    return model, weights


def test_save_load_classifier(random_backbone, tmp_path):
    model, weights = random_backbone
    loaded = load_classifier(weights)
    x = torch.rand(3, 1, 8, 8) * 2 - 1
    torch.testing.assert_close(loaded(x), model(x))
    assert not any(p.requires_grad for p in loaded.parameters())
    with pytest.raises(FileNotFoundError, match="train_classifier"):
        load_classifier(tmp_path / "absent")


def test_extractor_matches_torch_fidelity(random_backbone, tmp_path):
    import torch_fidelity

    model, weights = random_backbone
    name = f"test-classifier-{tmp_path.name}"  # unique: the registry and _extractor cache are global
    ensure_registered(name)
    ensure_registered(name)  # idempotent

    g = torch.Generator().manual_seed(0)
    x1 = torch.randint(0, 256, (64, 1, 8, 8), generator=g, dtype=torch.uint8)
    # a different image distribution: 4x4 blocks of constant grey
    x2 = torch.randint(0, 256, (48, 1, 2, 2), generator=g, dtype=torch.uint8).repeat_interleave(4, 2)
    x2 = x2.repeat_interleave(4, 3)
    f1 = extract_features(x1, name, weights)
    f2 = extract_features(x2, name, weights)
    assert f1["features"].shape == (64, 8) and f1["logits"].shape == (64, 10)
    with torch.no_grad():
        direct = model.features(x1.float() / 127.5 - 1)
    torch.testing.assert_close(f1["features"], direct, rtol=1e-5, atol=1e-5)

    ours = fid_from_features(f1["features"], f2["features"])
    assert ours > 1e-2
    tf = torch_fidelity.calculate_metrics(
        input1=_UInt8Images(x1), input2=_UInt8Images(x2), feature_extractor=name,
        feature_extractor_weights_path=str(weights), fid=True, cuda=False, verbose=False, save_cpu_ram=True,
    )
    assert tf["frechet_inception_distance"] == pytest.approx(ours, rel=1e-4, abs=1e-7)
