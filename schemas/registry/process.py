"""A `headwater registry serve` child process: start it on a port against a Kafka bootstrap, wait until `/readyz`
answers 200 (within a deadline, failing early if it exits), and stop it with SIGTERM (SIGKILL if it hangs)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Self

import httpx

from headwater.ports import free_port

READY_TIMEOUT_SECONDS = 60.0


class RegistryProcess:
    """One registry server process; whoever starts it stops it."""

    def __init__(self, bootstrap: str, log_file: Path, port: int | None = None, *extra: str) -> None:
        self.bootstrap = bootstrap
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_file = log_file
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, wait: bool = True, timeout: float = READY_TIMEOUT_SECONDS) -> Self:
        """Start the server, its output appended to `log_file`; with `wait`, return once it is ready (a server
        that does not get ready is killed)."""
        command = [sys.executable, "-m", "streams.cli", "registry", "serve", "--port", str(self.port)]
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                [*command, "--bootstrap-servers", self.bootstrap, *self.extra],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        if wait:
            try:
                self.wait_ready(timeout)
            except (RuntimeError, TimeoutError):
                self.kill()
                raise
        return self

    def wait_ready(self, timeout: float = READY_TIMEOUT_SECONDS) -> None:
        """Poll `/readyz` until 200; RuntimeError if the process exits, TimeoutError after `timeout` seconds."""
        assert self.process is not None, "start() first"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the registry exited with {self.process.returncode}{self._last_line()}; see {self.log_file}"
                )
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"the registry on {self.url} was not ready within {timeout:.0f}s; see {self.log_file}")

    def terminate(self, timeout: float = 20) -> int:
        """SIGTERM and wait (SIGKILL after `timeout` seconds); returns the exit code."""
        assert self.process is not None, "start() first"
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode

    def kill(self) -> None:
        assert self.process is not None, "start() first"
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def _last_line(self) -> str:
        lines = self.logs().strip().splitlines()
        return f" ({lines[-1].strip()})" if lines else ""

    def logs(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
