"""MaskDiT (Zheng et al., TMLR 2024): masking, the MaskDiT network, the loss against the official code's numbers,
the equal-cost step count, the full profile at paper size, and the pipeline on the tiny profile.

Reference numbers (REF below) were produced by running the OFFICIAL code, Anima-Lab/MaskDiT at commit 73cfb96
(models/maskdit.py, train_utils/loss.py, train_utils/helper.py, utils.py, unmodified), outside this repository
(/tmp, CPU, torch 2.14.1): `get_mask(3, 16, 0.5)` after `torch.manual_seed(123)`; `mask_out_token` /
`unmask_tokens` on arange(3*16*3) tokens with mask token (-1, -2, -3); `EDMLoss()(DataParallel(EDMPrecond(
img_resolution=8, img_channels=2, num_classes=5, model_type=<stub>)), x, one_hot([0, 3, 4]), mask_ratio,
mae_loss_coef)` after `torch.manual_seed(7)`, where the registered stub network returns F = sin(3 c_in y) +
0.1 c_noise + 0.01 label (`stub_F` below, the same function) and the fixed mask of `get_mask`; `mae_loss` on
the replayed draws; `get_2d_sincos_pos_embed(8, 4)`; parameter counts of `DiT_XL_2(...)` built on the meta
device. The loss is compared per sample (EDMLoss returns [N]) to 1e-6.
"""

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace as NS

import pytest
import torch
from tinyrepo import env_for, inside, make_tiny_repo, run_stage

from common.claims import LABELS, load_claims
from common.config import load_config
from common.dit import count_parameters, read_dir_state
from common.edm import EDM
from papers.maskdit.config import MaskDiTConfig
from papers.maskdit.method import (
    Mask,
    build_maskdit,
    insert_mask_tokens,
    keep_tokens,
    maskdit_loss,
    maskdit_net,
    random_mask,
)

REPO = Path(__file__).resolve().parents[2]
EDM_MASKDIT = EDM(sigma_data=0.5, p_mean=-1.2, p_std=1.2, sigma_min=0.002, sigma_max=80.0, rho=7.0)
N, C, H, P, K = 3, 2, 8, 2, 5

REF = {  # official code, see the module docstring
    "ids_keep": [[4, 12, 7, 6, 8, 13, 2, 0], [13, 0, 8, 10, 2, 5, 6, 9], [4, 6, 9, 5, 8, 14, 3, 10]],
    "ids_restore": [[7, 11, 6, 13, 0, 15, 3, 2, 4, 14, 8, 12, 1, 5, 9, 10], [1, 10, 4, 8, 11, 5, 6, 15, 2, 7, 3, 12, 13, 0, 14, 9],
                    [13, 12, 14, 6, 0, 3, 1, 10, 4, 2, 7, 15, 8, 9, 5, 11]],
    "kept_first": [[12.0, 13.0, 14.0], [36.0, 37.0, 38.0], [21.0, 22.0, 23.0]],  # kept[0][:3]
    "restored_first": [[0.0, 1.0, 2.0], [-1.0, -2.0, -3.0], [6.0, 7.0, 8.0], [-1.0, -2.0, -3.0]],  # restored[0][:4]
    "total": [1.397665023803711, 1.2348836660385132, 1.3300585746765137],  # mask 0.5, mae_loss_coef 0.1
    "dsm": [1.3701108694076538, 1.1839838027954102, 1.2808761596679688],  # mask 0.5, mae_loss_coef 0
    "mae": [0.2755418121814728, 0.5089989900588989, 0.49182355403900146],  # mae_loss on the same draws
    "unmasked": [1.5687055587768555, 1.0831124782562256, 1.3549734354019165],  # mask_ratio 0
    "sigma": [0.252547949552536, 0.773654043674469, 0.9381794333457947],
    # get_2d_sincos_pos_embed(8, 4): rows 1 (row 0, col 1) and 4 (row 1, col 0) pin the w-first order; sum of all
    "sincos_row1": [0.8414709848078965, 0.009999833334166664, 0.5403023058681398, 0.9999500004166653, 0, 0, 1, 1],
    "sincos_row4": [0, 0, 1, 1, 0.8414709848078965, 0.009999833334166664, 0.5403023058681398, 0.9999500004166653],
    "sincos_sum": 48.68276346780979,
    # trainable parameters of the official DiT-XL/2 (use_decoder=False) and MaskDiT (use_decoder=True,
    # mae_loss_coef=0.1; decoder 8 x 512 x 16 heads), built on the meta device
    "cifar10": {"dit": 673_665_420, "maskdit": 728_968_076},  # input_size 32, in_channels 3, num_classes 10
    "imagenet256": {"dit": 674_815_120, "maskdit": 730_115_216},  # input_size 32, in_channels 4, 1000 classes
}


