"""The warm launcher (stack/launcher.py) and its client (stack/launch.py), the deployments'
command, on a live stack: each behaviour on both paths. `warm`: the run is forked from the
launcher the worker supervisor runs. `cold`: the client finds no launcher (FLOW_LAUNCHER_SOCKET
empty, as with WARM_LAUNCHER=0) and becomes `python -m prefect.engine` itself.

The stack is this module's own: some runs here fail or crash on purpose, which the shared live
stack's log check would rightly refuse. The last tests speak the launcher's protocol to a launcher
of their own: a bad request is refused and the launcher serves on."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from uuid import uuid4

import psutil
import pytest
from prefect import Flow
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.states import Cancelling

from stack.launch import SOCKET_ENV
from stack.local import LocalStack
from stack.processes import live_children, process_is_running, terminate_then_kill
from tests.deployed_flows import deployed_test_flow
from tests.live_stack import new_stack, stack_client, unique, wait_for_final_state, wait_until
from tests.reliability.flows import describe_process, exit_with, raise_error

# A run's own variable that a warm run may differ in: Prefect's settings (PREFECT_*) are
# rebuilt in the forked process; any other difference starts the run cold.
PROBE_ENV = "PREFECT_LAUNCHER_TEST_PROBE"
# What each path adds to a run's environment: nothing, or a launcher socket that is not there.
PATH_ENV = {"warm": {}, "cold": {SOCKET_ENV: ""}}


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[LocalStack]:
    with new_stack(tmp_path_factory, "launcher").running() as stack:
        yield stack


@pytest.fixture(scope="module")
def api(stack: LocalStack) -> Iterator[SyncPrefectClient]:
    with stack_client(stack) as client:
        yield client


@pytest.fixture(params=["warm", "cold"])
def path(request) -> str:
    return request.param


@contextmanager
def deployed(api: SyncPrefectClient, stack: LocalStack, flow: Flow) -> Iterator[str]:
    """`flow` deployed with prefect.yaml's job variables (its command is the client); the
    deployment's full name."""
    full_name = f"{flow.name}/{unique('launcher')}"
    with deployed_test_flow(api, stack.pool_name, flow, full_name):
        yield full_name


def start_run(
    api: SyncPrefectClient, full_name: str, path: str, parameters: dict, **env: str
) -> FlowRun:
    deployment = api.read_deployment_by_name(full_name)
    return api.create_flow_run_from_deployment(
        deployment.id,
        parameters=parameters,
        job_variables={"env": {**PATH_ENV[path], **env}},
    )


def facts(directory: Path, run: FlowRun) -> dict:
    """What describe_process wrote about the process that ran `run`."""
    return json.loads((directory / f"{run.id}.json").read_text())


def running_pid(api: SyncPrefectClient, directory: Path, run: FlowRun) -> tuple[int, int]:
    """Once `run` is RUNNING in describe_process: (the client's pid, the flow-run process's)."""

    def started():
        current = api.read_flow_run(run.id)
        pid_file = directory / f"{run.id}.pid"
        ready = current.state.type == StateType.RUNNING and current.infrastructure_pid
        return current if ready and pid_file.exists() else None

    current = wait_until(started, 120, f"flow run {run.id} RUNNING with its pid file")
    client = int(current.infrastructure_pid.rsplit(":", 1)[-1])
    return client, int((directory / f"{run.id}.pid").read_text())


def session_members(session_id: int) -> list[int]:
    """The live processes whose session is `session_id` (the launcher gives each run its own)."""
    members = []
    for pid in psutil.pids():
        with contextlib.suppress(OSError):
            if os.getsid(pid) == session_id and process_is_running(pid):
                members.append(pid)
    return members


def stop_if_running(api: SyncPrefectClient, run: FlowRun) -> None:
    if not api.read_flow_run(run.id).state.is_final():
        api.set_flow_run_state(run.id, Cancelling(message="test cleanup"), force=True)


def test_a_run_prints_logs_and_sees_its_job_variables(api, stack, path, tmp_path) -> None:
    with deployed(api, stack, describe_process) as full_name:
        run = start_run(
            api, full_name, path, {"directory": str(tmp_path), "env_name": PROBE_ENV},
            **{PROBE_ENV: f"probe-{path}"},
        )  # fmt: skip
        final = wait_for_final_state(api, run.id)
    assert final.state.type == StateType.COMPLETED, final.state
    seen = facts(tmp_path, run)
    assert ("stack.launcher" in seen["parent"]) == (path == "warm"), seen
    assert seen["env"] == f"probe-{path}" and seen["calls"] == 1, seen
    wait_until(
        lambda: f"stdout of flow run {run.id}" in stack.worker.log_path.read_text(),
        30,
        "the run's stdout in the worker's log",
    )
    log_filter = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id]))
    wait_until(
        lambda: any(
            f"log line of flow run {run.id}" in log.message
            for log in api.read_logs(log_filter=log_filter)
        ),
        30,
        "the run's log line on the server",
    )


