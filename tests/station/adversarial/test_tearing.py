"""IMPORT KEY and EXPORT KEY cut short by pulling the card out of its reader, through the
station (`keyload_station.supervisor.pull`): "before" the applet sees the command, or "after" it
processed it but before the answer reaches the host. Either way the host gets no answer; the card
must then hold the old state or the new one, whole, with its counters as §4 specifies (a try
spent before the check stays spent, an export counted before the block left stays counted).

Cuts in the middle of a command, at each persistent write, are the JUnit tests
applets/test/keyload/applet/TearingImportTest.java and TearingExportTest.java.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from adversarial_support import (
    PIN,
    TEST_SET,
    WELL_FORMED_FORGERY,
    AppKey,
    Bench,
    export_data,
    export_for,
    load,
    proprietary,
    snapshot,
)
from keyload_host import crypto
from keyload_host.cards import AsCard, EiCard
from keyload_host.config import SlotConfig
from keyload_host.protocol import Ins, Usage
from keyload_host.transport import TransportError
from keyload_station import supervisor as station
from keyload_station.cardset import set_up_as, set_up_ei
from station_support import StationUp

ROLES = ("AS", "AS", "EI")
OLD_AS, NEW_AS, EI = range(len(ROLES))
OLD = AppKey.holding(0x03, Usage.AUTHENTICATE, bytes.fromhex("000102030405060708090A0B0C0D0E0F"), 1)
NEW = AppKey.holding(0x03, Usage.AUTHENTICATE, bytes.fromhex("F0E1D2C3B4A5968778695A4B3C2D1E0F"), 2)
SLOT = SlotConfig(0x01, 16, Usage.AUTHENTICATE, accepts_import=True)
SERIAL = bytes.fromhex("4B4C0000000000C1")
RETRY_LIMIT = 6
DATA = b"tearing"
MOMENTS = ("before", "after")


@pytest.fixture(scope="module")
def station_bench(station_up: StationUp) -> Iterator[Bench]:
    """An AS with the old key and one with its new version (export counts relative per test)."""
    bench = Bench(ROLES)
    try:
        set_up_as(bench.as_card(OLD_AS), (OLD,), TEST_SET)
        set_up_as(bench.as_card(NEW_AS), (NEW,), TEST_SET)
        yield bench
    finally:
        bench.close()


@pytest.fixture
def bench(station_bench: Bench) -> Bench:
    """A fresh EI holding the old key, for each test."""
    station_bench.fresh(EI)
    set_up_ei(station_bench.ei_card(EI), SERIAL, (SLOT,), TEST_SET, retry_limit=RETRY_LIMIT)
    load(verified(station_bench, OLD_AS), station_bench.ei_card(EI), OLD.ref1, SLOT.ref)
    return station_bench


def verified(bench: Bench, index: int) -> AsCard:
    card = bench.as_card(index)
    card.select()
    card.verify_pin(PIN)
    return card


def pulled_during(bench: Bench, index: int, when: str, apdu: bytes) -> None:
    """Send ``apdu`` with the card pulled at it; no answer may arrive. Then put it back."""
    transport = bench.transport(index)
    station.pull(bench.readers[index], 1, when)
    with pytest.raises(TransportError):
        transport.transmit(apdu)
    bench.disconnect(index)
    station.reinsert(bench.readers[index])


def slot_key(ei: EiCard) -> AppKey:
    """Which of the two keys the slot holds, whole: version, KCV and the key itself."""
    ei.select()
    slot = snapshot(ei.transport).entries()[SLOT.ref]
    key = {OLD.version: OLD, NEW.version: NEW}[slot.version]
    assert slot.loaded and slot.kcv == crypto.kcv(key.key)
    assert ei.internal_authenticate(SLOT.ref, DATA) == crypto.aes_cmac(key.key, DATA)
    return key


@pytest.mark.parametrize("when", MOMENTS)
def test_an_import_pulled_leaves_the_old_key_or_the_new_one(bench: Bench, when: str) -> None:
    _challenge, block = export_for(verified(bench, NEW_AS), bench.ei_card(EI), NEW.ref1, SLOT.ref)
    pulled_during(bench, EI, when, proprietary(Ins.IMPORT_KEY, block))
    ei = bench.ei_card(EI)
    assert slot_key(ei) == (OLD if when == "before" else NEW)
    assert snapshot(ei.transport).tries == RETRY_LIMIT
    load(verified(bench, NEW_AS), ei, NEW.ref1, SLOT.ref)  # the card goes on
    assert slot_key(ei) == NEW


@pytest.mark.parametrize("when", MOMENTS)
def test_a_forged_import_pulled_gets_no_free_try(bench: Bench, when: str) -> None:
    ei = bench.ei_card(EI)
    ei.get_challenge()
    pulled_during(bench, EI, when, proprietary(Ins.IMPORT_KEY, WELL_FORMED_FORGERY))
    ei = bench.ei_card(EI)
    ei.select()
    spent = 0 if when == "before" else 1
    assert snapshot(ei.transport).tries == RETRY_LIMIT - spent
    assert slot_key(ei) == OLD


@pytest.mark.parametrize("when", MOMENTS)
def test_an_export_pulled_is_counted_once_or_not_at_all(bench: Bench, when: str) -> None:
    card = verified(bench, NEW_AS)
    before = snapshot(card.transport).entries()[NEW.ref1]
    data = export_data(NEW.ref1, SLOT.ref, bytes(16), SERIAL)
    pulled_during(bench, NEW_AS, when, proprietary(Ins.EXPORT_KEY, data, 256))
    card = verified(bench, NEW_AS)
    after = snapshot(card.transport).entries()[NEW.ref1]
    assert after.count == before.count + (0 if when == "before" else 1)
    assert (after.kcv, after.version, after.limit) == (before.kcv, before.version, before.limit)
    load(card, bench.ei_card(EI), NEW.ref1, SLOT.ref)  # the key is intact
    assert slot_key(bench.ei_card(EI)) == NEW
