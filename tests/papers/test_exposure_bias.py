"""The comparison page's template: the data-driven 'Reading it' sentences (papers/exposure_bias/report.md)."""

from pathlib import Path

from common.report_stage import render_template

TEMPLATE = Path(__file__).parents[2] / "papers" / "exposure_bias" / "report.md"


def test_reading_sentences_follow_the_significant_nfes():
    res = {"num_samples": 8, "es_b": 1.01, "ts_window": 2, "ts_cutoff": 500, "floors": {"fid[x]": 0.1234},
           "floor_samples": 8, "nfe": [10, 20, 50], "model_calls": 1200, "eval_seconds": 3.2,
           "rows": [{"source": "ddpm_ip"}, {"source": "exposure_bias"}]}
    title, intro, sections = render_template(
        TEMPLATE, res=res, fid="fid[x]", n_units=2, n_cells=3, min_nfe=10, fid_table="T1", change_table="T2",
        other_table="T3", significant={"IP": ([], []), "ES": ([20, 50], []), "TS": ([50], [10]), "IP+ES": ([], [10])})
    assert title.startswith("Exposure bias") and intro.startswith("Not a paper")
    assert sections[0].startswith("## fid[x] at each NFE") and "0.123 (the metric's resolution" in sections[0]
    reading = next(s for s in sections if s.startswith("## Reading it")).splitlines()
    assert [line.split(" (95%")[0] for line in reading if line.startswith("- ")] == [
        "- **IP** vs no fix: no significant change at any NFE", "- **ES** vs no fix: better at NFE 20, 50",
        "- **TS** vs no fix: better at NFE 50; worse at NFE 10", "- **IP+ES** vs no fix: worse at NFE 10"]
    assert "| ES | baseline-trained | ε/λ, uniform λ = b | b = 1.01 (papers/epsilon_scaling sweep) |" in "\n".join(
        sections)
    assert sections[-1].startswith("## Protocol") and "- rows reused from papers/ddpm_ip: 1" in sections[-1]
