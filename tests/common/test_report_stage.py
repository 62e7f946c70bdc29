"""The shared report stage: templates render into (title, intro, sections) and fail loudly."""

import pytest

from common.dvc_deps import import_closure
from common.report_stage import TemplateError, render_template


def test_template_splits_title_intro_and_sections(tmp_path):
    t = tmp_path / "report.md"
    t.write_text("{# a comment for maintainers #}\n# Title {{ name }}\n\nIntro with {{ x | fmt }}.\n\n"
                 "## Results\n\n{{ table }}\n\n## Reading\n\n{% if good %}holds{% else %}fails{% endif %}\n")
    title, intro, sections = render_template(t, name="A", x=0.123456, table="| a |", good=False)
    assert title == "Title A"
    assert intro == "Intro with 0.123."
    assert sections == ["## Results\n\n| a |", "## Reading\n\nfails"]


def test_unknown_placeholder_names_the_template(tmp_path):
    t = tmp_path / "report.md"
    t.write_text("# T\n\n{{ missing }}\n")
    with pytest.raises(TemplateError, match=r"report\.md.*missing"):
        render_template(t)


def test_template_needs_a_title(tmp_path):
    t = tmp_path / "report.md"
    t.write_text("no title\n")
    with pytest.raises(TemplateError, match="title"):
        render_template(t)


def test_report_template_is_a_dvc_dep_of_its_module(tmp_path):
    pkg = tmp_path / "papers" / "x"
    pkg.mkdir(parents=True)
    (tmp_path / "papers" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "report.py").write_text("import papers.x.method\n")
    (pkg / "report.md").write_text("# T\n")
    (pkg / "method.py").write_text("")
    (pkg / "README.md").write_text("# not a template\n")
    files = import_closure(tmp_path, "papers.x.report").files
    assert files == {"papers/x/report.py", "papers/x/report.md", "papers/x/method.py"}


def test_protocol_section_becomes_the_card(tmp_path):
    from common.report_stage import sampling_card, split_protocol

    t = tmp_path / "report.md"
    t.write_text("# T\n\nIntro.\n\n## Results\n\nr\n\n## Protocol\n\n- sampler: ddim, {{ n }} steps\n{{ card }}\n")
    card = sampling_card({"base_model_step": 7, "backbone": "b", "num_reference": 9, "model_calls": 12345,
                          "eval_seconds": 3.4})
    title, intro, sections = render_template(t, n=10, card=card)
    rest, protocol = split_protocol(t, sections)
    assert rest == ["## Results\n\nr"]
    assert protocol == {"sampler": "ddim, 10 steps", "base model": "models/base_model (step 7)",
                        "feature extractor": "b", "reference set": "held-out split, 9 images",
                        "model calls": "12,345", "wall time (evaluate)": "3 s"}
    t.write_text("# T\n\n## Protocol\n\nnot a key-value line\n")
    with pytest.raises(TemplateError, match="not '- key: value'"):
        split_protocol(t, render_template(t)[2])


def test_the_report_stage_knows_its_paper_from_the_calling_module():
    from common.report_stage import _calling_paper

    def load():  # stands in for ReportStage.load, called from a module papers.<paper>.report
        return _calling_paper()

    g = {"__name__": "__main__", "__spec__": type("Spec", (), {"name": "papers.cads.report"})(), "load": load}
    assert eval("load()", g) == "cads"
    with pytest.raises(ValueError, match="pass paper="):
        eval("load()", {"__name__": "tools.x", "__spec__": None, "load": load})
