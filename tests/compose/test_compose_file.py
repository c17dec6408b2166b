"""docker-compose.yml validated offline by a real compose implementation, and kept consistent
with the repository: pool name, Prefect version, ports, volumes, guarded secrets, setting names."""

from __future__ import annotations

import re
import tomllib

import pytest
import yaml
from prefect.settings import Settings
from prefect.settings.legacy import _get_settings_fields

from deployments import settings
from tests.compose.compose import (
    COMPOSE_FILE,
    ENV_EXAMPLE,
    compose_config,
    resolved_services,
    write_env_file,
)


def compose_networks(tmp_path) -> dict[str, dict]:
    env_file = write_env_file(
        tmp_path / ".env", POSTGRES_PASSWORD="pw", API_AUTH_STRING="a:b", ENCRYPTION_KEY="k"
    )
    result = compose_config(env_file)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)["networks"]


SECRETS = ("POSTGRES_PASSWORD", "API_AUTH_STRING", "ENCRYPTION_KEY")
RAW = COMPOSE_FILE.read_text()


def locked_version(package: str) -> str:
    lock = tomllib.loads((settings.REPO_ROOT / "uv.lock").read_text())
    return next(p["version"] for p in lock["package"] if p["name"] == package)


@pytest.fixture
def services(tmp_path):
    env_file = write_env_file(
        tmp_path / ".env", POSTGRES_PASSWORD="pw", API_AUTH_STRING="a:b", ENCRYPTION_KEY="k"
    )
    return resolved_services(env_file)


PROFILES = {
    "single": {"prefect-server", "tls"},
    "ha": {"redis", "prefect-api-1", "prefect-api-2", "prefect-services", "lb"},
    "docker-pool": {"registry-auth", "registry", "deploy-docker", "docker-worker"},
}
HA_API = ("prefect-api-1", "prefect-api-2")
# Set by compose itself (the project's name), not by .env.
COMPOSE_OWN = {"COMPOSE_PROJECT_NAME"}
# Read by compose itself from .env, not interpolated in the file.
COMPOSE_READS = {"COMPOSE_PROFILES"}


def test_validates_offline_with_every_secret_filled(services) -> None:
    common = {name for name, service in services.items() if not service.get("profiles")}
    assert common == {"postgres", "migrate", "deploy", "worker"}
    for profile, names in PROFILES.items():
        assert {n for n, s in services.items() if s.get("profiles") == [profile]} == names


def test_env_example_runs_the_single_server_unless_a_profile_is_given() -> None:
    example = dict(
        line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines() if "=" in line
    )
    assert example["COMPOSE_PROFILES"] == "single"


def test_docker_pool_builds_pushes_and_runs_through_the_socket(services) -> None:
    socket = "/var/run/docker.sock:/var/run/docker.sock:rw"
    for name in ("deploy-docker", "docker-worker"):
        assert services[name]["volumes"] == [socket], name
    assert services["deploy-docker"]["command"] == "python -m deployments apply --target docker"
    env = services["deploy-docker"]["environment"]
    assert env["FLOW_IMAGE_REPOSITORY"] == "127.0.0.1:5000/prefect-deployments"
    assert services["registry"]["ports"] == ["127.0.0.1:5000:5000/tcp"]


def command(service: dict) -> str:
    """A service's command as one line (a list or a string in the file)."""
    value = service["command"]
    return value if isinstance(value, str) else " ".join(value)


