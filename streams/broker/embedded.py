"""Starts, stops and inspects one Apache Kafka broker in KRaft combined mode under a data directory.

Everything the broker needs lives under the data directory: `server.properties`, the KRaft log dir,
`logs/server.log`, and `headwater-broker.json` (pid, ports, cluster id) so that `stop` and `status`
work from another process and a restart keeps the same ports and cluster id.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from headwater.kafka import clients
from headwater.kafka.config import KafkaSettings
from headwater.ports import free_port, port_bindable, port_in_use
from streams.broker.errors import BrokerError
from streams.broker.jars import ensure_jars
from streams.broker.security import LISTENER, BrokerSecurity, SaslSsl

log = logging.getLogger(__name__)

STATE_FILE = "headwater-broker.json"
LOG4J_CONFIG = Path(__file__).with_name("log4j.properties")
MIN_JAVA = 17


@dataclass
class BrokerState:
    pid: int
    port: int
    controller_port: int
    cluster_id: str
    host: str
    protocol: str = "PLAINTEXT"


@dataclass(frozen=True)
class BrokerStatus:
    running: bool
    pid: int | None
    bootstrap: str | None
    data_dir: Path
    log_file: Path
    protocol: str = "PLAINTEXT"


def _new_cluster_id() -> str:
    # Kafka's Uuid text form: URL-safe base64 of 16 random bytes, no padding, never starting with '-'.
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):
            return text


def _java_binary() -> str:
    java_home = os.environ.get("JAVA_HOME")
    candidate = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if not candidate or not Path(candidate).exists():
        raise BrokerError(f"Java {MIN_JAVA}+ is required to run the Kafka broker and none was found on PATH")
    result = subprocess.run([candidate, "-version"], capture_output=True, text=True, check=False)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', result.stderr + result.stdout)
    if not match:
        raise BrokerError(f"could not read the Java version from {candidate} -version")
    major = int(match.group(1))
    if major == 1 and match.group(2):
        major = int(match.group(2))
    if major < MIN_JAVA:
        raise BrokerError(f"Java {MIN_JAVA}+ is required to run the Kafka broker; {candidate} is Java {major}")
    return candidate


_EXCEPTION_LINE = re.compile(r"^(?:Caused by: )?[\w.$]+(?:Exception|Error|Fault)\b:? ?(.*)$")


def _first_exception(lines: list[str]) -> str | None:
    """The message of the first Java exception in some output, e.g. from a stack trace."""
    for line in lines:
        match = _EXCEPTION_LINE.match(line.strip())
        if match:
            return line.strip()
    return None


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def _is_our_broker(pid: int, data_dir: Path) -> bool:
    """True when pid is a Kafka broker started on this data dir, so a recycled pid is never signalled."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    args = [part.decode(errors="replace") for part in cmdline]
    return "kafka.Kafka" in args and str(data_dir / "server.properties") in args


