"""The one-step comparison page (papers/one_step_comparison): each method's settings by its own paper's rule, the
equal-compute budget, PaGoDA's VP -> VE adaptor of the shared teacher, the claims' pairs and the report template."""

import json
from pathlib import Path

import pytest
import torch

from common.claims import load_claims
from common.config import UserError, load_config
from common.diffusion import NoiseSchedule
from common.report_stage import render_template
from papers.one_step_comparison import pagoda_shared
from papers.one_step_comparison.config import OneStepComparisonConfig
from papers.one_step_comparison.evaluate import PAIRS, same_protocol
from papers.one_step_comparison.selection import inversion_points, paper_configs, settings

REPO = Path(__file__).parents[2]
NAME = "one_step_comparison"
# data/teacher_pairs/meta.json of the cpu profile (root params.yaml teacher_pairs: 2,500 train pairs, DDIM-25)
PAIRS_META = {"counts": {"train": 2500, "heldout": 500}, "nfe": 25, "guidance_scale": 1.0, "method": "ddim"}


def cfg_of(*overrides):
    return load_config(OneStepComparisonConfig, paper=NAME, overrides=list(overrides), root=REPO)


def fixture_reports(tmp_path: Path) -> Path:
    """Minimal results.json of the two reused papers (the keys `settings` reads)."""
    for paper in ("diffusion2gan", "imagine_flash"):
        (tmp_path / paper).mkdir(parents=True)
        (tmp_path / paper / "results.json").write_text(json.dumps(
            {"rows": [], "metric": "fid[x]", "num_reference": 1000, "backbone": "x", "floor_samples": 500}))
    return tmp_path


# --------------------------------------------------------------------------- settings: each paper's own rule
def test_settings_follow_each_papers_rule(tmp_path):
    cfg, papers = cfg_of(), paper_configs([])
    s = settings(cfg, papers, PAIRS_META, fixture_reports(tmp_path))
    d2g, imf, pg = papers["diffusion2gan"], papers["imagine_flash"], papers["pagoda"]
    # Diffusion2GAN: its full method = the method arm of its last claim comparison (gan_vs_elpips), final step
    assert s["diffusion2gan"]["arm"] == "gan" and s["diffusion2gan"]["step"] == d2g.train.steps
    # Imagine Flash: backward + SRL (the method arm of its comparisons), noise correction on, its k grid
    assert s["imagine_flash"] == {**s["imagine_flash"], "arm": "backward_srl", "nc": True,
                                  "k": list(imf.eval.step_counts)}
    # PaGoDA: papers/pagoda's decoder recipe, Diffusion2GAN's steps and batch, the pairs' number of examples
    p = s["pagoda"]
    assert (p["gan_weight"], p["adaptive_clip"], p["disc_t"], p["lr"], p["ema_decay"]) == (
        pg.decoder.gan_weight, list(pg.decoder.adaptive_clip), pg.decoder.disc_t, pg.decoder.base.lr,
        pg.decoder.base.ema_decay)
    assert (p["steps"], p["batch_size"], p["num_inverted"]) == (d2g.train.steps, d2g.train.batch_size, 2500)
    # 2,500 images x 2 (n - 1) Heun calls <= 2,500 x 25 pair calls -> n = 13 (the paper's 40 would cost 78 per image)
    assert p["inversion_points"] == 13 and s["teacher_pairs"]["teacher_calls"] == 62500
    assert s["train_seeds"] == sorted(d2g.train_seeds)  # the reused students' seeds
    # Imagine Flash: retrained at Diffusion2GAN's compute F = 3 x 120 x 16 + 62,500 = 68,260
    assert s["diffusion2gan_compute"] == 68260 and s["imagine_flash"]["steps"] == 474


