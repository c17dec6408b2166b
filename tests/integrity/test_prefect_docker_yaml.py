"""prefect-docker.yaml: the Docker pool's deployments, built and pushed by prefect-docker's
steps, tagged by the code's digest; checked offline (the containers tests run them)."""

from __future__ import annotations

import pytest

from deployments import settings
from deployments.check import check_spec
from deployments.image_tag import image_tag
from deployments.settings import IMAGE_TAG_ENV
from deployments.spec import SpecError, load_deployments, load_raw, owner_tag

PATH = settings.REPO_ROOT / "prefect-docker.yaml"
RAW = load_raw(PATH)
ENV = {"FLOW_IMAGE_REPOSITORY": "127.0.0.1:5000/prefect-deployments", "FLOW_NETWORK": "flows"}


@pytest.fixture
def docker_env(monkeypatch) -> dict[str, str]:
    env = {**ENV, IMAGE_TAG_ENV: image_tag()}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def test_declares_the_tutorial_flows_on_a_docker_pool(docker_env) -> None:
    assert set(check_spec(PATH)) == {"compute-squares-docker", "say-hello-docker"}
    specs = load_deployments(PATH)
    assert {spec.entrypoint for spec in specs} == {
        "flows/squares.py:compute_squares",
        "flows/greetings.py:say_hello",
    }
    assert {spec.work_pool_name for spec in specs} == {"docker-pool"}
    pools = {pool["name"]: pool["type"] for pool in load_raw(PATH)["work_pools"]}
    assert pools == {"docker-pool": "docker"}
    assert owner_tag(PATH) != owner_tag()  # pruning one file never deletes the other's


def test_each_run_gets_the_image_of_this_code_in_a_container_of_its_own(docker_env) -> None:
    image = f"{docker_env['FLOW_IMAGE_REPOSITORY']}:{docker_env[IMAGE_TAG_ENV]}"
    for spec in load_deployments(PATH):
        variables = spec.job_variables
        assert variables["image"] == image
        assert variables["networks"] == [docker_env["FLOW_NETWORK"]]
        assert variables["auto_remove"] is True
        assert variables["image_pull_policy"] == "IfNotPresent"
        assert "env" not in variables, "no credentials in a deployment: the worker passes its own"


def test_built_and_pushed_with_prefect_docker_under_the_code_tag() -> None:
    (build,) = RAW["build"]
    (push,) = RAW["push"]
    step = build["prefect_docker.deployments.steps.build_docker_image"]
    assert step["tag"] == "{{ $" + IMAGE_TAG_ENV + " }}"
    assert step["pull"] is False  # the pinned base image as present locally
    assert "prefect_docker.deployments.steps.push_docker_image" in push


def test_image_tag_changes_with_the_code_and_is_never_latest(tmp_path) -> None:
    for name in ("pyproject.toml", "uv.lock", "Dockerfile", "prefect.yaml", "prefect.toml"):
        (tmp_path / name).write_bytes((settings.REPO_ROOT / name).read_bytes())
    (tmp_path / "flows").mkdir()
    flow = tmp_path / "flows" / "greetings.py"
    flow.write_text("def greet(): return 'hello'\n")
    before = image_tag(tmp_path)
    assert before == image_tag(tmp_path)
    flow.write_text("def greet(): return 'hello, again'\n")
    after = image_tag(tmp_path)
    assert after != before
    assert after.startswith("0.1.0-") and "latest" not in after


def test_unset_variable_is_named_before_anything_runs(monkeypatch) -> None:
    monkeypatch.delenv("FLOW_IMAGE_REPOSITORY", raising=False)
    with pytest.raises(SpecError, match=r"FLOW_IMAGE_REPOSITORY is not set"):
        check_spec(PATH)
