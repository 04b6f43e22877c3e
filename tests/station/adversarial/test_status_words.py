"""PROTOCOL.md §4.4 through pyscard, pcscd and the station: each refusal must leave INFO and LIST
KEYS byte for byte as they were, except the try counter where §4 lets it move.

The JUnit suites ``applets/test/keyload/applet/AsStatusWordsTest.java`` and
``EiStatusWordsTest.java`` check every status word exhaustively in jCardSim. This module keeps,
through PC/SC: one sample of each status word per role that answers it (``SAMPLES``); the APDUs
of no ISO 7816-4 case, which the station's bridge answers before any card (``header-of-*``,
``Lc-*``, ``extended-*``); every case SECURITY.md cites (``AS1-6985-*``, ``EI4-6985-*``, the
import refusals, the key longer than T); and every case JUnit does not send: the same command to
the same role in the same life-cycle state, with the same field wrong, answered with the same
status word (JUnit checks CLA, INS and P1/P2 on OPERATIONAL cards only, so those of the SETUP and
BLOCKED cards stay here). ``IN_JUNIT`` names each case left to JUnit and the JUnit check that
covers it; the guards at the end keep that mapping honest.

The cards are set up once per module through ``keyload_station.cardset`` with known test secrets;
the table holds the refusals that need no preparation, the functions after it those that need a
challenge, a verified PIN or a forged key block.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from adversarial_support import (
    LE_ANY,
    PIN,
    SHORT_T_SET,
    TEST_SET,
    TRANSPORT_KEY,
    WELL_FORMED_FORGERY,
    WRONG_PIN,
    AppKey,
    Bench,
    command,
    exchange,
    export_data,
    export_for,
    forge_block,
    header_for,
    load,
    proprietary,
    refused,
    snapshot,
    verify_apdu,
)
from keyload_host import crypto
from keyload_host.cards import AsCard, EiCard
from keyload_host.config import SlotConfig
from keyload_host.protocol import (
    CLA_ISO,
    CLA_PROPRIETARY,
    MAX_KEYS,
    PIN_TRY_LIMIT,
    SW,
    SW_VERIFY_FAILED_BASE,
    Ins,
    LifeCycle,
    Usage,
    key_block_length,
)
from keyload_station.cardset import set_up_as, set_up_ei
from station_support import StationUp

AS_SETUP, AS_OPERATIONAL, AS_SHORT_T, EI_SETUP, EI_OPERATIONAL, EI_BLOCKED = range(6)
ROLES = ("AS", "AS", "AS", "EI", "EI", "EI")

AUTH = AppKey.holding(
    0x03, Usage.AUTHENTICATE, bytes.fromhex("00112233445566778899AABBCCDDEEFF"), 2
)
MAC_ONCE = AppKey.holding(
    0x10,
    Usage.MAC,
    bytes.fromhex("8E73B0F7DA0E6452C810F32B809079E562F8EAD2522C6B7B"),
    0x0102,
    diversify=True,
    export_limit=1,
)
ENC = AppKey.holding(0x20, Usage.ENCRYPT, bytes(range(32)), 1)
TOO_LONG = AppKey.holding(0x11, Usage.MAC, bytes(range(24)), 1)
"""Held by the AS whose transport key is 16 bytes: never exported (§2)."""

SLOT_AUTH = SlotConfig(0x01, 16, Usage.AUTHENTICATE, accepts_import=True)
SLOT_NO_IMPORT = SlotConfig(0x02, 16, Usage.AUTHENTICATE, accepts_import=False)
SLOT_MAC = SlotConfig(0x05, 24, Usage.MAC, accepts_import=True)
SLOT_ENC = SlotConfig(0x0F, 32, Usage.ENCRYPT, accepts_import=True)
SLOT_SPARE = SlotConfig(0x0E, 32, Usage.ENCRYPT, accepts_import=True)
EI_SLOTS = (SLOT_AUTH, SLOT_NO_IMPORT, SLOT_MAC, SLOT_ENC, SLOT_SPARE)
SERIAL = bytes.fromhex("4B4C0000000000A1")
BLOCKED_SERIAL = bytes.fromhex("4B4C0000000000B1")
RETRY_LIMIT = 15
UNDEFINED_REF = 0x33
SERIAL_8 = bytes(8)
R_16 = bytes(16)


AS_JUNIT = "AsStatusWordsTest"
EI_JUNIT = "EiStatusWordsTest"
IN_JUNIT = {
    # case id (role and card, SW, what) -> the JUnit test and the check of it that sends the same
    # command to the same role in the same life-cycle state, with the same field wrong
    # ------------------------------------------------------------------ AS in SETUP
    "AS0-6985-VERIFY": f"{AS_JUNIT}.setupCommands: VERIFY before LOCK",
    "AS0-6985-EXPORT": f"{AS_JUNIT}.setupCommands: EXPORT KEY before LOCK (no data there)",
    "AS0-6700-LOCK-data": f"{AS_JUNIT}.setupCommands: LOCK with one data byte",
    "AS0-6700-SET-T-15": f"{AS_JUNIT}.setupCommands: SET TRANSPORT KEY of 15 bytes",
    "AS0-6700-SET-PIN-3": f"{AS_JUNIT}.setupCommands: SET PIN of 3 bytes",
    "AS0-6700-SET-PIN-17": f"{AS_JUNIT}.setupCommands: SET PIN of 17 bytes",
    "AS0-6A80-PUT-REF-00": f"{AS_JUNIT}.setupCommands: PUT APP KEY REF1 00",
    "AS0-6A80-PUT-REF-80": f"{AS_JUNIT}.setupCommands: PUT APP KEY REF1 80",
    "AS0-6A80-PUT-usage-03": f"{AS_JUNIT}.setupCommands: PUT APP KEY usage 03",
    "AS0-6A80-PUT-version-0": f"{AS_JUNIT}.setupCommands: PUT APP KEY version 0000",
    "AS0-6A80-PUT-flags-02": f"{AS_JUNIT}.setupCommands: PUT APP KEY flags 02",
    # ------------------------------------------------------------------ AS OPERATIONAL, no PIN
    "AS1-6E00-CLA-84-secure-messaging": f"{AS_JUNIT}.classInstructionAndParameters: 8440",
    "AS1-6E00-CLA-80-for-ISO": f"{AS_JUNIT}.classInstructionAndParameters: VERIFY, CLA 80",
    "AS1-6D00-INS-4C-other-role": f"{AS_JUNIT}.classInstructionAndParameters: IMPORT KEY",
    "AS1-6D00-INS-unknown": f"{AS_JUNIT}.classInstructionAndParameters: INS FF (FE here)",
    "AS1-6A86-GET-INFO-P1": f"{AS_JUNIT}.classInstructionAndParameters: GET INFO P1 01",
    # ------------------------------------------------------------------ EI in SETUP
    "EI3-6985-CHALLENGE": f"{EI_JUNIT}.setupCommands: GET CHALLENGE before LOCK",
    "EI3-6985-IMPORT": f"{EI_JUNIT}.setupCommands: IMPORT KEY before LOCK (no data there)",
    "EI3-6700-SET-SERIAL-7": f"{EI_JUNIT}.setupCommands: SET SERIAL of 7 bytes",
    "EI3-6700-SET-SERIAL-17": f"{EI_JUNIT}.setupCommands: SET SERIAL of 17 bytes",
    "EI3-6700-DEFINE-3": f"{EI_JUNIT}.setupCommands: DEFINE SLOT of 3 bytes",
    "EI3-6700-DEFINE-5": f"{EI_JUNIT}.setupCommands: DEFINE SLOT of 5 bytes",
    "EI3-6700-RETRY-2": f"{EI_JUNIT}.setupCommands: SET RETRY LIMIT of 2 bytes",
    "EI3-6A80-DEFINE-REF-00": f"{EI_JUNIT}.setupCommands: DEFINE SLOT REF2 00",
    "EI3-6A80-DEFINE-length-17": f"{EI_JUNIT}.setupCommands: DEFINE SLOT key length 17",
    "EI3-6A80-DEFINE-usage-03": f"{EI_JUNIT}.setupCommands: DEFINE SLOT usage 03",
    "EI3-6A80-DEFINE-flags-02": f"{EI_JUNIT}.setupCommands: DEFINE SLOT flags 03 (02 here)",
    "EI3-6A80-RETRY-0": f"{EI_JUNIT}.setupCommands: SET RETRY LIMIT 0",
    "EI3-6A80-RETRY-16": f"{EI_JUNIT}.setupCommands: SET RETRY LIMIT 16",
    # ------------------------------------------------------------------ EI OPERATIONAL
    "EI4-6D00-INS-5A-other-role": f"{EI_JUNIT}.classInstructionAndParameters: SET PIN",
    "EI4-6D00-INS-4A-other-role": f"{EI_JUNIT}.classInstructionAndParameters: EXPORT KEY",
    "EI4-6985-RETRY": f"{EI_JUNIT}.setupCommands: SET RETRY LIMIT after LOCK",
    "EI4-6985-LOCK": f"{EI_JUNIT}.setupCommands: LOCK after LOCK",
    "EI4-6985-IMPORT-no-challenge": f"{EI_JUNIT}.importNeedsAFreshChallenge: after a SELECT",
    "EI4-6A88-AUTH-undefined": f"{EI_JUNIT}.challengeAndAuthenticate: slot 33 undefined",
    "EI4-6700-AUTH-no-data": f"{EI_JUNIT}.challengeAndAuthenticate: no data",
    "EI4-6700-AUTH-65": f"{EI_JUNIT}.challengeAndAuthenticate: 65 bytes of data",
    "EI4-6700-CHALLENGE-Le-08": f"{EI_JUNIT}.challengeAndAuthenticate: Le 08",
    "EI4-6700-CHALLENGE-no-Le": f"{EI_JUNIT}.challengeAndAuthenticate: no Le",
    # ------------------------------------------------------------------ EI BLOCKED
    "EI5-6983-IMPORT": f"{EI_JUNIT}.retriesRunOutAndTheCardStaysBlocked: IMPORT KEY (no data)",
    "EI5-6983-IMPORT-short": f"{EI_JUNIT}.retriesRunOutAndTheCardStaysBlocked: the same",
    # v1.1 §8.1: a BLOCKED EI serves INTERNAL AUTHENTICATE; on an empty slot that is 6A88
    "EI5-6A88-AUTH": f"{EI_JUNIT}.retriesRunOutAndTheCardStaysBlocked: AUTHENTICATE, empty slot",
}
"""The cases of the table left to the JUnit suites, each with the check that covers it."""

EXPORT_IN_JUNIT = {
    "SN-7": f"{AS_JUNIT}.exportChecksInTheirOrder: SN of 7 bytes",
    "SN-17": f"{AS_JUNIT}.exportChecksInTheirOrder: SN of 17 bytes",
    "SN-length-lies": f"{AS_JUNIT}.exportChecksInTheirOrder: len(SN) 9, 8 bytes follow",
    "REF1-00": f"{AS_JUNIT}.exportChecksInTheirOrder: REF1 00",
    "REF2-00": f"{AS_JUNIT}.exportChecksInTheirOrder: REF2 00",
    "REF2-80": f"{AS_JUNIT}.exportChecksInTheirOrder: REF2 80",
}
"""The EXPORT KEY refusals after VERIFY left to JUnit (ids of the export test)."""


@pytest.fixture(scope="module")
def bench(station_up: StationUp) -> Iterator[Bench]:
    """Six cards: an AS and an EI in SETUP (blank), a locked AS and EI of one set (the MAC key
    exported once, its limit), an AS whose key is longer than its transport key, a BLOCKED EI."""
    bench = Bench(ROLES)
    try:
        set_up_as(bench.as_card(AS_OPERATIONAL), (AUTH, MAC_ONCE, ENC), TEST_SET)
        set_up_as(bench.as_card(AS_SHORT_T), (AUTH, TOO_LONG), SHORT_T_SET)
        set_up_ei(
            bench.ei_card(EI_OPERATIONAL), SERIAL, EI_SLOTS, TEST_SET, retry_limit=RETRY_LIMIT
        )
        as_card, ei_card = bench.as_card(AS_OPERATIONAL), bench.ei_card(EI_OPERATIONAL)
        as_card.verify_pin(PIN)
        load(as_card, ei_card, AUTH.ref1, SLOT_AUTH.ref)
        load(as_card, ei_card, MAC_ONCE.ref1, SLOT_MAC.ref)
        blocked = bench.ei_card(EI_BLOCKED)
        set_up_ei(blocked, BLOCKED_SERIAL, (SLOT_AUTH,), TEST_SET, retry_limit=1)
        blocked.get_challenge()
        forgery = exchange(blocked.transport, proprietary(Ins.IMPORT_KEY, WELL_FORMED_FORGERY))
        assert forgery.sw == SW_VERIFY_FAILED_BASE
        assert blocked.select().life_cycle == LifeCycle.BLOCKED
        yield bench
    finally:
        bench.close()


def selected(bench: Bench, index: int) -> Bench:
    """SELECT the applet again: a fresh selection has no verified PIN and no challenge."""
    card = bench.as_card(index) if ROLES[index] == "AS" else bench.ei_card(index)
    card.select()
    return bench


@dataclass(frozen=True)
class Case:
    card: int
    why: str
    apdu: bytes
    sw: int

    def __str__(self) -> str:
        return f"{ROLES[self.card]}{self.card}-{self.sw:04X}-{self.why}"


def _p(ins: Ins, data: bytes = b"", le: int | None = None) -> bytes:
    return proprietary(ins, data, le)


def _header(cla: int, ins: int, p1: int = 0, p2: int = 0, data: bytes = b"") -> bytes:
    return command(cla, ins, p1, p2, data)


PUT_FIELDS = bytes([0x03, Usage.AUTHENTICATE, 0x00, 0x01, 0x00, 0xFF, 0xFF])
"""PUT APP KEY data before the key: REF1, usage, version, flags, export limit."""


def _put(fields: bytes = PUT_FIELDS, key: bytes = bytes(16)) -> bytes:
    return _p(Ins.PUT_APP_KEY, fields + key)


def _put_with(offset: int, value: int) -> bytes:
    fields = bytearray(PUT_FIELDS)
    fields[offset] = value
    return _put(bytes(fields))


def _define(ref2: int = 0x21, length: int = 16, usage: int = Usage.AUTHENTICATE, flags: int = 1):
    return _p(Ins.DEFINE_SLOT, bytes([ref2, length, usage, flags]))


def _authenticate(ref2: int, data: bytes = b"\x01", p1: int = 0) -> bytes:
    return command(CLA_ISO, Ins.INTERNAL_AUTHENTICATE, p1, ref2, data, 16)


def _challenge(le: int | None = 16, p1: int = 0) -> bytes:
    return command(CLA_ISO, Ins.GET_CHALLENGE, p1, 0, le=le)


def _common_checks(card: int, own_ins: int, foreign_ins: tuple[int, ...]) -> list[Case]:
    """6E00, 6D00 and 6A86, which come before the life cycle and so hold in every state."""
    return [
        Case(card, "CLA-84-secure-messaging", _header(0x84, Ins.GET_INFO), SW.CLA_NOT_SUPPORTED),
        Case(card, "CLA-90-chaining", _header(0x90, Ins.GET_INFO), SW.CLA_NOT_SUPPORTED),
        Case(card, "CLA-81-logical-channel", _header(0x81, Ins.GET_INFO), SW.CLA_NOT_SUPPORTED),
        Case(card, "CLA-00-for-proprietary", _header(CLA_ISO, Ins.LIST_KEYS), SW.CLA_NOT_SUPPORTED),
        Case(card, "CLA-80-for-ISO", _header(0x80, own_ins, 0, 0x81), SW.CLA_NOT_SUPPORTED),
        Case(card, "CLA-FF", _header(0xFF, Ins.GET_INFO), SW.CLA_NOT_SUPPORTED),
        *(
            Case(
                card,
                f"INS-{ins:02X}-other-role",
                _header(CLA_PROPRIETARY, ins),
                SW.INS_NOT_SUPPORTED,
            )
            for ins in foreign_ins
        ),
        Case(card, "INS-unknown", _header(CLA_PROPRIETARY, 0xFE), SW.INS_NOT_SUPPORTED),
        Case(card, "GET-RESPONSE", _header(CLA_ISO, Ins.GET_RESPONSE), SW.INS_NOT_SUPPORTED),
        Case(card, "GET-INFO-P1", _header(CLA_PROPRIETARY, Ins.GET_INFO, 1), SW.INCORRECT_P1P2),
        Case(
            card, "LIST-KEYS-P2", _header(CLA_PROPRIETARY, Ins.LIST_KEYS, 0, 1), SW.INCORRECT_P1P2
        ),
        Case(card, "LOCK-P1", _header(CLA_PROPRIETARY, Ins.LOCK, 0x80), SW.INCORRECT_P1P2),
        # no ISO 7816-4 command case: the card's runtime refuses them before the applet
        Case(card, "header-of-2", _header(CLA_PROPRIETARY, Ins.GET_INFO)[:2], SW.WRONG_LENGTH),
        Case(card, "header-of-3", _header(CLA_PROPRIETARY, Ins.GET_INFO)[:3], SW.WRONG_LENGTH),
        Case(card, "Lc-promises-more", bytes.fromhex("805000001011"), SW.WRONG_LENGTH),
        Case(card, "Lc-promises-less", bytes.fromhex("8050000001112233"), SW.WRONG_LENGTH),
        Case(card, "extended-Lc-cut", bytes.fromhex("805000000010"), SW.WRONG_LENGTH),
        Case(card, "extended-Lc-more", bytes.fromhex("80500000000010" + "11" * 8), SW.WRONG_LENGTH),
    ]


AS_ONLY = (Ins.PUT_APP_KEY, Ins.SET_PIN, Ins.EXPORT_KEY)
EI_ONLY = (Ins.SET_SERIAL, Ins.DEFINE_SLOT, Ins.SET_RETRY_LIMIT, Ins.IMPORT_KEY)

ALL_CASES = [
    # ------------------------------------------------------------------ AS in SETUP
    *_common_checks(AS_SETUP, Ins.VERIFY, EI_ONLY),
    Case(AS_SETUP, "GET-CHALLENGE", _challenge(), SW.INS_NOT_SUPPORTED),
    Case(AS_SETUP, "INTERNAL-AUTH", _authenticate(1), SW.INS_NOT_SUPPORTED),
    Case(AS_SETUP, "VERIFY-P2-80", command(CLA_ISO, Ins.VERIFY, 0, 0x80, PIN), SW.INCORRECT_P1P2),
    Case(AS_SETUP, "VERIFY-P1-01", command(CLA_ISO, Ins.VERIFY, 1, 0x81, PIN), SW.INCORRECT_P1P2),
    Case(AS_SETUP, "EXPORT-P1", command(0x80, Ins.EXPORT_KEY, 1, 0, bytes(27)), SW.INCORRECT_P1P2),
    Case(AS_SETUP, "VERIFY", verify_apdu(PIN), SW.CONDITIONS_NOT_SATISFIED),
    Case(
        AS_SETUP,
        "EXPORT",
        _p(Ins.EXPORT_KEY, export_data(3, 1, R_16, SERIAL_8), LE_ANY),
        SW.CONDITIONS_NOT_SATISFIED,
    ),
    Case(AS_SETUP, "LOCK-incomplete", _p(Ins.LOCK), SW.CONDITIONS_NOT_SATISFIED),
    Case(AS_SETUP, "LOCK-data", _p(Ins.LOCK, b"\x00"), SW.WRONG_LENGTH),
    Case(AS_SETUP, "SET-T-none", _p(Ins.SET_TRANSPORT_KEY), SW.WRONG_LENGTH),
    Case(AS_SETUP, "SET-T-15", _p(Ins.SET_TRANSPORT_KEY, bytes(15)), SW.WRONG_LENGTH),
    Case(AS_SETUP, "SET-T-33", _p(Ins.SET_TRANSPORT_KEY, bytes(33)), SW.WRONG_LENGTH),
    Case(AS_SETUP, "SET-PIN-3", _p(Ins.SET_PIN, b"123"), SW.WRONG_LENGTH),
    Case(AS_SETUP, "SET-PIN-17", _p(Ins.SET_PIN, b"1" * 17), SW.WRONG_LENGTH),
    Case(AS_SETUP, "PUT-key-15", _put(key=bytes(15)), SW.WRONG_LENGTH),
    Case(AS_SETUP, "PUT-key-33", _put(key=bytes(33)), SW.WRONG_LENGTH),
    Case(AS_SETUP, "PUT-fields-only", _p(Ins.PUT_APP_KEY, PUT_FIELDS), SW.WRONG_LENGTH),
    Case(AS_SETUP, "PUT-REF-00", _put_with(0, 0x00), SW.INCORRECT_DATA),
    Case(AS_SETUP, "PUT-REF-80", _put_with(0, 0x80), SW.INCORRECT_DATA),
    Case(AS_SETUP, "PUT-usage-03", _put_with(1, 0x03), SW.INCORRECT_DATA),
    Case(AS_SETUP, "PUT-usage-00", _put_with(1, 0x00), SW.INCORRECT_DATA),
    Case(AS_SETUP, "PUT-version-0", _put_with(3, 0x00), SW.INCORRECT_DATA),
    Case(AS_SETUP, "PUT-flags-02", _put_with(4, 0x02), SW.INCORRECT_DATA),
    # ------------------------------------------------------------------ AS OPERATIONAL, no PIN
    *_common_checks(AS_OPERATIONAL, Ins.VERIFY, EI_ONLY),
    Case(
        AS_OPERATIONAL, "SET-T", _p(Ins.SET_TRANSPORT_KEY, bytes(16)), SW.CONDITIONS_NOT_SATISFIED
    ),
    Case(AS_OPERATIONAL, "SET-PIN", _p(Ins.SET_PIN, b"0000"), SW.CONDITIONS_NOT_SATISFIED),
    Case(AS_OPERATIONAL, "PUT", _put(), SW.CONDITIONS_NOT_SATISFIED),
    Case(AS_OPERATIONAL, "LOCK", _p(Ins.LOCK), SW.CONDITIONS_NOT_SATISFIED),
    Case(
        AS_OPERATIONAL,
        "EXPORT-no-PIN",
        _p(Ins.EXPORT_KEY, export_data(AUTH.ref1, 1, R_16, SERIAL), LE_ANY),
        SW.SECURITY_STATUS_NOT_SATISFIED,
    ),
    # ------------------------------------------------------------------ EI in SETUP
    *_common_checks(EI_SETUP, Ins.INTERNAL_AUTHENTICATE, AS_ONLY),
    Case(EI_SETUP, "VERIFY", verify_apdu(PIN), SW.INS_NOT_SUPPORTED),
    Case(
        EI_SETUP, "CHALLENGE-CLA-80", command(0x80, Ins.GET_CHALLENGE, le=16), SW.CLA_NOT_SUPPORTED
    ),
    Case(
        EI_SETUP,
        "IMPORT-CLA-00",
        command(CLA_ISO, Ins.IMPORT_KEY, data=bytes(56)),
        SW.CLA_NOT_SUPPORTED,
    ),
    Case(EI_SETUP, "AUTH-P2-00", _authenticate(0x00), SW.INCORRECT_P1P2),
    Case(EI_SETUP, "AUTH-P2-80", _authenticate(0x80), SW.INCORRECT_P1P2),
    Case(EI_SETUP, "AUTH-P1-01", _authenticate(0x01, p1=1), SW.INCORRECT_P1P2),
    Case(EI_SETUP, "CHALLENGE-P1", _challenge(p1=1), SW.INCORRECT_P1P2),
    Case(EI_SETUP, "IMPORT-P2", command(0x80, Ins.IMPORT_KEY, 0, 1, bytes(56)), SW.INCORRECT_P1P2),
    Case(EI_SETUP, "CHALLENGE", _challenge(), SW.CONDITIONS_NOT_SATISFIED),
    Case(EI_SETUP, "IMPORT", _p(Ins.IMPORT_KEY, bytes(56)), SW.CONDITIONS_NOT_SATISFIED),
    Case(EI_SETUP, "AUTH", _authenticate(0x01), SW.CONDITIONS_NOT_SATISFIED),
    Case(EI_SETUP, "LOCK-incomplete", _p(Ins.LOCK), SW.CONDITIONS_NOT_SATISFIED),
    Case(EI_SETUP, "LOCK-data", _p(Ins.LOCK, b"\x00"), SW.WRONG_LENGTH),
    Case(EI_SETUP, "SET-T-17", _p(Ins.SET_TRANSPORT_KEY, bytes(17)), SW.WRONG_LENGTH),
    Case(EI_SETUP, "SET-SERIAL-7", _p(Ins.SET_SERIAL, bytes(7)), SW.WRONG_LENGTH),
    Case(EI_SETUP, "SET-SERIAL-17", _p(Ins.SET_SERIAL, bytes(17)), SW.WRONG_LENGTH),
    Case(EI_SETUP, "SET-SERIAL-none", _p(Ins.SET_SERIAL), SW.WRONG_LENGTH),
    Case(EI_SETUP, "DEFINE-3", _p(Ins.DEFINE_SLOT, bytes([1, 16, 1])), SW.WRONG_LENGTH),
    Case(EI_SETUP, "DEFINE-5", _p(Ins.DEFINE_SLOT, bytes([1, 16, 1, 1, 0])), SW.WRONG_LENGTH),
    Case(EI_SETUP, "RETRY-none", _p(Ins.SET_RETRY_LIMIT), SW.WRONG_LENGTH),
    Case(EI_SETUP, "RETRY-2", _p(Ins.SET_RETRY_LIMIT, b"\x05\x05"), SW.WRONG_LENGTH),
    Case(EI_SETUP, "DEFINE-REF-00", _define(ref2=0x00), SW.INCORRECT_DATA),
    Case(EI_SETUP, "DEFINE-REF-80", _define(ref2=0x80), SW.INCORRECT_DATA),
    Case(EI_SETUP, "DEFINE-length-17", _define(length=17), SW.INCORRECT_DATA),
    Case(EI_SETUP, "DEFINE-usage-03", _define(usage=3), SW.INCORRECT_DATA),
    Case(EI_SETUP, "DEFINE-flags-02", _define(flags=2), SW.INCORRECT_DATA),
    Case(EI_SETUP, "RETRY-0", _p(Ins.SET_RETRY_LIMIT, b"\x00"), SW.INCORRECT_DATA),
    Case(EI_SETUP, "RETRY-16", _p(Ins.SET_RETRY_LIMIT, b"\x10"), SW.INCORRECT_DATA),
    # ------------------------------------------------------------------ EI OPERATIONAL
    *_common_checks(EI_OPERATIONAL, Ins.INTERNAL_AUTHENTICATE, AS_ONLY),
    Case(
        EI_OPERATIONAL, "SET-T", _p(Ins.SET_TRANSPORT_KEY, bytes(16)), SW.CONDITIONS_NOT_SATISFIED
    ),
    Case(EI_OPERATIONAL, "SET-SERIAL", _p(Ins.SET_SERIAL, bytes(8)), SW.CONDITIONS_NOT_SATISFIED),
    Case(EI_OPERATIONAL, "DEFINE", _define(), SW.CONDITIONS_NOT_SATISFIED),
    Case(EI_OPERATIONAL, "RETRY", _p(Ins.SET_RETRY_LIMIT, b"\x05"), SW.CONDITIONS_NOT_SATISFIED),
    Case(EI_OPERATIONAL, "LOCK", _p(Ins.LOCK), SW.CONDITIONS_NOT_SATISFIED),
    Case(
        EI_OPERATIONAL,
        "IMPORT-no-challenge",
        _p(Ins.IMPORT_KEY, bytes(56)),
        SW.CONDITIONS_NOT_SATISFIED,
    ),
    Case(EI_OPERATIONAL, "AUTH-MAC-slot", _authenticate(SLOT_MAC.ref), SW.CONDITIONS_NOT_SATISFIED),
    Case(
        EI_OPERATIONAL, "AUTH-undefined", _authenticate(UNDEFINED_REF), SW.REFERENCED_DATA_NOT_FOUND
    ),
    Case(EI_OPERATIONAL, "AUTH-empty", _authenticate(SLOT_ENC.ref), SW.REFERENCED_DATA_NOT_FOUND),
    Case(
        EI_OPERATIONAL,
        "AUTH-no-data",
        command(CLA_ISO, Ins.INTERNAL_AUTHENTICATE, 0, 1, le=16),
        SW.WRONG_LENGTH,
    ),
    Case(EI_OPERATIONAL, "AUTH-65", _authenticate(SLOT_AUTH.ref, bytes(65)), SW.WRONG_LENGTH),
    Case(EI_OPERATIONAL, "CHALLENGE-Le-08", _challenge(8), SW.WRONG_LENGTH),
    Case(EI_OPERATIONAL, "CHALLENGE-Le-11", _challenge(17), SW.WRONG_LENGTH),
    Case(EI_OPERATIONAL, "CHALLENGE-no-Le", _challenge(None), SW.WRONG_LENGTH),
    # ------------------------------------------------------------------ EI BLOCKED
    *_common_checks(EI_BLOCKED, Ins.INTERNAL_AUTHENTICATE, AS_ONLY),
    Case(EI_BLOCKED, "CHALLENGE", _challenge(), SW.BLOCKED),
    Case(EI_BLOCKED, "IMPORT", _p(Ins.IMPORT_KEY, bytes(56)), SW.BLOCKED),
    Case(EI_BLOCKED, "IMPORT-short", _p(Ins.IMPORT_KEY, bytes(3)), SW.BLOCKED),
    # v1.1 §8.1: a BLOCKED EI serves INTERNAL AUTHENTICATE as an OPERATIONAL one (slot empty here)
    Case(EI_BLOCKED, "AUTH", _authenticate(SLOT_AUTH.ref), SW.REFERENCED_DATA_NOT_FOUND),
    Case(EI_BLOCKED, "SET-SERIAL", _p(Ins.SET_SERIAL, bytes(8)), SW.CONDITIONS_NOT_SATISFIED),
    Case(EI_BLOCKED, "DEFINE", _define(), SW.CONDITIONS_NOT_SATISFIED),
    Case(EI_BLOCKED, "LOCK", _p(Ins.LOCK), SW.CONDITIONS_NOT_SATISFIED),
]
CASES = [case for case in ALL_CASES if str(case) not in IN_JUNIT]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_refusal_leaves_the_card_unchanged(bench: Bench, case: Case) -> None:
    refused(selected(bench, case.card).transport(case.card), case.apdu, case.sw)


# ------------------------------------------------------------------------------ AS, PIN verified


@pytest.fixture
def verified_as(bench: Bench):
    card = selected(bench, AS_OPERATIONAL).as_card(AS_OPERATIONAL)
    card.verify_pin(PIN)
    return card


def _export(
    ref1: int, ref2: int = SLOT_AUTH.ref, serial: bytes = SERIAL, data: bytes | None = None
):
    return _p(
        Ins.EXPORT_KEY, export_data(ref1, ref2, R_16, serial) if data is None else data, LE_ANY
    )


ALL_EXPORT_CASES = [
    ("SN-7", _export(AUTH.ref1, serial=bytes(7)), SW.WRONG_LENGTH),
    ("SN-17", _export(AUTH.ref1, serial=bytes(17)), SW.WRONG_LENGTH),
    (
        "SN-length-lies",
        _export(AUTH.ref1, data=export_data(3, 1, R_16, SERIAL)[:-1]),
        SW.WRONG_LENGTH,
    ),
    (
        "SN-length-byte-FF",
        _export(AUTH.ref1, data=export_data(3, 1, R_16, SERIAL)[:18] + b"\xff" + SERIAL),
        SW.WRONG_LENGTH,
    ),
    ("no-data", _p(Ins.EXPORT_KEY, le=LE_ANY), SW.WRONG_LENGTH),
    ("REF1-missing", _export(0x44), SW.REFERENCED_DATA_NOT_FOUND),
    ("REF1-00", _export(0x00), SW.REFERENCED_DATA_NOT_FOUND),
    ("REF2-00", _export(AUTH.ref1, ref2=0x00), SW.INCORRECT_DATA),
    ("REF2-80", _export(AUTH.ref1, ref2=0x80), SW.INCORRECT_DATA),
    ("limit-reached", _export(MAC_ONCE.ref1, SLOT_MAC.ref), SW.BLOCKED),
]
EXPORT_CASES = [case for case in ALL_EXPORT_CASES if case[0] not in EXPORT_IN_JUNIT]


@pytest.mark.parametrize(
    ("why", "apdu", "sw"), EXPORT_CASES, ids=[case[0] for case in EXPORT_CASES]
)
def test_export_refusals_with_the_pin_verified(verified_as, why: str, apdu: bytes, sw: int) -> None:
    refused(verified_as.transport, apdu, sw)


def test_export_of_a_key_longer_than_the_transport_key(bench: Bench) -> None:
    card = selected(bench, AS_SHORT_T).as_card(AS_SHORT_T)
    card.verify_pin(PIN)
    refused(card.transport, _export(TOO_LONG.ref1, SLOT_MAC.ref), SW.CONDITIONS_NOT_SATISFIED)


def test_a_good_export_counts_once_and_changes_nothing_else(verified_as) -> None:
    before = snapshot(verified_as.transport)
    response = exchange(verified_as.transport, _export(AUTH.ref1))
    after = snapshot(verified_as.transport)
    assert response.sw == SW.OK
    assert len(response.data) == key_block_length(len(AUTH.key))
    assert after.without_export_counts() == before.without_export_counts()
    counts = {
        ref: after.entries()[ref].count - entry.count for ref, entry in before.entries().items()
    }
    assert counts == {AUTH.ref1: 1, MAC_ONCE.ref1: 0, ENC.ref1: 0}


def test_a_wrong_pin_spends_one_try_and_the_right_one_gives_it_back(bench: Bench) -> None:
    transport = selected(bench, AS_OPERATIONAL).transport(AS_OPERATIONAL)
    refused(transport, verify_apdu(WRONG_PIN), SW_VERIFY_FAILED_BASE | 2, spends_try=True)
    assert exchange(transport, verify_apdu(PIN)).sw == SW.OK
    assert snapshot(transport).tries == PIN_TRY_LIMIT


@pytest.fixture
def blank_as(bench: Bench) -> Iterator[AsCard]:
    """A blank AS in the SETUP reader, replaced by another blank one afterwards."""
    bench.fresh(AS_SETUP)
    yield bench.as_card(AS_SETUP)
    bench.fresh(AS_SETUP)


@pytest.fixture
def blank_ei(bench: Bench) -> Iterator[EiCard]:
    bench.fresh(EI_SETUP)
    yield bench.ei_card(EI_SETUP)
    bench.fresh(EI_SETUP)


def test_a_seventeenth_key_is_refused(blank_as: AsCard) -> None:
    blank_as.select()
    for ref in range(1, MAX_KEYS + 1):
        blank_as.put_app_key(ref, Usage.MAC, 1, False, 1, bytes(16))
    refused(blank_as.transport, _put_with(0, MAX_KEYS + 1), SW.NOT_ENOUGH_MEMORY)
    blank_as.put_app_key(MAX_KEYS, Usage.ENCRYPT, 2, False, 1, bytes(32))  # replacing is allowed


def test_a_seventeenth_slot_is_refused(blank_ei: EiCard) -> None:
    blank_ei.select()
    for ref in range(1, MAX_KEYS + 1):
        blank_ei.define_slot(ref, 16, Usage.MAC, True)
    refused(blank_ei.transport, _define(ref2=MAX_KEYS + 1), SW.NOT_ENOUGH_MEMORY)
    blank_ei.define_slot(MAX_KEYS, 32, Usage.ENCRYPT, False)


# ------------------------------------------------------------------------------ EI, IMPORT KEY


@dataclass(frozen=True)
class Cards:
    as_card: AsCard
    ei_card: EiCard


@pytest.fixture
def pair(bench: Bench) -> Iterator[Cards]:
    """The operational AS (PIN verified) and EI; afterwards a good import gives the EI back every
    try a test spent."""
    as_card = selected(bench, AS_OPERATIONAL).as_card(AS_OPERATIONAL)
    as_card.verify_pin(PIN)
    ei_card = selected(bench, EI_OPERATIONAL).ei_card(EI_OPERATIONAL)
    yield Cards(as_card, ei_card)
    load(as_card, ei_card, AUTH.ref1, SLOT_AUTH.ref)  # same version, same key: no write
    assert snapshot(ei_card.transport).tries == RETRY_LIMIT


BlockMaker = Callable[[bytes, bytes], bytes]
"""(R, the AS's genuine block for AUTH into SLOT_AUTH and R) -> the block to import."""


def _forged(key: AppKey, ref2: int, key_bytes: bytes | None = None, **options) -> BlockMaker:
    header_changes = options.pop("header", {})

    def make(challenge: bytes, _genuine: bytes) -> bytes:
        header = header_for(key, ref2, **header_changes)
        return forge_block(
            TRANSPORT_KEY,
            SERIAL,
            challenge,
            header,
            key.key if key_bytes is None else key_bytes,
            **options,
        )

    return make


def _edited(edit: Callable[[bytearray], bytes | bytearray]) -> BlockMaker:
    return lambda _challenge, genuine: bytes(edit(bytearray(genuine)))


def _set(offset: int, value: int) -> Callable[[bytearray], bytearray]:
    def edit(block: bytearray) -> bytearray:
        block[offset] = value
        return block

    return edit


OTHER_AUTH_KEY = bytes.fromhex("FFEEDDCCBBAA99887766554433221100")

IMPORT_CASES = [
    ("shorter-than-header", _edited(lambda b: b[:7]), SW.WRONG_LENGTH, False),
    ("empty", _edited(lambda b: b[:0]), SW.WRONG_LENGTH, False),
    ("format-02", _edited(_set(0, 0x02)), SW.INCORRECT_DATA, False),
    ("key-length-11", _edited(_set(2, 0x11)), SW.INCORRECT_DATA, False),
    ("key-length-00", _edited(_set(2, 0x00)), SW.INCORRECT_DATA, False),
    ("key-length-says-32", _edited(_set(2, 0x20)), SW.WRONG_LENGTH, False),
    ("one-byte-short", _edited(lambda b: b[:-1]), SW.WRONG_LENGTH, False),
    ("one-byte-long", _edited(lambda b: b + b"\x00"), SW.WRONG_LENGTH, False),
    ("CAS-wrong", _edited(lambda b: b[:-1] + bytes([b[-1] ^ 1])), SW_VERIFY_FAILED_BASE | 14, True),
    (
        "SAS-wrong",
        _forged(AUTH, SLOT_AUTH.ref, sas=bytes(8)),
        SW.SECURITY_STATUS_NOT_SATISFIED,
        True,
    ),
    (
        "padding-not-zero",
        _forged(MAC_ONCE, SLOT_MAC.ref, padding=bytes(7) + b"\x01"),
        SW.INCORRECT_DATA,
        False,
    ),
    ("slot-undefined", _forged(AUTH, UNDEFINED_REF), SW.REFERENCED_DATA_NOT_FOUND, False),
    ("slot-closed", _forged(AUTH, SLOT_NO_IMPORT.ref), SW.COMMAND_NOT_ALLOWED, False),
    (
        "length-not-the-slots",
        _forged(MAC_ONCE, SLOT_AUTH.ref, header={"usage": Usage.AUTHENTICATE}),
        SW.INCORRECT_DATA,
        False,
    ),
    (
        "usage-not-the-slots",
        _forged(AUTH, SLOT_AUTH.ref, header={"usage": Usage.MAC}),
        SW.INCORRECT_DATA,
        False,
    ),
    (
        "version-older",
        _forged(AUTH, SLOT_AUTH.ref, header={"version": AUTH.version - 1}),
        SW.INCORRECT_DATA,
        False,
    ),
    ("version-0", _forged(AUTH, SLOT_AUTH.ref, header={"version": 0}), SW.INCORRECT_DATA, False),
    (
        "same-version-other-key",
        _forged(AUTH, SLOT_AUTH.ref, OTHER_AUTH_KEY),
        SW.INCORRECT_DATA,
        False,
    ),
]


@pytest.mark.parametrize(
    ("why", "make", "sw", "spends_try"), IMPORT_CASES, ids=[case[0] for case in IMPORT_CASES]
)
def test_import_refusals(
    pair: Cards, why: str, make: BlockMaker, sw: int, spends_try: bool
) -> None:
    challenge, genuine = export_for(pair.as_card, pair.ei_card, AUTH.ref1, SLOT_AUTH.ref)
    block = make(challenge, genuine)
    refused(pair.ei_card.transport, proprietary(Ins.IMPORT_KEY, block), sw, spends_try=spends_try)
    # the challenge is spent whatever the outcome: the genuine block is refused now
    refused(
        pair.ei_card.transport, proprietary(Ins.IMPORT_KEY, genuine), SW.CONDITIONS_NOT_SATISFIED
    )


def test_a_good_import_stores_exactly_its_slot(pair: Cards) -> None:
    before = snapshot(pair.ei_card.transport)
    _challenge, block = export_for(pair.as_card, pair.ei_card, ENC.ref1, SLOT_SPARE.ref)
    assert exchange(pair.ei_card.transport, proprietary(Ins.IMPORT_KEY, block)).sw == SW.OK
    after = snapshot(pair.ei_card.transport)
    assert after.info == before.info
    changed = {ref for ref, entry in after.entries().items() if before.entries()[ref] != entry}
    assert changed == {SLOT_SPARE.ref}
    slot = after.entries()[SLOT_SPARE.ref]
    assert (slot.loaded, slot.version, slot.kcv) == (True, ENC.version, crypto.kcv(ENC.key))


# ----------------------------------------------------------------------------- the mapping's guards

REPO = Path(__file__).resolve().parents[3]
JUNIT = REPO / "applets/test/keyload/applet"
PROTOCOL = REPO / "docs/PROTOCOL.md"
SECURITY = REPO / "docs/SECURITY.md"

SAMPLES = {
    ("AS", "9000"): "test_a_good_export_counts_once_and_changes_nothing_else",
    ("AS", "6700"): "test_refusal_leaves_the_card_unchanged[AS0-6700-SET-T-none]",
    ("AS", "63Cx"): "test_a_wrong_pin_spends_one_try_and_the_right_one_gives_it_back",
    ("AS", "6982"): "test_refusal_leaves_the_card_unchanged[AS1-6982-EXPORT-no-PIN]",
    ("AS", "6983"): "test_export_refusals_with_the_pin_verified[limit-reached]",
    ("AS", "6985"): "test_refusal_leaves_the_card_unchanged[AS1-6985-PUT]",
    ("AS", "6A80"): "test_refusal_leaves_the_card_unchanged[AS0-6A80-PUT-usage-00]",
    ("AS", "6A84"): "test_a_seventeenth_key_is_refused",
    ("AS", "6A86"): "test_refusal_leaves_the_card_unchanged[AS1-6A86-LIST-KEYS-P2]",
    ("AS", "6A88"): "test_export_refusals_with_the_pin_verified[REF1-missing]",
    ("AS", "6D00"): "test_refusal_leaves_the_card_unchanged[AS1-6D00-GET-RESPONSE]",
    ("AS", "6E00"): "test_refusal_leaves_the_card_unchanged[AS1-6E00-CLA-90-chaining]",
    ("EI", "9000"): "test_a_good_import_stores_exactly_its_slot",
    ("EI", "6700"): "test_refusal_leaves_the_card_unchanged[EI4-6700-CHALLENGE-Le-11]",
    ("EI", "63Cx"): "test_import_refusals[CAS-wrong]",
    ("EI", "6982"): "test_import_refusals[SAS-wrong]",
    ("EI", "6983"): "test_refusal_leaves_the_card_unchanged[EI5-6983-CHALLENGE]",
    ("EI", "6985"): "test_refusal_leaves_the_card_unchanged[EI4-6985-AUTH-MAC-slot]",
    ("EI", "6986"): "test_import_refusals[slot-closed]",
    ("EI", "6A80"): "test_import_refusals[padding-not-zero]",
    ("EI", "6A84"): "test_a_seventeenth_slot_is_refused",
    ("EI", "6A86"): "test_refusal_leaves_the_card_unchanged[EI4-6A86-LIST-KEYS-P2]",
    ("EI", "6A88"): "test_import_refusals[slot-undefined]",
    ("EI", "6D00"): "test_refusal_leaves_the_card_unchanged[EI4-6D00-INS-54-other-role]",
    ("EI", "6E00"): "test_refusal_leaves_the_card_unchanged[EI4-6E00-CLA-84-secure-messaging]",
}
"""(role, status word of §4.4) -> the test of this module that sends it through PC/SC."""
NOT_ANSWERED = {("AS", "6986")}
"""The AS has no slots, so nothing it refuses is a slot closed to import."""

_KEPT = {
    "test_refusal_leaves_the_card_unchanged": {str(case) for case in CASES},
    "test_export_refusals_with_the_pin_verified": {case[0] for case in EXPORT_CASES},
    "test_import_refusals": {case[0] for case in IMPORT_CASES},
}


def _status_words_of_section_4_4() -> list[str]:
    text = PROTOCOL.read_text()
    section = text[text.index("### 4.4") : text.index("\n## ", text.index("### 4.4"))]
    return re.findall(r"^\| ([0-9A-F]{2}[0-9A-Fx]{2}) \|", section, re.MULTILINE)


def _sent(test_id: str) -> bool:
    name, _, param = test_id.partition("[")
    if not param:
        return callable(globals().get(name))
    return param.rstrip("]") in _KEPT.get(name, set())


def test_every_status_word_has_a_sample_per_role_through_pcsc() -> None:
    words = _status_words_of_section_4_4()
    assert len(words) == 13, words
    wanted = {(role, sw) for role in ("AS", "EI") for sw in words} - NOT_ANSWERED
    assert set(SAMPLES) == wanted
    for (role, sw), test_id in SAMPLES.items():
        assert _sent(test_id), f"{role} {sw}: {test_id} is not a test of this module"
        expected = re.search(r"\[(AS|EI)\d-([0-9A-F]{4})-", test_id)
        if expected:
            assert expected.groups() == (role, sw), test_id


def test_every_case_left_to_junit_names_a_case_and_a_junit_test() -> None:
    assert set(IN_JUNIT) <= {str(case) for case in ALL_CASES}
    assert set(EXPORT_IN_JUNIT) <= {case[0] for case in ALL_EXPORT_CASES}
    for check in (*IN_JUNIT.values(), *EXPORT_IN_JUNIT.values()):
        suite, _, rest = check.partition(".")
        method = rest.partition(":")[0]
        source = (JUNIT / f"{suite}.java").read_text()
        assert re.search(rf"public void {method}\(\)", source), f"{suite} has no {method}"
    bridge = [case for case in IN_JUNIT if re.search(r"-6700-(header-of|Lc-|extended-)", case)]
    assert bridge == [], "the station bridge's answers are tested here only"


def test_no_case_security_md_cites_is_left_to_junit() -> None:
    cited = re.findall(r"`((?:AS|EI)\d-[0-9A-F]{4}-[^`]+)`", SECURITY.read_text())
    assert cited, "SECURITY.md cites no case of this module by id"
    kept = _KEPT["test_refusal_leaves_the_card_unchanged"]
    for pattern in cited:
        assert fnmatch.filter(kept, pattern), f"SECURITY.md cites {pattern}: no such case"
        assert not fnmatch.filter(IN_JUNIT, pattern), f"SECURITY.md cites {pattern}"