class EmbeddedBroker:
    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        host: str = "127.0.0.1",
        heap: str = "1g",
        start_timeout: float = 90.0,
        sasl_ssl: SaslSsl | None = None,
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.requested_port = port
        self.host = host
        self.heap = heap
        self.start_timeout = start_timeout
        self.security = BrokerSecurity(sasl_ssl, self.data_dir) if sasl_ssl is not None else None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def log_file(self) -> Path:
        return self.data_dir / "logs" / "server.log"

    @property
    def kraft_dir(self) -> Path:
        return self.data_dir / "kraft"

    def _read_state(self) -> BrokerState | None:
        path = self.data_dir / STATE_FILE
        if not path.is_file():
            return None
        try:
            return BrokerState(**json.loads(path.read_text()))
        except (ValueError, TypeError) as exc:
            raise BrokerError(f"broker state file {path} is unreadable: {exc}") from exc

    def _write_state(self, state: BrokerState) -> None:
        path = self.data_dir / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(state)))
        tmp.replace(path)

    def status(self) -> BrokerStatus:
        state = self._read_state()
        running = state is not None and _process_alive(state.pid) and _is_our_broker(state.pid, self.data_dir)
        return BrokerStatus(
            running=running,
            pid=state.pid if state and running else None,
            bootstrap=f"{state.host}:{state.port}" if state and running else None,
            data_dir=self.data_dir,
            log_file=self.log_file,
            protocol=state.protocol if state else "PLAINTEXT",
        )

    def _formatted_cluster_id(self) -> str | None:
        meta = self.kraft_dir / "meta.properties"
        if not meta.is_file():
            return None
        for line in meta.read_text().splitlines():
            if line.startswith("cluster.id="):
                return line.split("=", 1)[1].strip()
        return None

    def _choose_cluster_id(self, previous: BrokerState | None) -> str:
        formatted = self._formatted_cluster_id()
        if previous and formatted and previous.cluster_id != formatted:
            raise BrokerError(
                f"data dir {self.data_dir} is formatted for cluster {formatted}, not {previous.cluster_id}; "
                "use another --data-dir or remove this one"
            )
        return formatted or (previous.cluster_id if previous else _new_cluster_id())

    def _choose_ports(self, previous: BrokerState | None) -> tuple[int, int]:
        port = self.requested_port or (previous.port if previous else 9092)
        if not port_bindable(port, self.host):
            raise BrokerError(f"port {port} on {self.host} is already in use; pick another with --port")
        controller = previous.controller_port if previous else free_port(self.host)
        if controller == port or not port_bindable(controller, self.host):
            controller = free_port(self.host)
        return port, controller

    @property
    def protocol(self) -> str:
        return LISTENER if self.security is not None else "PLAINTEXT"

    def _write_server_properties(self, port: int, controller_port: int) -> Path:
        listener = self.protocol
        properties = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{self.host}:{controller_port}",
            "listeners": f"{listener}://{self.host}:{port},CONTROLLER://{self.host}:{controller_port}",
            "advertised.listeners": f"{listener}://{self.host}:{port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": listener,
            "listener.security.protocol.map": f"CONTROLLER:PLAINTEXT,{listener}:{listener}",
            "log.dirs": str(self.kraft_dir),
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "true",
            "message.max.bytes": "1048588",
            "log.retention.hours": "168",
            **(self.security.server_properties() if self.security is not None else {}),
        }
        path = self.data_dir / "server.properties"
        # Owner-only: with SASL_SSL it holds the broker's private key and inter-broker credential.
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write("".join(f"{key}={value}\n" for key, value in properties.items()))
        path.chmod(0o600)
        return path

    def _java_command(self, java: str, libs: Path, main: str, *args: str) -> list[str]:
        return [
            java, "-Xms256m", f"-Xmx{self.heap}", "-XX:+UseG1GC", "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{LOG4J_CONFIG}", f"-Dkafka.logs.dir={self.log_file.parent}",
            "-cp", f"{libs}/*", main, *args,
        ]

    def _format_storage(self, java: str, libs: Path, cluster_id: str, properties: Path, scram: list[str]) -> None:
        command = self._java_command(
            java, libs, "kafka.tools.StorageTool",
            "format", "-t", cluster_id, "-c", str(properties), "--ignore-formatted", *scram,
        )
        result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
        if result.returncode != 0:
            lines = (result.stderr + result.stdout).strip().splitlines()
            reason = _first_exception(lines) or (lines[0] if lines else "no output")
            raise BrokerError(f"formatting {self.kraft_dir} failed: {reason}")

    def start(self) -> BrokerStatus:
        """Start the broker in the background and return once it answers a metadata request."""
        current = self.status()
        if current.running:
            raise BrokerError(f"a broker is already running on {current.bootstrap} (pid {current.pid})")
        java = _java_binary()
        libs = ensure_jars()
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        previous = self._read_state()
        cluster_id = self._choose_cluster_id(previous)
        port, controller_port = self._choose_ports(previous)
        formatted = self._formatted_cluster_id() is not None
        scram = self.security.prepare(formatted) if self.security is not None else []
        properties = self._write_server_properties(port, controller_port)
        self._format_storage(java, libs, cluster_id, properties, scram)

        log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        stdout = (self.log_file.parent / "stdout.log").open("ab")
        with stdout:
            self._process = subprocess.Popen(
                self._java_command(java, libs, "kafka.Kafka", str(properties)),
                stdout=stdout,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self._write_state(BrokerState(self._process.pid, port, controller_port, cluster_id, self.host, self.protocol))
        log.info(
            "event=broker_starting pid=%d port=%d protocol=%s data_dir=%s",
            self._process.pid, port, self.protocol, self.data_dir,
        )
        self._wait_ready(port, log_offset)
        return self.status()

    def _failure_reason(self, log_offset: int) -> str:
        """The first exception this start logged, so the user sees why without opening the log."""
        lines: list[str] = []
        if self.log_file.exists():
            with self.log_file.open("rb") as handle:
                handle.seek(log_offset)
                lines = handle.read().decode("utf-8", errors="replace").splitlines()
        stdout_log = self.log_file.parent / "stdout.log"
        if stdout_log.exists():
            lines += stdout_log.read_text(errors="replace").splitlines()[-20:]
        reason = _first_exception(lines)
        return f" ({reason})" if reason else ""

    def _wait_ready(self, port: int, log_offset: int) -> None:
        deadline = time.monotonic() + self.start_timeout
        bootstrap = f"{self.host}:{port}"
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise BrokerError(
                    f"the broker exited with code {self._process.returncode} during start"
                    f"{self._failure_reason(log_offset)}; see {self.log_file}"
                )
            if port_in_use(port, self.host) and self._answers_metadata(self.client_properties(bootstrap)):
                log.info("event=broker_ready bootstrap=%s", bootstrap)
                return
            time.sleep(0.2)
        self._terminate_started_process()
        raise BrokerError(
            f"the broker did not answer on {bootstrap} within {self.start_timeout:.0f}s; see {self.log_file}"
        )

    def client_properties(self, bootstrap: str) -> dict[str, str]:
        """librdkafka properties that reach this broker as itself (the internal user on SASL_SSL)."""
        config = {"bootstrap.servers": bootstrap}
        if self.security is not None:
            config.update(self.security.client_properties())
        return config

    @staticmethod
    def _answers_metadata(client: dict[str, str]) -> bool:
        admin = clients.admin(KafkaSettings.model_validate(client), log_level=0, **{"socket.timeout.ms": 2000})
        try:
            metadata = admin.list_topics(timeout=2)
        except Exception:
            return False
        return bool(metadata.brokers)

    def _terminate_started_process(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(timeout=30)

    def stop(self, timeout: float = 60.0) -> bool:
        """Stop the broker with SIGTERM and wait for its clean shutdown. False when none was running."""
        state = self._read_state()
        if state is None or not _process_alive(state.pid) or not _is_our_broker(state.pid, self.data_dir):
            return False
        os.kill(state.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.pid == state.pid:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._process.wait(timeout=0.2)
            if not _process_alive(state.pid):
                log.info("event=broker_stopped pid=%d", state.pid)
                return True
            time.sleep(0.1)
        raise BrokerError(
            f"the broker (pid {state.pid}) did not stop within {timeout:.0f}s of SIGTERM; see {self.log_file}"
        )

    def kill(self) -> None:
        """SIGKILL the broker this object started (tests of crash recovery use it)."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(timeout=30)
