"""prefect.yaml's own targets, offline: dev (the file as declared, make up's server), prod (the
compose stack's server) and docker (the same flows on its Docker pool, built and pushed by
prefect-docker's steps, tagged by the code's digest). The containers tests deploy prod and
docker for real."""

from __future__ import annotations

import pytest

from deployments import settings
from deployments.check import check_spec, check_targets
from deployments.image_tag import image_tag
from deployments.settings import IMAGE_TAG_ENV, TARGET_ENV
from deployments.spec import SpecError, chosen_target, load_deployments, load_raw, owner_tag

ENV = {
    "FLOW_IMAGE_REPOSITORY": "127.0.0.1:5000/prefect-deployments",
    "FLOW_NETWORK": "flows",
    "FLOW_REGISTRY": "127.0.0.1:5000",
    "REGISTRY_USER": "flows",
    "REGISTRY_PASSWORD": "a-registry-password",
}


@pytest.fixture
def target(monkeypatch):
    """Choose a target of the repository's prefect.yaml, as DEPLOYMENTS_TARGET does."""

    def choose(name: str) -> None:
        monkeypatch.setenv(TARGET_ENV, name)

    return choose


@pytest.fixture
def docker_env(monkeypatch, target) -> dict[str, str]:
    target("docker")
    env = {**ENV, IMAGE_TAG_ENV: image_tag()}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def test_dev_is_the_default_and_the_file_as_declared(monkeypatch) -> None:
    monkeypatch.delenv(TARGET_ENV, raising=False)
    assert chosen_target().name == "dev"
    assert owner_tag() == "managed-by:prefect-deployments"
    assert {spec.work_pool_name for spec in load_deployments()} == {
        settings.current().work_pool_name
    }


def test_prod_owns_its_objects_and_names_its_server(target) -> None:
    target("prod")
    chosen = chosen_target()
    assert (chosen.url_env, chosen.auth_string_env) == (
        "PROD_PREFECT_API_URL",
        "PROD_PREFECT_API_AUTH_STRING",
    )
    assert owner_tag() == "managed-by:prefect-deployments-prod"
    assert all(owner_tag() in spec.tags for spec in load_deployments())


def test_check_passes_every_target_without_the_docker_variables(monkeypatch) -> None:
    """The Docker pool's image repository and network belong to where docker deploys: a laptop
    checks that target's file without them."""
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    checked = check_targets()
    assert set(checked) == {"dev", "prod", "docker"}
    assert set(checked["dev"]) == set(checked["prod"]) == {"compute-squares", "greeting-schedule"}


def test_docker_declares_the_tutorial_flows_on_a_docker_pool(docker_env) -> None:
    assert set(check_spec()) == {"compute-squares-docker", "say-hello-docker"}
    specs = load_deployments()
    assert {spec.entrypoint for spec in specs} == {
        "flows/squares.py:compute_squares",
        "flows/greetings.py:say_hello",
    }
    assert {spec.work_pool_name for spec in specs} == {"docker-pool"}
    assert not any(spec.schedules or spec.triggers for spec in specs), "prod's greet on schedule"
    raw = load_raw()
    assert {pool["name"]: pool["type"] for pool in raw["work_pools"]} == {"docker-pool": "docker"}
    for section in ("variables", "concurrency_limits", "blocks", "automations"):
        assert raw[section] == [], f"{section}: prod's, on the same server"
    assert owner_tag() == "managed-by:prefect-deployments-docker"


def test_each_run_gets_the_image_of_this_code_in_a_container_of_its_own(docker_env) -> None:
    image = f"{docker_env['FLOW_IMAGE_REPOSITORY']}:{docker_env[IMAGE_TAG_ENV]}"
    for spec in load_deployments():
        variables = spec.job_variables
        assert variables["image"] == image
        assert variables["networks"] == [docker_env["FLOW_NETWORK"]]
        assert variables["auto_remove"] is True
        assert variables["image_pull_policy"] == "Always", "the very image apply pushed"
        assert variables["command"] is None, "prefect-docker's own command"
        assert "env" not in variables, "no credentials in a deployment: the worker passes its own"


def test_docker_is_built_and_pushed_with_prefect_docker_under_the_code_tag(target) -> None:
    target("docker")
    raw = load_raw()
    (build,) = raw["build"]
    (push,) = raw["push"]
    step = build["prefect_docker.deployments.steps.build_docker_image"]
    assert step["tag"] == "{{ $" + IMAGE_TAG_ENV + " }}"
    assert step["pull"] is False  # the pinned base image as present locally
    pushed = push["prefect_docker.deployments.steps.push_docker_image"]
    assert pushed["credentials"] == {  # the registry's login, from the environment only
        "registry_url": "{{ $FLOW_REGISTRY }}",
        "username": "{{ $REGISTRY_USER }}",
        "password": "{{ $REGISTRY_PASSWORD }}",
    }
    target("dev")
    assert load_raw()["build"] is None and load_raw()["push"] is None


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


def test_docker_names_an_unset_variable_before_anything_runs(monkeypatch, target) -> None:
    target("docker")
    monkeypatch.delenv("FLOW_IMAGE_REPOSITORY", raising=False)
    with pytest.raises(SpecError, match=r"FLOW_IMAGE_REPOSITORY is not set"):
        check_spec()
    with pytest.raises(SpecError, match=r"target docker: .*FLOW_IMAGE_REPOSITORY is not set"):
        check_targets()
