"""T=0 cards through pyscard, pcscd and vpcd: the station's T=0 readers and the host's answers.

Many SAMs and older contact cards speak T=0 only. Such a card cannot return data in the exchange
that carries a command with data (it answers 61xx and the host fetches the data with GET RESPONSE),
and it answers 6Cxx when the Le of a command without data is not the length it has (the host
repeats the command with Le = xx). The station's ``ROLE:T0`` readers make cards that do exactly
that and whose ATR offers T=0 only, so pcscd negotiates T=0 as it would for a real one.

The station has three T=0 readers (an AS and two EIs) and one T=1 EI reader as the control: the
same host code must take the T=0 paths on the first three and never on the last. Like
tests/test_station.py, this starts pcscd when none runs and skips, with the reason, when the
applets are not built or a station is already up.
"""

from __future__ import annotations

import itertools
import json
import secrets
import shlex
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from integration_support import as_config, ei_config, leaked, write_secret_file
from keyload_host import crypto
from keyload_host.cards import AsCard, EiCard
from keyload_host.cli import main
from keyload_host.protocol import SW, Info, Ins, LifeCycle, Role, Usage, kcv_text
from keyload_host.transport import Pcsc, PcscTransport
from keyload_station import supervisor as station
from keyload_station.cardset import AppKey
from smartcard import scard
from station_support import StationUp

ROLES = ("AS:T0", "EI:T0", "EI:T0", "EI")
AS_READER, EI_T0_A, EI_T0_B, EI_T1 = (station.reader_name(i) for i in range(len(ROLES)))
T0_READERS = (AS_READER, EI_T0_A, EI_T0_B)
EI_READERS = (EI_T0_A, EI_T0_B, EI_T1)
ATR_T0 = bytes.fromhex("3B0980574B45594C4F4144")
"""The station's T=0 ATR: no interface bytes, so T=0 is the only protocol offered."""
BLANK_INFO_LENGTH = 11 + 8
"""INFO of a card without serial (PROTOCOL.md §4.1, and the 8 bytes of the rotation extension,
§9.2): what a blank AS answers to SELECT."""
SW1_BYTES_AVAILABLE = 0x61
SW1_WRONG_LE = 0x6C

TRANSPORT_KEY_LENGTH = 32
AUTH_KEY = AppKey(0x03, 0x01, Usage.AUTHENTICATE, 16, 0x0001, diversify=False)
MAC_KEY = AppKey(0x10, 0x02, Usage.MAC, 24, 0x0007, diversify=True)
ENC_KEY = AppKey(0x20, 0x03, Usage.ENCRYPT, 32, 0x0102, diversify=False)
APP_KEYS = (AUTH_KEY, MAC_KEY, ENC_KEY)
PIN_ENV = "KEYLOAD_T0_TEST_PIN"
YES = ("--yes",)
"""LOCK without asking."""
AUTH_CHALLENGE = bytes.fromhex("00112233445566778899")


# ------------------------------------------------------------------------------ PC/SC exchanges


@dataclass(frozen=True)
class Exchange:
    """One raw PC/SC exchange, without any command or response data (they may carry secrets)."""

    reader: str
    ins: int
    p3: int | None
    """P3 of a header-only command (its Le), else None."""
    sw: int


Recorder = Callable[[], list[Exchange]]