def test_the_registry_is_https_with_a_login_that_the_deploy_job_and_the_worker_use(
    services,
) -> None:
    registry = services["registry"]
    assert registry["environment"]["REGISTRY_AUTH"] == "htpasswd"
    assert (
        registry["environment"]["REGISTRY_HTTP_TLS_CERTIFICATE"] == "/run/secrets/tls-certificate"
    )
    assert {secret["source"] for secret in registry["secrets"]} == {"tls-certificate", "tls-key"}
    made = services["registry-auth"]
    assert command(made) == "python -m stack.registry_auth htpasswd /auth/htpasswd"
    assert registry["depends_on"]["registry-auth"]["condition"] == "service_completed_successfully"
    login = {"REGISTRY_USER", "REGISTRY_PASSWORD"}
    for name in ("registry-auth", "deploy-docker", "docker-worker"):
        assert login <= set(services[name]["environment"]), name
    for name in ("deploy-docker", "docker-worker"):
        assert services[name]["environment"]["FLOW_REGISTRY"] == "127.0.0.1:5000", name
    assert "stack.registry_auth login &&" in command(services["docker-worker"])
    assert "--pool docker-pool --type docker" in command(services["docker-worker"])
    order = services["docker-worker"]["depends_on"]["deploy-docker"]["condition"]
    assert order == "service_completed_successfully"


@pytest.mark.parametrize("missing", SECRETS)
def test_refuses_to_start_naming_a_missing_secret(tmp_path, missing: str) -> None:
    values = dict.fromkeys(SECRETS, "x")
    del values[missing]
    result = compose_config(write_env_file(tmp_path / ".env", **values))
    assert result.returncode != 0
    assert f"set {missing}" in result.stderr, result.stderr


def test_every_variable_has_a_default_or_a_guard() -> None:
    for name, modifier in re.findall(r"\$\{(\w+)(:[-?])?", RAW):
        assert modifier, f"${{{name}}} has neither a :-default nor a :? guard"


# The tuned settings that Prefect reads under the same names: taken from the shell, not .env.
PREFECT_NAMED = {name for name in settings.defaults() if name.startswith("PREFECT_")}
# Each tuned value the compose file takes from deployments/settings.py.
TUNED = {
    "WORKER_LIMIT",
    "POOL_CONCURRENCY_LIMIT",
    "PREFECT_WORKER_QUERY_SECONDS",
    "PREFECT_WORKER_PREFETCH_SECONDS",
    "FLOW_HEARTBEAT_SECONDS",
    "PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS",
    "PREFECT_WORKER_WEBSERVER_PORT",
    "FLOW_RUN_RETENTION_DAYS",
    "EVENT_RETENTION_DAYS",
}


def test_env_example_lists_every_variable_and_no_secret_values() -> None:
    text = ENV_EXAMPLE.read_text()
    example = dict(
        line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#")
    )
    variables = set(re.findall(r"\$\{(\w+)", RAW)) - COMPOSE_OWN
    assert variables - PREFECT_NAMED == set(example) - COMPOSE_READS
    # The Prefect-named ones are documented, with their defaults, in comments.
    for name in variables & PREFECT_NAMED:
        assert f"{name}={settings.defaults()[name]}" in text, name
    assert all(example[name] == "" for name in SECRETS), "no secret values are committed"
    # Prefect reads a .env in its working directory: PREFECT_ keys would leak into `make up`.
    assert not [key for key in example if key.startswith("PREFECT_")]


def test_env_file_is_git_ignored() -> None:
    assert ".env" in (settings.REPO_ROOT / ".gitignore").read_text().splitlines()


def test_image_follows_the_locked_prefect_version(services) -> None:
    version = locked_version("prefect")
    dockerfile = (settings.REPO_ROOT / "Dockerfile").read_text()
    assert f"FROM prefecthq/prefect:{version}-python3.11" in dockerfile
    for name in ("migrate", "prefect-server", *HA_API, "prefect-services", "deploy", "worker"):
        assert services[name]["image"] == f"prefect-deployments:{version}", name
        assert "build" in services[name], name
    assert "USER prefect" in dockerfile, "the image runs as a non-root user"


def test_worker_and_deploy_use_the_repository_pool_name(services) -> None:
    pool_name = settings.current().work_pool_name
    assert f"--pool {pool_name} " in services["worker"]["command"]
    for name in ("worker", "deploy"):
        env = services[name]["environment"]
        assert env[settings.POOL_NAME_ENV] == pool_name


