"""deployments/check.py names the file and the field of a broken prefect.yaml."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
import yaml

from deployments import settings
from deployments.check import check_spec
from deployments.spec import SpecError, load_raw


def _write(tmp_path: Path, deployments: list[dict]) -> Path:
    raw = load_raw()
    raw["deployments"] = deployments
    path = tmp_path / "prefect.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


# The cases below build their deployment in the test, so that a broken repository prefect.yaml
# fails tests instead of collection.
def _squares(**overrides) -> dict:
    (raw,) = [d for d in load_raw()["deployments"] if d["name"] == "compute-squares"]
    return {**raw, **overrides}


def test_the_repository_prefect_yaml_passes() -> None:
    assert set(check_spec()) == {"compute-squares", "greeting-schedule"}


@pytest.mark.parametrize(
    ("deployment", "named"),
    [
        (
            partial(_squares, entrypoint="flows/nope.py:compute_squares"),
            "deployments[0].entrypoint",
        ),
        (partial(_squares, entrypoint="flows/squares.py:no_such_flow"), "cannot be loaded"),
        (partial(_squares, entrypoint="flows/squares.py:square_number"), "is not a flow"),
        (partial(_squares, entrypoint="flows/squares.py"), "path/to/file.py:flow_function"),
        (
            partial(_squares, concurrency_limit={"limit": 2, "collision_strategy": "DROP"}),
            "deployments[0].concurrency_limit.collision_strategy",
        ),
        (partial(_squares, concurrency_limit={"limit": "two"}), "deployments[0].concurrency_limit"),
        (partial(dict, name="no-entrypoint", version="1"), "missing required field 'entrypoint'"),
        (
            partial(_squares, tags=["squares"]),
            "deployments[0].tags ('compute-squares'): add 'managed-by:",
        ),
    ],
    ids=[
        "missing-file",
        "missing-function",
        "not-a-flow",
        "no-function",
        "bad-collision-strategy",
        "bad-limit",
        "no-entrypoint",
        "no-owner-tag",
    ],
)
def test_broken_deployment_is_named(tmp_path: Path, deployment: partial, named: str) -> None:
    path = _write(tmp_path, [deployment()])
    with pytest.raises(SpecError) as error:
        check_spec(path)
    assert str(error.value).startswith("prefect.yaml")
    assert named in str(error.value)


def test_unparsable_yaml_is_named(tmp_path: Path) -> None:
    path = tmp_path / "prefect.yaml"
    path.write_text(settings.PREFECT_YAML.read_text().replace("deployments:", "deployments: ["))
    with pytest.raises(SpecError, match=r"prefect\.yaml: cannot be read as YAML"):
        check_spec(path)
