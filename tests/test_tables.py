"""`ocrnet.tables`: the one renderer behind bench, eval, compare and run tables."""

from __future__ import annotations

import pytest

from ocrnet.tables import markdown_table, text_table


def test_text_table_aligns_names_left_numbers_right() -> None:
    text = text_table(["model", "prec", "img/s"], [["a", "fp32", "1.5"], ["long-name", "int8",
                                                                          "12.25"]],
                      left=2, footer=[["mean", "", "6.9"]])
    assert text.splitlines() == [
        "model      prec  img/s",
        "---------  ----  -----",
        "a          fp32    1.5",
        "long-name  int8  12.25",
        "---------  ----  -----",
        "mean               6.9",
    ]


def test_markdown_table() -> None:
    md = markdown_table(["class", "a|b"], [["road", "98.10"]])
    assert md.splitlines() == ["| class | a\\|b |", "|---|---:|", "| road | 98.10 |"]


def test_ragged_rows_are_a_bug() -> None:
    with pytest.raises(ValueError, match="2 cells; the header has 3"):
        text_table(["a", "b", "c"], [["1", "2"]])
