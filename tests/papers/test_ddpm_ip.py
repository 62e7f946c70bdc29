"""DDPM-IP (Ning et al., ICML 2023): the perturbed forward process, its Gaussian-toy closed form,
and the paper's pipeline on the tiny profile (train both arms -> evaluate -> report)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tinyrepo import inside, make_tiny_repo, run_stage

from common.claims import load_claims
from common.config import load_config
from common.diffusion import NoiseSchedule
from common.sampling import sample, timesteps
from papers.ddpm_ip.config import DdpmIpConfig
from papers.ddpm_ip.method import input_perturbation, input_perturbation_loss, ip_optimal_eps, perturbed_x_t

REPO = Path(__file__).resolve().parents[2]
SCHEDULE = NoiseSchedule()  # linear betas 1e-4..0.02, T = 1000


# --------------------------------------------------------------------------- the perturbation
def test_perturbed_x_t_by_hand():
    """sqrt(ab) x0 + sqrt(1 - ab) (eps + gamma xi) on 2 numbers, ab from the schedule."""
    x0, eps, xi = torch.tensor([[0.5]]), torch.tensor([[1.0]]), torch.tensor([[-2.0]])
    ab = float(SCHEDULE.alphas_cumprod[500])  # 0.0778... for the linear schedule
    got = perturbed_x_t(SCHEDULE, x0.double(), torch.tensor([500]), eps.double(), xi.double(), 0.1)
    assert float(got) == pytest.approx(np.sqrt(ab) * 0.5 + np.sqrt(1 - ab) * (1.0 - 0.2), rel=1e-12)


def test_loss_feeds_the_perturbed_input_and_regresses_the_clean_noise():
    """Replay the generator in the official order (t, eps, then xi) and compare x_t and the loss."""
    x0 = torch.linspace(-1, 1, 2 * 1 * 4 * 4).reshape(2, 1, 4, 4)
    seen = {}

    def model(x_t, t, c):
        seen["x_t"], seen["t"] = x_t, t
        return torch.zeros_like(x_t) + 0.25  # a fixed prediction: the loss is ||eps - 0.25||^2

    gamma = 0.1
    loss = input_perturbation_loss(model, SCHEDULE, x0, None, torch.Generator().manual_seed(7), gamma)
    g = torch.Generator().manual_seed(7)
    t = torch.randint(0, SCHEDULE.T, (2,), generator=g)
    eps = torch.randn(x0.shape, generator=g)
    xi = torch.randn(x0.shape, generator=g)
    ab = SCHEDULE.alphas_cumprod[t].float().reshape(2, 1, 1, 1)
    assert torch.equal(seen["t"], t)
    torch.testing.assert_close(seen["x_t"], ab.sqrt() * x0 + (1 - ab).sqrt() * (eps + gamma * xi))
    torch.testing.assert_close(loss, torch.mean((eps - 0.25) ** 2))  # the target is eps, not eps + gamma xi
    # gamma = 0 is the plain DDPM loss: the input is the forward process itself
    input_perturbation_loss(model, SCHEDULE, x0, None, torch.Generator().manual_seed(7), 0.0)
    torch.testing.assert_close(seen["x_t"], ab.sqrt() * x0 + (1 - ab).sqrt() * eps)


def test_input_perturbation_is_the_network_input_noise():
    """The hook of method.py: eps + gamma xi with xi the generator's next normal draw; gamma = 0 draws nothing."""
    eps = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(3)
    got = input_perturbation(0.15)(eps, g)
    xi = torch.randn(eps.shape, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(got, eps + 0.15 * xi)
    assert input_perturbation(0.0) is None


# --------------------------------------------------------------------------- the Gaussian toy
S2 = 0.25  # data N(0, 0.5^2)


def toy_final_std(n: int, gamma: float) -> float:
    """DDIM (eta 0, ADM respacing, no clipping) with the exact IP-optimal model; x_0 = c x_T."""
    def eps_model(x, t, c):
        ab = SCHEDULE.alpha_bar(t).reshape(-1, *([1] * (x.dim() - 1)))
        return ip_optimal_eps(x, ab, S2, gamma).to(x.dtype)

    x_T = torch.ones(1, 1, dtype=torch.float64)
    out = sample(eps_model, SCHEDULE, lambda: x_T.clone(), None, timesteps(n, 1000, "linspace"),
                 method="ddim", eta=0.0, clip_x0=False)
    return abs(float(out))


@pytest.mark.parametrize("gamma, n, published", [(0.0, 20, 0.430452), (0.0, 100, 0.485848), (0.0, 1000, 0.498495),
                                                 (0.1, 20, 0.459093), (0.1, 100, 0.512881), (0.1, 1000, 0.525224),
                                                 (0.15, 20, 0.496559), (0.15, 100, 0.547991),
                                                 (0.15, 1000, 0.559889)])
def test_gaussian_toy_matches_the_derived_table(gamma, n, published):
    assert toy_final_std(n, gamma) == pytest.approx(published, abs=2e-6)


def test_ip_optimum_minimises_the_ip_loss():
    """Monte Carlo check of the closed form: the per-t linear fit of eps on the perturbed x_t."""
    g = torch.Generator().manual_seed(0)
    n, gamma, t = 400_000, 0.15, 600
    ab = float(SCHEDULE.alphas_cumprod[t])
    x0 = torch.randn(n, generator=g, dtype=torch.float64) * np.sqrt(S2)
    eps, xi = torch.randn(n, generator=g, dtype=torch.float64), torch.randn(n, generator=g, dtype=torch.float64)
    x_t = np.sqrt(ab) * x0 + np.sqrt(1 - ab) * (eps + gamma * xi)
    slope = float((x_t * eps).sum() / (x_t * x_t).sum())  # least squares eps ~ slope * x_t
    assert slope == pytest.approx(float(ip_optimal_eps(torch.tensor(1.0, dtype=torch.float64), ab, S2, gamma)),
                                  rel=5e-3)


# --------------------------------------------------------------------------- the paper's files
@pytest.mark.parametrize("profile", ["cpu", "tiny", "full"])
def test_params_load_for_every_profile(profile):
    cfg = load_config(DdpmIpConfig, paper="ddpm_ip", overrides=[f"profile={profile}"], root=REPO)
    assert cfg.gamma == (0.15 if profile == "full" else 0.1)  # the paper's gamma (0.15 only on CIFAR-10)
    assert cfg.train_seeds and cfg.eval.seeds


def test_claims_file_is_valid():
    claims = load_claims(REPO / "papers" / "ddpm_ip" / "claims.yaml")
    assert [c["test"]["where"]["nfe"] for c in claims] == [10, 20, 50, 50]


# --------------------------------------------------------------------------- the pipeline, tiny
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = make_tiny_repo(tmp_path_factory.mktemp("ddpm_ip"))
    for module in ("common.stages.prepare_data", "common.stages.train_classifier", "papers.ddpm_ip.train",
                   "papers.ddpm_ip.evaluate", "papers.ddpm_ip.report"):
        run_stage(root, module)
    return root


def test_both_arms_trained_with_identical_budget(tiny):
    runs = json.loads((tiny / "reports/ddpm_ip/train.json").read_text())["runs"]
    assert [(r["arm"], r["train_seed"]) for r in runs] == [(a, s) for s in (0, 1, 2) for a in ("baseline", "method")]
    assert {r["steps"] for r in runs} == {12} and {r["params"] for r in runs} == {runs[0]["params"]}
    assert [r["gamma"] for r in runs[:2]] == [0.0, 0.1]
    from common.models import load_diffusion_model
    w = [next(load_diffusion_model(tiny / "models/ddpm_ip" / f"{arm}-seed0")[0].parameters()).detach().clone()
         for arm in ("baseline", "method")]
    assert not torch.equal(w[0], w[1])


def test_report_has_a_verdict_per_claim(tiny):
    verdicts = json.loads((tiny / "reports/ddpm_ip/verdicts.json").read_text())["verdicts"]
    assert [v["id"] for v in verdicts] == ["ip-lowers-fid-ddim10", "ip-lowers-fid-ddim20", "ip-lowers-fid-ddim50",
                                           "ip-lowers-fid-ddpm50"]
    # the replication unit is the training seed: 3 training seeds (sampling seeds averaged first)
    assert all(v["n_units"] == 3 and v["unit"] == "train_seed" for v in verdicts)
    report = (tiny / "reports/ddpm_ip/README.md").read_text()
    assert "Spread over training seeds" in report
    assert (tiny / "reports/ddpm_ip/figures/fid_vs_nfe.png").stat().st_size > 1000


def test_training_resumes_identically(tiny):
    """Rerunning the stage with its checkpoints in place is a no-op that reproduces the same weights."""
    from common.models import load_diffusion_model
    before = next(load_diffusion_model(tiny / "models/ddpm_ip/method-seed1")[0].parameters()).detach().clone()
    run_stage(tiny, "papers.ddpm_ip.train")
    after = next(load_diffusion_model(tiny / "models/ddpm_ip/method-seed1")[0].parameters()).detach().clone()
    assert torch.equal(before, after)


def test_the_train_stage_runs_method_py(tiny, monkeypatch):
    """papers/ddpm_ip/train.py trains each arm with method.input_perturbation(gamma): a spy sees both gammas
    and its hook is called at every training step of the method arm; the weights are the pipeline's."""
    import papers.ddpm_ip.method as method
    from common.models import load_diffusion_model
    from papers.ddpm_ip import train

    gammas, calls = [], []
    real = method.input_perturbation

    def spy(gamma):
        gammas.append(gamma)
        hook = real(gamma)
        if hook is None:
            return None

        def counted(eps, generator):
            calls.append(gamma)
            return hook(eps, generator)

        return counted

    monkeypatch.setattr(method, "input_perturbation", spy)
    with inside(tiny):
        train.main(["train_seeds=[0]", "paths.runs=runs_spy", "paths.models=models_spy",
                    "paths.reports=reports_spy", "tracking.enabled=false"])
    assert gammas == [0.0, 0.1]
    assert calls and set(calls) == {0.1}
    for arm in ("baseline", "method"):  # same recipe as the stage's own run (in-process: other thread settings)
        ours = next(load_diffusion_model(tiny / "models_spy/ddpm_ip" / f"{arm}-seed0")[0].parameters())
        pipeline = next(load_diffusion_model(tiny / "models/ddpm_ip" / f"{arm}-seed0")[0].parameters())
        torch.testing.assert_close(ours, pipeline, rtol=1e-4, atol=1e-5)
