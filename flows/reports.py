"""What the flows show in the UI's Artifacts tab, as plain functions of their results.

Artifacts stay small whatever the input size: tables show at most `TABLE_ROWS_SHOWN` rows and
say how many were left out, so a long run cannot bloat the database or the UI.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

TABLE_ROWS_SHOWN = 100

# Characters that start emphasis, code, links, headings, tables or quotes in Markdown.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]#|~>])")


def escape_markdown(text: str) -> str:
    """`text` rendered literally in Markdown: no formatting, links or HTML from user input."""
    text = _MARKDOWN_SPECIAL.sub(r"\\\1", text)
    return text.replace("&", "&amp;").replace("<", "&lt;")


def squares_table(
    numbers: Sequence[int], squares: Sequence[int], limit: int = TABLE_ROWS_SHOWN
) -> list[dict[str, int]]:
    """The first `limit` (number, square) pairs, as table rows."""
    return [
        {"number": n, "square": s} for n, s in zip(numbers[:limit], squares[:limit], strict=True)
    ]


def squares_summary(squares: Sequence[int], limit: int = TABLE_ROWS_SHOWN) -> str:
    """A Markdown summary of a compute_squares result: count, sum, min and max."""
    if not squares:
        return "## Squares\n\nNo numbers were given, so there is nothing to square.\n"
    lines = [
        "## Squares",
        "",
        "| statistic | value |",
        "|---|---|",
        f"| count | {len(squares)} |",
        f"| sum | {sum(squares)} |",
        f"| min | {min(squares)} |",
        f"| max | {max(squares)} |",
    ]
    if len(squares) > limit:
        lines += ["", f"The table artifact shows the first {limit} of {len(squares)} results."]
    return "\n".join(lines) + "\n"


def greeting_summary(name: str, message: str) -> str:
    """A Markdown note of who was greeted and how."""
    return f"## Greeting\n\n{escape_markdown(message)}\n\nGreeted: **{escape_markdown(name)}**\n"


def progress_checkpoints(total: int, steps: int) -> set[int]:
    """The completed-task counts at which to update a progress bar: about `steps` updates,
    the last one at `total`, so a long run makes a bounded number of API calls."""
    if total <= 0:
        return set()
    return {max(1, round(total * step / steps)) for step in range(1, steps + 1)} | {total}
