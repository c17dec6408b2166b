"""stack/registry_auth.py: the registry's htpasswd line verifies the password with bcrypt, the
worker's login is Docker's own config format, private, beside the entries already there; a
missing variable is named and nothing is written. The compose docker-pool tests use both against
the real registry."""

from __future__ import annotations

import base64
import json
import stat

import bcrypt
import pytest

from stack import registry_auth

LOGIN = {"REGISTRY_USER": "flows", "REGISTRY_PASSWORD": "s3cret pass", "FLOW_REGISTRY": "r:5000"}


@pytest.fixture
def login_env(monkeypatch) -> dict[str, str]:
    for name, value in LOGIN.items():
        monkeypatch.setenv(name, value)
    return LOGIN


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_htpasswd_holds_the_user_and_a_bcrypt_hash_of_the_password(login_env, tmp_path) -> None:
    path = tmp_path / "auth" / "htpasswd"
    assert registry_auth.main(["htpasswd", str(path)]) == 0
    user, hashed = path.read_text().strip().split(":", 1)
    assert user == "flows"
    assert hashed.startswith("$2b$") and "s3cret" not in hashed
    assert bcrypt.checkpw(b"s3cret pass", hashed.encode())
    assert mode(path) == 0o600


def test_login_adds_the_registry_to_the_docker_config_keeping_the_rest(
    login_env, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"auths": {"other:5000": {"auth": "eA=="}}, "x": 1}))
    assert registry_auth.main(["login"]) == 0
    written = json.loads(config.read_text())
    assert written["x"] == 1 and written["auths"]["other:5000"] == {"auth": "eA=="}
    token = base64.b64decode(written["auths"]["r:5000"]["auth"]).decode()
    assert token == "flows:s3cret pass"
    assert mode(config) == 0o600


@pytest.mark.parametrize("missing", ["REGISTRY_USER", "REGISTRY_PASSWORD"])
def test_a_missing_credential_is_named_and_nothing_is_written(
    login_env, tmp_path, monkeypatch, capsys, missing: str
) -> None:
    monkeypatch.setenv(missing, "")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    assert registry_auth.main(["htpasswd", str(tmp_path / "htpasswd")]) == 2
    assert registry_auth.main(["login"]) == 2
    assert f"set {missing}" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_user_name_with_the_separator_is_refused(login_env, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("REGISTRY_USER", "a:b")
    assert registry_auth.main(["htpasswd", str(tmp_path / "htpasswd")]) == 2
    assert not (tmp_path / "htpasswd").exists()
