"""Tampering, replay, redirection, versions and the AS's own defences, through pyscard, pcscd and
the station: every altered, replayed, redirected or foreign key block is refused with the status
word §4.3 gives, nothing is stored, the retry counter moves exactly as specified, and a card
whose tries are exhausted (EI import tries, AS PIN tries, an export limit) stays refused for
good, across a warm reset and a power cycle.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from adversarial_support import (
    GET_CHALLENGE,
    LE_ANY,
    OTHER_SET,
    PIN,
    TEST_SET,
    WRONG_PIN,
    AppKey,
    Bench,
    command,
    exchange,
    export_data,
    export_for,
    load,
    proprietary,
    refused,
    snapshot,
    verify_apdu,
)
from keyload_host import crypto
from keyload_host.apdu import CardError
from keyload_host.cards import AsCard, EiCard
from keyload_host.config import SlotConfig
from keyload_host.protocol import (
    CLA_ISO,
    KEY_LENGTHS,
    SW,
    SW_VERIFY_FAILED_BASE,
    Ins,
    LifeCycle,
    Usage,
)
from keyload_station.cardset import set_up_as, set_up_ei
from station_support import StationUp

ROLES = ("AS", "AS", "AS", "AS", "AS", "EI", "EI", "EI")
MAIN_AS, OLDER_AS, OTHER_KEY_AS, OTHER_SET_AS, PIN_AS, EI_A, EI_B, EI_FEW_TRIES = range(8)

AUTH = AppKey.holding(
    0x03, Usage.AUTHENTICATE, bytes.fromhex("00112233445566778899AABBCCDDEEFF"), 2
)
ENC = AppKey.holding(0x20, Usage.ENCRYPT, bytes(range(0x80, 0xA0)), 1)
LIMITED = AppKey.holding(0x30, Usage.AUTHENTICATE, bytes(range(16)), 1, export_limit=2)
AUTH_OLDER = AppKey.holding(
    AUTH.ref1, AUTH.usage, bytes.fromhex("0F0E0D0C0B0A09080706050403020100"), 1
)
AUTH_OTHER_KEY = AppKey.holding(
    AUTH.ref1, AUTH.usage, bytes.fromhex("FFEEDDCCBBAA99887766554433221100"), 2
)
AUTH_NEWER = AppKey.holding(0x04, AUTH.usage, bytes.fromhex("303132333435363738393A3B3C3D3E3F"), 3)

SLOT_AUTH = SlotConfig(0x01, 16, Usage.AUTHENTICATE, accepts_import=True)
SLOT_AUTH_SPARE = SlotConfig(0x03, 16, Usage.AUTHENTICATE, accepts_import=True)
SLOT_ENC = SlotConfig(0x0F, 32, Usage.ENCRYPT, accepts_import=True)
EI_SLOTS = (SLOT_AUTH, SLOT_AUTH_SPARE, SLOT_ENC)
SERIAL_A = bytes.fromhex("4B4C00000000A001")
SERIAL_B = bytes.fromhex("4B4C00000000B0020000")
SERIAL_FEW = bytes.fromhex("4B4C00000000C003")
RETRY_LIMIT = 15
FEW_TRIES = 3
FLIP = 0xFF
HEADER_FORMAT, HEADER_REF2, HEADER_KEY_LENGTH = 0, 1, 2


@pytest.fixture(scope="module")
def bench(station_up: StationUp) -> Iterator[Bench]:
    """Five AS cards (the main one; one with an older version of its key; one with another key
    under the same version and a newer key; one of another set; one to block) and three EI
    cards of the set, A and B loaded with the main AS's authentication key."""
    bench = Bench(ROLES)
    try:
        set_up_as(bench.as_card(MAIN_AS), (AUTH, ENC, LIMITED), TEST_SET)
        set_up_as(bench.as_card(OLDER_AS), (AUTH_OLDER,), TEST_SET)
        set_up_as(bench.as_card(OTHER_KEY_AS), (AUTH_OTHER_KEY, AUTH_NEWER), TEST_SET)
        set_up_as(bench.as_card(OTHER_SET_AS), (AUTH,), OTHER_SET)
        set_up_as(bench.as_card(PIN_AS), (AUTH,), TEST_SET)
        set_up_ei(bench.ei_card(EI_A), SERIAL_A, EI_SLOTS, TEST_SET, retry_limit=RETRY_LIMIT)
        set_up_ei(bench.ei_card(EI_B), SERIAL_B, EI_SLOTS, TEST_SET, retry_limit=RETRY_LIMIT)
        set_up_ei(
            bench.ei_card(EI_FEW_TRIES), SERIAL_FEW, EI_SLOTS, TEST_SET, retry_limit=FEW_TRIES
        )
        main = verified(bench, MAIN_AS)
        for ei in (EI_A, EI_B):
            load(main, bench.ei_card(ei), AUTH.ref1, SLOT_AUTH.ref)
        yield bench
    finally:
        bench.close()


