"""A full `make bench` writes its table and reasons into docs/performance.md, between the markers
and nowhere else, and its plot next to it."""

from __future__ import annotations

from bench import run

START, END = f"<!-- {run.DOC_BLOCK}: start -->", f"<!-- {run.DOC_BLOCK}: end -->"


def test_the_table_replaces_only_what_is_between_the_markers(tmp_path, monkeypatch) -> None:
    doc = tmp_path / "performance.md"
    doc.write_text(f"# Before\n\n{START}\nold table\n{END}\n\n## After\n")
    png = tmp_path / "bench-run.png"
    png.write_bytes(b"plot")
    monkeypatch.setattr(run, "PERFORMANCE_DOC", doc)
    results = {
        "machine": "2 cores, 3.11.7, x86_64",
        "size": {"latency_runs": 30, "throughput_runs": 100},
        "table": "| metric | a |\n|---|---|\n| p50 | 1.00 s |",
        "unmet": ["p50 too slow: because"],
        "requests_table": "| request | a |\n|---|---|\n| `GET /api/flows/{id}` | 2.0 |",
    }
    run.write_docs(results, png)
    text = doc.read_text()
    assert text.startswith("# Before\n\n") and text.endswith("\n\n## After\n")
    assert "old table" not in text
    assert "`make bench` on 2 cores, 3.11.7, x86_64, 30 sequential runs and 100 at once" in text
    assert "| p50 | 1.00 s |" in text and "- p50 too slow: because\n" in text
    assert "The requests of one say-hello run" in text and "| `GET /api/flows/{id}` | 2.0 |" in text
    assert (tmp_path / "bench.png").read_bytes() == b"plot"
    run.write_docs({**results, "unmet": []}, png)  # again: the markers are kept
    again = doc.read_text()
    assert again.count(START) == 1 == again.count(END) and "Every target met." in again


def test_ci_phases_are_written_with_their_total_and_budgets(tmp_path, monkeypatch) -> None:
    from tests import ci_phases

    doc = tmp_path / "testing.md"
    start, end = f"<!-- {ci_phases.DOC_BLOCK}: start -->", f"<!-- {ci_phases.DOC_BLOCK}: end -->"
    doc.write_text(f"# CI\n{start}\nold\n{end}\nafter\n")
    phases = tmp_path / "ci-phases.tsv"
    phases.write_text(
        "make lint\t40\t50\t9000\nmake test\t630\t100\t8500\nmake long\t1500\t80\t3072\n"
    )
    monkeypatch.setattr(ci_phases, "DOC", doc)
    monkeypatch.setattr(ci_phases, "PHASES", phases)
    assert ci_phases.main() == 0
    text = doc.read_text()
    assert "\nold\n" not in text and text.endswith(f"{end}\nafter\n")
    assert "| `make lint` | 0 min 40 s | 50 % | 8.8 GiB | – |" in text
    assert "| `make test` | 10 min 30 s | 100 % | 8.3 GiB | 10 min 0 s: OVER |" in text
    # busy over the whole run: each phase's weighted by its time; the least free disk of all
    assert "| `.ci/run` | 36 min 10 s | 85 % | 3.0 GiB | 35 min 0 s: OVER |" in text
