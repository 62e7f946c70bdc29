"""The shared DiT substrate: common/dit.py (diffusers' DiTTransformer2DModel, DiT's initialisation, the forward
in pieces, seeded condition dropout) and common/edm.py (EDM preconditioning, loss, sampler)."""

import math

import pytest
import torch

from common.config import TrainConfig
from common.dit import (
    build_dit,
    count_parameters,
    dit_net,
    embed_tokens,
    flops_per_step,
    output_layer,
    patchify,
    run_blocks,
    unpatchify,
)
from common.edm import EDM, denoise, draw_noise, drop_labels, edm_loss, generate, generate_all, guided

EDM_MASKDIT = EDM(sigma_data=0.5, p_mean=-1.2, p_std=1.2, sigma_min=0.002, sigma_max=80.0, rho=7.0)


def small(seed=0, **kw):
    torch.manual_seed(seed)
    args = dict(hidden_size=16, depth=2, num_heads=2, patch_size=2, resolution=8, channels=2, num_classes=3)
    return build_dit(**{**args, **kw})


def randomize(model, seed=1):
    """Non-zero weights everywhere (adaLN-Zero starts every block as the identity and the output at 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return model


# --------------------------------------------------------------------------- the network
def test_the_pieces_compose_to_diffusers_forward():
    """embed_tokens -> run_blocks -> output_layer -> unpatchify is DiTTransformer2DModel.forward, exactly."""
    model = randomize(small()).eval()
    x, t, y = torch.randn(3, 2, 8, 8), torch.tensor([-1.2, 0.0, 0.9]), torch.tensor([0, 2, 3])  # 3 = null label
    ours = unpatchify(output_layer(model, run_blocks(model, embed_tokens(model, x), t, y), t, y), 2, 2)
    torch.testing.assert_close(ours, model(x, timestep=t, class_labels=y).sample, rtol=0, atol=0)


def test_patchify_is_the_inverse_of_unpatchify_and_row_major():
    x = torch.arange(2 * 3 * 4 * 4 * 1.0).reshape(2, 3, 4, 4)
    tokens = patchify(x, 2)
    assert tokens.shape == (2, 4, 12)
    torch.testing.assert_close(unpatchify(tokens, 2, 3), x)
    # token 1 is the top-right 2x2 patch; its values are ordered (row, col, channel) as DiT's unpatchify
    assert tokens[0, 1, :3].tolist() == [x[0, 0, 0, 2].item(), x[0, 1, 0, 2].item(), x[0, 2, 0, 2].item()]


def test_adaln_zero_initialisation():
    """DiT's init: the output layer and every adaLN modulation start at zero, so F = 0 for any input, while the
    label tables and timestep MLPs are N(0, 0.02) and the attention weights Xavier (non-zero)."""
    model = small()
    out = model(torch.randn(2, 2, 8, 8), timestep=torch.tensor([0.1, -0.3]), class_labels=torch.tensor([0, 1])).sample
    assert torch.count_nonzero(out) == 0
    for block in model.transformer_blocks:
        assert torch.count_nonzero(block.norm1.linear.weight) == 0
        assert 0.01 < block.norm1.emb.class_embedder.embedding_table.weight.std() < 0.03
        assert block.attn1.to_q.weight.abs().max() > 0
    assert model.transformer_blocks[0].norm1.emb.class_embedder.embedding_table.num_embeddings == 4  # + null row


def test_in_network_label_dropout_is_off():
    """diffusers' LabelEmbedding would drop labels with its own unseeded torch.rand in train mode; build_dit turns
    that off (the loss drops labels with the loop's generator), so train-mode outputs do not depend on global RNG."""
    model = randomize(small()).train()
    x, t, y = torch.randn(4, 2, 8, 8), torch.zeros(4), torch.tensor([0, 1, 2, 0])
    outs = []
    for s in (0, 1):
        torch.manual_seed(s)
        outs.append(model(x, timestep=t, class_labels=y).sample)
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)


def test_parameter_count_differs_from_the_official_dit_by_the_per_block_embedders():
    """diffusers gives each block its own timestep MLP and label table; the official DiT shares one. Our count =
    the official DiT's + (depth - 1)(D^2 + 258 D + (K + 1) D) + D (one extra null row). The official count of this
    small config follows DiT's layer list (facebookresearch/DiT models.py): patch conv, t MLP, K-row y table,
    per block qkv/proj/mlp/adaLN, final adaLN + linear."""
    D, depth, K, p, C = 16, 2, 3, 2, 2
    official = (p * p * C * D + D) + (256 * D + D + D * D + D) + K * D \
        + depth * ((3 * D * D + 3 * D) + (D * D + D) + (4 * D * D + 4 * D) + (4 * D * D + D) + (6 * D * D + 6 * D)) \
        + (2 * D * D + 2 * D) + (D * p * p * C + p * p * C)
    assert count_parameters(small()) == official + (depth - 1) * (D * D + 258 * D + (K + 1) * D) + D