def verified(bench: Bench, index: int) -> AsCard:
    card = bench.as_card(index)
    card.select()
    card.verify_pin(PIN)
    return card


def selected_ei(bench: Bench, index: int) -> EiCard:
    card = bench.ei_card(index)
    card.select()
    return card


def import_apdu(block: bytes) -> bytes:
    return proprietary(Ins.IMPORT_KEY, block)


def refused_spending_a_try(ei: EiCard, block: bytes) -> None:
    """IMPORT KEY of ``block`` must fail its CAS: 63Cx with one try fewer, nothing stored."""
    tries = snapshot(ei.transport).tries
    refused(ei.transport, import_apdu(block), SW_VERIFY_FAILED_BASE | tries - 1, spends_try=True)


# ------------------------------------------------------------------------------ tampering


def expected_refusal(position: int, value: int) -> tuple[int, bool]:
    """What §4.3 answers to a block whose byte ``position`` now holds ``value``: the format and
    the key length are checked before the try is spent (6A80, or 6700 when the length now names
    another valid key length); every other byte is covered by the CAS (63Cx, a try spent)."""
    if position == HEADER_FORMAT:
        return SW.INCORRECT_DATA, False
    if position == HEADER_KEY_LENGTH:
        return (SW.WRONG_LENGTH if value in KEY_LENGTHS else SW.INCORRECT_DATA), False
    return SW_VERIFY_FAILED_BASE, True


@pytest.mark.parametrize("key", [AUTH, ENC], ids=["AES-128-block", "AES-256-block"])
def test_every_flipped_byte_is_refused_and_spends_one_try(bench: Bench, key: AppKey) -> None:
    main, ei = verified(bench, MAIN_AS), selected_ei(bench, EI_A)
    slot = SLOT_AUTH if key is AUTH else SLOT_ENC
    baseline = snapshot(ei.transport)
    _challenge, block = export_for(main, ei, key.ref1, slot.ref)
    positions = range(len(block))
    for position in positions:
        if position:  # the first block's challenge is still fresh
            _challenge, block = export_for(main, ei, key.ref1, slot.ref)
        tampered = bytearray(block)
        tampered[position] ^= FLIP
        sw, spends_try = expected_refusal(position, tampered[position])
        tries = snapshot(ei.transport).tries
        if spends_try:
            sw |= tries - 1
        refused(ei.transport, import_apdu(tampered), sw, spends_try=spends_try)
        if snapshot(ei.transport).tries == 1:
            load(main, ei, AUTH.ref1, SLOT_AUTH.ref)  # a good import gives every try back
            assert snapshot(ei.transport).tries == RETRY_LIMIT
    load(main, ei, AUTH.ref1, SLOT_AUTH.ref)
    assert snapshot(ei.transport).without_tries() == baseline.without_tries()
    assert snapshot(ei.transport).tries == RETRY_LIMIT
    assert not snapshot(ei.transport).entries()[SLOT_ENC.ref].loaded


def test_exhausted_tries_leave_the_ei_blocked_for_good(bench: Bench) -> None:
    main, ei = verified(bench, MAIN_AS), selected_ei(bench, EI_FEW_TRIES)
    for left in reversed(range(FEW_TRIES)):
        _challenge, block = export_for(main, ei, AUTH.ref1, SLOT_AUTH.ref)
        forged = block[:-1] + bytes([block[-1] ^ FLIP])
        refused(ei.transport, import_apdu(forged), SW_VERIFY_FAILED_BASE | left, spends_try=True)
    blocked = snapshot(ei.transport)
    assert (blocked.life_cycle, blocked.tries) == (LifeCycle.BLOCKED, 0)

    genuine = main.export_key(AUTH.ref1, SLOT_AUTH.ref, bytes(16), SERIAL_FEW)
    for event in ("none", "warm reset", "power cycle"):
        if event == "warm reset":
            bench.warm_reset(EI_FEW_TRIES)
        elif event == "power cycle":
            bench.power_cycle(EI_FEW_TRIES)
        ei = selected_ei(bench, EI_FEW_TRIES)
        assert snapshot(ei.transport) == blocked, event
        refused(ei.transport, GET_CHALLENGE, SW.BLOCKED)
        refused(ei.transport, import_apdu(genuine), SW.BLOCKED)
        # v1.1 §8.1: served as when OPERATIONAL (the slot is empty)
        with pytest.raises(CardError) as refusal:
            ei.internal_authenticate(SLOT_AUTH.ref, b"\x01")
        assert refusal.value.sw == SW.REFERENCED_DATA_NOT_FOUND


