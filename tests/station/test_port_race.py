"""Starting the station when a vpcd port is taken between the supervisor's check and vpcd's bind
(the ports lie in the kernel's ephemeral range, so any outgoing connection may take one): pcscd's
vpcd cannot listen, and the supervisor moves on to the next free block of ports."""

from __future__ import annotations

import socket

import pytest
from keyload_station import supervisor
from station_support import AS_APPLET_CLASS


def test_up_moves_to_the_next_port_block_when_vpcd_cannot_listen(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if not AS_APPLET_CLASS.is_file():
        pytest.skip("the applets are not built: run `ant station`")
    if supervisor.status().running:
        pytest.skip("a station is already running; this test starts its own")
    first = supervisor._free_port_block(1)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taker:
        taker.bind(("", first))
        taker.listen()
        checked = supervisor._can_listen
        # The check says free, as it would have a moment before the port was taken.
        monkeypatch.setattr(supervisor, "_can_listen", lambda port: port == first or checked(port))
        status = supervisor.up(["AS"], timeout=60)
        try:
            (slot,) = status.readers
            assert slot.port > first and slot.state == "connected"
        finally:
            supervisor.down()
