"""Inf-DiT (Yang et al., ECCV 2024): reference checks against the official code, 'full' == 'ar', the seam score, the
tiny pipeline end to end and the full profile (the official 28 x 1280 x 16 heads model).

Where the frozen numbers come from: the OFFICIAL THUDM/Inf-DiT at commit e710c3f run on CPU outside this repository,
with `sat` (SwissArmyTransformer) and `flash_attn` stubbed: `flash_attn_func` records its (q, k, v) arguments and
returns q. Each constant names the official call that produced it.
"""

import json
from pathlib import Path

import pytest
import torch

from common.claims import load_claims
from common.config import load_config
from common.edm import EDM
from papers.inf_dit.config import InfDiTConfig
from papers.inf_dit.method import (
    InfDiT,
    add_re_pos,
    apply_rope,
    cat_left_top,
    neighbour_blocks,
    rope_2d,
    rope_table,
    seam_ratio,
    super_resolve,
    to_blocks,
    token_positions,
)

REPO = Path(__file__).resolve().parents[2]

# --------------------------------------------------------------------------- official numbers
# AdaLNMixin.attention_forward(origin, hidden, ..., hw=[6, 6], layer_id=0) with use_block_attention=True, block_size=2
# (a 3 x 3 grid of 2 x 2-token blocks), rope=None, qk_ln=False, 1 head of d_h 1, query_key_value = identity and
# hidden = the token id (row-major in the 6 x 6 grid) in all of q, k, v: the query ids and key ids that
# flash_attn_func received, one row per block (blocks row-major), keys [self, top-left, left, top] x 4 tokens.
QUERIES = [[0, 1, 6, 7], [2, 3, 8, 9], [4, 5, 10, 11], [12, 13, 18, 19], [14, 15, 20, 21], [16, 17, 22, 23],
           [24, 25, 30, 31], [26, 27, 32, 33], [28, 29, 34, 35]]
KEYS = [[0, 1, 6, 7, 0, 1, 6, 7, 0, 1, 6, 7, 0, 1, 6, 7], [2, 3, 8, 9, 0, 1, 6, 7, 0, 1, 6, 7, 2, 3, 8, 9],
        [4, 5, 10, 11, 2, 3, 8, 9, 2, 3, 8, 9, 4, 5, 10, 11], [12, 13, 18, 19, 0, 1, 6, 7, 12, 13, 18, 19, 0, 1, 6, 7],
        [14, 15, 20, 21, 0, 1, 6, 7, 12, 13, 18, 19, 2, 3, 8, 9],
        [16, 17, 22, 23, 2, 3, 8, 9, 14, 15, 20, 21, 4, 5, 10, 11],
        [24, 25, 30, 31, 12, 13, 18, 19, 24, 25, 30, 31, 12, 13, 18, 19],
        [26, 27, 32, 33, 12, 13, 18, 19, 24, 25, 30, 31, 14, 15, 20, 21],
        [28, 29, 34, 35, 14, 15, 20, 21, 26, 27, 32, 33, 16, 17, 22, 23]]
# The same call with re_position=True and re_pos_embed[0, s] = 1000 s: segment s of every block's keys is + 1000 s
# (checked below on the whole table; here block 4, the centre, as printed by the official run).
KEYS_REPOS_BLOCK4 = [14, 15, 20, 21, 1000, 1001, 1006, 1007, 2012, 2013, 2018, 2019, 3002, 3003, 3008, 3009]
# RotaryPositionEmbedding(num_patches=8, hidden_size=64, hidden_size_head=16, pix2struct=True): freqs_cos / freqs_sin
# [8, 8, 16] (sums over all entries, and rows [3, 5] / [7, 2]).
COS_SUM, SIN_SUM = 793.2932748794556, 113.06652595847845
COS_3_5 = [-0.9899924993515015, -0.9899924993515015, 0.9553365111351013, 0.9553365111351013, 0.9995500445365906,
           0.9995500445365906, 0.9999955296516418, 0.9999955296516418, 0.28366219997406006, 0.28366219997406006,
           0.8775825500488281, 0.8775825500488281, 0.9987502694129944, 0.9987502694129944, 0.9999874830245972,
           0.9999874830245972]
SIN_3_5 = [0.14112000167369843, 0.14112000167369843, 0.29552021622657776, 0.29552021622657776, 0.029995499178767204,
           0.029995499178767204, 0.0029999956022948027, 0.0029999956022948027, -0.9589242935180664, -0.9589242935180664,
           0.4794255495071411, 0.4794255495071411, 0.04997916519641876, 0.04997916519641876, 0.0049999793991446495,
           0.0049999793991446495]
