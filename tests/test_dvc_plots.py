"""Every paper declares its main curves as DVC plots (`dvc plots show` / `dvc plots diff` between commits)."""

from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PIPELINES = sorted(REPO.glob("papers/*/dvc.yaml"))


@pytest.mark.parametrize("dvc_yaml", PIPELINES, ids=lambda p: p.parent.name)
def test_main_curves_are_dvc_plots_written_by_the_report_stage(dvc_yaml):
    spec = yaml.safe_load(dvc_yaml.read_text())
    plots = [next(iter(p)) if isinstance(p, dict) else p for p in spec.get("plots", [])]
    assert plots, f"{dvc_yaml.relative_to(REPO)} declares no plots"
    outs = {next(iter(o)) if isinstance(o, dict) else o for o in spec["stages"]["report"]["outs"]}
    for plot in plots:
        path = (dvc_yaml.parent / plot).resolve().relative_to(REPO)
        assert str(path.parent) in outs, f"{plot}: not inside an out of the report stage"
        assert (REPO / path).is_file(), f"{plot}: the committed report has no such figure"
