"""The paper's numbers (configs/paper/results.csv) against the paper's text, and seed statistics."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from scipy import stats

from hcm.training.paper_results import (
    load_paper_numbers,
    paper_datasets,
    paper_numbers,
    seed_summary,
    show,
)
from hcm.training.settings import load_dataset_facts


@pytest.fixture(scope="module")
def paper_text(shared_fixtures: Path) -> str:
    """The paper's text beside the shared fixtures (skipped where absent, failed in CI as they are)."""
    return (shared_fixtures.parent / "paper" / "hcmnet-aaai2025.md").read_text(encoding="utf-8")


def html_table_before(text: str, caption: str) -> str:
    """The HTML table printed just before ``caption`` (Tables 2 and 3)."""
    at = text.index(caption)
    start = text.rfind("<table>", 0, at)
    return text[start:text.index("</table>", start)]


def cells(row_html: str) -> list[str]:
    return re.findall(r"<td[^>]*>(.*?)</td>", row_html)


def hcmnet_row(table_html: str) -> list[str]:
    rows = re.findall(r"<tr>(.*?)</tr>", table_html)
    (row,) = [r for r in rows if cells(r) and cells(r)[0] == "HCMNet"]
    return cells(row)[1:]


def file_values(table: int, dataset: str, variant: str = "full") -> list[float]:
    return [n.value for n in load_paper_numbers() if (n.table, n.dataset, n.variant) == (table, dataset, variant)]


def test_tables_2_and_3_match_the_printed_hcmnet_rows(paper_text: str) -> None:
    table2 = hcmnet_row(html_table_before(paper_text, "Table 2: Results on IEMOCAP and MELD"))
    assert [float(v) for v in table2] == file_values(2, "iemocap") + file_values(2, "meld")
    table3 = hcmnet_row(html_table_before(paper_text, "Table 3: Results on MOSEI"))
    assert [float(v) for v in table3] == file_values(3, "mosei")


def test_table_4_holds_the_printed_numbers_in_row_order(paper_text: str) -> None:
    """The printed Table 4 lost its row breaks: its numbers, read in order, are each dataset's
    rows in the file's order (full, ACM-only, CCM-only, then w/o ACL, w/o graph, w/o CDC)."""
    start = paper_text.index("Table 4: Experiment results of ablation study")
    html = paper_text[paper_text.index("<table>", start):paper_text.index("</table>", start)]
    rows = [cells(r) for r in re.findall(r"<tr>(.*?)</tr>", html)][2:]
    numbers = {"iemocap": [], "meld": []}
    for row in rows:
        numbers["iemocap"] += [float(v) for v in row[1].split()]
        numbers["meld"] += [float(v) for v in row[2].split()]
    variants = ["full", "acm-only", "ccm-only", "no-acl", "no-graph", "no-cdc"]
    for dataset in ("iemocap", "meld"):
        assert numbers[dataset] == [v for variant in variants for v in file_values(4, dataset, variant)]


def test_metric_names_are_the_datasets_metrics() -> None:
    for number in load_paper_numbers():
        facts = load_dataset_facts(number.dataset)
        known = {"accuracy", "weighted_f1", *(f"f1_{c}" for c in facts.class_names)} if facts.class_names else \
            {"mae", "corr", "acc7", "acc2_non0", "f1_non0"}
        assert number.metric in known, number
        assert 0 <= number.fraction <= 1


def test_lookups() -> None:
    assert paper_datasets() == ["iemocap", "meld", "mosei"]
    meld = paper_numbers("meld")
    assert [n.metric for n in meld][-2:] == ["weighted_f1", "accuracy"]  # Table 2, then Table 4's ACC
    assert [n.table for n in meld].count(2) == 8 and meld[-1].fraction == pytest.approx(0.6831)
    assert [n.metric for n in paper_numbers("iemocap", "no-cdc")] == ["accuracy", "weighted_f1"]
    assert paper_numbers("mosei", "no-cdc") == []


def test_a_malformed_file_names_its_line(tmp_path: Path) -> None:
    bad = tmp_path / "results.csv"
    bad.write_text("table,dataset,variant,column,metric,value,unit\n2,meld,full,w-F1,weighted_f1,sixty,%\n")
    with pytest.raises(ValueError, match="line 2"):
        load_paper_numbers(bad)
    bad.write_text("dataset,value\n")
    with pytest.raises(ValueError, match="header"):
        load_paper_numbers(bad)


def test_seed_summary_is_the_student_t_interval() -> None:
    values = [0.61, 0.64, 0.60, 0.66, 0.63]
    summary = seed_summary(values)
    mean, sem = sum(values) / 5, stats.sem(values)
    low, high = stats.t.interval(0.95, df=4, loc=mean, scale=sem)
    assert summary.n == 5 and summary.mean == pytest.approx(mean)
    assert summary.std == pytest.approx(stats.tstd(values))
    assert (summary.low, summary.high) == (pytest.approx(low), pytest.approx(high))
    one = seed_summary([0.5, math.nan])
    assert one.n == 1 and one.std == 0.0 and math.isnan(one.low)


def test_show_uses_the_papers_units() -> None:
    assert show("mae", 0.48912) == "0.489"
    assert show("weighted_f1", 0.6894) == "68.94"
    assert show("corr", math.nan) == "-"