# ------------------------------------------------------------------------------ replay, redirection


def test_a_block_is_accepted_once(bench: Bench) -> None:
    main, ei = verified(bench, MAIN_AS), selected_ei(bench, EI_A)
    block = load(main, ei, AUTH.ref1, SLOT_AUTH.ref)
    refused(ei.transport, import_apdu(block), SW.CONDITIONS_NOT_SATISFIED)  # R was spent
    ei.get_challenge()
    refused_spending_a_try(ei, block)
    bench.power_cycle(EI_A)
    ei = selected_ei(bench, EI_A)
    refused(ei.transport, import_apdu(block), SW.CONDITIONS_NOT_SATISFIED)
    load(main, ei, AUTH.ref1, SLOT_AUTH.ref)


def test_a_block_for_card_a_is_refused_by_card_b(bench: Bench) -> None:
    main, a, b = verified(bench, MAIN_AS), selected_ei(bench, EI_A), selected_ei(bench, EI_B)
    _challenge, block_for_a = export_for(main, a, ENC.ref1, SLOT_ENC.ref)
    b.get_challenge()
    tries = snapshot(b.transport).tries
    refused(
        b.transport, import_apdu(block_for_a), SW_VERIFY_FAILED_BASE | tries - 1, spends_try=True
    )
    # made for B's own challenge, but for A's serial
    block = main.export_key(ENC.ref1, SLOT_ENC.ref, b.get_challenge(), SERIAL_A)
    refused(b.transport, import_apdu(block), SW_VERIFY_FAILED_BASE | tries - 2, spends_try=True)
    load(main, b, AUTH.ref1, SLOT_AUTH.ref)
    for ei in (a, b):
        assert not snapshot(ei.transport).entries()[SLOT_ENC.ref].loaded


def test_a_block_for_one_slot_cannot_be_stored_in_another(bench: Bench) -> None:
    main, ei = verified(bench, MAIN_AS), selected_ei(bench, EI_A)
    _challenge, block = export_for(main, ei, AUTH.ref1, SLOT_AUTH.ref)
    redirected = bytearray(block)
    redirected[HEADER_REF2] = SLOT_AUTH_SPARE.ref  # same length and usage: only the CAS stops it
    tries = snapshot(ei.transport).tries
    refused(
        ei.transport, import_apdu(redirected), SW_VERIFY_FAILED_BASE | tries - 1, spends_try=True
    )
    load(main, ei, AUTH.ref1, SLOT_AUTH.ref)
    assert not snapshot(ei.transport).entries()[SLOT_AUTH_SPARE.ref].loaded


def test_a_block_from_an_as_of_another_set_is_refused(bench: Bench) -> None:
    foreign, ei = verified(bench, OTHER_SET_AS), selected_ei(bench, EI_A)
    _challenge, block = export_for(foreign, ei, AUTH.ref1, SLOT_AUTH_SPARE.ref)
    refused_spending_a_try(ei, block)
    load(verified(bench, MAIN_AS), ei, AUTH.ref1, SLOT_AUTH.ref)
    assert not snapshot(ei.transport).entries()[SLOT_AUTH_SPARE.ref].loaded


# ------------------------------------------------------------------------------ versions


def test_versions_only_move_forward(bench: Bench) -> None:
    ei = selected_ei(bench, EI_B)
    loaded = snapshot(ei.transport)
    assert loaded.entries()[SLOT_AUTH.ref].version == AUTH.version

    def attempt(as_index: int, ref1: int, sw: int) -> None:
        _challenge, block = export_for(verified(bench, as_index), ei, ref1, SLOT_AUTH.ref)
        refused(ei.transport, import_apdu(block), sw)

    attempt(OLDER_AS, AUTH_OLDER.ref1, SW.INCORRECT_DATA)
    attempt(OTHER_KEY_AS, AUTH_OTHER_KEY.ref1, SW.INCORRECT_DATA)
    # the same version of the same key: accepted, and nothing stored changes
    _challenge, block = export_for(verified(bench, MAIN_AS), ei, AUTH.ref1, SLOT_AUTH.ref)
    assert exchange(ei.transport, import_apdu(block)).sw == SW.OK
    assert snapshot(ei.transport) == loaded
    # a newer version is stored, after which the old one is refused
    load(verified(bench, OTHER_KEY_AS), ei, AUTH_NEWER.ref1, SLOT_AUTH.ref)
    newer = snapshot(ei.transport).entries()[SLOT_AUTH.ref]
    assert (newer.version, newer.kcv) == (AUTH_NEWER.version, crypto.kcv(AUTH_NEWER.key))
    attempt(MAIN_AS, AUTH.ref1, SW.INCORRECT_DATA)


