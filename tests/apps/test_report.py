"""`hcm report`: one self-contained HTML page with every section and the numbers of the runs' files."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hcm.apps.report import cell, latex_table, markdown_table
from hcm.cli import app

runner = CliRunner()


class References(HTMLParser):
    """Every URL-carrying attribute and every tag of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.urls += [value or "" for name, value in attrs if name in ("src", "href", "action", "data", "poster")]


def external_references(page: str) -> list[str]:
    parser = References()
    parser.feed(page)
    outside = [u for u in parser.urls if not (u.startswith("data:image/png;base64,") or u.startswith("#"))]
    return outside + re.findall(r"url\(\s*['\"]?(?!data:)[^)]*\)|@import", page)


def test_references_are_found_when_there_are_some() -> None:
    page = '<img src="https://x/y.png"><a href="#s">s</a><link href="style.css"><style>a{background:url(b.png)}</style>'
    assert external_references(page) == ["https://x/y.png", "style.css", "url(b.png)"]


def test_markdown_and_latex_tables_hold_the_same_cells() -> None:
    columns = [("mae", "MAE↓"), ("acc2_non0", "Acc-2 non0↑")]
    rows = [("HCMNet", {"mae": 0.5432, "acc2_non0": 0.81234})]
    assert markdown_table(columns, rows).splitlines()[2] == "| HCMNet | 0.543 | 81.23 |"
    latex = latex_table(columns, rows)
    assert r"MAE$\downarrow$ & Acc-2 non0$\uparrow$ \\" in latex and r"HCMNet & 0.543 & 81.23 \\" in latex


@pytest.mark.slow
def test_report_of_two_runs_is_self_contained_with_every_section(small_runs, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    result = runner.invoke(app, ["report", str(small_runs.full), str(small_runs.no_cdc), "--out", str(out)])
    assert result.exit_code == 0, result.output
    page = out.read_text(encoding="utf-8")
    assert external_references(page) == []
    assert "<script src" not in page and "<link" not in page
    for section in ('id="comparison"', 'id="run-1"', 'id="run-2"', "Overlaid curves", "Worst errors on test",
                    "as Markdown", "as LaTeX", "Command", "Provenance", "t-SNE", "best epoch"):
        assert section in page, section
    for run in (small_runs.full, small_runs.no_cdc):
        metrics = json.loads((run / "eval" / "test" / "metrics.json").read_text())["metrics"]
        assert f'<td class="num">{cell("mae", metrics["mae"])}</td>' in page
        assert f"| {run.name} (" in page  # the comparison row, as Markdown
    assert "words words" in page  # a transcript of a worst error, read from the cache
    assert "configs/paper/results.csv" in page and "<tr><td>paper</td>" not in page  # a sample run: no paper row


@pytest.mark.slow
def test_report_names_what_a_run_lacks(small_runs, tmp_path: Path) -> None:
    out = tmp_path / "valid.html"
    result = runner.invoke(app, ["report", str(small_runs.no_cdc), "--out", str(out), "--split", "valid"])
    assert result.exit_code == 0, result.output
    page = out.read_text(encoding="utf-8")
    assert "Not evaluated on valid" in page and f"hcm evaluate --run {small_runs.no_cdc} --split valid" in page


def test_a_folder_that_is_no_run_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["report", str(tmp_path), "--out", str(tmp_path / "r.html")])
    assert result.exit_code == 2 and "is not a run folder (no config.json)" in result.output
    assert not (tmp_path / "r.html").exists()
    bad = runner.invoke(app, ["report", str(tmp_path), "--out", str(tmp_path / "r.pdf")])
    unboxed = " ".join(re.sub("[│╭╮╰╯─]", " ", bad.output).split())  # the message as one line
    assert bad.exit_code == 2 and "must end in .html" in unboxed


def _report_of(dataset: str, variant: str, profile: str):
    from hcm.apps.report import RunReport, add_paper_numbers

    report = RunReport(name="r", path="r", config={"dataset": dataset, "profile": profile,
                                                   "model": {"variant": variant}},
                       command="", provenance=[], settings=[], epochs=[], best_epoch=None, split="test",
                       metrics={"metrics": {"weighted_f1": 0.5}, "baseline": {}}, columns=[])
    add_paper_numbers(report)
    return report


def test_a_run_of_a_paper_dataset_shows_the_paper_row_of_its_variant() -> None:
    from hcm.apps.report import metric_rows

    full = _report_of("meld", "full", "paper")
    assert dict(metric_rows(full))["paper"]["weighted_f1"] == pytest.approx(0.6894)  # Table 2, MELD w-F1 68.94
    assert not full.notes
    no_cdc = _report_of("iemocap", "no-cdc", "tiny")
    assert no_cdc.paper["accuracy"] != _report_of("iemocap", "full", "tiny").paper["accuracy"]
    assert any("only give the scale" in note for note in no_cdc.notes)
    assert "paper" not in dict(metric_rows(_report_of("sample", "full", "tiny")))
