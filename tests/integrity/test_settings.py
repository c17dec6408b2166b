"""deployments/settings.py: one name and one default per setting, read from the environment, and a
bad value refused by every entry point with the variable named, before anything starts."""

from __future__ import annotations

import subprocess
import sys

import pytest

from deployments import settings
from stack.local import LocalStack

TUNED_NAMES = [
    "WORKER_LIMIT",
    "PREFECT_WORKER_WEBSERVER_PORT",
    "PREFECT_WORKER_QUERY_SECONDS",
    "PREFECT_WORKER_PREFETCH_SECONDS",
    "FLOW_HEARTBEAT_SECONDS",
    "PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS",
]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No setting of this repository set in the environment."""
    for name in settings.defaults():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv(settings.POOL_NAME_ENV, raising=False)
    monkeypatch.delenv("WARM_LAUNCHER", raising=False)
    return monkeypatch


def test_defaults(clean_env) -> None:
    config = settings.current()
    assert config.worker_health_port == 4201
    assert (config.worker_limit, config.pool_concurrency_limit) == (4, None)
    assert config.worker_env() == {
        "PREFECT_WORKER_QUERY_SECONDS": "0.5",
        "PREFECT_WORKER_PREFETCH_SECONDS": "10",
        "FLOW_HEARTBEAT_SECONDS": "30",
        "PREFECT_CLIENT_SERVER_VERSION_CHECK_ENABLED": "false",
    }
    assert config.server_env() == {
        "PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS": "5",
        "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": settings.FILE_LEASE_STORAGE,
        "PYTHONTZPATH": "",
        "PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED": "events,flow_runs",
        "PREFECT_SERVER_SERVICES_DB_VACUUM_RETENTION_PERIOD": "P30D",
        "PREFECT_SERVER_EVENTS_RETENTION_PERIOD": "P7D",
    }
    assert config.zombie_after_s == 90
    assert config.work_pool_name == "local-process"  # prefect.toml
    assert config.local_database == "postgres" and config.warm_launcher


def test_each_setting_is_read_from_its_one_name(clean_env) -> None:
    for value, name in enumerate(TUNED_NAMES, start=31):
        clean_env.setenv(name, str(value))
    clean_env.setenv(settings.POOL_NAME_ENV, "other-pool")
    config = settings.current()
    read = [
        config.worker_limit,
        config.worker_health_port,
        config.worker_query_seconds,
        config.worker_prefetch_seconds,
        config.flow_heartbeat_seconds,
        config.slot_wait_seconds,
    ]
    assert read == list(range(31, 31 + len(TUNED_NAMES)))
    assert config.work_pool_name == "other-pool"
    stack = LocalStack(config=config)
    assert stack.worker_health_port == 32
    assert "--limit 31" in " ".join(stack.worker_args())
    env = stack.env
    assert {name: env[name] for name in TUNED_NAMES[2:]} == {
        name: str(value) for value, name in enumerate(TUNED_NAMES[2:], start=33)
    }


def test_the_poll_interval_may_be_a_fraction_of_a_second(clean_env) -> None:
    clean_env.setenv("PREFECT_WORKER_QUERY_SECONDS", "0.5")
    config = settings.current()
    assert config.worker_query_seconds == 0.5
    assert config.worker_env()["PREFECT_WORKER_QUERY_SECONDS"] == "0.5"


def test_an_empty_variable_counts_as_unset(clean_env) -> None:
    clean_env.setenv("POOL_CONCURRENCY_LIMIT", "")  # as docker-compose.yml passes it through
    clean_env.setenv("WORKER_LIMIT", "  ")
    config = settings.current()
    assert (config.pool_concurrency_limit, config.worker_limit) == (None, 4)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("WORKER_LIMIT", "x", "WORKER_LIMIT must be a whole number of at least 1, not 'x'"),
        ("WORKER_LIMIT", "0", "WORKER_LIMIT must be a whole number of at least 1, not '0'"),
        (
            "FLOW_HEARTBEAT_SECONDS",
            "10",
            "FLOW_HEARTBEAT_SECONDS must be a whole number from 30 to 240, not '10'",
        ),
        (
            "FLOW_HEARTBEAT_SECONDS",
            "300",
            "FLOW_HEARTBEAT_SECONDS must be a whole number from 30 to 240, not '300'",
        ),
        (
            "PREFECT_WORKER_QUERY_SECONDS",
            "0.01",
            "PREFECT_WORKER_QUERY_SECONDS must be a number of seconds of at least 0.1, not '0.01'",
        ),
        (
            "FLOW_RUN_RETENTION_DAYS",
            "0.5",
            "FLOW_RUN_RETENTION_DAYS must be a whole number of at least 1, not '0.5'",
        ),
        ("PREFECT_AUTH", "yes", "PREFECT_AUTH must be 1 (on) or 0 (off), not 'yes'"),
        ("WARM_LAUNCHER", "off", "WARM_LAUNCHER must be 1 (on) or 0 (off), not 'off'"),
        (
            "LOCAL_DATABASE",
            "mysql",
            "LOCAL_DATABASE must be one of postgres, sqlite, not 'mysql'",
        ),
    ],
)
def test_a_bad_value_is_refused_naming_its_variable(clean_env, name, value, message) -> None:
    clean_env.setenv(name, value)
    with pytest.raises(settings.SettingsError) as refused:
        settings.current()
    assert str(refused.value) == message


@pytest.mark.parametrize(
    "argv",
    [
        ["-m", "stack", "status"],
        ["-m", "stack.worker_supervisor", "--pool", "any"],
        ["-m", "deployments", "plan"],
        ["-m", "deployments", "check"],
        ["-m", "bench.run"],
    ],
)
def test_every_entry_point_names_a_bad_value(argv: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, *argv],
        env={"PATH": "/usr/bin:/bin", "WORKER_LIMIT": "many"},
        cwd=settings.REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode in (1, 2), result.stdout + result.stderr
    assert "WORKER_LIMIT must be a whole number of at least 1, not 'many'" in result.stderr
    assert "Traceback" not in result.stderr, result.stderr