def stub_F(x_in, c_noise, label):
    """The stub network of the reference run: deterministic, nonlinear, uses all three inputs."""
    return torch.sin(3 * x_in) + 0.1 * c_noise.reshape(-1, 1, 1, 1) + 0.01 * label.reshape(-1, 1, 1, 1).to(x_in.dtype)


class Stub:
    patch_size, null_class = P, K

    def __call__(self, x, c_noise, labels, mask=None):
        return stub_F(x, c_noise, labels)


def ref_inputs():
    x = torch.linspace(-1, 1, N * C * H * H).reshape(N, C, H, H) * torch.tensor([1.0, -0.5]).reshape(1, C, 1, 1)
    return x, torch.tensor([0, 3, 4])


# --------------------------------------------------------------------------- reference check against the official code
def test_random_mask_matches_get_mask():
    m = random_mask(N, 16, 0.5, torch.Generator().manual_seed(123))
    assert m.ids_keep.tolist() == REF["ids_keep"] and m.ids_restore.tolist() == REF["ids_restore"]
    assert m.mask.sum(1).tolist() == [8.0] * N
    # the round trip: restoring the shuffled order puts every kept token back at its own index
    h = torch.arange(N * 16 * 3, dtype=torch.float32).reshape(N, 16, 3)
    kept = keep_tokens(h, m.ids_keep)
    assert kept[0, :3].tolist() == REF["kept_first"]
    restored = insert_mask_tokens(kept, m.ids_restore, torch.tensor([[[-1.0, -2.0, -3.0]]]))
    assert restored[0, :4].tolist() == REF["restored_first"]
    visible = m.mask == 0
    assert torch.equal(restored[visible], h[visible]) and (restored[~visible] == torch.tensor([-1.0, -2.0, -3.0])).all()


def test_loss_matches_the_official_edmloss_and_mae_loss():
    """total / DSM / MAE per sample and the unmasked loss, to 1e-6, with the stub network and the fixed mask."""
    x, labels = ref_inputs()
    mask = random_mask(N, 16, 0.5, torch.Generator().manual_seed(123))
    ours = maskdit_loss(Stub(), EDM_MASKDIT, x, labels, torch.Generator().manual_seed(7), 0.5, 0.1, 0.0, mask=mask)
    for key, got in (("total", ours.dsm + 0.1 * ours.mae), ("dsm", ours.dsm), ("mae", ours.mae)):
        torch.testing.assert_close(got, torch.tensor(REF[key]), rtol=0, atol=1e-6)
    torch.testing.assert_close(ours.total, torch.tensor(REF["total"]).mean(), rtol=0, atol=1e-6)
    unmasked = maskdit_loss(Stub(), EDM_MASKDIT, x, labels, torch.Generator().manual_seed(7), 0.0, 0.1, 0.0)
    torch.testing.assert_close(unmasked.dsm, torch.tensor(REF["unmasked"]), rtol=0, atol=1e-6)
    assert unmasked.mae.abs().max() == 0


def test_mae_target_is_the_noisy_input_not_the_clean_one():
    """Replacing the MAE target by the clean x changes the loss: the official target is y = x + n, normalised."""
    from common.dit import patchify
    from papers.maskdit.method import mae_loss

    x, _ = ref_inputs()
    mask = random_mask(N, 16, 0.5, torch.Generator().manual_seed(123))
    d = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    y = x + 0.3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(2))
    t = patchify(y, P)
    by_hand = ((patchify(d, P) - (t - t.mean(-1, keepdim=True)) / (t.var(-1, keepdim=True) + 1e-6).sqrt()) ** 2)
    by_hand = (by_hand.mean(-1) * mask.mask).sum(1) / mask.mask.sum(1)
    torch.testing.assert_close(mae_loss(d, y, mask, P), by_hand)
    assert not torch.allclose(mae_loss(d, y, mask, P), mae_loss(d, x, mask, P))