def test_an_override_in_params_wins(tmp_path):
    cfg = cfg_of("methods.diffusion2gan_arm=e_latent_lpips", "methods.imagine_flash_nc=false", "pagoda.steps=7",
                 "pagoda.inversion_points=5", "train_seeds=[1]")
    s = settings(cfg, paper_configs([]), PAIRS_META, fixture_reports(tmp_path))
    assert s["diffusion2gan"]["arm"] == "e_latent_lpips" and s["imagine_flash"]["nc"] is False
    assert s["pagoda"]["steps"] == 7 and s["pagoda"]["inversion_points"] == 5 and s["train_seeds"] == [1]


def test_an_unknown_arm_is_refused(tmp_path):
    with pytest.raises(UserError, match="diffusion2gan_arm"):
        settings(cfg_of("methods.diffusion2gan_arm=nope"), paper_configs([]), PAIRS_META, fixture_reports(tmp_path))


def test_a_missing_upstream_file_names_the_stage_that_makes_it(tmp_path):
    with pytest.raises(UserError, match="papers/diffusion2gan/dvc.yaml:evaluate"):
        settings(cfg_of(), paper_configs([]), PAIRS_META, tmp_path)


def test_inversion_budget():
    assert inversion_points(62500, 2500, 40) == 13  # 2 x 12 = 24 calls per image <= 25
    assert inversion_points(10 ** 9, 10, 40) == 40  # never more than the paper's own grid
    assert inversion_points(1, 10, 40) == 2  # at least one Heun interval


@pytest.mark.parametrize("profile", ["cpu", "tiny", "full"])
def test_params_load_for_every_profile(profile):
    cfg = cfg_of(f"profile={profile}")
    assert set(cfg.teacher_samplers.samplers) <= {"ddim", "dpm_solver_2m"} and min(cfg.teacher_samplers.nfe) == 1


# --------------------------------------------------------------------------- PaGoDA on the shared teacher
class StubTeacher:
    """The shared teacher's interface (common.teacher_pairs.Teacher) with a fixed eps prediction."""

    def __init__(self, eps_scale: float):
        self.schedule, self.eps_scale = NoiseSchedule(1000), eps_scale

    def x0(self, x_t, t, label, clip=False):
        return self.schedule.predict_x0(x_t, self.eps_scale * x_t, t)


def test_the_vp_teacher_is_an_edm_denoiser_in_ve_coordinates():
    """eps = 0: x0 = x_vp / alpha_t = x_ve, so D(x_ve; sigma) = x_ve (the identity denoiser) at every sigma."""
    teacher = StubTeacher(0.0)
    x = torch.randn(3, 1, 4, 4)
    d = pagoda_shared.VPDenoiser(teacher, None)
    for t in (0, 400, 999):
        sigma = torch.full((3, 1, 1, 1), float(pagoda_shared.vp_sigmas(teacher)[t]))
        torch.testing.assert_close(d(x, sigma), x)
    with pytest.raises(ValueError, match="discrete sigmas"):
        d(x, torch.full((3, 1, 1, 1), 1.2345))


def test_inversion_grid_is_the_karras_grid_on_the_teachers_timesteps():
    ts = pagoda_shared.inversion_grid(StubTeacher(0.0), 13, 7.0)
    assert ts[0] == 0 and ts[-1] == 999 and ts == sorted(set(ts)) and len(ts) == 13
    # with the identity denoiser the PF-ODE is dx/dsigma = 0: z = x0 / sigma_max
    x0 = torch.randn(2, 1, 4, 4)
    z = pagoda_shared.invert(StubTeacher(0.0), x0, None, ts)
    torch.testing.assert_close(z, x0 / float(pagoda_shared.vp_sigmas(StubTeacher(0.0))[-1]))


def test_decoder_is_the_diffusion2gan_student_with_pagodas_last_layer():
    from test_diffusion2gan import tiny_unet

    dec = pagoda_shared.Decoder(tiny_unet(), 1000)
    assert dec.last_layer() is dec.unet.conv_out.weight
    assert dec(torch.randn(2, 1, 8, 8), torch.tensor([0, 1])).shape == (2, 1, 8, 8)


