"""A Dask cluster on this machine for compute_squares' chunk tasks: `dask scheduler` and
single-process `dask worker`s from this environment, as the tests and `make bench` start one.

    with local_dask_cluster(env, state_dir) as address:   # tcp://127.0.0.1:PORT
        ...   # a run with DASK_SCHEDULER_ADDRESS=address sends its tasks there

The workers get `env` (the Prefect API they report task runs to) and the repository on
PYTHONPATH, which is what Dask workers on other machines need too (flows/squares.py). Each
process's output goes to `state_dir/logs/`; all of them are stopped on the way out.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from deployments import settings
from stack.processes import ManagedProcess, free_port, poll_until

DASK = str(Path(sys.executable).with_name("dask"))
JOIN_TIMEOUT_S = 90.0


class DaskClusterError(RuntimeError):
    """The cluster did not come up; the message names the log to read."""


@contextmanager
def local_dask_cluster(
    env: Mapping[str, str], state_dir: Path, workers: int = 2, threads: int = 2
) -> Iterator[str]:
    """A scheduler on a free loopback port and `workers` workers of `threads` threads each, all
    joined; yields the scheduler's address."""
    from distributed import Client

    host, port = "127.0.0.1", free_port()
    address = f"tcp://{host}:{port}"
    env = {**env, "PYTHONPATH": str(settings.REPO_ROOT)}
    env.pop(settings.DASK_SCHEDULER_ADDRESS_ENV, None)
    scheduler = ManagedProcess("dask-scheduler", state_dir)
    members = [ManagedProcess(f"dask-worker-{i}", state_dir) for i in range(workers)]
    try:
        argv = [DASK, "scheduler", "--host", host, "--port", str(port), "--no-dashboard"]
        scheduler.start(argv, env, state_dir)
        for member in members:
            argv = [DASK, "worker", address, "--nworkers", "1", "--nthreads", str(threads)]
            member.start([*argv, "--no-dashboard", "--name", member.name], env, state_dir)
        with Client(address, timeout=JOIN_TIMEOUT_S) as client:
            joined = poll_until(
                lambda: len(client.scheduler_info()["workers"]) == workers, JOIN_TIMEOUT_S
            )
        if not joined:
            raise DaskClusterError(
                f"{workers} Dask workers did not join {address} in {JOIN_TIMEOUT_S:.0f} s; "
                f"see {state_dir / 'logs'}"
            )
        yield address
    finally:
        for process in [*members, scheduler]:
            process.stop(settings.STOP_TIMEOUT_S)


def executed_per_worker(address: str) -> dict[str, int]:
    """How many tasks each worker of the cluster has executed so far, by worker address."""
    from distributed import Client

    with Client(address, timeout=JOIN_TIMEOUT_S) as client:
        return client.run(lambda dask_worker: dask_worker.state.executed_count)
