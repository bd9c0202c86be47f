"""The one table renderer: rows of strings as aligned plain text or as Markdown.

Every table the tool prints or writes (bench, eval, compare, run) comes from here, so they all
look alike: names left, numbers right (the columns line up by magnitude), a dashed rule under
the header, and optional footer rows (totals, means) under a second rule. Callers format their
own numbers; this module only lays out strings.
"""

from __future__ import annotations

from collections.abc import Sequence

Row = Sequence[str]


def _check(head: Row, rows: Sequence[Row]) -> None:
    for row in rows:
        if len(row) != len(head):
            raise ValueError(f"row {list(row)!r} has {len(row)} cells; the header has {len(head)}")


def text_table(head: Row, rows: Sequence[Row], *, left: int = 1,
               footer: Sequence[Row] = ()) -> str:
    """A fixed-width table for terminals: the first `left` columns (names) aligned left, the
    rest (numbers) right; `footer` rows come under a second rule."""
    _check(head, [*rows, *footer])
    widths = [max(len(c) for c in col) for col in zip(head, *rows, *footer, strict=True)]

    def fmt(row: Row) -> str:
        return "  ".join(c.ljust(w) if i < left else c.rjust(w)
                         for i, (c, w) in enumerate(zip(row, widths, strict=True))).rstrip()

    rule = "  ".join("-" * w for w in widths)
    lines = [fmt(head), rule, *map(fmt, rows)]
    if footer:
        lines += [rule, *map(fmt, footer)]
    return "\n".join(lines)


def markdown_table(head: Row, rows: Sequence[Row], *, left: int = 1) -> str:
    """A GitHub-flavoured Markdown table (no trailing newline), aligned as `text_table`; cells
    are not padded."""
    _check(head, rows)
    marks = ["---" if i < left else "---:" for i in range(len(head))]

    def fmt(row: Row) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in row) + " |"

    return "\n".join([fmt(head), "|" + "|".join(marks) + "|", *map(fmt, rows)])
