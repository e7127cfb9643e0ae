"""`headwater run --workers N`: N worker processes of the same pipelines on one host, so one command uses every core.

Each worker is a full `headwater run` of its own (one process per core: the stages are CPU-bound Python), and all of
them join the pipelines' consumer groups, so Kafka spreads the input partitions over them; nothing here divides
work. This process only starts them, forwards SIGTERM/SIGINT (each worker then drains and commits its batch) and
waits. When one worker exits with an error the others are stopped too and the command fails with that worker's
code, so a supervisor restarts the whole set instead of leaving it short-handed.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from types import FrameType

log = logging.getLogger(__name__)
FORWARDED = (signal.SIGTERM, signal.SIGINT)


def worker_ports(status_port: int, count: int) -> list[int]:
    """The status port of each worker: consecutive from `status_port`, or any free port each when it is 0."""
    return [0] * count if status_port == 0 else [status_port + index for index in range(count)]


def run_processes(commands: Sequence[Sequence[str]]) -> int:
    """Start one process per command and wait for all; the first non-zero exit code, 0 when every one succeeded."""
    workers = [subprocess.Popen(list(command)) for command in commands]
    log.info("event=workers_started count=%d pids=%s", len(workers), ",".join(str(w.pid) for w in workers))
    stopping = False

    def stop_all(signum: int = signal.SIGTERM) -> None:
        nonlocal stopping
        stopping = True
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signum)

    previous = {signum: signal.signal(signum, _forwarder(stop_all)) for signum in FORWARDED}
    try:
        code = 0
        running = {worker.pid: worker for worker in workers}
        while running:
            pid, status = os.waitpid(-1, 0)
            worker = running.pop(pid, None)
            if worker is None:
                continue
            exit_code = os.waitstatus_to_exitcode(status)
            worker.returncode = exit_code
            if exit_code != 0 and code == 0:
                code = exit_code if exit_code > 0 else 128 - exit_code
                if not stopping:
                    log.error("event=worker_failed pid=%d exit_code=%d consequence=stopping_the_others",
                              pid, exit_code)
                    stop_all()
        return code
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for worker in workers:
            if worker.poll() is None:
                worker.kill()


def _forwarder(stop_all: Callable[[int], None]) -> Callable[[int, FrameType | None], None]:
    def forward(signum: int, _frame: FrameType | None) -> None:
        stop_all(signum)
    return forward


def headwater_command(arguments: Sequence[str]) -> list[str]:
    """The command line of `headwater ARGUMENTS` with this interpreter (the console script may not be on PATH)."""
    return [sys.executable, "-m", "streams.cli", *arguments]
