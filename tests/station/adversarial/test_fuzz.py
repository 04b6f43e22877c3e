"""Property-based fuzzing of both applets through pyscard, pcscd and the station, in every
life-cycle state: random and mutated APDUs of every shape (short and extended cases, Lc that
promises more or less than is sent, headers cut short, random bytes, valid commands with bytes
flipped, inserted or dropped). For each APDU:

- the card answers with a status word, never 6Fxx (an exception the applet did not map);
- after a refusal INFO and LIST KEYS are byte for byte as before, except the try counter (and
  the EI's life cycle, which follows it) after 63Cx, or 6982 from IMPORT KEY (§4.3 step 8);
- an OPERATIONAL card stays OPERATIONAL, a BLOCKED one BLOCKED;

and the station is still up with every card answering at the end.

Reproducible: hypothesis runs from a fixed seed without its example database. The number of
examples per state (``KEYLOAD_FUZZ_EXAMPLES``, default 700) and the seed (``KEYLOAD_FUZZ_SEED``)
come from the environment: the CI run is short, a long run is e.g.

    KEYLOAD_FUZZ_EXAMPLES=20000 python3 -m pytest tests/test_adversarial_fuzz.py

and a failure prints the APDU and the environment that reproduces it.

One-byte APDUs are never sent: vpcd's socket protocol reads a one-byte message as a power
control (power off, on, reset, ATR), so a one-byte APDU cannot reach a virtual card at all.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from adversarial_support import (
    PIN,
    TEST_SET,
    TRANSPORT_KEY,
    AppKey,
    Bench,
    command,
    exchange,
    export_data,
    is_verification_failure,
    load,
    proprietary,
    snapshot,
    verify_apdu,
)
from hypothesis import HealthCheck, given, note, seed, settings
from hypothesis import strategies as st
from keyload_host.apdu import Response
from keyload_host.cards import Card
from keyload_host.config import SlotConfig
from keyload_host.protocol import (
    AID_AS,
    AID_EI,
    CLA_ISO,
    CLA_PROPRIETARY,
    P1_SELECT_BY_NAME,
    SW,
    Ins,
    LifeCycle,
    Usage,
)
from keyload_host.transport import PcscTransport
from keyload_station import supervisor as station
from keyload_station.cardset import set_up_as, set_up_ei
from station_support import StationUp

EXAMPLES_ENV = "KEYLOAD_FUZZ_EXAMPLES"
SEED_ENV = "KEYLOAD_FUZZ_SEED"
EXAMPLES = int(os.environ.get(EXAMPLES_ENV, "700"))
SEED = int(os.environ.get(SEED_ENV, "4B4C"), 16)

ROLES = ("AS", "AS", "EI", "EI", "EI")
AS_SETUP, AS_OPERATIONAL, EI_SETUP, EI_OPERATIONAL, EI_BLOCKED = range(len(ROLES))

AUTH = AppKey.holding(
    0x03, Usage.AUTHENTICATE, bytes.fromhex("00112233445566778899AABBCCDDEEFF"), 2
)
MAC = AppKey.holding(0x10, Usage.MAC, bytes(range(24)), 1, diversify=True)
SLOT_AUTH = SlotConfig(0x01, 16, Usage.AUTHENTICATE, accepts_import=True)
SLOT_MAC = SlotConfig(0x05, 24, Usage.MAC, accepts_import=True)
SERIAL = bytes.fromhex("4B4C0000000000F1")
BLOCKED_SERIAL = bytes.fromhex("4B4C0000000000F2")
RETRY_LIMIT = 15

SHORT_MAX = 255
EXTENDED_DATA_MAX = 700
"""Longer than any short APDU and than jCardSim's APDU buffer, short of vpcd's limits."""


# ------------------------------------------------------------------------------ APDU strategies


def _valid_commands(block: bytes) -> list[bytes]:
    """Well-formed commands of both roles, the seeds of the mutations."""
    return [
        command(CLA_ISO, Ins.SELECT, P1_SELECT_BY_NAME, 0, AID_AS, 256),
        command(CLA_ISO, Ins.SELECT, P1_SELECT_BY_NAME, 0, AID_EI, 256),
        proprietary(Ins.GET_INFO, le=256),
        proprietary(Ins.LIST_KEYS, le=256),
        proprietary(Ins.SET_TRANSPORT_KEY, TRANSPORT_KEY),
        proprietary(Ins.SET_SERIAL, SERIAL),
        proprietary(Ins.PUT_APP_KEY, bytes([0x21, Usage.MAC, 0, 1, 0, 0xFF, 0xFF]) + bytes(24)),
        proprietary(Ins.DEFINE_SLOT, bytes([0x21, 24, Usage.MAC, 1])),
        proprietary(Ins.SET_RETRY_LIMIT, b"\x05"),
        proprietary(Ins.SET_PIN, PIN),
        proprietary(Ins.LOCK),
        verify_apdu(PIN),
        command(CLA_ISO, Ins.GET_CHALLENGE, le=16),
        proprietary(Ins.EXPORT_KEY, export_data(AUTH.ref1, 1, bytes(16), SERIAL), 256),
        proprietary(Ins.IMPORT_KEY, block),
        command(CLA_ISO, Ins.INTERNAL_AUTHENTICATE, 0, SLOT_AUTH.ref, b"challenge", 16),
    ]


def _byte_among(values: tuple[int, ...]) -> st.SearchStrategy[int]:
    return st.one_of(st.sampled_from(values), st.integers(0, 0xFF))


_CLAS = (CLA_ISO, CLA_PROPRIETARY, 0x84, 0x8C, 0x90, 0x81, 0x0C, 0x10, 0xFF)
_INS = (*(int(ins) for ins in Ins), 0x00, 0xFF, 0xCA, 0xB0, 0xD6, 0x70, 0xE2)
_PARAMETERS = (0x00, 0x01, 0x04, 0x0C, 0x80, 0x81, 0xFF)


def _extended(length: int) -> bytes:
    """An extended length field: 00 and two bytes."""
    return b"\x00" + (length & 0xFFFF).to_bytes(2)


def _encode(form: str, header: bytes, data: bytes, le: int) -> bytes:
    """``header`` followed by ``data`` and ``le`` in one of the ISO 7816-4 cases, or broken."""
    short = data[:SHORT_MAX] or b"\0"  # case 3 and 4 carry 1..255 bytes
    lc = bytes([len(short)])
    forms = {
        "case 1": header,
        "case 2": header + bytes([le & 0xFF]),
        "case 3": header + lc + short,
        "case 4": header + lc + short + bytes([le & 0xFF]),
        "case 2E": header + _extended(le),
        "case 3E": header + _extended(len(data)) + data,
        "case 4E": header + _extended(len(data)) + data + _extended(le)[1:],
        "Lc promises more": header + bytes([min(len(short) + 1, SHORT_MAX)]) + short[:-1],
        "Lc promises less": header + bytes([len(short) // 2]) + short + b"\0",
        "extended Lc promises more": header + _extended(len(data) + 1 + le) + data,
        "extended Lc cut short": header + b"\x00" + data[:1],
        "header cut short": header[: 2 + le % 2],
    }
    return forms[form]


FORMS = (
    "case 1",
    "case 2",
    "case 3",
    "case 4",
    "case 2E",
    "case 3E",
    "case 4E",
    "Lc promises more",
    "Lc promises less",
    "extended Lc promises more",
    "extended Lc cut short",
    "header cut short",
)


@st.composite
def structured_apdus(draw: st.DrawFn) -> bytes:
    header = bytes(
        [
            draw(_byte_among(_CLAS)),
            draw(_byte_among(_INS)),
            draw(_byte_among(_PARAMETERS)),
            draw(_byte_among(_PARAMETERS)),
        ]
    )
    sizes = (48, SHORT_MAX + 2, EXTENDED_DATA_MAX)
    data = draw(st.one_of(*(st.binary(max_size=size) for size in sizes)))
    le = draw(st.one_of(st.sampled_from((0x00, 0x10, 0x01, 0xFF)), st.integers(0, 0x1FF)))
    return _encode(draw(st.sampled_from(FORMS)), header, data, le)


@st.composite
def mutated_apdus(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    apdu = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, max(len(apdu) - 1, 0)))
        operation = draw(st.sampled_from(("flip", "set", "insert", "delete", "truncate", "append")))
        if operation == "flip" and apdu:
            apdu[position] ^= 1 << draw(st.integers(0, 7))
        elif operation == "set" and apdu:
            apdu[position] = draw(st.integers(0, 0xFF))
        elif operation == "insert":
            apdu[position:position] = draw(st.binary(min_size=1, max_size=8))
        elif operation == "delete":
            del apdu[position : position + draw(st.integers(1, 8))]
        elif operation == "truncate":
            del apdu[position:]
        else:
            apdu += draw(st.binary(min_size=1, max_size=16))
    return bytes(apdu)


def apdus(seeds: list[bytes]) -> st.SearchStrategy[bytes]:
    """Every kind of APDU, never shorter than two bytes (see the module docstring)."""
    return st.one_of(
        structured_apdus(), mutated_apdus(seeds), st.binary(min_size=2, max_size=SHORT_MAX + 9)
    ).filter(lambda apdu: len(apdu) >= 2)


# ------------------------------------------------------------------------------ cards per state


@dataclass
class Target:
    """One card in the life-cycle state under test, and how to put it back into that state
    before each APDU (a verified PIN, every try, a fresh challenge)."""

    bench: Bench
    index: int
    life_cycle: LifeCycle
    restore: Callable[[Target], None]

    @property
    def transport(self) -> PcscTransport:
        return self.bench.transport(self.index)

    @property
    def role(self) -> str:
        return ROLES[self.index]

    @property
    def card(self) -> Card:
        return (
            self.bench.as_card(self.index) if self.role == "AS" else self.bench.ei_card(self.index)
        )


def _restore_setup(target: Target) -> None:
    """A card in SETUP stays in SETUP; one that a fuzzed LOCK locked is replaced."""
    if target.card.select().life_cycle != LifeCycle.SETUP:
        target.bench.fresh(target.index)
        target.card.select()


def _restore_as(target: Target) -> None:
    """A verified PIN gives back every PIN try and opens EXPORT KEY to the APDU."""
    target.card.select()
    target.card.verify_pin(PIN)


def _restore_ei(target: Target) -> None:
    """A good import gives back every try; a fresh challenge lets IMPORT KEY reach the CAS."""
    if target.card.select().tries_remaining < RETRY_LIMIT:
        exporter = Target(target.bench, AS_OPERATIONAL, LifeCycle.OPERATIONAL, _restore_as)
        _restore_as(exporter)
        load(exporter.card, target.card, AUTH.ref1, SLOT_AUTH.ref)
    target.card.get_challenge()


def _restore_selection(target: Target) -> None:
    target.card.select()


STATES = {
    AS_SETUP: (LifeCycle.SETUP, _restore_setup),
    AS_OPERATIONAL: (LifeCycle.OPERATIONAL, _restore_as),
    EI_SETUP: (LifeCycle.SETUP, _restore_setup),
    EI_OPERATIONAL: (LifeCycle.OPERATIONAL, _restore_ei),
    EI_BLOCKED: (LifeCycle.BLOCKED, _restore_selection),
}


@dataclass(frozen=True)
class Fuzzing:
    bench: Bench
    seeds: list[bytes]


@pytest.fixture(scope="module")
def fuzzing(station_up: StationUp) -> Iterator[Fuzzing]:
    """An AS and an EI in SETUP (blank), a locked AS and EI of one set (a key loaded), and an EI
    blocked by one forged block; at the end the station must still be up, every card in."""
    bench = Bench(ROLES)
    try:
        as_card, ei = bench.as_card(AS_OPERATIONAL), bench.ei_card(EI_OPERATIONAL)
        set_up_as(as_card, (AUTH, MAC), TEST_SET)
        set_up_ei(ei, SERIAL, (SLOT_AUTH, SLOT_MAC), TEST_SET, retry_limit=RETRY_LIMIT)
        as_card.verify_pin(PIN)
        block = load(as_card, ei, AUTH.ref1, SLOT_AUTH.ref)
        blocked = bench.ei_card(EI_BLOCKED)
        set_up_ei(blocked, BLOCKED_SERIAL, (SLOT_AUTH,), TEST_SET, retry_limit=1)
        blocked.get_challenge()
        assert exchange(blocked.transport, proprietary(Ins.IMPORT_KEY, block)).sw == 0x63C0
        yield Fuzzing(bench, _valid_commands(block))
    finally:
        bench.close()
    status = station.status()
    assert status.running, "the station did not survive the fuzzing"
    assert all(reader.state == "connected" for reader in status.readers), status.readers


# ------------------------------------------------------------------------------ the property


def _spends_a_try(role: str, sw: int) -> bool:
    """The refusals after which §4 lets the try counter (and the EI's life cycle) move."""
    return is_verification_failure(sw) or (role == "EI" and sw == SW.SECURITY_STATUS_NOT_SATISFIED)


def check_one(target: Target, apdu: bytes) -> None:
    target.restore(target)
    before = snapshot(target.transport)
    raw = target.transport.transmit(apdu)
    assert len(raw) >= 2, f"{len(raw)}-byte answer: the card or the station is gone"
    response = Response.parse(raw)
    note(f"answer {response.sw:04X} with {len(response.data)} bytes")
    assert response.sw >> 8 != 0x6F, f"{response.sw:04X}: an exception escaped the applet"
    target.card.select()  # the APDU may have been a SELECT of nothing
    after = snapshot(target.transport)
    if response.sw == SW.OK:
        return  # a command that succeeded may change what it is meant to change
    if _spends_a_try(target.role, response.sw):
        assert after.tries == before.tries - 1, f"tries {before.tries} -> {after.tries}"
        assert after.without_tries() == before.without_tries()
    else:
        assert after == before, "a refused command changed what the card stores"
    assert after.life_cycle == target.life_cycle


def _reproduce(state: str) -> str:
    return (
        f"reproduce: {SEED_ENV}={SEED:X} {EXAMPLES_ENV}={EXAMPLES} python3 -m pytest "
        f"'tests/test_adversarial_fuzz.py::test_no_apdu_breaks_a_card[{state}]'"
    )


STATE_IDS = {
    AS_SETUP: "AS-SETUP",
    AS_OPERATIONAL: "AS-OPERATIONAL",
    EI_SETUP: "EI-SETUP",
    EI_OPERATIONAL: "EI-OPERATIONAL",
    EI_BLOCKED: "EI-BLOCKED",
}


@pytest.mark.parametrize("index", list(STATES), ids=STATE_IDS.__getitem__)
def test_no_apdu_breaks_a_card(fuzzing: Fuzzing, index: int) -> None:
    life_cycle, restore = STATES[index]
    target = Target(fuzzing.bench, index, life_cycle, restore)
    apdus_before = {reader.name: reader.apdus for reader in station.status().readers}

    @seed(SEED + index)
    @settings(
        max_examples=EXAMPLES,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(apdus(fuzzing.seeds))
    def property_holds(apdu: bytes) -> None:
        note(_reproduce(STATE_IDS[index]))
        check_one(target, apdu)

    property_holds()
    reader = fuzzing.bench.readers[index]
    served = {slot.name: slot.apdus for slot in station.status().readers}[reader]
    assert served - apdus_before[reader] >= EXAMPLES, "the fuzzed APDUs did not reach the card"