def test_a_run_that_sets_ld_library_path_starts_cold_and_finds_its_library(
    api, stack, path, tmp_path
) -> None:
    """The dynamic loader reads LD_LIBRARY_PATH once, when a process starts: a forked run could
    not load a library from it. The launcher refuses such a run, and its client starts it cold,
    so it behaves as a cold run does."""
    library = f"liblaunchertest{uuid4().hex[:8]}.so"
    libraries = tmp_path / "lib"
    libraries.mkdir()
    (libraries / library).write_bytes(_libz().read_bytes())
    with deployed(api, stack, describe_process) as full_name:
        run = start_run(
            api, full_name, path, {"directory": str(tmp_path), "library": library},
            LD_LIBRARY_PATH=str(libraries),
        )  # fmt: skip
        final = wait_for_final_state(api, run.id)
    assert final.state.type == StateType.COMPLETED, final.state
    assert "stack.launcher" not in facts(tmp_path, run)["parent"], "the run started cold"
    if path == "warm":
        wait_until(
            lambda: (
                "LD_LIBRARY_PATH, which a started interpreter cannot follow"
                in stack.worker.log_path.read_text()
            ),
            30,
            "the launcher's reason in the worker's log",
        )


def _libz() -> Path:
    """A real shared library of this machine: the zlib this interpreter has loaded."""
    import zlib  # noqa: F401 - maps libz into this process

    maps = Path("/proc/self/maps").read_text().splitlines()
    return next(Path(line.split()[-1]) for line in maps if "/libz.so" in line)


def test_two_runs_at_once_share_no_state(api, stack, path, tmp_path) -> None:
    with deployed(api, stack, describe_process) as full_name:
        parameters = {"directory": str(tmp_path), "env_name": PROBE_ENV, "seconds": 3}
        runs = [
            start_run(api, full_name, path, parameters, **{PROBE_ENV: name})
            for name in ("first", "second")
        ]
        both = [wait_for_final_state(api, run.id) for run in runs]
    assert [run.state.type for run in both] == [StateType.COMPLETED] * 2
    first, second = (facts(tmp_path, run) for run in runs)
    assert (first["env"], second["env"]) == ("first", "second")
    assert first["pid"] != second["pid"]
    assert first["calls"] == second["calls"] == 1  # each imported the flow module afresh
    assert {"stack.launcher" in facts["parent"] for facts in (first, second)} == {path == "warm"}


def test_a_failing_flow_is_failed_and_an_exit_code_crashes_the_run(api, stack, path) -> None:
    with deployed(api, stack, raise_error) as failing, deployed(api, stack, exit_with) as exiting:
        failed = wait_for_final_state(api, start_run(api, failing, path, {"message": "no"}).id)
        crashed = wait_for_final_state(api, start_run(api, exiting, path, {"code": 3}).id)
    assert failed.state.type == StateType.FAILED, failed.state
    assert "no" in (failed.state.message or ""), failed.state.message
    assert crashed.state.type == StateType.CRASHED, crashed.state
    assert "status code: 3" in (crashed.state.message or ""), crashed.state.message


def test_cancelling_a_run_stops_its_process(api, stack, path, tmp_path) -> None:
    with deployed(api, stack, describe_process) as full_name:
        run = start_run(api, full_name, path, {"directory": str(tmp_path), "seconds": 600})
        try:
            client, child = running_pid(api, tmp_path, run)
            assert (client == child) == (path == "cold"), (client, child)
            api.set_flow_run_state(run.id, Cancelling(message="cancelled by the test"))
            final = wait_for_final_state(api, run.id, timeout_s=120)
        finally:
            stop_if_running(api, run)
    assert final.state.type == StateType.CANCELLED, final.state
    wait_until(lambda: not process_is_running(child), 30, f"flow-run process {child} to end")
    assert not process_is_running(client)


def test_kill_9_of_the_client_ends_the_run_and_leaves_no_process(api, stack, path, tmp_path):
    with deployed(api, stack, describe_process) as full_name:
        run = start_run(api, full_name, path, {"directory": str(tmp_path), "seconds": 600})
        try:
            client, child = running_pid(api, tmp_path, run)
            os.kill(client, signal.SIGKILL)
            final = wait_for_final_state(api, run.id, timeout_s=120)
        finally:
            stop_if_running(api, run)
    # The worker sees its process killed and reports the run CRASHED.
    assert final.state.type == StateType.CRASHED, final.state
    wait_until(lambda: not process_is_running(child), 30, f"flow-run process {child} to end")
    if path == "warm":  # its own session: nothing the run started outlives it
        wait_until(lambda: not session_members(child), 30, f"session {child} to be empty")


