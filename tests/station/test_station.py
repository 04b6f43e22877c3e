"""The simulated station for real: pcscd, vpcd, the Java station and the keyload applets.

These tests start pcscd themselves when none runs (as `keyload-host sim up` does) and leave the
station down at the end. They need the built applets and are skipped, with the reason, while
build/applets/classes has no AsApplet; they refuse to disturb a station that is already running.
"""

from __future__ import annotations

import socket
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from keyload_host.protocol import AID_AS, AID_EI, CLA_PROPRIETARY, SW, Info, Ins, LifeCycle, Role
from keyload_host.transport import Pcsc
from keyload_station import supervisor as station
from smartcard import scard
from station_support import StationUp

ROLES = ("AS", "EI", "EI")
AS_READER, EI_READER, SECOND_EI_READER = (station.reader_name(i) for i in range(len(ROLES)))
AID_OF_ROLE = {"AS": AID_AS, "EI": AID_EI}
# A transport key for tests only: it exists to change persistent state that INFO shows.
TEST_TRANSPORT_KEY = bytes(range(0x40, 0x50))
ROUND_TRIPS = 1000


class Connection:
    """A raw PC/SC connection to one reader, over pyscard's thin layer."""

    def __init__(self, reader: str) -> None:
        result, self.context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        assert result == scard.SCARD_S_SUCCESS, scard.SCardGetErrorMessage(result)
        result, self.card, self.protocol = scard.SCardConnect(
            self.context, reader, scard.SCARD_SHARE_SHARED, scard.SCARD_PROTOCOL_T1
        )
        assert result == scard.SCARD_S_SUCCESS, scard.SCardGetErrorMessage(result)

    def exchange(self, apdu: bytes) -> tuple[int, bytes]:
        """The PC/SC result and the raw response (data and status word)."""
        result, response = scard.SCardTransmit(self.card, self.protocol, list(apdu))
        return result, bytes(response) if result == scard.SCARD_S_SUCCESS else b""

    def command(self, apdu: bytes) -> tuple[bytes, int]:
        """Response data and status word of an exchange that must succeed."""
        result, response = self.exchange(apdu)
        assert result == scard.SCARD_S_SUCCESS, scard.SCardGetErrorMessage(result)
        assert len(response) >= 2, f"{len(response)}-byte response"
        return response[:-2], int.from_bytes(response[-2:])

    def vanishes_on(self, apdu: bytes) -> bool:
        """Whether the card is gone when this APDU is sent: vpcd reports a card that leaves
        mid-command as an empty response, PC/SC as an error once pcscd has noticed."""
        result, response = self.exchange(apdu)
        return result != scard.SCARD_S_SUCCESS or len(response) < 2

    def select(self, aid: bytes) -> Info:
        data, sw = self.command(bytes([0x00, Ins.SELECT, 0x04, 0x00, len(aid)]) + aid + b"\x00")
        assert sw == SW.OK, hex(sw)
        return Info.parse(data)

    def reconnect(self, disposition: int) -> None:
        result, self.protocol = scard.SCardReconnect(
            self.card, scard.SCARD_SHARE_SHARED, scard.SCARD_PROTOCOL_T1, disposition
        )
        assert result == scard.SCARD_S_SUCCESS, scard.SCardGetErrorMessage(result)

    def close(self) -> None:
        scard.SCardDisconnect(self.card, scard.SCARD_LEAVE_CARD)
        scard.SCardReleaseContext(self.context)


Connect = Callable[[str], Connection]


@pytest.fixture
def connect(station_up: StationUp) -> Iterator[Connect]:
    """``connect(reader)`` opens a Connection that is closed after the test."""
    opened: list[Connection] = []

    def open_connection(reader: str) -> Connection:
        opened.append(Connection(reader))
        return opened[-1]

    yield open_connection
    for connection in opened:
        connection.close()


GET_INFO = bytes([CLA_PROPRIETARY, Ins.GET_INFO, 0, 0, 0])
SET_TRANSPORT_KEY = (
    bytes([CLA_PROPRIETARY, Ins.SET_TRANSPORT_KEY, 0, 0, len(TEST_TRANSPORT_KEY)])
    + TEST_TRANSPORT_KEY
)


def set_transport_key(card: Connection) -> None:
    assert card.command(SET_TRANSPORT_KEY)[1] == SW.OK


def slot(reader: str) -> station.ReaderSlot:
    return next(s for s in station.status().readers if s.name == reader)


