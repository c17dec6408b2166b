"""The GitHub workflows never hand pull-request code a credential: a job that a pull request can
start reads no secret but the job's own GITHUB_TOKEN, unless it runs in an environment (whose
protection rules a reviewer approves); and no workflow runs pull-request code with the base
repository's secrets (pull_request_target, workflow_run)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from deployments import settings

WORKFLOWS = sorted((settings.REPO_ROOT / ".github" / "workflows").glob("*.yml"))
# Triggers that run in the base repository's context, with its secrets, on a pull request's
# behalf: code they check out or artifacts they read come from the pull request.
PRIVILEGED_PULL_REQUEST_TRIGGERS = {"pull_request_target", "workflow_run"}
SECRET = re.compile(r"secrets\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)|secrets\s*\[\s*['\"]([^'\"]+)")
ALLOWED_SECRETS = {"GITHUB_TOKEN"}


def triggers(workflow: dict[str, Any]) -> set[str]:
    """The events that start a workflow (YAML reads the key `on` as True)."""
    on = workflow.get("on", workflow.get(True))
    if isinstance(on, str):
        return {on}
    return set(on or ())


def strings(value: Any) -> list[str]:
    """Every string in a workflow's subtree: keys and values."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in strings(k) + strings(v)]
    if isinstance(value, list):
        return [s for item in value for s in strings(item)]
    return []


def secrets_read(job: dict[str, Any]) -> set[str]:
    """The secrets a job names anywhere (`secrets: inherit` passes them all on)."""
    names = {a or b for text in strings(job) for a, b in SECRET.findall(text)}
    if job.get("secrets") == "inherit":
        names.add("(inherit: every secret)")
    return names


def unprotected_secrets(workflow: dict[str, Any]) -> dict[str, set[str]]:
    """Per job a pull request can start outside an environment, the secrets it reads beyond
    GITHUB_TOKEN; the workflow-level env counts for every job."""
    if "pull_request" not in triggers(workflow):
        return {}
    shared = secrets_read({"env": workflow.get("env", {})})
    found = {}
    for name, job in (workflow.get("jobs") or {}).items():
        if job.get("environment"):
            continue
        read = (secrets_read(job) | shared) - ALLOWED_SECRETS
        if read:
            found[name] = read
    return found


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def test_there_are_workflows_to_check() -> None:
    assert WORKFLOWS, "no workflow under .github/workflows"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda path: path.name)
def test_no_pull_request_job_reads_a_server_credential(path: Path) -> None:
    assert unprotected_secrets(load(path)) == {}, (
        f"{path.name}: a pull request's code would run with these secrets; read the server "
        "through main's snapshot instead (plan.yml, deployments/snapshot.py)"
    )


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda path: path.name)
def test_no_workflow_runs_pull_request_code_with_the_base_secrets(path: Path) -> None:
    assert not triggers(load(path)) & PRIVILEGED_PULL_REQUEST_TRIGGERS, path.name


def test_the_check_finds_a_secret_in_a_pull_request_job() -> None:
    """The rule itself, on the shapes a workflow can take."""
    job = {"steps": [{"env": {"URL": "${{ secrets.PREFECT_API_URL }}"}}]}
    assert unprotected_secrets({"on": ["pull_request"], "jobs": {"plan": job}}) == {
        "plan": {"PREFECT_API_URL"}
    }
    indexed = {"steps": [{"run": "echo ${{ secrets['PREFECT_API_AUTH_STRING'] }}"}]}
    assert unprotected_secrets({True: {"pull_request": None}, "jobs": {"j": indexed}}) == {
        "j": {"PREFECT_API_AUTH_STRING"}
    }
    called = {"uses": "./.github/workflows/x.yml", "secrets": "inherit"}
    assert unprotected_secrets({"on": "pull_request", "jobs": {"c": called}})
    shared = {"on": "pull_request", "env": {"T": "${{ secrets.T }}"}, "jobs": {"j": {}}}
    assert unprotected_secrets(shared) == {"j": {"T"}}
    token = {"steps": [{"env": {"GH_TOKEN": "${{ secrets.GITHUB_TOKEN }}"}}]}
    assert unprotected_secrets({"on": "pull_request", "jobs": {"j": token}}) == {}
    gated = {**job, "environment": "production"}
    assert unprotected_secrets({"on": "pull_request", "jobs": {"j": gated}}) == {}
    assert unprotected_secrets({"on": {"push": None}, "jobs": {"j": job}}) == {}