def test_decoder_positions_are_the_official_sincos_table():
    from diffusers.models.embeddings import get_2d_sincos_pos_embed

    table = get_2d_sincos_pos_embed(8, 4, base_size=4)
    torch.testing.assert_close(table[1], torch.tensor(REF["sincos_row1"], dtype=table.dtype), rtol=0, atol=1e-7)
    torch.testing.assert_close(table[4], torch.tensor(REF["sincos_row4"], dtype=table.dtype), rtol=0, atol=1e-7)
    assert abs(float(table.sum()) - REF["sincos_sum"]) < 1e-5
    model = tiny_maskdit()
    assert torch.equal(model.decoder.pos_embed.table[0], get_2d_sincos_pos_embed(8, 4, base_size=4).float())


# --------------------------------------------------------------------------- the network
def tiny_maskdit(mae=True, seed=0):
    torch.manual_seed(seed)
    return build_maskdit(NS(hidden_size=16, depth=2, num_heads=2, patch_size=2, num_classes=K),
                         NS(hidden_size=8, depth=1, num_heads=2), H, C, mae=mae)


def perturbed(model, seed=3):
    """Every weight moved off its initial value (zero-initialised layers would hide most of the network)."""
    flat = torch.nn.utils.parameters_to_vector(model.parameters()).detach()
    noise = torch.randn(flat.shape, generator=torch.Generator().manual_seed(seed))
    torch.nn.utils.vector_to_parameters(flat + 0.2 * noise, model.parameters())
    return model


def test_encoder_sees_only_the_visible_tokens():
    model = perturbed(tiny_maskdit())
    shapes = []
    hook = model.encoder.transformer_blocks[0].register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape)))
    mask = random_mask(N, 16, 0.5, torch.Generator().manual_seed(0))
    out = model(torch.randn(N, C, H, H), torch.zeros(N), torch.zeros(N, dtype=torch.long), mask)
    model(torch.randn(N, C, H, H), torch.zeros(N), torch.zeros(N, dtype=torch.long))
    hook.remove()
    assert shapes == [(N, 8, 16), (N, 16, 16)] and out.shape == (N, C, H, H)


def test_masked_patches_never_reach_the_network():
    """Changing the input only on masked patches leaves the output unchanged (they are dropped after the patch
    embedding); changing one visible patch changes it."""
    model = perturbed(tiny_maskdit()).eval()
    mask = random_mask(1, 16, 0.5, torch.Generator().manual_seed(0))
    x = torch.randn(1, C, H, H)
    pix = mask.mask.reshape(1, 1, 4, 4).repeat_interleave(P, 2).repeat_interleave(P, 3).bool().expand_as(x)
    t, y = torch.zeros(1), torch.tensor([1])
    base = model(x, t, y, mask)
    torch.testing.assert_close(model(torch.where(pix, x + 5, x), t, y, mask), base, rtol=0, atol=0)
    assert not torch.allclose(model(torch.where(~pix, x + 5, x), t, y, mask), base)


def test_zero_initialised_output_and_decoder_layer():
    """DecoderLayer and the final layer start at zero (official initialize_weights): F = 0 at init."""
    model = tiny_maskdit()
    assert torch.count_nonzero(model.encoder.proj_out_2.weight) == 0
    out = model(torch.randn(2, C, H, H), torch.zeros(2), torch.tensor([0, 1]),
                random_mask(2, 16, 0.5, torch.Generator().manual_seed(0)))
    assert torch.count_nonzero(out) == 0
    assert 0.01 < model.mask_token.std() < 0.04 and torch.count_nonzero(tiny_maskdit(mae=False).mask_token) == 0


def test_loss_draws_in_order_and_the_gradient_reaches_every_trained_part():
    model = perturbed(tiny_maskdit())
    x, labels = ref_inputs()
    loss = maskdit_loss(model, EDM_MASKDIT, x, labels, torch.Generator().manual_seed(7), 0.5, 0.1, 0.2)
    loss.total.backward()
    assert model.mask_token.grad.abs().sum() > 0 and model.encoder.transformer_blocks[0].attn1.to_q.weight.grad is not None
    # sigma, eps, dropout, then the mask: replay the generator
    g = torch.Generator().manual_seed(7)
    torch.randn(N, 1, 1, 1, generator=g), torch.randn(x.shape, generator=g), torch.rand(N, generator=g)
    replay = random_mask(N, 16, 0.5, g)
    again = maskdit_loss(model, EDM_MASKDIT, x, labels, torch.Generator().manual_seed(7), 0.5, 0.1, 0.2)
    forced = maskdit_loss(model, EDM_MASKDIT, x, labels, torch.Generator().manual_seed(7), 0.5, 0.1, 0.2, mask=replay)
    torch.testing.assert_close(again.total, forced.total)


