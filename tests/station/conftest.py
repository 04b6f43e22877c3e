"""The station tests: everything below this folder runs through pcscd and the simulated station,
and is marked ``station`` here (``pytest -m "not station"`` runs the rest in seconds). A module
that needs the station takes the ``station_up`` fixture, which starts it with one reader per entry
of the module's ``ROLES`` and stops it after the module."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from keyload_station import supervisor
from station_support import AS_APPLET_CLASS, StationUp

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test collected below this folder ``station``."""
    for item in items:
        if item.path.resolve().is_relative_to(HERE):
            item.add_marker(pytest.mark.station)


@pytest.fixture(scope="module")
def station_up(request: pytest.FixtureRequest) -> Iterator[StationUp]:
    """The station with one reader per role of the module's ``ROLES``, down again after the
    module; skips when the applets are not built or another station from this state directory is
    up (the tests would disturb it)."""
    if not AS_APPLET_CLASS.is_file():
        pytest.skip(
            f"the applets are not built ({AS_APPLET_CLASS} missing): run `ant compile-applets`"
        )
    if supervisor.status().running:
        pytest.skip(
            "a station is already running; these tests would disturb it: `keyload-host sim down`"
        )
    began = time.perf_counter()
    status = supervisor.up(request.module.ROLES)
    try:
        yield StationUp(status, time.perf_counter() - began)
    finally:
        supervisor.down()
    assert not supervisor.status().running, "the station is still up after `down`"
