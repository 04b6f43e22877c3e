"""The private PostgreSQL server of the inventory's tests (the fixtures: tests/conftest.py), and
what they count in it."""

from __future__ import annotations

import glob
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from keyload_host.inventory import events, open_store


def binaries() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Postgres:
    """A running server: its URL, and stop/start for the outage tests."""

    bin: Path
    data: Path
    port: int
    user: str | None

    @property
    def url(self) -> str:
        return f"postgresql://keyload@127.0.0.1:{self.port}/postgres"

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", self.user, "--"] if self.user else []
        subprocess.run([*prefix, *command], check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data / "db"), "-o", options,
            "-l", str(self.data / "server.log"), "-w", "start",
        )  # fmt: skip

    def stop(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data / "db"), "-m", "fast", "-w", "stop")


def rows_in(url: str) -> tuple[int, int]:
    """(rows, distinct chain hashes) in the inventory."""
    with open_store(url) as store, store.engine.connect() as connection:
        total = connection.execute(sa.select(sa.func.count()).select_from(events)).scalar_one()
        distinct = connection.execute(
            sa.select(sa.func.count(sa.distinct(events.c.hash)))
        ).scalar_one()
    return total, distinct


def lines_in(*paths: Path) -> int:
    return sum(len(path.read_bytes().splitlines()) for path in paths)
