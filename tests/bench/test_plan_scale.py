"""`make bench-plan` at a tiny size, so it cannot rot: a generated prefect.yaml with a few more
deployments than the repository's, applied, planned and applied again on a real server. How
fast is the bench's business, never asserted here."""

from __future__ import annotations

import yaml

from bench import plan_scale


def test_the_scaled_file_declares_numbered_copies(tmp_path) -> None:
    raw = yaml.safe_load(plan_scale.scaled_prefect_yaml(tmp_path, 5).read_text())
    names = [d["name"] for d in raw["deployments"]]
    assert names == [
        "compute-squares",
        "greeting-schedule",
        "compute-squares-1",
        "greeting-schedule-1",
        "compute-squares-2",
    ]


def test_plan_and_a_no_op_apply_of_a_few_deployments(tmp_path) -> None:
    tmp_path.chmod(0o701)  # as root, the database runs as postgres, which passes through
    figures = plan_scale.measure(4, tmp_path)
    assert figures["deployments"] == 4
    assert all(figures[name] > 0 for name in ("first apply", "plan", "no-op apply"))
    assert "| plan (median of 3) |" in plan_scale.render(figures)