SIN_7_2 = [0.6569865942001343, 0.6569865942001343, 0.6442176699638367, 0.6442176699638367, 0.06994284689426422,
           0.06994284689426422, 0.0069999429397284985, 0.0069999429397284985, 0.9092974066734314, 0.9092974066734314,
           0.19866932928562164, 0.19866932928562164, 0.019998665899038315, 0.019998665899038315, 0.0019999986980110407,
           0.0019999986980110407]
# rope(t, rope_position_ids=pos) of that module with t = sin(0.1 i).view(1, 6, 2, 16), pos[i] = (i // 3, 2 (i % 3) + 1):
# the sum of the output and out[0, 4, 1].
ROT_SUM = 1.6952138226479292
ROT_0_4_1 = [-0.26493990421295166, 1.3176989555358887, 0.80588698387146, 0.9308518171310425, 0.7809838652610779,
             0.7307272553443909, 0.6497163772583008, 0.5718465447425842, -0.5375192165374756, -0.3241294026374817,
             0.22856420278549194, 0.2868233621120453, 0.10746593028306961, 0.011191904544830322, -0.09133405238389969,
             -0.1911340057849884]


def ids_grid(h: int = 6, w: int = 6) -> torch.Tensor:
    return torch.arange(h * w, dtype=torch.float32).view(1, h, w, 1)


# --------------------------------------------------------------------------- UniBA against the official code
def test_uniba_keys_equal_the_official_per_query_multiset():
    """Per block (and so per query) the 16 keys, in order and with the border duplicates, equal the official ones."""
    blocks = to_blocks(ids_grid(), 2)  # [1, 3, 3, 4, 1]
    assert blocks.flatten(1, 2)[0, :, :, 0].long().tolist() == QUERIES
    keys = cat_left_top(blocks).flatten(1, 2)[0, :, :, 0].long().tolist()
    assert keys == KEYS
    assert all(sorted(a) == sorted(b) for a, b in zip(keys, KEYS))  # the multiset, duplicates included


def test_re_position_segments_follow_the_official_order():
    k4 = cat_left_top(to_blocks(ids_grid(), 2)).flatten(1, 2)[..., None]  # [1, 9 blocks, 16 keys, 1 head, d_h 1]
    seg = (torch.arange(4, dtype=torch.float32) * 1000).view(4, 1, 1)  # re_pos [4 segments, heads, d_h]
    out = add_re_pos(k4, seg)[0, :, :, 0, 0]
    assert out[4].long().tolist() == KEYS_REPOS_BLOCK4
    expected = torch.tensor(KEYS, dtype=torch.float32) + torch.arange(4).repeat_interleave(4) * 1000
    assert torch.equal(out, expected)


def test_ar_neighbours_are_the_clamped_uniba_blocks():
    """neighbour_blocks (the 'ar' cache lookup rule) names the same blocks as the replicate-padded grid."""
    grid = torch.arange(12, dtype=torch.float32).view(1, 3, 4, 1, 1)  # block ids of a 3 x 4 block grid
    cat = cat_left_top(grid)[0, :, :, :, 0]
    for i in range(3):
        for j in range(4):
            assert cat[i, j].long().tolist() == [a * 4 + b for a, b in neighbour_blocks(i, j)]


def test_rope_table_equals_the_official():
    cos, sin = rope_table(8, 16)
    assert cos.shape == (8, 8, 16)
    assert float(cos.double().sum()) == pytest.approx(COS_SUM, abs=1e-4)
    assert float(sin.double().sum()) == pytest.approx(SIN_SUM, abs=1e-4)
    torch.testing.assert_close(cos[3, 5], torch.tensor(COS_3_5), atol=1e-6, rtol=0)
    torch.testing.assert_close(sin[3, 5], torch.tensor(SIN_3_5), atol=1e-6, rtol=0)
    torch.testing.assert_close(sin[7, 2], torch.tensor(SIN_7_2), atol=1e-6, rtol=0)