def test_compose_defaults_are_the_settings_defaults() -> None:
    """Every tuned value is `${NAME:-default}` with the setting's own name and default."""
    interpolated = re.findall(r"\$\{(\w+):-([^}]*)\}", RAW)
    assert not TUNED - {name for name, _ in interpolated}, "each tuned value interpolated"
    defaults = settings.defaults()
    for name, default in interpolated:
        if default.startswith("./"):  # a path relative to the compose file's directory
            default = str(settings.REPO_ROOT / default)
        if name in defaults:
            assert default == defaults[name], f"${{{name}:-{default}}}, not {defaults[name]!r}"
    # The pool's name has no PREFECT_ prefix in .env (see there); its default is prefect.toml's.
    pool_name = tomllib.loads(settings.PREFECT_TOML.read_text())["deployments"]
    assert ("WORK_POOL_NAME", pool_name["default_work_pool_name"]) in interpolated


def test_worker_uses_the_tuned_settings(services) -> None:
    config = settings.current()  # what the compose file interpolated is read from the same names
    env = services["worker"]["environment"]
    assert {key: env[key] for key in config.worker_env()} == config.worker_env()
    assert env[settings.HEALTH_PORT_ENV] == str(config.worker_health_port)
    healthcheck = " ".join(services["worker"]["healthcheck"]["test"])
    assert f"http://127.0.0.1:{config.worker_health_port}/health" in healthcheck
    command = services["worker"]["command"]
    assert command.startswith("python -m stack.worker_supervisor "), "supervised"
    assert command.endswith(f" --limit {config.worker_limit}")
    server = services["prefect-server"]["environment"]
    assert {key: server[key] for key in config.server_env()} == config.server_env()
    # deploy sizes the zombie automation from the heartbeat the workers' runs send.
    heartbeat = settings.HEARTBEAT_ENV
    assert services["deploy"]["environment"][heartbeat] == env[heartbeat]
    assert services["deploy"]["environment"][settings.POOL_CONCURRENCY_LIMIT_ENV] == ""
    assert services["worker"]["restart"] == "unless-stopped"


def test_only_the_workers_know_the_code_dir(services) -> None:
    """The code directory is resolved where runs start (prefect.yaml's pull step)."""
    for name in ("worker", "docker-worker"):
        assert services[name]["environment"][settings.FLOW_CODE_DIR_ENV] == "/opt/flows"
    for name in ("deploy", "deploy-docker"):
        assert settings.FLOW_CODE_DIR_ENV not in services[name]["environment"]
    assert "FLOW_CODE_DIR" not in (settings.REPO_ROOT / "Dockerfile").read_text()


def test_server_is_published_over_https_on_loopback_and_checked_with_ready(services) -> None:
    server = services["prefect-server"]
    assert "ports" not in server, "reached from outside only through nginx's TLS"
    # compose 1.29 prints the short form
    assert services["tls"]["ports"] == ["127.0.0.1:4200:4443/tcp"]
    assert services["tls"]["depends_on"]["prefect-server"]["condition"] == "service_healthy"
    assert "--port 4200" in server["command"]
    assert server["environment"]["PREFECT_SERVER_API_PORT"] == "4200"
    assert "/api/ready" in " ".join(server["healthcheck"]["test"])
    for name in ("deploy", "worker"):
        assert services[name]["environment"]["PREFECT_API_URL"] == "http://prefect-server:4200/api"


def test_start_order(services) -> None:
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("prefect-server", "prefect-api-1", "prefect-services", "deploy"):
        migrate = services[name]["depends_on"]["migrate"]["condition"]
        assert migrate == "service_completed_successfully", name
    # the replicas start one after the other: each registers the block types at start
    first = services["prefect-api-2"]["depends_on"]["prefect-api-1"]["condition"]
    assert first == "service_healthy"
    # deploy waits for whichever server its profile runs: it cannot depend on either service.
    assert set(services["deploy"]["depends_on"]) == {"migrate"}
    assert "--wait-for-server" in services["deploy"]["command"]
    deploy = services["worker"]["depends_on"]["deploy"]["condition"]
    assert deploy == "service_completed_successfully"
    for name in ("prefect-api-1", "prefect-services"):
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy", name
    for name in HA_API:
        assert services["lb"]["depends_on"][name]["condition"] == "service_healthy"