def test_flops_on_meta_count_the_blocks_and_attention():
    """FLOPs per training step depend on shapes only (two meta counts agree) and include attention: on meta tensors
    SDPA decomposes into counted bmm's (on the CPU its fused kernel has no FLOP formula and counts 0), so the meta
    count is the CPU count plus the attention matmuls, forward and backward."""
    edm = EDM_MASKDIT

    def step(model, device):
        x = torch.zeros(4, 2, 8, 8, device=device)
        y = torch.zeros(4, dtype=torch.long, device=device)
        return lambda: edm_loss(dit_net(model), edm, x, y, torch.Generator().manual_seed(0), 0.0, 3)

    meta = flops_per_step(step(small(meta=True), "meta"))
    assert meta == flops_per_step(step(small(meta=True), "meta"))
    attention = 3 * 2 * 2 * (2 * 4 * 2 * 16 * 16 * 8)  # (fwd + 2 bwd) x layers x (QK^T, AV) x 2 B heads L L d_head
    assert meta == flops_per_step(step(small(), "cpu")) + attention


# --------------------------------------------------------------------------- EDM
def test_preconditioning_is_edm_table_1():
    """denoise() through diffusers' EDMEulerScheduler == c_skip y + c_out F(c_in y, ln(sigma)/4) by hand."""
    seen = {}

    def net(x_in, c_noise, labels):
        seen["x_in"], seen["c_noise"] = x_in, c_noise
        return torch.tanh(x_in) + c_noise.reshape(-1, 1, 1, 1)

    sd = 0.5
    y, sigma = torch.randn(3, 1, 4, 4), torch.tensor([0.01, 0.7, 30.0]).reshape(3, 1, 1, 1)
    d = denoise(net, EDM_MASKDIT.preconditioner(), y, sigma, torch.zeros(3, dtype=torch.long))
    c_in, c_noise = 1 / torch.sqrt(sigma**2 + sd**2), torch.log(sigma) / 4
    c_skip, c_out = sd**2 / (sigma**2 + sd**2), sigma * sd / torch.sqrt(sigma**2 + sd**2)
    torch.testing.assert_close(seen["x_in"], c_in * y)
    torch.testing.assert_close(seen["c_noise"], c_noise.flatten())
    torch.testing.assert_close(d, c_skip * y + c_out * net(c_in * y, c_noise.flatten(), None))
    # lambda(sigma) c_out^2 = 1: the weighted loss is O(1) at every noise level
    torch.testing.assert_close(EDM_MASKDIT.weight(sigma) * c_out**2, torch.ones_like(sigma))


def test_loss_draws_sigma_then_eps_then_dropout_from_the_generator():
    x, y = torch.rand(5, 1, 4, 4) * 2 - 1, torch.tensor([0, 1, 2, 0, 1])
    seen = {}

    def net(x_in, c_noise, labels):
        seen["labels"] = labels
        return torch.zeros_like(x_in)

    loss = edm_loss(net, EDM_MASKDIT, x, y, torch.Generator().manual_seed(3), 0.5, 3)
    g = torch.Generator().manual_seed(3)
    sigma = (torch.randn(5, 1, 1, 1, generator=g) * 1.2 - 1.2).exp()
    n = torch.randn(x.shape, generator=g) * sigma
    drop = torch.rand(5, generator=g) < 0.5
    torch.testing.assert_close(seen["labels"], torch.where(drop, 3, y))
    d = 0.25 / (sigma**2 + 0.25) * (x + n)  # F = 0
    torch.testing.assert_close(loss, (EDM_MASKDIT.weight(sigma) * (d - x) ** 2).mean())
    sigma2, _ = draw_noise(EDM_MASKDIT, x, torch.Generator().manual_seed(3))
    torch.testing.assert_close(sigma2, sigma)


def test_label_dropout_rate_and_null_class():
    labels = torch.zeros(20000, dtype=torch.long)
    dropped = drop_labels(labels, 0.1, 10, torch.Generator().manual_seed(0))
    assert set(dropped.unique().tolist()) == {0, 10}
    assert abs((dropped == 10).float().mean().item() - 0.1) < 0.01
    assert drop_labels(labels, 0.0, 10, torch.Generator()) is labels


