"""The simulated station for test modules that talk to the real applets through pcscd."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
from keyload_host import station

REPO = Path(__file__).resolve().parent.parent
AS_APPLET_CLASS = REPO / "build/applets/classes/keyload/applet/AsApplet.class"


@contextmanager
def station_running(roles: Sequence[str]) -> Iterator[station.StationStatus]:
    """The station with one reader per role, down again afterwards; skips when the applets are
    not built or another station from this state directory is up (it would be disturbed)."""
    if not AS_APPLET_CLASS.is_file():
        pytest.skip(
            f"the applets are not built ({AS_APPLET_CLASS} missing): run `ant compile-applets`"
        )
    if station.status().running:
        pytest.skip(
            "a station is already running; these tests would disturb it: `keyload-host sim down`"
        )
    status = station.up(roles)
    try:
        yield status
    finally:
        station.down()
