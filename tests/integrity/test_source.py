"""The repository's source (deployments/source.py): one spelling per repository, from a real
git checkout's remote, and no credentials ever kept."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from deployments import settings
from deployments.source import normalized, repository_source

ONE_REPOSITORY = [
    "https://github.com/acme/flows.git",
    "https://github.com/acme/flows",
    "https://GitHub.com/acme/flows/",
    "https://user:secret-token@github.com/acme/flows.git",
    "ssh://git@github.com:22/acme/flows.git",
    "git@github.com:acme/flows.git",
    "github.com:acme/flows",
]


@pytest.mark.parametrize("address", ONE_REPOSITORY)
def test_every_spelling_of_one_repository_is_one_source(address: str) -> None:
    assert normalized(address) == "github.com/acme/flows"


def test_forks_and_local_paths_stay_apart(tmp_path: Path) -> None:
    assert normalized("git@github.com:someone-else/flows.git") == "github.com/someone-else/flows"
    assert normalized("git@gitlab.example.org:acme/flows") == "gitlab.example.org/acme/flows"
    assert normalized(f"{tmp_path}/flows.git/") == f"{tmp_path.resolve()}/flows"
    assert normalized(f"file://{tmp_path}/flows") == f"{tmp_path.resolve()}/flows"


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)


@pytest.fixture
def no_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(settings.SOURCE_ENV, raising=False)


def test_a_checkout_is_its_remote_origin(tmp_path: Path, no_override) -> None:
    _git(tmp_path, "init", "--quiet")
    assert repository_source(tmp_path) is None, "a checkout without a remote cannot tell"
    _git(tmp_path, "remote", "add", "origin", "https://user:secret-token@github.com/acme/flows")
    assert repository_source(tmp_path) == "github.com/acme/flows"
    assert repository_source(tmp_path / "not-a-checkout") is None


def test_the_setting_overrides_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _git(tmp_path, "init", "--quiet")
    _git(tmp_path, "remote", "add", "origin", "git@github.com:acme/flows.git")
    monkeypatch.setenv(settings.SOURCE_ENV, "git@github.com:acme/moved-flows.git")
    assert repository_source(tmp_path) == "github.com/acme/moved-flows"