# --------------------------------------------------------------------------- the paper's files
@pytest.mark.parametrize("profile", ["cpu", "tiny", "full"])
def test_params_load_for_every_profile(profile):
    from papers.maskdit.train import check_cost_step, masked_steps, step_flops

    cfg = load_config(MaskDiTConfig, paper="maskdit", overrides=[f"profile={profile}"], root=REPO)
    check_cost_step(cfg)
    assert cfg.mask_ratio == 0.5 and cfg.mae_coef == 0.1 and cfg.eval.guidance_scales[0] == 1.0
    if profile != "full":
        flops = step_flops(cfg, 1)
        steps = masked_steps(cfg, flops)
        # equal cost: the masked phase and the tuning fit in cost_step DiT steps, one more masked step would not
        spent = steps * flops["masked"] + cfg.unmask.steps * flops["unmasked"]
        assert spent <= cfg.cost_step * flops["dit"] < spent + flops["masked"]
        assert 0.4 < flops["masked"] / flops["dit"] < 0.75  # half the encoder tokens, plus the decoder


def test_claims_file_is_valid():
    claims = load_claims(REPO / "papers" / "maskdit" / "claims.yaml")
    assert [c["id"] for c in claims] == ["faster-training-step", "less-activation-memory", "fewer-flops-per-step",
                                         "equal-cost-fid-no-guidance", "mae-term-lowers-fid",
                                         "unmask-tuning-lowers-fid"]
    assert {c["test"].get("unit") for c in claims} == {"round", "train_seed"}


# --------------------------------------------------------------------------- the full profile (paper size), CPU smoke
def test_full_profile_paper_size_counts_and_two_steps():
    """DiT-XL/2 and MaskDiT with the official 8 x 512 decoder on the full profile's data shape (CIFAR-10 32x32,
    10 classes), built on the meta device: our counts are the official code's (REF) plus the per-block embedders
    diffusers adds (encoder: (depth-1)(D^2 + 258 D + (K+1) D) + D; each decoder block its own embedder at width
    D_dec and an adaLN from D_dec instead of D). Then two training steps of a depth-reduced instance (encoder and
    decoder 1 block each, full widths) at batch 1 on the CPU through train.build and method.maskdit_loss."""
    from common.stages import train_dit
    from papers.maskdit.train import build, step_flops

    cfg = load_config(MaskDiTConfig, paper="maskdit", overrides=["profile=full"], root=REPO)
    D, depth, K, Dd, dd = cfg.dit.net.hidden_size, cfg.dit.net.depth, cfg.dit.net.num_classes, cfg.decoder.hidden_size, \
        cfg.decoder.depth
    assert (D, depth, cfg.dit.net.num_heads, Dd, dd, cfg.decoder.num_heads) == (1152, 28, 16, 512, 8, 16)
    delta_dit = (depth - 1) * (D * D + 258 * D + (K + 1) * D) + D
    delta_maskdit = delta_dit + dd * ((Dd - D) * 6 * Dd + Dd * Dd + 258 * Dd + (K + 1) * Dd) + (Dd - D) * 2 * Dd
    ours_dit, ours = count_parameters(train_dit.build(cfg, 3, meta=True)), count_parameters(build(cfg, 3, meta=True))
    assert ours_dit == REF["cifar10"]["dit"] + delta_dit  # 717,865,356 (+6.6%)
    assert ours == REF["cifar10"]["maskdit"] + delta_maskdit  # 759,982,988 (+4.3%)
    flops = step_flops(cfg, 3)
    assert 0.5 < flops["masked"] / flops["dit"] < 0.6  # the paper's "about half the encoder cost" at DiT-XL/2 size

    from dataclasses import replace
    small = replace(cfg, dit=replace(cfg.dit, net=replace(cfg.dit.net, depth=1)), decoder=replace(cfg.decoder, depth=1))
    torch.manual_seed(0)
    model = build(small, 3)
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)
    x, y = torch.rand(1, 3, 32, 32) * 2 - 1, torch.tensor([3])
    edm = EDM.from_config(cfg.dit.edm)
    losses = []
    for step in range(2):
        opt.zero_grad()
        loss = maskdit_loss(model, edm, x, y, torch.Generator().manual_seed(step), cfg.mask_ratio, cfg.mae_coef,
                            cfg.dit.train.cond_dropout).total
        loss.backward()
        opt.step()
        losses.append(loss.detach().item())
    assert all(torch.isfinite(torch.tensor(losses)))


