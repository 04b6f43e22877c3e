"""The inventory on a real PostgreSQL server, fed by `keyload-host personalize` runs on the station
(JCOP 4 timing model, so that the runs last long enough to overlap and to be cut into): two
stations writing at once lose and double nothing, and the database stopped in the middle of a
batch catches up from the audit log with nothing doubled."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from keyload_bench.cards import KEYS, LOADS, SLOTS, serial_number
from keyload_host.cards import AsCard, EiCard
from keyload_host.transport import Pcsc
from keyload_station import supervisor as station
from keyload_station.cardset import SetSecrets, set_up_as, set_up_ei
from postgres_support import Postgres, lines_in, rows_in
from station_support import StationUp

pytestmark = pytest.mark.postgres
ROLES = ("AS@jcop4", "AS@jcop4", *["EI@jcop4"] * 4)
AS_READERS = [station.reader_name(i) for i in range(2)]
EI_READERS = [station.reader_name(i) for i in range(2, len(ROLES))]
PIN_ENV = "KEYLOAD_TEST_PIN"


@pytest.fixture
def card_set(station_up: StationUp) -> Iterator[SetSecrets]:
    with SetSecrets.drawn(KEYS) as values:
        yield values


def fresh_cards(
    values: SetSecrets, as_readers: Sequence[str], ei_readers: Sequence[str], first: int
) -> None:
    """Fresh AS and EI cards of the set (EI serials from ``first`` on), set up at full speed: the
    readers' timing model is off meanwhile."""
    with Pcsc() as pcsc:
        for index, reader in enumerate([*as_readers, *ei_readers]):
            station.set_timing(reader, None)
            station.swap(reader)
            with pcsc.connect(reader) as transport:
                if reader in as_readers:
                    set_up_as(AsCard(transport), KEYS, values)
                else:
                    set_up_ei(EiCard(transport), serial_number(first + index), SLOTS, values)
            station.set_timing(reader, "jcop4")


def personalize(
    values: SetSecrets, as_reader: str, ei_readers: Sequence[str], audit: Path, store: str
) -> subprocess.Popen[str]:
    """`keyload-host personalize` of every key into ``ei_readers``, in its own process."""
    executable = shutil.which("keyload-host")
    assert executable is not None, "keyload-host is not on PATH: run scripts/install"
    arguments = ["personalize", "--as-reader", as_reader, "--audit", str(audit), "--store", store]
    arguments += ["--pin-env", PIN_ENV]
    for reader in ei_readers:
        arguments += ["--ei-reader", reader]
    for load in LOADS:
        arguments += ["--load", str(load)]
    with values.pin() as pin:
        environment = {**os.environ, PIN_ENV: pin.reveal().decode(), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [executable, *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env=environment,
    )


def test_two_stations_personalizing_at_once_feed_one_postgresql_inventory(
    card_set: SetSecrets, database: str, tmp_path: Path
) -> None:
    fresh_cards(card_set, AS_READERS, EI_READERS, 1)
    logs = [tmp_path / "station-1.jsonl", tmp_path / "station-2.jsonl"]
    runs = [
        personalize(card_set, AS_READERS[0], EI_READERS[:2], logs[0], database),
        personalize(card_set, AS_READERS[1], EI_READERS[2:], logs[1], database),
    ]
    outputs = [run.communicate(timeout=120)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    total, distinct = rows_in(database)
    assert total == distinct == lines_in(*logs)
    loaded = [
        record
        for path in logs
        for record in map(json.loads, path.read_text().splitlines())
        if record.get("result") == "loaded"
    ]
    assert len(loaded) == len(EI_READERS) * len(LOADS)
    sync = subprocess.run(
        ["keyload-host", "inventory", "sync", *map(str, logs), "--store", database],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert sync.returncode == 0 and sync.stdout.count(", 0 new to the inventory") == 2, sync


def test_the_database_stopped_in_the_middle_of_a_batch_catches_up_from_the_journal(
    card_set: SetSecrets, postgres: Postgres, database: str, tmp_path: Path
) -> None:
    fresh_cards(card_set, AS_READERS[:1], EI_READERS, 101)
    log = tmp_path / "audit.jsonl"
    run = personalize(card_set, AS_READERS[0], EI_READERS, log, database)
    deadline = time.monotonic() + 60
    while '"event":"key"' not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline and run.poll() is None, "no card was done in time"
        time.sleep(0.02)
    postgres.stop()  # the first card's records are in; the others are on their way
    try:
        output = run.communicate(timeout=120)[0]
        assert run.returncode == 0, output  # the cards are loaded whatever the database does
        assert "unreachable" in output, output
    finally:
        postgres.start()
    in_store, _ = rows_in(database)
    assert in_store < lines_in(log), "the outage cost the store some records"
    sync = subprocess.run(
        ["keyload-host", "inventory", "sync", str(log), "--store", database],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert sync.returncode == 0, sync
    assert f"{lines_in(log) - in_store} new to the inventory" in sync.stdout, sync.stdout
    total, distinct = rows_in(database)
    assert total == distinct == lines_in(log)
