"""Enrolment on a real PostgreSQL server shared by stations: two stations (processes, each with
its own connections, several card threads each) allocating serials from one range at once never
give one twice, and the range runs out cleanly."""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path

import sqlalchemy as sa
from keyload_host.enrolment import EnrolmentError, SerialAllocator, SerialPool, serials
from keyload_host.inventory import open_store

RANGE = "4B4C000000000001-4B4C0000000000C8"
"""200 serials for two stations of four card threads each, asking 30 each (240 in all)."""
THREADS = 4
ASKS = 30


def _station(url: str, name: str, out: str) -> None:
    """One station: its own store, four card threads allocating at once; writes what it got."""
    pool = SerialPool.of_range(RANGE)
    got: list[str] = []
    ran_out: list[int] = []
    with open_store(url) as store:
        allocator = SerialAllocator(store, pool, name, f"run of {name}")

        def cards(reader: str) -> None:
            for _ in range(ASKS):
                try:
                    got.append(allocator.allocate(reader))
                except EnrolmentError:
                    ran_out.append(1)
                    return

        threads = [threading.Thread(target=cards, args=(f"EI {n}",)) for n in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    Path(out).write_text("\n".join(got) + f"\n#ran out {len(ran_out)}\n")


def test_two_stations_allocating_from_one_range_never_give_a_serial_twice(
    database: str, tmp_path: Path
) -> None:
    context = multiprocessing.get_context("fork")
    outs = [tmp_path / f"station-{n}.txt" for n in (1, 2)]
    stations = [
        context.Process(target=_station, args=(database, f"station {n}", str(out)))
        for n, out in enumerate(outs, start=1)
    ]
    for station in stations:  # both migrate the empty database and allocate at the same time
        station.start()
    for station in stations:
        station.join(120)
        assert station.exitcode == 0
    given = [line for out in outs for line in out.read_text().splitlines() if line[:1] != "#"]
    ran_out = sum(int(out.read_text().rsplit(" ", 1)[1]) for out in outs)
    pool = SerialPool.of_range(RANGE)
    assert len(given) == len(set(given)) == 200
    assert sorted(given) == list(pool.candidates())
    assert ran_out >= 1, "the range ran out for at least one card thread"
    assert all(len(out.read_text().splitlines()) > 1 for out in outs), "both stations got some"
    with open_store(database) as store, store.engine.connect() as connection:
        rows = connection.execute(
            sa.select(serials.c.station, sa.func.count()).group_by(serials.c.station)
        ).all()
    assert sum(count for _station_name, count in rows) == 200
    assert {name for name, _count in rows} == {"station 1", "station 2"}