# --------------------------------------------------------------------------- the pipeline, tiny
STAGES = ["prepare_data", "train_classifier", "train_dit", "papers/maskdit/dvc.yaml:train",
          "papers/maskdit/dvc.yaml:benchmark", "papers/maskdit/dvc.yaml:evaluate", "papers/maskdit/dvc.yaml:report"]


def dvc_repro(root: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    """`dvc repro papers/maskdit/dvc.yaml` in the tiny copy (its own DVC root and MLflow store)."""
    cmd = [sys.executable, "-m", "dvc", "repro", "papers/maskdit/dvc.yaml"]
    return subprocess.run(cmd, cwd=root, env=env_for(root), capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = make_tiny_repo(tmp_path_factory.mktemp("maskdit"), git=True)
    proc = dvc_repro(root)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return root, proc


@pytest.mark.e2e
def test_tiny_pipeline_runs_every_stage_once(tiny):
    root, proc = tiny
    order = [line.split("'")[1] for line in proc.stdout.splitlines() if line.startswith("Running stage")]
    assert sorted(order) == sorted(STAGES)  # DVC orders independent stages as it likes
    for before, after in (("train_dit", "evaluate"), ("train_classifier", "evaluate"), ("prepare_data", "train")):
        assert order.index(before) < order.index(f"papers/maskdit/dvc.yaml:{after}")
    assert order[-1] == "papers/maskdit/dvc.yaml:report"
    again = dvc_repro(root, timeout=300)
    assert again.returncode == 0 and "Running stage" not in again.stdout


@pytest.mark.e2e
def test_tiny_report_has_a_verdict_per_claim(tiny):
    root, _ = tiny
    verdicts = json.loads((root / "reports/maskdit/verdicts.json").read_text())["verdicts"]
    ids = [c["id"] for c in load_claims(REPO / "papers/maskdit/claims.yaml")]
    assert [v["id"] for v in verdicts] == ids and all(v["verdict"] in LABELS for v in verdicts)
    assert all(v["n_units"] == 3 for v in verdicts if v["unit"] == "train_seed")
    report = (root / "reports/maskdit/README.md").read_text()
    assert "## Training speed and memory" in report and "fid[digits-classifier]" in report
    for fig in ("fid_vs_cost", "step_time_memory", "loss", "samples_equal_cost"):
        assert (root / f"reports/maskdit/figures/{fig}.png").stat().st_size > 1000
    trained = json.loads((root / "reports/maskdit/train.json").read_text())
    assert {(r["arm"], r["phase"]) for r in trained["runs"]} == {("mae", "masked"), ("mae", "ablation"),
                                                                  ("mae", "tuned"), ("nomae", "ablation")}
    assert trained["ablation_steps"] == trained["masked_steps"] // 2
    rows = json.loads((root / "reports/maskdit/results.json").read_text())["rows"]
    assert {r["comparison"] for r in rows} == {"equal_cost", "mae", "unmask", "cost_curve"}


@pytest.mark.e2e
def test_tiny_training_resumes_bit_identically(tiny):
    """Kill the train stage inside the masked phase of the first seed, rerun it: the resumed run's models equal the
    pipeline's uninterrupted ones, weight for weight."""
    root, _ = tiny
    out = ["paths.models=models_r", "paths.runs=runs_r", "paths.reports=reports_r", "tracking.enabled=false"]
    killed = run_stage(root, "papers.maskdit.train", *out, env_extra={"REPLICATE_KILL_AT_STEP": "9"}, check=False)
    assert killed.returncode != 0
    assert any((root / "runs_r/maskdit/mae-seed0-masked/checkpoints").glob("checkpoint-*"))
    run_stage(root, "papers.maskdit.train", *out)
    trained = json.loads((root / "reports_r/maskdit/train.json").read_text())
    assert [r["resumed_from"] for r in trained["runs"]][0] == 6
    from papers.maskdit import train

    with inside(root):
        cfg = load_config(MaskDiTConfig, paper="maskdit", overrides=out, root=root)
        base = load_config(MaskDiTConfig, paper="maskdit", root=root)
        for arm, phase in (("mae", "masked"), ("mae", "tuned"), ("nomae", "ablation")):
            a = read_dir_state(train.build(cfg, 1, mae=arm == "mae"), train.model_dir(cfg, arm, 0, phase), "t")
            b = read_dir_state(train.build(base, 1, mae=arm == "mae"), train.model_dir(base, arm, 0, phase), "t")
            for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
                assert torch.equal(va, vb), (arm, phase, k)


def test_maskdit_net_is_the_full_token_path_without_a_mask():
    model = perturbed(tiny_maskdit()).eval()
    x, t, y = torch.randn(2, C, H, H), torch.tensor([0.1, -0.5]), torch.tensor([0, 5])  # 5 = null label
    torch.testing.assert_close(maskdit_net(model)(x, t, y), model(x, t, y, None))
    every = Mask(torch.arange(16).expand(2, 16), torch.arange(16).expand(2, 16), torch.zeros(2, 16))
    torch.testing.assert_close(model(x, t, y, every), model(x, t, y, None))  # keeping all tokens = no mask



@pytest.mark.e2e
def test_backbone_comparison_page_runs_on_the_tiny_maskdit_outputs(tiny):
    """papers/backbone_comparison's stages after this file's tiny MaskDiT pipeline (whose rows and budgets the page
    reads), in-process (the suite's time): the shared UNet and the page's train / evaluate / report. The DiT and
    MaskDiT rows are papers/maskdit's, Flag-DiT is trained at the budgets' FLOPs, every claim gets a verdict, MLflow
    has one child run per backbone x budget x seed, and the page joins the index."""
    import mlflow

    from common.stages import train_base_model
    from papers.backbone_comparison import evaluate as page_evaluate
    from papers.backbone_comparison import report as page_report
    from papers.backbone_comparison import train as page_train

    root, _ = tiny
    with inside(root):
        for stage in (train_base_model, page_train, page_evaluate, page_report):
            stage.main([])
    out = root / "reports/backbone_comparison"
    res, mask = (json.loads((p / "results.json").read_text()) for p in (out, root / "reports/maskdit"))
    fid = res["metric"]
    dit = sorted((r["train_seed"], r["dit_step"], r[fid]) for r in mask["rows"] if r["comparison"] == "cost_curve")
    assert sorted((r["train_seed"], r["budget"], r[fid]) for r in res["rows"] if r["arm"] == "DiT") == dit
    trained = json.loads((out / "train.json").read_text())
    flops = trained["step_flops"]
    for budget, steps in trained["flag_steps"].items():  # Flag-DiT spent each budget's FLOPs (to half a step)
        assert abs(steps * flops["Flag-DiT"] - int(budget) * flops["DiT"]) <= flops["Flag-DiT"] / 2
    assert {r["arm"] for r in res["rows"]} == {"DiT", "MaskDiT", "Flag-DiT", "UNet"}
    verdicts = json.loads((out / "verdicts.json").read_text())["verdicts"]
    ids = [c["id"] for c in load_claims(REPO / "papers/backbone_comparison/claims.yaml")]
    assert [v["id"] for v in verdicts] == ids and all(v["verdict"] in LABELS for v in verdicts)
    assert all(v["n_units"] == 3 for v in verdicts if v["unit"] == "seed")
    report = (out / "README.md").read_text()
    assert "## At equal training compute" in report and "| Flag-DiT |" in report
    assert (out / "figures/fid_vs_compute.png").stat().st_size > 1000
    assert "[backbone_comparison](backbone_comparison/README.md)" in (root / "reports/README.md").read_text()
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("backbone_comparison").experiment_id])
    (parent,) = [r for r in runs if r.info.run_name == "results"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(c.data.tags["arm"] for c in children) == sorted(r["arm"] for r in res["rows"])
