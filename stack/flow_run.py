"""The flow-run process: `python -m stack.flow_run [FLOW_RUN_ID]` is `python -m prefect.engine`
with the run's heartbeats sent in causal order, and an event once the engine has returned.

Both paths of a process-pool run end here: the cold path of stack/launch.py execs it, and the
warm launcher's forked child calls `run_engine`. Docker-pool runs do not: their containers run
prefect-docker's `prefect flow-run execute`, which carries the run's cancellation.

Why: prefect.yaml's zombie automation crashes a run whose heartbeats stop before its final
state. Prefect's engine sends its heartbeats unordered: one that the server evaluates after the
run's final state opens a window in which nothing else arrives, and the automation then acts on
a run that completed. So this module sends the heartbeats itself, every FLOW_HEARTBEAT_SECONDS
(deployments/settings.py), each naming the one before it as the event it follows, with
Prefect's own turned off for the engine (its setting `flows.heartbeat_frequency` set to None,
which no environment variable can spell); and once the engine has returned,
`stack.flow-run.exited`, following the last heartbeat. The server's triggers service evaluates
an event only after the one it follows, so the run's exit always closes its last window. A
process that is killed sends nothing more, and is crashed after the window as before; one that
is paused or suspended keeps beating or sends its exit.
"""

from __future__ import annotations

import os
import runpy
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from deployments.settings import Settings

HEARTBEAT_EVENT = "prefect.flow-run.heartbeat"
EXITED_EVENT = "stack.flow-run.exited"
SEND_TIMEOUT_S = 10.0


def say(message: str) -> None:
    print(f"flow run process: {message}", file=sys.stderr, flush=True)


class Heartbeats:
    """Heartbeat events of one flow run, every `every_s` seconds from entering until leaving,
    then the exited event; each follows the one before."""

    def __init__(self, flow_run_id: str, every_s: float) -> None:
        self.resource = {"prefect.resource.id": f"prefect.flow-run.{flow_run_id}"}
        self.every_s = every_s
        self.last = None  # the last event sent: the one the next follows
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="heartbeats", daemon=True)

    def _beat(self) -> None:
        while True:
            self._emit(HEARTBEAT_EVENT)
            if self._stopping.wait(self.every_s):
                return

    def _emit(self, name: str) -> None:
        from prefect.events import emit_event

        try:
            event = emit_event(name, resource=self.resource, follows=self.last)
        except Exception as exc:  # noqa: BLE001 - a missed beat is what the automation is for
            say(f"{name} not sent: {exc!r}")
            return
        if event is not None:
            self.last = event

    def __enter__(self) -> Heartbeats:
        self._thread.start()
        return self

    def __exit__(
        self, _type: type[BaseException] | None, _error: BaseException | None, _tb: TracebackType
    ) -> None:
        from prefect.events.worker import EventsWorker

        self._stopping.set()
        self._thread.join()
        self._emit(EXITED_EVENT)
        if self.last is None:
            return  # events are off: nothing was sent
        # Sent before the process exits, for up to SEND_TIMEOUT_S (the server may be away):
        # Prefect's own drain at exit then finds nothing left to warn about.
        sending = threading.Thread(target=EventsWorker.instance().wait_until_empty, daemon=True)
        sending.start()
        sending.join(SEND_TIMEOUT_S)


def record_execution(directory: Path | None, flow_run_id: str) -> None:
    """One file per execution in `directory` (FLOW_RUN_RECORD_DIR), when set."""
    if directory is not None:
        (directory / f"{flow_run_id}.{os.getpid()}").touch()


def run_engine(argv: list[str]) -> None:
    """`python -m prefect.engine ARGV` in this process, inside the run's heartbeats."""
    import prefect.engine
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    from deployments import settings

    config = settings.current()
    flow_run_id = argv[0] if argv else os.environ.get("PREFECT__FLOW_RUN_ID", "")
    record_execution(config.flow_run_record_dir, flow_run_id)
    sys.argv = [prefect.engine.__file__, *argv]
    # Two sources of heartbeats, one of them unordered, would undo the order.
    no_prefect_heartbeats = temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None})
    beats = Heartbeats(flow_run_id, config.flow_heartbeat_seconds)
    with recorded_process(config, flow_run_id), beats, no_prefect_heartbeats:
        # run_path, not run_module: a warm launcher has imported prefect.engine already, and
        # this runs its `__main__` block afresh, as `python -m prefect.engine` does.
        runpy.run_path(prefect.engine.__file__, run_name="__main__")


@contextmanager
def recorded_process(config: Settings, flow_run_id: str) -> Iterator[None]:
    """This process recorded as the run's in FLOW_RUN_PROCESSES_DIR while the engine runs
    (stack/stuck_runs.py), when the supervisor set it. The record is removed only when the
    engine returns: a process ended by a signal or an error may not have reported the run's end
    (killed by the launcher's exit, say), and the supervisor's sweep, once the process is gone,
    crashes the run if it is not final, then forgets the record."""
    if config.flow_run_processes_dir is None or not (flow_run_id and config.api_url):
        yield
        return
    from stack.stuck_runs import record_process

    path = record_process(config.flow_run_processes_dir, flow_run_id, config.api_url)
    yield
    path.unlink(missing_ok=True)


if __name__ == "__main__":
    run_engine(sys.argv[1:])