def test_ha_follows_prefects_scaling_guide(services) -> None:
    for name in HA_API:
        assert services[name]["command"].endswith(" --no-services"), name
    assert services["prefect-services"]["command"] == "prefect server services start"
    for name in (*HA_API, "prefect-services"):
        env = services[name]["environment"]
        assert env["PREFECT_SERVER_EVENTS_MESSAGING_BROKER"] == "prefect_redis.messaging"
        assert env["PREFECT_SERVER_EVENTS_MESSAGING_CACHE"] == "prefect_redis.messaging"
        assert env["PREFECT_SERVER_EVENTS_CAUSAL_ORDERING"] == "prefect_redis.ordering"
        assert env["PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE"] == "prefect_redis.lease_storage"
        assert env["PREFECT_SERVER_DOCKET_URL"].startswith("redis://redis:6379/")
        assert env["PREFECT_REDIS_MESSAGING_HOST"] == "redis"
        cleanup = env["PREFECT_SERVER_WORKER_CHANNEL_CLEANUP_QUEUE_STORAGE"]
        assert cleanup == "prefect_redis.cleanup_queue"
        assert env["PREFECT_REDIS_WORKER_CLEANUP_QUEUE_HOST"] == "redis"
        # migrate alone changes the schema, as for the single server
        assert env["PREFECT_SERVER_DATABASE_MIGRATE_ON_START"] == "false"
        # the same secrets as the single server: one database, one encryption key
        single = services["prefect-server"]["environment"]
        for key in ("PREFECT_SERVER_API_AUTH_STRING", "PREFECT_SERVER_ENCRYPTION_KEY"):
            assert env[key] == single[key], (name, key)


def test_ha_publishes_only_the_load_balancer_and_keeps_redis_internal(services, tmp_path) -> None:
    ha = PROFILES["ha"] | {"postgres", "migrate", "deploy", "worker"}
    published = {name for name in ha if services[name].get("ports")}
    assert published == {"lb"}
    assert services["lb"]["ports"] == ["127.0.0.1:4200:4443/tcp"]
    assert services["lb"]["networks"]["default"]["aliases"] == ["prefect-server"]
    assert set(services["redis"]["networks"]) == {"backend"}
    networks = compose_networks(tmp_path)
    assert networks["backend"]["internal"] is True
    # nginx finds the replicas by their shared alias, through Docker's DNS, at request time
    conf = (settings.REPO_ROOT / "docker/nginx/prefect-ha.conf").read_text()
    for name in HA_API:
        assert services[name]["networks"]["default"]["aliases"] == ["prefect-api"], name
    assert "set $replicas prefect-api;" in conf and "resolver 127.0.0.11 " in conf
    assert "proxy_set_header Upgrade $http_upgrade;" in conf, "websockets pass through"


