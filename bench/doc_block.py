"""The generated parts of docs/: each sits between an HTML-comment start and end marker, and the
run that measured it rewrites only what lies between them (`make bench`, `make bench-plan`,
`make faults`)."""

from __future__ import annotations

from pathlib import Path


def write_block(doc: Path, name: str, body: str) -> None:
    """Replace what `doc` holds between `<!-- NAME: start -->` and `<!-- NAME: end -->` (the
    markers stay) with `body`."""
    start_marker, end_marker = f"<!-- {name}: start -->", f"<!-- {name}: end -->"
    text = doc.read_text()
    start = text.index(start_marker) + len(start_marker)
    end = text.index(end_marker)
    doc.write_text(f"{text[:start]}\n{body.strip()}\n{text[end:]}")


def markdown_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    """A Markdown table: the header, its rule, a line per row."""
    lines = [f"| {' | '.join(header)} |", "|" + "---|" * len(header)]
    return "\n".join([*lines, *(f"| {' | '.join(row)} |" for row in rows)])