def _record_exchanges(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    """Records every raw exchange of the host's PC/SC transport; call the result to get them."""
    seen: list[Exchange] = []
    transmit = PcscTransport.transmit

    def recording(self: PcscTransport, apdu: bytes) -> bytes:
        response = transmit(self, apdu)
        p3 = apdu[4] if len(apdu) == 5 else None
        seen.append(Exchange(self.reader, apdu[1], p3, int.from_bytes(response[-2:])))
        return response

    monkeypatch.setattr(PcscTransport, "transmit", recording)
    return lambda: list(seen)


@pytest.fixture
def exchanges(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    return _record_exchanges(monkeypatch)


def _sw1(exchange: Exchange) -> int:
    return exchange.sw >> 8


def _t0_answers(exchanges: Sequence[Exchange], reader: str) -> list[Exchange]:
    return [
        exchange
        for exchange in exchanges
        if exchange.reader == reader and _sw1(exchange) in (SW1_BYTES_AVAILABLE, SW1_WRONG_LE)
    ]


def _followed_by(
    exchanges: Sequence[Exchange], reader: str, first: Callable[[Exchange], bool]
) -> list[tuple[Exchange, Exchange]]:
    """Pairs of consecutive exchanges on ``reader`` whose first matches ``first``."""
    on_reader = [exchange for exchange in exchanges if exchange.reader == reader]
    return [(a, b) for a, b in itertools.pairwise(on_reader) if first(a)]


# ------------------------------------------------------------------------------ pcscd and the ATR


def _connect_raw(reader: str, protocols: int) -> tuple[int, int, int, int]:
    """SCardConnect: (result, context, card, negotiated protocol)."""
    result, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    assert result == scard.SCARD_S_SUCCESS
    result, card, protocol = scard.SCardConnect(
        context, reader, scard.SCARD_SHARE_SHARED, protocols
    )
    return result, context, card, protocol


@pytest.mark.parametrize("reader", [AS_READER, EI_T0_A, EI_T1])
def test_pcscd_negotiates_the_protocol_the_atr_offers(station_up: StationUp, reader: str) -> None:
    any_protocol = scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1
    result, context, card, protocol = _connect_raw(reader, any_protocol)
    try:
        assert result == scard.SCARD_S_SUCCESS
        atr = bytes(scard.SCardStatus(card)[4])
        if reader in T0_READERS:
            assert (protocol, atr) == (scard.SCARD_PROTOCOL_T0, ATR_T0)
        else:
            assert protocol == scard.SCARD_PROTOCOL_T1
            assert atr != ATR_T0
    finally:
        scard.SCardDisconnect(card, scard.SCARD_LEAVE_CARD)
        scard.SCardReleaseContext(context)


def test_a_t0_card_refuses_a_t1_only_connection(station_up: StationUp) -> None:
    """What a program that insists on T=1 meets with a T=0 card (docs/REAL-CARDS.md names it)."""
    result, context, _card, _protocol = _connect_raw(EI_T0_A, scard.SCARD_PROTOCOL_T1)
    scard.SCardReleaseContext(context)
    assert result == scard.SCARD_E_PROTO_MISMATCH


def test_the_host_connects_with_t0_and_fetches_responses(
    station_up: StationUp, exchanges: Recorder
) -> None:
    station.swap(AS_READER)
    with Pcsc() as pcsc, pcsc.connect(AS_READER) as transport:
        info = AsCard(transport).select()
        assert transport.protocol == "T=0"
    assert (info.role, info.life_cycle) == (Role.AS, LifeCycle.SETUP)
    assert exchanges() == [
        Exchange(AS_READER, Ins.SELECT, None, (SW1_BYTES_AVAILABLE << 8) | BLANK_INFO_LENGTH),
        Exchange(AS_READER, Ins.GET_RESPONSE, BLANK_INFO_LENGTH, SW.OK),
    ]


def test_the_host_repeats_a_command_with_the_le_the_card_asks_for(
    station_up: StationUp, exchanges: Recorder
) -> None:
    station.swap(EI_T0_B)
    with Pcsc() as pcsc, pcsc.connect(EI_T0_B) as transport:
        card = EiCard(transport)
        card.select()
        info = card.get_info()
        entries = card.list_keys()
    assert isinstance(info, Info) and info.role == Role.EI
    assert entries == []
    get_info = [exchange for exchange in exchanges() if exchange.ins == Ins.GET_INFO]
    assert get_info == [
        Exchange(EI_T0_B, Ins.GET_INFO, 0x00, (SW1_WRONG_LE << 8) | BLANK_INFO_LENGTH),
        Exchange(EI_T0_B, Ins.GET_INFO, BLANK_INFO_LENGTH, SW.OK),
    ]
    list_keys = [exchange for exchange in exchanges() if exchange.ins == Ins.LIST_KEYS]
    assert list_keys == [Exchange(EI_T0_B, Ins.LIST_KEYS, 0x00, SW.OK)], (
        "an empty answer is not a wrong length"
    )


# ------------------------------------------------------------------------------ a whole job


@dataclass(frozen=True)
class Personalized:
    directory: Path
    app_keys: dict[AppKey, bytes]
    serials: dict[str, bytes]
    secrets: dict[str, bytes]
    outputs: list[str]
    exchanges: list[Exchange]


def _invoke(arguments: Sequence[str], env: dict[str, str] | None = None) -> str:
    result = CliRunner().invoke(main, list(arguments), env=env)
    assert result.exit_code == 0, f"keyload-host {' '.join(arguments)}:\n{result.output}"
    return result.output


@pytest.fixture(scope="module")
def personalized(
    station_up: StationUp, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Personalized]:
    """Fresh cards set up and personalized through the CLI: the AS and two EIs on T=0, one EI on
    T=1, all in one `personalize` run, with every raw exchange recorded."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield _personalize(tmp_path_factory.mktemp("t0-job"), _record_exchanges(monkeypatch))


def _personalize(directory: Path, record: Recorder) -> Personalized:
    for reader in (AS_READER, *EI_READERS):
        station.swap(reader)
    transport_key = secrets.token_bytes(TRANSPORT_KEY_LENGTH)
    pin = "PIN" + secrets.token_urlsafe(6)
    app_keys = {spec: secrets.token_bytes(spec.length) for spec in APP_KEYS}
    transport_key_file = write_secret_file(directory / "t.key", transport_key.hex())
    key_files = {
        spec: write_secret_file(directory / f"k{spec.ref1:02X}.key", key.hex())
        for spec, key in app_keys.items()
    }
    pin_file = write_secret_file(directory / "pin", pin)
    outputs = []
    config = as_config(directory, transport_key_file, pin_file, key_files)
    outputs.append(_invoke(["setup", "as", "--reader", AS_READER, "--config", str(config), *YES]))
    serials = {}
    for index, reader in enumerate(EI_READERS):
        serials[reader] = secrets.token_bytes(8 + 4 * index)
        config = ei_config(directory, f"ei{index}", transport_key_file, serials[reader], APP_KEYS)
        outputs.append(_invoke(["setup", "ei", "--reader", reader, "--config", str(config), *YES]))
    arguments = ["personalize", "--as-reader", AS_READER, "--pin-env", PIN_ENV]
    for reader in EI_READERS:
        arguments += ["--ei-reader", reader]
    for spec in APP_KEYS:
        arguments += ["--load", str(spec.load)]
    outputs.append(_invoke(arguments, env={PIN_ENV: pin}))
    known = {"transport key": transport_key, "PIN": pin.encode()}
    known.update((f"key {spec.ref1:02X}", key) for spec, key in app_keys.items())
    return Personalized(directory, app_keys, serials, known, outputs, record())


def test_every_key_reaches_every_ei_whatever_its_protocol(personalized: Personalized) -> None:
    for reader in EI_READERS:
        document = json.loads(_invoke(["info", "--reader", reader, "--json"]))
        serial = personalized.serials[reader]
        assert document["info"]["serial"] == serial.hex().upper()
        slots = {entry["ref"]: entry for entry in document["keys"]}
        for spec in APP_KEYS:
            key = personalized.app_keys[spec]
            unit_key = crypto.diversify(key, serial) if spec.diversify else key
            assert slots[spec.ref2]["loaded"], (reader, spec.load)
            assert (slots[spec.ref2]["version"], slots[spec.ref2]["kcv"]) == (
                spec.version,
                kcv_text(crypto.kcv(unit_key)),
            ), (reader, spec.load)


@pytest.mark.parametrize("reader", EI_READERS)
def test_a_loaded_key_authenticates(personalized: Personalized, reader: str) -> None:
    slot = f"{AUTH_KEY.ref2:02X}"
    printed = _invoke(
        ["authenticate", "--reader", reader, "--ref", slot, "--challenge", AUTH_CHALLENGE.hex()]
    )
    expected = crypto.aes_cmac(personalized.app_keys[AUTH_KEY], AUTH_CHALLENGE)
    assert printed.strip() == expected.hex().upper()


def test_the_as_sent_every_key_block_through_get_response(personalized: Personalized) -> None:
    pairs = _followed_by(personalized.exchanges, AS_READER, lambda e: e.ins == Ins.EXPORT_KEY)
    assert len(pairs) == len(APP_KEYS) * len(EI_READERS)
    for export, fetch in pairs:
        assert _sw1(export) == SW1_BYTES_AVAILABLE, export
        assert (fetch.ins, fetch.p3, fetch.sw) == (Ins.GET_RESPONSE, export.sw & 0xFF, SW.OK)


@pytest.mark.parametrize("reader", (EI_T0_A, EI_T0_B))
def test_t0_eis_took_both_t0_paths(personalized: Personalized, reader: str) -> None:
    wrong_le = _followed_by(personalized.exchanges, reader, lambda e: _sw1(e) == SW1_WRONG_LE)
    assert wrong_le, "no 6Cxx: GET INFO and LIST KEYS are sent with Le 00"
    for refused, repeated in wrong_le:
        assert (repeated.ins, repeated.p3, repeated.sw) == (refused.ins, refused.sw & 0xFF, SW.OK)
    fetched = _followed_by(personalized.exchanges, reader, lambda e: _sw1(e) == SW1_BYTES_AVAILABLE)
    assert fetched, "no 61xx: SELECT answers INFO"
    for announced, fetch in fetched:
        assert (fetch.ins, fetch.p3, fetch.sw) == (Ins.GET_RESPONSE, announced.sw & 0xFF, SW.OK)


def test_the_t1_ei_took_no_t0_path(personalized: Personalized) -> None:
    assert any(exchange.reader == EI_T1 for exchange in personalized.exchanges)
    assert _t0_answers(personalized.exchanges, EI_T1) == []
    assert not any(e.reader == EI_T1 and e.ins == Ins.GET_RESPONSE for e in personalized.exchanges)


def test_no_secret_in_any_output(personalized: Personalized) -> None:
    assert leaked("\n".join(personalized.outputs), personalized.secrets) == []


def test_doctor_sees_the_protocols_and_the_finished_job(personalized: Personalized) -> None:
    result = CliRunner().invoke(main, ["doctor"])
    assert result.exit_code == 0, result.output
    rows = {
        shlex.split(line)[0]: shlex.split(line)[1:]
        for line in result.output.splitlines()
        if line.startswith("'keyload station")
    }
    assert sorted(rows) == sorted((AS_READER, *EI_READERS))
    for reader, row in rows.items():
        role = "AS" if reader == AS_READER else "EI"
        protocol = "T=0" if reader in T0_READERS else "T=1"
        assert row[:4] == ["yes", protocol, role, "OPERATIONAL"]
    assert "hold every key already" in result.output