def test_runs_start_cold_when_the_launcher_is_turned_off(tmp_path_factory, tmp_path) -> None:
    """WARM_LAUNCHER=0: the supervisor runs no launcher and names none to the worker."""
    off = new_stack(tmp_path_factory, "launcher-off", extra_env={"WARM_LAUNCHER": "0"})
    with off.running() as cold:
        assert "started launcher" not in cold.worker.log_path.read_text()
        with stack_client(cold) as api, deployed(api, cold, describe_process) as full_name:
            deployment = api.read_deployment_by_name(full_name)
            run = api.create_flow_run_from_deployment(
                deployment.id, parameters={"directory": str(tmp_path)}
            )
            final = wait_for_final_state(api, run.id)
        assert final.state.type == StateType.COMPLETED, final.state
        assert "worker start" in facts(tmp_path, run)["parent"]


def steady_env() -> dict[str, str]:
    """This process's environment without what pytest changes from phase to phase."""
    return {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}


@contextmanager
def own_launcher(path: Path, env: dict[str, str]) -> Iterator[subprocess.Popen]:
    """A warm launcher on the socket `path`, in `env`; stopped afterwards."""
    process = subprocess.Popen(
        [sys.executable, "-m", "stack.launcher", str(path)],
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        wait_until(lambda: path.exists() or process.poll() is not None, 60, "the launcher")
        assert process.poll() is None, process.stderr.read()
        yield process
    finally:
        terminate_then_kill(process, 15)


@pytest.fixture
def launcher_process(tmp_path) -> Iterator[subprocess.Popen]:
    """A warm launcher of its own, on the socket `tmp_path`/launcher.sock."""
    with own_launcher(tmp_path / "launcher.sock", steady_env()) as process:
        yield process
        assert process.poll() is None, "the launcher stopped"


@pytest.fixture
def launcher(launcher_process, tmp_path) -> Path:
    """The socket of `launcher_process`."""
    return tmp_path / "launcher.sock"


def send_request(path: Path, body: bytes) -> dict:
    """`body` with this process's stdio as the request; the launcher's first answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(30)
        conn.connect(str(path))
        socket.send_fds(conn, [body + b"\n"], [0, 1, 2])
        return json.loads(conn.makefile("rb").readline())


def request(**changes) -> bytes:
    body = {
        "argv": [],
        "env": steady_env(),
        "cwd": os.getcwd(),
        "executable": sys.executable,
        "prefix": sys.prefix,
    }
    return json.dumps({**body, **changes}).encode()


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[" * 100_000, json.dumps({"argv": []}).encode()],
    ids=["not-json", "nested-too-deep", "fields-missing"],
)
def test_a_malformed_request_is_refused_and_the_launcher_serves_on(launcher, body) -> None:
    assert "error" in send_request(launcher, body)
    # The next request is served: refused here for what it asks, which needs a working launcher.
    answer = send_request(launcher, request(executable="/nonexistent/python"))
    assert "it runs" in answer["error"], answer


def test_a_client_that_leaves_at_once_leaves_no_process(launcher_process, launcher) -> None:
    """Whether the launcher reads the request before or after the client is gone, no flow-run
    process outlives the client. A forked one would wait a minute on this API, which accepts
    connections and never answers."""
    with socket.create_server(("127.0.0.1", 0), backlog=64) as silent_api:
        api_url = f"http://127.0.0.1:{silent_api.getsockname()[1]}/api"
        env = {**steady_env(), "PREFECT_API_URL": api_url, "PREFECT__FLOW_RUN_ID": str(uuid4())}
        for _ in range(10):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.connect(str(launcher))
                socket.send_fds(conn, [request(env=env) + b"\n"], [0, 1, 2])
        # The launcher answers in turn: once this one is answered, it has handled the ten.
        assert "error" in send_request(launcher, request(executable="/nonexistent/python"))
        wait_until(
            lambda: not live_children(launcher_process.pid),
            30,
            "no flow-run process left of the clients that left",
        )


@pytest.mark.parametrize(
    "variable", ["PYTHONHASHSEED", "LD_PRELOAD", "LC_ALL", "MALLOC_ARENA_MAX", "ANY_OTHER_NAME"]
)
def test_a_run_whose_environment_cannot_follow_is_refused_so_it_starts_cold(
    launcher, variable
) -> None:
    """Whatever the variable: only what the forked process rebuilds (Prefect's settings, the
    time zone) may differ from the launcher's environment."""
    answer = send_request(launcher, request(env={**steady_env(), variable: "7"}))
    assert f"differs from the launcher's in {variable}" in answer["error"], answer
    other_prefix = send_request(launcher, request(prefix="/other/venv"))
    assert "the run asks for" in other_prefix["error"], other_prefix


def test_the_run_is_named_by_a_pidfd_the_launcher_opened(launcher, tmp_path) -> None:
    """The first answer carries a pidfd of the forked process (opened before it could be
    reaped), so the client never signals a process that reused its pid."""
    silent = request(argv=["--version"])
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(30)
        conn.connect(str(launcher))
        with open(os.devnull, "rb") as stdin, open(tmp_path / "out", "wb") as out:
            socket.send_fds(conn, [silent + b"\n"], [stdin.fileno(), out.fileno(), out.fileno()])
        data, fds, _flags, _addr = socket.recv_fds(conn, 4096, 1)
        try:
            answer = json.loads(data.split(b"\n")[0])
            assert len(fds) == 1, answer
            assert os.readlink(f"/proc/self/fd/{fds[0]}") == "anon_inode:[pidfd]"
            info = Path(f"/proc/self/fdinfo/{fds[0]}").read_text()
            assert f"Pid:\t{answer['pid']}\n" in info, info
        finally:
            for fd in fds:
                os.close(fd)


def test_a_stalled_client_delays_no_other(launcher) -> None:
    """A client that connects and sends half a request holds nothing up: the next client is
    answered while the stalled one still waits for its own answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stalled:
        stalled.connect(str(launcher))
        socket.send_fds(stalled, [b'{"argv": ['], [0, 1, 2])
        answer = send_request(launcher, request(executable="/nonexistent/python"))
        assert "it runs" in answer["error"], answer
        stalled.setblocking(False)
        with pytest.raises(BlockingIOError):
            stalled.recv(1)  # not answered yet: the launcher did not wait for it first
        stalled.setblocking(True)
        stalled.settimeout(30)
        assert b"did not arrive in time" in stalled.recv(4096)


def test_after_packages_change_it_refuses_runs_and_exits(tmp_path) -> None:
    """Runs never mix package versions: once a site-packages directory on its path changed,
    the launcher sends every run cold, gives up its socket and exits (its supervisor starts a
    new one)."""
    site = tmp_path / "extra" / "site-packages"
    site.mkdir(parents=True)
    env = {**steady_env(), "PYTHONPATH": str(site)}
    path = tmp_path / "launcher.sock"
    with own_launcher(path, env) as process:
        body = request(argv=["--version"], env=env)
        assert "pid" in send_request(path, body)
        (site / "new_package.py").write_text("")  # what an install does to the directory
        answer = send_request(path, body)
        assert "the installed packages changed" in answer["error"], answer
        assert process.wait(30) == 0
        assert not path.exists()


def test_threads_are_counted_as_the_kernel_counts_them() -> None:
    """A thread that C code started is one the threading module does not know."""
    code = (
        "import _thread, threading, time\n"
        "from stack.launcher import thread_count\n"
        "_thread.start_new_thread(time.sleep, (30,))\n"
        "time.sleep(0.5)\n"
        "print(threading.active_count(), thread_count())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.split() == ["1", "2"], result.stdout


SHARED_TLS_PROBE = """
import json, os, ssl, sys, threading
from stack import shared_tls
shared_tls.install()
import prefect._internal.version_checking as version_checking
from prefect.client.orchestration import PrefectClient, SyncPrefectClient

def context(client):
    return client._client._transport._pool._ssl_context

def clients():
    return [PrefectClient("http://127.0.0.1:9/api"), SyncPrefectClient("http://127.0.0.1:9/api")]

main = clients()
in_thread = []
thread = threading.Thread(target=lambda: in_thread.extend(clients()))
thread.start(); thread.join()
cache = shared_tls.SharedVerifiedContexts()
first = cache.create_default_context(cafile=sys.argv[1])
os.utime(sys.argv[1], ns=(0, 0))  # the CA file changed
print(json.dumps({
    "shared": len({id(context(c)) for c in main}) == 1,
    "per_thread": context(main[0]) is not context(in_thread[0]),
    "verified": all(context(c).verify_mode == ssl.CERT_REQUIRED for c in main + in_thread),
    "version_check": isinstance(version_checking.ssl, shared_tls.SharedVerifiedContexts),
    "new_file_version": cache.create_default_context(cafile=sys.argv[1]) is not first,
}))
"""


def test_api_clients_share_one_verified_tls_context_per_ca_file_and_thread(tmp_path) -> None:
    import certifi

    copy = tmp_path / "ca.pem"
    copy.write_bytes(Path(certifi.where()).read_bytes())
    result = subprocess.run(
        [sys.executable, "-c", SHARED_TLS_PROBE, str(copy)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    facts = json.loads(result.stdout.splitlines()[-1])
    assert facts == dict.fromkeys(
        ["shared", "per_thread", "verified", "version_check", "new_file_version"], True
    )
