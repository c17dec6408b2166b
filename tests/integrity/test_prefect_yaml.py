"""Deployment integrity: one parametrised test per deployment in prefect.yaml, plus the file's
own shape. Catches what Prefect would silently ignore or only reject at run time.

The file is read once, at collection, and a file that cannot be read still collects:
test_prefect_yaml_loads fails naming the problem, and the tests that need the file skip."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml
from prefect import Flow
from prefect.cli.deploy._models import (
    DeploymentConfig,
    PrefectYamlModel,
    RawScheduleConfig,
    WorkPoolConfig,
)
from prefect.deployments.steps.core import StepExecutionError, run_steps
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.utilities.callables import parameter_schema
from prefect.utilities.schema_tools import ValidationError, validate

from deployments import settings
from deployments.declarations import SECTIONS
from deployments.spec import DeploymentSpec, SpecError, load_deployments, load_raw
from deployments.targets import choosing


def _load() -> tuple[dict, list[DeploymentSpec], SpecError | None]:
    try:
        return load_raw(), load_deployments(), None
    except SpecError as error:
        return {}, [], error


RAW, SPECS, LOAD_ERROR = _load()
BY_NAME = {spec.name: spec for spec in SPECS}
# What the tutorial promises users, as full "flow/deployment" names.
EXPECTED = {"compute-squares/compute-squares", "say-hello/greeting-schedule"}


def targeted_raw(target: str | None) -> dict:
    """The file as `target` sees it (deployments/targets.py)."""
    with choosing(target):
        return load_raw()


def _keys(model) -> set[str]:
    return {field.alias or name for name, field in model.model_fields.items()}


def _flow(spec: DeploymentSpec) -> Flow:
    return spec.load_flow()


def test_prefect_yaml_loads() -> None:
    if LOAD_ERROR is not None:
        pytest.fail(f"prefect.yaml cannot be loaded: {LOAD_ERROR}", pytrace=False)
    assert SPECS, "prefect.yaml declares no deployment"


# The tests here that do not read the repository's prefect.yaml.
WITHOUT_THE_FILE = {"test_prefect_yaml_loads", "test_malformed_prefect_yaml_names_the_problem"}


@pytest.fixture(autouse=True)
def _needs_the_file(request: pytest.FixtureRequest) -> None:
    if LOAD_ERROR is not None and request.function.__name__ not in WITHOUT_THE_FILE:
        pytest.skip("prefect.yaml cannot be loaded: test_prefect_yaml_loads names the problem")


def test_declares_the_tutorial_deployments() -> None:
    assert {f"{_flow(spec).name}/{spec.name}" for spec in SPECS} == EXPECTED


def test_top_level_has_no_keys_prefect_ignores() -> None:
    # `definitions` only carries YAML anchors; the declarations' sections and `targets` are read
    # by `python -m deployments`; Prefect 2 leftovers (storage, infrastructure) fail.
    unknown = set(RAW) - _keys(PrefectYamlModel) - {"definitions", "targets", *SECTIONS}
    assert not unknown, f"prefect.yaml: keys Prefect would silently ignore: {sorted(unknown)}"


# Every target's deployments, as `prefect deploy` reads the target's file.
TARGET_DEPLOYMENTS = [
    (target, index, raw)
    for target in (RAW.get("targets") or {None: None})
    for index, raw in enumerate(targeted_raw(target)["deployments"] if RAW else [])
]


@pytest.mark.parametrize(
    ("target", "index", "raw"),
    TARGET_DEPLOYMENTS,
    ids=[f"{target}-{raw.get('name')}" for target, _, raw in TARGET_DEPLOYMENTS],
)
def test_deployment_has_no_keys_prefect_ignores(target: str | None, index: int, raw: dict) -> None:
    where = f"prefect.yaml (target {target}) deployments[{index}] ({raw.get('name')})"
    assert not set(raw) - _keys(DeploymentConfig), f"{where}: unknown keys"
    assert not set(raw.get("work_pool", {})) - _keys(WorkPoolConfig), f"{where}.work_pool"
    for schedule in raw.get("schedules") or []:
        RawScheduleConfig.model_validate(schedule)  # forbids unknown keys, needs one kind
        assert schedule.get("slug"), f"{where}.schedules: every schedule needs a slug"


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
class TestEachDeployment:
    def test_entrypoint_imports_a_flow(self, spec: DeploymentSpec) -> None:
        assert spec.entrypoint_path.is_file(), spec.entrypoint
        assert isinstance(_flow(spec), Flow)

    def test_default_parameters_validate(self, spec: DeploymentSpec) -> None:
        schema = parameter_schema(_flow(spec)).model_dump()
        validate(spec.parameters, schema, raise_on_error=True)

    def test_schema_is_enforced_and_typed(self, spec: DeploymentSpec) -> None:
        assert spec.enforce_parameter_schema
        schema = parameter_schema(_flow(spec)).model_dump()
        assert schema["properties"], "the flow takes no parameters"
        for name, prop in schema["properties"].items():
            assert "type" in prop or "anyOf" in prop, f"parameter {name!r} has no type"

    def test_has_description_version_and_tags(self, spec: DeploymentSpec) -> None:
        assert spec.description and spec.version and spec.tags
        assert _flow(spec).description, "the flow's docstring becomes its UI description"

    def test_pool_comes_from_the_settings(self, spec: DeploymentSpec) -> None:
        raw = next(d for d in RAW["deployments"] if d["name"] == spec.name)
        assert "name" not in raw.get("work_pool", {}), "name the pool in prefect.toml only"


def test_wrong_parameter_types_are_rejected_by_the_schema() -> None:
    schema = parameter_schema(_flow(BY_NAME["compute-squares"])).model_dump()
    with pytest.raises(ValidationError):
        validate({"numbers": ["two", "four"]}, schema, raise_on_error=True)
    with pytest.raises(ValidationError):
        validate({"numbers": "2, 4, 6"}, schema, raise_on_error=True)


def test_greeting_schedule_is_one_active_five_minute_interval() -> None:
    (schedule,) = BY_NAME["greeting-schedule"].schedules
    assert schedule.interval.total_seconds() == 300
    assert schedule.active and schedule.slug


def test_compute_squares_defaults_to_the_tutorial_numbers() -> None:
    assert BY_NAME["compute-squares"].parameters == {"numbers": [2, 4, 6]}


def _run_pull_steps(monkeypatch, cwd: Path, flow_code_dir: Path | None) -> Path:
    """prefect.yaml's pull steps through Prefect's own step runner, as a flow-run process runs
    them; returns the directory they left the process in."""
    monkeypatch.chdir(cwd)
    # The step runner makes an API client; with no URL Prefect would start a temporary server.
    # These steps never call it: a closed port proves that.
    if flow_code_dir is None:
        monkeypatch.delenv(settings.FLOW_CODE_DIR_ENV, raising=False)
    else:
        monkeypatch.setenv(settings.FLOW_CODE_DIR_ENV, str(flow_code_dir))
    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        asyncio.run(run_steps(RAW["pull"]))
    return Path.cwd()


def test_pull_steps_enter_the_worker_directory_without_flow_code_dir(monkeypatch) -> None:
    assert _run_pull_steps(monkeypatch, settings.REPO_ROOT, None) == settings.REPO_ROOT


def test_pull_steps_enter_flow_code_dir_from_anywhere(monkeypatch, tmp_path) -> None:
    assert _run_pull_steps(monkeypatch, tmp_path, settings.REPO_ROOT) == settings.REPO_ROOT


@pytest.mark.parametrize("flow_code_dir", [None, "missing"], ids=["unset", "wrong"])
def test_pull_steps_name_the_fix_outside_a_clone(monkeypatch, tmp_path, flow_code_dir) -> None:
    code_dir = tmp_path / flow_code_dir if flow_code_dir else None
    with pytest.raises(StepExecutionError) as error:
        _run_pull_steps(monkeypatch, tmp_path, code_dir)
    assert "start the worker from the repository root, or set FLOW_CODE_DIR" in str(
        error.value.__cause__
    )
    assert Path.cwd() == tmp_path  # left where it was


def test_flow_runs_start_in_the_worker_directory() -> None:
    for spec in SPECS:
        assert spec.job_variables["working_dir"] == "."


def test_prefect_reads_the_same_pool_name_as_our_settings(monkeypatch) -> None:
    from prefect.settings import Settings

    monkeypatch.chdir(settings.REPO_ROOT)  # Prefect reads prefect.toml from the working dir
    monkeypatch.delenv(settings.POOL_NAME_ENV, raising=False)
    assert Settings().deployments.default_work_pool_name == settings.current().work_pool_name
    assert Settings().server.analytics_enabled is False
    monkeypatch.setenv(settings.POOL_NAME_ENV, "override-pool")
    assert Settings().deployments.default_work_pool_name == "override-pool"


def test_version_matches_the_project() -> None:
    import tomllib

    project = tomllib.loads((settings.REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert {spec.version for spec in SPECS} == {project["version"]}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("deployments: [\n  - name: x\n", "cannot be read as YAML"),
        ("name: only-a-name\n", "needs a top-level `deployments:` list"),
        ("deployments:\n  - name: x\n    version: '1'\n", "missing required field 'entrypoint'"),
        (
            "deployments:\n  - {name: x, entrypoint: 'a.py:f', version: '1',"
            " schedules: [{interval: 300}]}\n",
            "every schedule needs a slug",
        ),
    ],
)
def test_malformed_prefect_yaml_names_the_problem(tmp_path, text: str, message: str) -> None:
    path = tmp_path / "prefect.yaml"
    path.write_text(text)
    with pytest.raises(SpecError, match="prefect.yaml") as error:
        load_deployments(path)
    assert message in str(error.value)


def test_yaml_anchors_are_merged_not_copied() -> None:
    text = settings.PREFECT_YAML.read_text()
    assert text.count("  - <<: *deployment_defaults") == len(SPECS)
    assert text.count("enforce_parameter_schema") == 1
    assert yaml.safe_load(text)["definitions"]["deployment_defaults"]["enforce_parameter_schema"]
