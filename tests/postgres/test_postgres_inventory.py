"""The inventory on a real PostgreSQL server shared by stations: two stations writing at once lose
and double nothing, and the database stopped mid-batch catches up from the audit logs."""

from __future__ import annotations

import json
import logging
import multiprocessing
from pathlib import Path

import pytest
from click.testing import CliRunner
from keyload_host.audit import AuditLog
from keyload_host.audit_chain import verify_chain
from keyload_host.cli import main
from keyload_host.inventory import InventoryFeed, open_store
from postgres_support import Postgres, lines_in, rows_in
from units import as_pool, personalize, serial

UNITS_PER_STATION = 150


def _station(url: str, path: str, name: str, first: int) -> None:
    """One station: its own audit log, the shared inventory, its own units."""
    with AuditLog(Path(path), station=name) as journal, open_store(url) as store:
        feed = InventoryFeed(journal, store, Path(path))
        personalize(as_pool(), map(serial, range(first, first + UNITS_PER_STATION)), journal)
        assert feed.flush() == 0


def test_two_stations_write_one_inventory_at_once(database: str, tmp_path: Path) -> None:
    paths = [tmp_path / "station-1.jsonl", tmp_path / "station-2.jsonl"]
    context = multiprocessing.get_context("fork")
    stations = [
        context.Process(target=_station, args=(database, str(path), f"station {n}", n * 1000))
        for n, path in enumerate(paths, start=1)
    ]
    for station in stations:  # both migrate the empty database and feed it at the same time
        station.start()
    for station in stations:
        station.join(120)
        assert station.exitcode == 0
    total, distinct = rows_in(database)
    assert total == distinct == lines_in(*paths) == 2 * (1 + UNITS_PER_STATION * 2)
    runner = CliRunner()
    result = runner.invoke(main, ["inventory", "sync", *map(str, paths), "--store", database])
    assert result.exit_code == 0, result.output
    assert result.output.count(", 0 new to the inventory") == 2
    result = runner.invoke(main, ["audit", "verify", *map(str, paths), "--store", database])
    assert result.exit_code == 0, result.output
    arguments = ["inventory", "loads", "--by", "station", "--store", database, "--json"]
    result = runner.invoke(main, arguments)
    counts = {row["station"]: row["loaded"] for row in json.loads(result.output)}
    assert counts == {"station 1": 2 * UNITS_PER_STATION, "station 2": 2 * UNITS_PER_STATION}


def test_the_database_stopped_mid_batch_then_catches_up(
    postgres: Postgres, database: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "audit.jsonl"
    session = as_pool()
    caplog.set_level(logging.WARNING)
    with open_store(database) as store, AuditLog(path, station="station 1") as journal:
        feed = InventoryFeed(journal, store, path)
        feed.RETRY_AFTER = 0.0
        personalize(session, map(serial, range(20)), journal)
        assert rows_in(database)[0] == lines_in(path)
        postgres.stop()
        try:
            personalize(session, map(serial, range(20, 40)), journal)
            assert feed.flush() == 40, "every record of the 20 cards waits"
        finally:
            postgres.start()
        warnings = [r.getMessage() for r in caplog.records if "unreachable" in r.getMessage()]
        assert len(warnings) == 1 and str(path) in warnings[0]
        personalize(session, map(serial, range(40, 45)), journal)  # takes the waiting ones along
        total, distinct = rows_in(database)
        assert total == distinct == lines_in(path) == 1 + 45 * 2
        postgres.stop()
        try:
            personalize(session, map(serial, range(45, 60)), journal)
            assert feed.flush() == 30
        finally:
            postgres.start()
    assert verify_chain(path).problems == []
    result = CliRunner().invoke(main, ["inventory", "sync", str(path), "--store", database])
    assert result.output == f"{path}: {1 + 60 * 2} record(s), 30 new to the inventory\n"
    total, distinct = rows_in(database)
    assert total == distinct == lines_in(path)