def test_up_brings_every_card_in_setup_state(station_up: StationUp, connect: Connect) -> None:
    status = station_up.status
    assert status.running
    assert [(s.name, s.role, s.state) for s in status.readers] == [
        (station.reader_name(i), role, "connected") for i, role in enumerate(ROLES)
    ]
    first = status.readers[0].port
    assert [s.port for s in status.readers] == [first, first + 1, first + 2]
    for reader_slot in status.readers:
        info = connect(reader_slot.name).select(AID_OF_ROLE[reader_slot.role])
        assert info.role == Role[reader_slot.role]
        assert info.life_cycle == LifeCycle.SETUP
        assert not info.transport_key_set


def test_up_again_keeps_the_running_station(station_up: StationUp) -> None:
    again = station.up(ROLES)
    assert [s.name for s in again.readers] == [s.name for s in station_up.status.readers]
    with pytest.raises(station.StationError, match="already up"):
        station.up(("AS",))


def test_status_counts_apdus(connect: Connect) -> None:
    before = slot(AS_READER).apdus
    card = connect(AS_READER)
    card.select(AID_AS)
    card.command(GET_INFO)
    assert slot(AS_READER).apdus >= before + 2


def test_remove_then_reinsert_keeps_persistent_state(connect: Connect) -> None:
    station.swap(EI_READER)
    set_transport_key(_selected(connect, EI_READER, AID_EI))

    station.remove(EI_READER)
    assert slot(EI_READER).state == "removed"
    assert scard_present(EI_READER) is False

    station.reinsert(EI_READER)
    info = connect(EI_READER).select(AID_EI)
    assert info.transport_key_length == len(TEST_TRANSPORT_KEY)
    assert info.life_cycle == LifeCycle.SETUP


def test_swap_gives_a_fresh_blank_card(connect: Connect) -> None:
    set_transport_key(_selected(connect, SECOND_EI_READER, AID_EI))
    with Pcsc() as pcsc:
        watch = pcsc.watch([SECOND_EI_READER])
        events = watch.cards()[SECOND_EI_READER]
        station.swap(SECOND_EI_READER)
        # PC/SC saw the old card leave and the new one arrive: two card events
        assert watch.cards()[SECOND_EI_READER] == events + 2
    assert not connect(SECOND_EI_READER).select(AID_EI).transport_key_set

    station.swap(SECOND_EI_READER, "AS")
    assert connect(SECOND_EI_READER).select(AID_AS).role == Role.AS
    station.swap(SECOND_EI_READER, "EI")
    assert slot(SECOND_EI_READER).role == "EI"


def test_pull_before_fails_the_next_transmit_unseen(connect: Connect) -> None:
    station.swap(AS_READER)
    card = _selected(connect, AS_READER, AID_AS)
    station.pull(AS_READER, 1, "before")
    assert card.vanishes_on(SET_TRANSPORT_KEY)
    assert slot(AS_READER).state == "removed"
    assert card.vanishes_on(GET_INFO), "a pulled card must stay gone"

    station.reinsert(AS_READER)
    assert not connect(AS_READER).select(AID_AS).transport_key_set


def test_pull_after_fails_the_transmit_but_the_applet_acted(connect: Connect) -> None:
    station.swap(AS_READER)
    card = _selected(connect, AS_READER, AID_AS)
    station.pull(AS_READER, 2, "after")
    assert card.command(GET_INFO)[1] == SW.OK
    assert card.vanishes_on(SET_TRANSPORT_KEY)

    station.reinsert(AS_READER)
    assert connect(AS_READER).select(AID_AS).transport_key_length == len(TEST_TRANSPORT_KEY)


@pytest.mark.parametrize("disposition", [scard.SCARD_RESET_CARD, scard.SCARD_UNPOWER_CARD])
def test_power_cycle_clears_the_selection(connect: Connect, disposition: int) -> None:
    card = _selected(connect, EI_READER, AID_EI)
    assert card.command(GET_INFO)[1] == SW.OK
    card.reconnect(disposition)
    assert card.command(GET_INFO)[1] != SW.OK, "the applet must not stay selected"
    card.select(AID_EI)
    assert card.command(GET_INFO)[1] == SW.OK


def test_pcscd_restart_is_a_power_loss_that_keeps_state(
    station_up: StationUp, connect: Connect
) -> None:
    if not station_up.status.pcscd_started_by_us:
        pytest.skip("pcscd was running before the tests: it is not theirs to restart")
    station.swap(SECOND_EI_READER)
    set_transport_key(_selected(connect, SECOND_EI_READER, AID_EI))
    station.remove(AS_READER)

    station.restart_pcscd()

    assert [s.state for s in station.status().readers] == ["removed", "connected", "connected"]
    info = connect(SECOND_EI_READER).select(AID_EI)
    assert info.transport_key_length == len(TEST_TRANSPORT_KEY)
    station.reinsert(AS_READER)
    assert connect(AS_READER).select(AID_AS).role == Role.AS


