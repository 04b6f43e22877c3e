"""What the station tests share besides the ``station_up`` fixture (``conftest.py``): the type that
fixture yields and where the built applets are."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from keyload_station import supervisor

REPO = Path(__file__).resolve().parents[2]
AS_APPLET_CLASS = REPO / "build/applets/classes/keyload/applet/AsApplet.class"


@dataclass(frozen=True)
class StationUp:
    """The station as ``up`` returned it, and how long it took to come up."""

    status: supervisor.StationStatus
    seconds: float