# --------------------------------------------------------------------------- claims, pairs, protocol, template
def test_claims_read_the_evaluate_stages_comparisons():
    claims = load_claims(REPO / "papers" / NAME / "claims.yaml")
    assert 3 <= len(claims) <= 6 and {c["test"]["unit"] for c in claims} == {"train_seed"}
    assert {c["test"]["where"]["comparison"] for c in claims} == {p[0] for p in PAIRS}


def test_reuse_only_when_the_protocol_matches():
    class Scorer:
        num_reference, backbone = 1000, "mnist-classifier"

    res = {"floor_samples": 500, "num_reference": 1000, "backbone": "mnist-classifier"}
    assert same_protocol(res, 500, Scorer())
    assert not same_protocol({**res, "floor_samples": 250}, 500, Scorer())
    assert not same_protocol({**res, "backbone": "inception"}, 500, Scorer())


def test_report_template_renders_the_protocol_last():
    s = {"train_seeds": [0, 1, 2], "teacher_pairs": {"teacher_calls": 62500},
         "diffusion2gan": {"arm": "gan", "step": 120},
         "imagine_flash": {"arm": "backward_srl", "k": [1, 2, 3], "nc": True, "steps": 474, "paper_steps": 100,
                           "batch_size": 32, "online_calls": 1.5}, "diffusion2gan_compute": 68260.0,
         "pagoda": {"steps": 120, "batch_size": 16, "num_inverted": 2500, "inversion_points": 13,
                    "paper_inversion_points": 40, "gan_weight": 0.2, "adaptive_clip": [0.01, 10.0], "disc_t": 0,
                    "lr": 5e-4, "lr_schedule": "constant", "ema_decay": 0.99}}
    res = {"num_samples": 500, "num_reference": 1000, "backbone": "b", "teacher_samplers": ["ddim"],
           "teacher_nfe": [1, 2], "teacher_spacing": "trailing", "floors": {"fid[b]": 0.13}, "floor_samples": 500,
           "eval_seconds": 12.0, "benchmark_seconds": 3.0}
    title, intro, sections = render_template(
        REPO / "papers" / NAME / "report.md", res=res, s=s, fid="fid[b]", n_units=3, metric_table="T1",
        sample_table="T2", train_table="T3", verdicts={}, reused={"diffusion2gan": True, "imagine_flash": False},
        n_reused=12, n_rows=40, leaders=[(1, 15.2, "D2G"), (2, 20.7, "DDIM")], train_seconds=100.0, inversion_seconds=50.0)
    assert title.startswith("One-step distillation") and intro.startswith("Not a paper")
    assert sections[-1].startswith("## Protocol") and "12 of 40 (papers/diffusion2gan evaluate rows" in sections[-1]
    assert "papers/imagine_flash: retrained here at equal compute" in sections[-1] and "62,500" in "\n".join(sections)
    assert "for 474 steps, the budget nearest Diffusion2GAN's F = 68,260" in "\n".join(sections)
    assert "1: D2G (15.2); 2: DDIM (20.7)." in "\n".join(sections)


def test_full_profile_stops_with_an_error_naming_what_is_missing():
    from common.config import UserError
    from papers.one_step_comparison import train

    with pytest.raises(UserError, match="full profile is not runnable yet.*SD1.5"):
        train.main(["profile=full"])


def test_imagine_flash_is_retrained_at_diffusion2gans_compute():
    """F = 3 x generator passes with gradient + no-grad calls (online per sample step, offline in total)."""
    from papers.one_step_comparison.selection import (
        equal_compute_steps,
        forward_equivalents,
        imagine_flash_online_calls,
    )

    d2g = forward_equivalents(120, 16, 1, 0.0, 62_500)  # 2,500 DDIM-25 pairs
    assert d2g == 3 * 1920 + 62_500 == 68_260
    online = imagine_flash_online_calls([1, 2, 3])  # one teacher call + E[(k - 1) / 2] student calls
    assert online == 1.5
    steps = equal_compute_steps(d2g, 32, 3 + online)
    assert steps == 474 and abs(forward_equivalents(steps, 32, 1, online, 0) - d2g) <= (3 + online) * 32 / 2