def test_rope_rotation_equals_the_official():
    t = torch.sin(torch.arange(6 * 2 * 16, dtype=torch.float32) * 0.1).view(1, 6, 2, 16)
    pos = torch.tensor([[[i // 3, 2 * (i % 3) + 1] for i in range(6)]])
    out = apply_rope(t, *rope_2d(pos, 16))
    assert float(out.double().sum()) == pytest.approx(ROT_SUM, abs=1e-5)
    torch.testing.assert_close(out[0, 4, 1], torch.tensor(ROT_0_4_1), atol=1e-6, rtol=0)


# --------------------------------------------------------------------------- 'full' == 'ar'
def random_model(cross_lr: bool = True) -> InfDiT:
    """A small Inf-DiT with every zero-initialised weight made nonzero (so each path matters)."""
    torch.manual_seed(0)
    m = InfDiT(1, 2, 32, 2, 2, 4, 4, 8, cross_lr=cross_lr)
    with torch.no_grad():
        for p in m.parameters():
            if not p.any():
                p.normal_(0, 0.1)
    return m.eval()


@pytest.mark.parametrize("cross_lr", [True, False])
def test_full_equals_ar_and_the_cache_is_one_row(cross_lr):
    m = random_model(cross_lr)
    x, lr = torch.randn(2, 1, 24, 40), torch.randn(2, 1, 6, 10)  # 3 x 5 blocks of 8 px
    stats = {}
    with torch.no_grad():
        cond = m.condition(lr)
        full = m(x, torch.tensor([0.2, -0.4]), cond, "full", (5, 3))
        ar = m(x, torch.tensor([0.2, -0.4]), cond, "ar", (5, 3), stats=stats)
    torch.testing.assert_close(ar, full, atol=1e-5, rtol=0)
    assert stats["cached_blocks"] == 5 + 1  # W_blocks + 1
    assert full.abs().mean() > 0.1


def test_ar_with_the_official_ar_key_order_differs():
    """A negative control: the official 'ar' concatenation [self, top, top-left, left] (here at full resolution, via
    a permuted segment order) changes the output, so the equality above is not vacuous."""
    m = random_model()
    x, lr = torch.randn(1, 1, 16, 16), torch.randn(1, 1, 4, 4)
    with torch.no_grad():
        cond = m.condition(lr)
        ref = m(x, torch.zeros(1), cond, "full")
        for blk in m.blocks:
            blk.attn.re_pos.data = blk.attn.re_pos.data[[0, 3, 1, 2]]
        assert (m(x, torch.zeros(1), cond, "full") - ref).abs().max() > 1e-3


def test_sampling_full_equals_ar():
    m = random_model()
    edm = EDM(0.5, -1.0, 1.4, 0.002, 40.0, 7.0)
    lr, noise = torch.randn(1, 1, 4, 8), torch.randn(1, 1, 16, 32)
    full = super_resolve(m, edm, lr, noise, 2, "full")
    ar = super_resolve(m, edm, lr, noise, 2, "ar")
    torch.testing.assert_close(ar, full, atol=1e-5, rtol=0)


def test_positions_are_row_column():
    pos = token_positions(2, 3, (10, 20), 4, 8)
    assert pos[1, 2].tolist() == [15, 30] and pos.shape == (2, 3, 2)


def test_seam_ratio():
    tiles = torch.zeros(1, 1, 8, 8)
    tiles[..., :, 4:] = 1.0
    tiles += torch.linspace(0, 0.1, 8)[:, None]  # a smooth interior gradient
    assert float(seam_ratio(tiles, 4)) > 50  # the only jump sits on the tile border
    ramp = torch.arange(8, dtype=torch.float32).expand(1, 1, 8, 8)  # every horizontal step 1, every vertical 0
    assert float(seam_ratio(ramp, 4)) == pytest.approx(1.0)


# --------------------------------------------------------------------------- the paper's files
@pytest.mark.parametrize("profile", ["cpu", "tiny", "full"])
def test_params_load_for_every_profile(profile):
    cfg = load_config(InfDiTConfig, paper="inf_dit", overrides=[f"profile={profile}"], root=REPO)
    assert len(cfg.train_seeds) >= 3
    assert cfg.canvas.size % (cfg.net.block_tokens * cfg.net.patch_size) == 0
    assert (cfg.net.dim // cfg.net.heads) % 4 == 0


def test_claims_file_is_valid():
    claims = load_claims(REPO / "papers" / "inf_dit" / "claims.yaml")
    counted = [c for c in claims if not c.get("by_design")]
    assert all(c["test"]["unit"] == "train_seed" for c in counted) and len(counted) == 4


# --------------------------------------------------------------------------- the full profile
# Parameters of the official DiffusionEngine built by train_text2image_sr_big_clip.sh (28 layers, hidden 1280, 16 heads,
# patch 4, in 6 / out 3 channels, --nogate --qk-ln --re-position --cross-lr --vector-dim 768, image-block-size 128),
# counted term by term from dit/model.py + dit/embeddings.py + SAT's BaseTransformer layer (non-affine pre-LNs):
# per layer qkv 1280x3840+3840, dense 1280^2+1280, MLP 1280x5120+5120 and 5120x1280+1280, adaLN 1280x5120+5120,
# q_layer_norm and k_layer_norm 2x160 (both created; k's unused), re_pos_embed 4x16x80; patch embed 6x16x1280+1280;
# TimeEmbedding 192x1280+1280 + 1280^2+1280; map_vector 768x1280+1280 + 1280^2+1280; final layer 1280x48+48 and
# adaLN 1280x2560+2560; cross-lr: proj_lr 3x4x1280+1280, query 1280^2+1280, key_value 1280x2560+2560,
# dense 1280^2+1280, post_cross_attention_layernorm 2560, q/k position embeddings 1024x1280 and 2304x1280, cross
# q/k LN 2x160. Not counted: the frozen OpenCLIP image encoder and SAT's unused word / position tables.
OFFICIAL_PARAMS = (28 * (1280 * 3840 + 3840 + 1280 ** 2 + 1280 + 1280 * 5120 + 5120 + 5120 * 1280 + 1280
                         + 1280 * 5120 + 5120 + 2 * 160 + 4 * 16 * 80)
                   + 6 * 16 * 1280 + 1280 + 192 * 1280 + 1280 + 1280 ** 2 + 1280 + 768 * 1280 + 1280 + 1280 ** 2 + 1280
                   + 1280 * 48 + 48 + 1280 * 2560 + 2560
                   + 3 * 4 * 1280 + 1280 + 1280 ** 2 + 1280 + 1280 * 2560 + 2560 + 1280 ** 2 + 1280 + 2560
                   + 1024 * 1280 + 2304 * 1280 + 2 * 160)


def test_full_profile_is_the_official_model():
    from papers.inf_dit.train import build

    cfg = load_config(InfDiTConfig, paper="inf_dit", overrides=["profile=full"], root=REPO)
    net = build(cfg, 3, meta=True)
    ours = sum(p.numel() for n, p in net.named_parameters() if not n.startswith("lr_encoder"))
    assert ours == OFFICIAL_PARAMS  # e(LR) replaces the frozen OpenCLIP: the only extra module
    assert (cfg.net.depth, cfg.net.dim, cfg.net.heads, cfg.net.patch_size, net.block_px) == (28, 1280, 16, 4, 128)


def test_full_profile_two_steps_of_a_shallow_instance():
    """Two training steps at batch 1 through the stage's loss on one 128-px block: full width and heads, 1 layer."""
    from papers.inf_dit.method import sr_loss
    from papers.inf_dit.train import build

    cfg = load_config(InfDiTConfig, paper="inf_dit", overrides=["profile=full", "net.depth=1"], root=REPO)
    torch.manual_seed(0)
    net = build(cfg, 3)
    edm = EDM.from_config(cfg.edm)
    opt = torch.optim.SGD(net.parameters(), lr=1e-4)
    hr = torch.rand(1, 3, 128, 128) * 2 - 1
    for step in range(2):
        loss = sr_loss(net, edm, hr, torch.Generator().manual_seed(step))
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert torch.isfinite(loss)


# --------------------------------------------------------------------------- the pipeline, tiny
@pytest.mark.e2e
def test_tiny_pipeline(tmp_path):
    """prepare_data -> train_classifier -> train -> benchmark -> evaluate -> report on the tiny profile, in-process."""
    from tinyrepo import inside, make_tiny_repo

    root = make_tiny_repo(tmp_path / "repo")
    from common.stages import prepare_data, train_classifier
    from papers.inf_dit import benchmark, evaluate, report, train

    with inside(root):
        for stage in (prepare_data, train_classifier, train, benchmark, evaluate, report):
            stage.main([])
    res = json.loads((root / "reports/inf_dit/results.json").read_text())
    eq = [r for r in res["rows"] if r["comparison"] == "equivalence"]
    assert len(eq) == 3 and all(r["max_abs_diff"] < 1e-5 and r["cache_excess"] == 0 for r in eq)
    verdicts = json.loads((root / "reports/inf_dit/verdicts.json").read_text())["verdicts"]
    assert len(verdicts) == 8
    for fig in ("memory", "loss", "seams"):
        assert (root / f"reports/inf_dit/figures/{fig}.png").stat().st_size > 1000
