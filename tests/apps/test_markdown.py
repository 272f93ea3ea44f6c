"""Tables for people: wide Markdown tables are cut between columns to fit 80 columns."""

from __future__ import annotations

from hcm.apps.markdown import latex_table, markdown_table


def test_a_wide_table_is_split_between_columns_without_cutting_a_number() -> None:
    headers = ["seed"] + [f"metric{i}" for i in range(12)]
    rows = [[str(seed)] + [f"{seed * 10.123456 + i:.4f}" for i in range(12)] for seed in (1111, 1112)]
    text = markdown_table(headers, rows)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    blocks = text.strip().split("\n\n")
    assert len(blocks) > 1 and all(block.startswith("| seed") for block in blocks)
    cells = {cell.strip() for line in lines for cell in line.split("|")}
    assert all(value in cells for row in rows for value in row)  # every number whole, in some part


def test_numbers_right_text_left() -> None:
    text = markdown_table(["trial", "state", "value"], [["0", "complete", "1.25"], ["10", "pruned", "-"]])
    assert text.splitlines()[1] == "|-------|----------|------:|"
    assert "| 10    | pruned   |     - |" in text


def test_latex_escapes() -> None:
    tex = latex_table(["metric", "95 % CI"], [["w-F1", "68.9 ± 0.4"]], caption="a_b")
    assert r"95 \% CI" in tex and r"68.9 $\pm$ 0.4" in tex and r"\caption{a\_b}" in tex