@pytest.mark.usefixtures("station_up")
def test_reader_errors_say_what_is_wrong() -> None:
    with pytest.raises(station.StationError, match="no reader named 'nope'"):
        station.remove("nope")
    with pytest.raises(station.StationError, match="already holds a card"):
        station.insert(AS_READER, "EI")
    with pytest.raises(station.StationError, match="no card was removed"):
        station.reinsert(AS_READER)


def test_trivial_apdu_round_trip(
    station_up: StationUp, connect: Connect, capsys: pytest.CaptureFixture[str]
) -> None:
    card = _selected(connect, AS_READER, AID_AS)
    timings = []
    for _ in range(ROUND_TRIPS):
        began = time.perf_counter()
        data, sw = card.command(GET_INFO)
        timings.append(time.perf_counter() - began)
        assert sw == SW.OK
        assert Info.parse(data).role == Role.AS
    with capsys.disabled():
        print(
            f"\nstation: up in {station_up.seconds:.2f} s; GET INFO round trip through pyscard, "
            f"pcscd, vpcd and the station: median {statistics.median(timings) * 1e3:.3f} ms "
            f"over {ROUND_TRIPS}"
        )


def test_arguments_are_checked_before_anything_starts() -> None:
    with pytest.raises(station.StationError, match="among AS, EI, EMPTY"):
        station.up(("AS", "XX"))
    with pytest.raises(station.StationError, match="use remove"):
        station.insert(AS_READER, "EMPTY")
    with pytest.raises(station.StationError, match="'before' or 'after'"):
        station.pull(AS_READER, 1, "during")
    with pytest.raises(station.StationError, match="counts from 1"):
        station.pull(AS_READER, 0)


def test_reader_names_follow_the_vpcd_entries() -> None:
    assert [station.reader_name(i) for i in range(4)] == [
        "keyload station 0 00 00",
        "keyload station 0 00 01",
        "keyload station 1 00 00",
        "keyload station 1 00 01",
    ]


def test_each_vpcd_entry_gets_its_own_driver_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(station.STATE_DIR_ENV, str(tmp_path))
    station._write_reader_conf(3, 40000)
    conf = tmp_path / "reader.conf.d"
    entries = {path.name: path.read_text() for path in conf.iterdir()}
    assert sorted(entries) == ["keyload-station-0", "keyload-station-1"]
    assert 'FRIENDLYNAME "keyload station 1"' in entries["keyload-station-1"]
    assert "CHANNELID 40002" in entries["keyload-station-1"]
    drivers = [
        Path(line.split()[1])
        for text in entries.values()
        for line in text.splitlines()
        if line.startswith("LIBPATH")
    ]
    assert drivers[0].read_bytes() == drivers[1].read_bytes()
    assert drivers[0].stat().st_ino != drivers[1].stat().st_ino, "one loaded library per entry"
    assert station._shared_vpcd_drivers(conf) == []


def test_a_config_sharing_the_vpcd_driver_is_recognised(tmp_path: Path) -> None:
    driver = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so"
    for entry in range(2):
        port = 35963 + 2 * entry
        (tmp_path / f"vpcd{entry}").write_text(
            f'FRIENDLYNAME "x {entry}"\nDEVICENAME /dev/null:{port}\nLIBPATH {driver}\n'
        )
    assert station._shared_vpcd_drivers(tmp_path) == [driver]
    assert station._pcscd_conf_dir(["pcscd", "-f", "-c", str(tmp_path)]) == tmp_path
    assert station._pcscd_conf_dir(["pcscd", f"--config={tmp_path}"]) == tmp_path
    assert station._pcscd_conf_dir(["pcscd", "-f"]) == Path(station.PCSCD_DEFAULT_CONF_DIR)


def _selected(connect: Connect, reader: str, aid: bytes) -> Connection:
    card = connect(reader)
    card.select(aid)
    return card


def scard_present(reader: str) -> bool:
    result, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    assert result == scard.SCARD_S_SUCCESS
    try:
        result, states = scard.SCardGetStatusChange(
            context, 0, [(reader, scard.SCARD_STATE_UNAWARE)]
        )
        assert result == scard.SCARD_S_SUCCESS
        return bool(states[0][1] & scard.SCARD_STATE_PRESENT)
    finally:
        scard.SCardReleaseContext(context)


def test_the_default_ports_skip_a_block_vpcd_could_not_listen_on() -> None:
    first = station._free_port_block(3)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("", first + 2))
        taken.listen()
        second = station._free_port_block(3)
    assert second >= first + station.READERS_PER_ENTRY
    assert all(station._can_listen(port) for port in range(second, second + 3))