# ------------------------------------------------------------------------------ the AS


def test_export_needs_the_pin_verified_since_selection(bench: Bench) -> None:
    card = verified(bench, MAIN_AS)
    export = proprietary(Ins.EXPORT_KEY, export_data(AUTH.ref1, 1, bytes(16), SERIAL_A), LE_ANY)
    assert exchange(card.transport, export).sw == SW.OK
    card.select()  # a new selection forgets the PIN
    refused(card.transport, export, SW.SECURITY_STATUS_NOT_SATISFIED)
    card.verify_pin(PIN)
    refused(card.transport, verify_apdu(WRONG_PIN), SW_VERIFY_FAILED_BASE | 2, spends_try=True)
    refused(card.transport, export, SW.SECURITY_STATUS_NOT_SATISFIED)  # a wrong PIN unverifies
    card.verify_pin(PIN)
    for power_loss in (bench.warm_reset, bench.power_cycle):
        power_loss(MAIN_AS)
        card = bench.as_card(MAIN_AS)
        card.select()
        refused(card.transport, export, SW.SECURITY_STATUS_NOT_SATISFIED)
        card.verify_pin(PIN)


VERIFY_ASKING = command(CLA_ISO, Ins.VERIFY, 0, 0x81)
"""VERIFY without data: generic ISO 7816 middleware sends it to ask for the tries left."""


def test_verify_without_data_asks_and_never_spends_a_try(bench: Bench) -> None:
    """v1.1 §8 amendment 2: in v1, three of these blocked the master card for good."""
    card = bench.as_card(MAIN_AS)
    card.select()
    for _ in range(5):
        refused(card.transport, VERIFY_ASKING, SW_VERIFY_FAILED_BASE | 3)
    card.verify_pin(PIN)
    assert exchange(card.transport, VERIFY_ASKING).sw == SW.OK
    export = proprietary(Ins.EXPORT_KEY, export_data(AUTH.ref1, 1, bytes(16), SERIAL_A), LE_ANY)
    assert exchange(card.transport, export).sw == SW.OK, "asking did not unverify the PIN"


def test_an_export_the_host_cannot_receive_is_refused_before_it_is_counted(bench: Bench) -> None:
    """v1.1 §8 amendment 3: no Le (a case 3 command) or a Le other than 00 or the block's length
    answers 6700 with nothing counted; the same export with Le 00 goes through."""
    card = verified(bench, MAIN_AS)
    data = export_data(AUTH.ref1, 1, bytes(16), SERIAL_A)
    for le in (None, 0x10):
        refused(card.transport, proprietary(Ins.EXPORT_KEY, data, le), SW.WRONG_LENGTH)
    assert exchange(card.transport, proprietary(Ins.EXPORT_KEY, data, LE_ANY)).sw == SW.OK


def test_three_wrong_pins_block_the_as_for_good(bench: Bench) -> None:
    card = bench.as_card(PIN_AS)
    card.select()
    for left in (2, 1, 0):
        refused(
            card.transport, verify_apdu(WRONG_PIN), SW_VERIFY_FAILED_BASE | left, spends_try=True
        )
    blocked = snapshot(card.transport)
    export = proprietary(Ins.EXPORT_KEY, export_data(AUTH.ref1, 1, bytes(16), SERIAL_A), LE_ANY)
    for event in ("none", "warm reset", "power cycle"):
        if event == "warm reset":
            bench.warm_reset(PIN_AS)
        elif event == "power cycle":
            bench.power_cycle(PIN_AS)
        card = bench.as_card(PIN_AS)
        card.select()
        assert snapshot(card.transport) == blocked, event
        refused(card.transport, verify_apdu(PIN), SW.BLOCKED)
        refused(card.transport, export, SW.SECURITY_STATUS_NOT_SATISFIED)


def test_the_export_limit_holds_across_power_cycles(bench: Bench) -> None:
    card = verified(bench, MAIN_AS)
    export = proprietary(Ins.EXPORT_KEY, export_data(LIMITED.ref1, 1, bytes(16), SERIAL_A), LE_ANY)
    for _ in range(LIMITED.export_limit):
        assert exchange(card.transport, export).sw == SW.OK
    refused(card.transport, export, SW.BLOCKED)
    bench.power_cycle(MAIN_AS)
    card = verified(bench, MAIN_AS)
    refused(card.transport, export, SW.BLOCKED)
    entry = snapshot(card.transport).entries()[LIMITED.ref1]
    assert (entry.count, entry.limit) == (LIMITED.export_limit, LIMITED.export_limit)