def test_tls_terminates_at_nginx_with_the_certificate_from_env(services, tmp_path) -> None:
    """Both profiles' published port is nginx's TLS listener (docker/nginx/tls.conf), with the
    certificate and key .env names (default: what `make certs` writes), as compose secrets: a
    missing file stops compose naming the path, instead of a directory created in its place."""
    for name in ("tls", "lb"):
        service = services[name]
        assert {s["source"] for s in service["secrets"]} == {"tls-certificate", "tls-key"}, name
        mounted = [v.split(":")[:2] for v in service["volumes"] if isinstance(v, str)]
        assert [
            str(settings.REPO_ROOT / "docker/nginx/tls.conf"),
            "/etc/nginx/conf.d/tls.conf",
        ] in (mounted), name
        assert "https://127.0.0.1:4443/" in " ".join(service["healthcheck"]["test"]), name
    declared = yaml.safe_load(RAW)["secrets"]
    assert declared["tls-certificate"]["file"] == "${TLS_CERT_FILE:-./certs/server.pem}"
    assert declared["tls-key"]["file"] == "${TLS_KEY_FILE:-./certs/server-key.pem}"
    conf = (settings.REPO_ROOT / "docker/nginx/tls.conf").read_text()
    assert "listen 4443 ssl;" in conf and "listen 4443;" not in conf, "TLS only"
    assert "ssl_certificate /run/secrets/tls-certificate;" in conf
    assert "ssl_certificate_key /run/secrets/tls-key;" in conf
    assert "proxy_set_header Upgrade $http_upgrade;" in conf, "websockets pass through"
    # the UI finds its API on the scheme, host and port the browser used
    for name in ("prefect-server", *HA_API):
        assert services[name]["environment"]["PREFECT_SERVER_UI_API_URL"] == "/api", name


def test_postgres_data_lives_in_a_named_volume(services) -> None:
    postgres = services["postgres"]
    assert re.fullmatch(r"postgres:\d+", postgres["image"]), "pin the major version"
    assert postgres["volumes"] == ["postgres-data:/var/lib/postgresql/data:rw"]
    assert "postgres-data:" in RAW.split("\nvolumes:", 1)[1], "declared as a named volume"
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])


def test_secure_by_default(services) -> None:
    server = services["prefect-server"]["environment"]
    assert server["PREFECT_SERVER_API_AUTH_STRING"] == "a:b"
    assert server["PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED"] == "true"
    assert server["PREFECT_SERVER_ENCRYPTION_KEY"] == "k"
    assert server["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    for name in ("deploy", "worker"):
        assert services[name]["environment"]["PREFECT_API_AUTH_STRING"] == "a:b"


# Read with os.getenv by prefect/server/utilities/encryption.py rather than a Settings field.
READ_DIRECTLY = {"PREFECT_SERVER_ENCRYPTION_KEY"}


def prefect_redis_settings() -> set[str]:
    """The variables prefect-redis reads: its messaging and worker-cleanup connection settings."""
    from prefect_redis.cleanup_queue import RedisWorkerCleanupQueueSettings
    from prefect_redis.client import RedisMessagingSettings

    return {
        f"{model.model_config['env_prefix']}{field}".upper()
        for model in (RedisMessagingSettings, RedisWorkerCleanupQueueSettings)
        for field in model.model_fields
    }


def test_uses_current_setting_names_not_legacy_aliases(services) -> None:
    fields = _get_settings_fields(Settings)
    read_elsewhere = READ_DIRECTLY | prefect_redis_settings()
    for name, service in services.items():
        for key in set(service.get("environment", {})) - read_elsewhere:
            if key.startswith("PREFECT_"):
                assert key in fields, f"{name}: {key} is not a Prefect setting"
                canonical = fields[key].name
                assert canonical == key, f"{name}: {key} is a legacy alias of {canonical}"


def seconds(duration: str) -> float:
    """A compose duration (`45s`, `1m30s`) in seconds."""
    units = {"h": 3600, "m": 60, "s": 1}
    return sum(float(n) * units[u] for n, u in re.findall(r"([\d.]+)(h|m|s)", str(duration)))


@pytest.mark.parametrize("service", ["worker", "docker-worker"])
def test_flow_runners_get_time_to_stop_their_runs(services, service) -> None:
    """The supervisor stops the worker (which ends its runs), then the launcher, each within
    STOP_TIMEOUT_S: `docker compose stop` must not SIGKILL them sooner."""
    grace = services[service].get("stop_grace_period")
    assert grace is not None, f"{service} has Docker's 10 s default"
    assert seconds(grace) >= 2 * settings.STOP_TIMEOUT_S + 5, grace