def _oracle(data: torch.Tensor):
    """The exact denoiser of the empirical distribution `data` (posterior mean), as a network F."""
    sd = 0.5

    def F(x_in, c_noise, labels):
        sigma = torch.exp(4 * c_noise.double()).reshape(-1, 1, 1, 1)
        y = x_in.double() * (sigma**2 + sd**2).sqrt()
        d2 = ((y[:, None] - data[None]) ** 2).flatten(2).sum(-1)
        w = torch.softmax(-d2 / (2 * sigma.reshape(-1, 1) ** 2), dim=1)
        d = torch.einsum("nm,mchw->nchw", w, data)
        c_skip, c_out = sd**2 / (sigma**2 + sd**2), sigma * sd / (sigma**2 + sd**2).sqrt()
        return ((d - c_skip * y) / c_out).to(x_in.dtype)

    return F


def test_sampler_with_the_exact_denoiser_lands_on_the_data():
    """diffusers' EDMDPMSolverMultistepScheduler driven through edm_sample with the posterior-mean denoiser of 6
    points: every sample ends (to float precision) on one of them -- the preconditioning, c_noise convention and
    x_T = sigma_max z are consistent between training and sampling."""
    data = torch.randn(6, 1, 4, 4, generator=torch.Generator().manual_seed(0)).double()
    img, _ = generate_all(_oracle(data), EDM_MASKDIT, (1, 4, 4), 8, 2, 20, seed=1)
    dist = ((img.double()[:, None] - data[None]) ** 2).flatten(2).mean(-1).min(1).values
    assert dist.max() < 1e-8


def test_samples_do_not_depend_on_the_batch_size():
    """Per-sample seeded x_T and a deterministic solver: batches of 7 or 3 give the same samples up to float
    reassociation of batched matmuls (tolerance), with and without guidance."""
    model = randomize(small(channels=1), seed=4).eval()
    for w in (1.0, 2.0):
        a = torch.cat([x for x, _ in generate(dit_net(model), EDM_MASKDIT, (1, 8, 8), 7, 3, 6, w, seed=5, batch_size=7)])
        b = torch.cat([x for x, _ in generate(dit_net(model), EDM_MASKDIT, (1, 8, 8), 7, 3, 6, w, seed=5, batch_size=3)])
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
        assert a.abs().max() > 0


def test_guidance_is_on_the_network_output():
    def net(x, c, labels):
        return x * 0 + labels.reshape(-1, 1, 1, 1).float()

    out = guided(net, 1.5, 9)(torch.zeros(2, 1, 2, 2), torch.zeros(2), torch.tensor([1, 2]))
    torch.testing.assert_close(out[:, 0, 0, 0], torch.tensor([9 + 1.5 * (1 - 9), 9 + 1.5 * (2 - 9)]))
    assert guided(net, 1.0, 9) is net


# --------------------------------------------------------------------------- training: resume is bit-identical
def test_resumed_dit_training_is_bit_identical(tmp_path):
    """common.training.train on the DiT with the EDM loss (label dropout from the loop's generator): a run stopped
    after its step-3 checkpoint and resumed to step 6 ends with exactly the weights of an uninterrupted 6-step run."""
    from common.training import COMPLETE, train

    x = torch.rand(16, 1, 8, 8) * 2 - 1
    y = torch.randint(0, 3, (16,), generator=torch.Generator().manual_seed(0))

    def loss_fn(m, xb, yb, gen):
        return edm_loss(dit_net(m), EDM_MASKDIT, xb, yb, gen, 0.3, 3)

    def cfg(steps):
        return TrainConfig(steps=steps, batch_size=4, lr=1e-3, warmup_steps=1, lr_schedule="constant_with_warmup",
                           ema_decay=0.9, cond_dropout=0.3, checkpoint_every=3, keep_checkpoints=2, seed=0, log_every=1)

    full = train(small(channels=1), loss_fn, (x, y), cfg(6), tmp_path / "full", run_fingerprint="f").model
    train(small(channels=1), loss_fn, (x, y), cfg(3), tmp_path / "cut", run_fingerprint="f")
    (tmp_path / "cut" / COMPLETE).unlink()  # as if killed right after its step-3 checkpoint
    resumed = train(small(channels=1), loss_fn, (x, y), cfg(6), tmp_path / "cut", run_fingerprint="f")
    assert resumed.resumed_from == 3
    for a, b in zip(full.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("profile", ["cpu", "tiny", "full"])
def test_dit_params_load_for_every_profile(profile):
    from common.config import RootConfig, load_config

    cfg = load_config(RootConfig, overrides=[f"profile={profile}"])
    assert cfg.dit.net.hidden_size % cfg.dit.net.num_heads == 0
    assert len(cfg.dit.train_seeds) >= (1 if profile == "full" else 3)
    assert all(0 < s < cfg.dit.train.steps for s in cfg.dit.snapshots)
    assert math.isclose(cfg.dit.edm.sigma_data, 0.5)
