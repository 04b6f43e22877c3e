"""Fixtures more than one folder of tests uses: a private PostgreSQL server (Debian's
``postgresql`` binaries, ``initdb`` into a temporary data directory, ``pg_ctl`` on a free
localhost port, stopped and removed after the tests; as root the server runs as the ``postgres``
user, since ``initdb`` refuses root), and a fresh database on it per test."""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import postgres_support
import pytest


@pytest.fixture(scope="session")
def postgres() -> Iterator[postgres_support.Postgres]:
    binaries = postgres_support.binaries()
    if binaries is None:
        pytest.skip("PostgreSQL is not installed (Debian package postgresql): scripts/install")
    user = "postgres" if os.geteuid() == 0 else None
    data = Path(tempfile.mkdtemp(prefix="keyload-pg-"))
    if user:
        record = pwd.getpwnam(user)
        os.chown(data, record.pw_uid, record.pw_gid)
    server = postgres_support.Postgres(binaries, data, postgres_support.free_port(), user)
    server._run(
        str(binaries / "initdb"), "-D", str(data / "db"), "-U", "keyload", "--auth=trust",
        "-E", "UTF8", "--no-instructions",
    )  # fmt: skip
    server.start()
    try:
        yield server
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(data, ignore_errors=True)


@pytest.fixture
def database(postgres: postgres_support.Postgres) -> Iterator[str]:
    """A fresh database on the server for one test; its URL."""
    import psycopg

    name = f"keyload_{os.urandom(4).hex()}"
    admin = f"host=127.0.0.1 port={postgres.port} user=keyload dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    yield f"postgresql://keyload@127.0.0.1:{postgres.port}/{name}"
