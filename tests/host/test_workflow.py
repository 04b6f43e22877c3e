"""The personalization workflow over fake applets: preflight refusals that send nothing, three
APDUs per key, what a load is reported with, re-runs, failing cards that do not stop the others,
and watch mode."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from fakes import OTHER_T16, PIN, T16, AppKey, FakeApplet, FakeTransport, Slot, make_as, make_ei
from keyload_host import crypto
from keyload_host.audit import NullAuditLog
from keyload_host.cards import AsCard, EiCard
from keyload_host.config import Load
from keyload_host.protocol import SW, LifeCycle, Role, Usage
from keyload_host.secret_sources import Secret, SecretKind
from keyload_host.workflow import (
    AsUnavailableError,
    LoadResult,
    Outcome,
    PreflightError,
    failed,
    run_batch,
    run_watch,
)

TA03 = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
TA10 = bytes.fromhex("8E73B0F7DA0E6452C810F32B809079E5")
SN1 = bytes.fromhex("4B4C000000000001")
SN2 = bytes.fromhex("4B4C000000000002")
LOADS = [Load(0x03, 0x01), Load(0x10, 0x05)]


class ListAudit(NullAuditLog):
    """Keeps the records (after the same guard as the real log)."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def record(self, event: str, **fields: Any) -> dict[str, Any]:
        record = super().record(event, **fields)
        self.records.append(record)
        return record


@dataclass
class Station:
    as_applet: FakeApplet
    eis: list[FakeApplet]
    audit: ListAudit = field(default_factory=ListAudit)
    pin_reads: int = 0
    on_pin: Callable[[], None] | None = None

    def __post_init__(self) -> None:
        self.as_transport = FakeTransport("AS reader", self.as_applet)
        self.ei_transports = [
            FakeTransport(f"EI reader {index}", applet) for index, applet in enumerate(self.eis, 1)
        ]

    def read_pin(self) -> Secret:
        self.pin_reads += 1
        if self.on_pin:
            self.on_pin()
        return Secret(PIN, SecretKind.PIN)

    def run(self, loads: list[Load] = LOADS) -> list[LoadResult]:
        return run_batch(
            AsCard(self.as_transport),
            [EiCard(transport) for transport in self.ei_transports],
            loads,
            self.audit,
            self.read_pin,
        )

    def all_sent(self) -> list[bytes]:
        return [apdu for t in [self.as_transport, *self.ei_transports] for apdu in t.sent]


def standard_as() -> FakeApplet:
    return make_as(
        k03=AppKey(TA03, Usage.AUTHENTICATE, 1),
        k10=AppKey(TA10, Usage.MAC, 2, diversify=True, limit=10),
    )


def standard_ei(serial: bytes) -> FakeApplet:
    return make_ei(serial, s01=Slot(16, Usage.AUTHENTICATE), s05=Slot(16, Usage.MAC))


def station(eis: int = 2) -> Station:
    return Station(standard_as(), [standard_ei(serial) for serial in (SN1, SN2)[:eis]])


def kcv(key: bytes) -> str:
    return "cmac-aes:" + crypto.kcv(key).hex().upper()


def test_keys_are_loaded_with_three_apdus_each_and_nothing_after() -> None:
    s = station()
    results = s.run()
    assert [(r.serial, r.load, r.outcome) for r in results] == [
        (sn.hex().upper(), load, Outcome.LOADED) for sn in (SN1, SN2) for load in LOADS
    ]
    for applet, serial in zip(s.eis, (SN1, SN2), strict=True):
        assert applet.slots[1].key == TA03
        assert applet.slots[5].key == crypto.diversify(TA10, serial)
    assert [r.kcv for r in results] == [
        kcv(TA03),
        kcv(crypto.diversify(TA10, SN1)),
        kcv(TA03),
        kcv(crypto.diversify(TA10, SN2)),
    ]
    assert [r.version for r in results] == [1, 2, 1, 2]
    per_key = ["GET_CHALLENGE", "IMPORT_KEY"]
    for transport in s.ei_transports:
        assert transport.instructions() == ["SELECT", "LIST_KEYS", *per_key * 2]
    assert s.as_transport.instructions() == ["SELECT", "LIST_KEYS", "VERIFY", *["EXPORT_KEY"] * 4]
    assert s.pin_reads == 1
    assert s.as_applet.keys[0x10].count == 2


def test_no_key_crosses_the_wire_in_clear() -> None:
    s = station()
    s.run()
    secrets = [TA03, TA10, T16, crypto.diversify(TA10, SN1), crypto.diversify(TA10, SN2)]
    for apdu in s.all_sent():
        assert not any(secret in apdu for secret in secrets)


def test_a_rerun_skips_what_is_loaded_and_sends_no_key() -> None:
    s = station()
    s.run()
    for transport in [s.as_transport, *s.ei_transports]:
        transport.sent.clear()
    results = s.run()
    assert {r.outcome for r in results} == {Outcome.SKIPPED}
    assert [r.kcv for r in results][:2] == [kcv(TA03), kcv(crypto.diversify(TA10, SN1))]
    for transport in s.ei_transports:
        assert transport.instructions() == ["SELECT", "LIST_KEYS"]
    assert s.as_transport.instructions() == ["SELECT", "LIST_KEYS"]
    assert s.pin_reads == 1, "nothing to load: the PIN is not asked again"


def test_a_newer_version_in_the_as_is_loaded_over_the_old_one() -> None:
    s = station(eis=1)
    s.run()
    s.as_applet.keys[3] = AppKey(bytes(range(16)), Usage.AUTHENTICATE, 2)
    results = s.run([Load(3, 1)])
    assert [(r.outcome, r.version, r.kcv) for r in results] == [
        (Outcome.LOADED, 2, kcv(bytes(range(16))))
    ]


def test_the_audit_records_every_key_without_secrets() -> None:
    s = station(eis=1)
    s.run()
    keys = [r for r in s.audit.records if r["event"] == "key"]
    assert [(r["ei_sn"], r["ref1"], r["ref2"], r["result"], r["kcv"]) for r in keys] == [
        ("4B4C000000000001", 3, 1, "loaded", kcv(TA03)),
        ("4B4C000000000001", 0x10, 5, "loaded", kcv(crypto.diversify(TA10, SN1))),
    ]
    text = repr(s.audit.records).upper()
    assert TA03.hex().upper() not in text and T16.hex().upper() not in text


def _set(path: str, value: Any) -> Callable[[Station], None]:
    def change(s: Station) -> None:
        target: Any = s
        *parts, last = path.split(".")
        for part in parts:
            target = target[int(part)] if part.isdigit() else getattr(target, part)
        if isinstance(target, dict):
            target[int(last, 16)] = value
        else:
            setattr(target, last, value)

    return change


PREFLIGHT_CASES = {
    "another set": (
        _set("eis.1.transport_key", OTHER_T16),
        "the EI 4B4C000000000002 in reader 'EI reader 2' belongs to another set: its transport key "
        f"KCV is {kcv(OTHER_T16)}, the AS has {kcv(T16)}",
    ),
    "missing slot": (
        _set("eis.0.slots", {1: Slot(16, Usage.AUTHENTICATE)}),
        "the EI 4B4C000000000001 in reader 'EI reader 1' has no slot 05 (slots: 01)",
    ),
    "EI not locked": (
        _set("eis.0.life_cycle", LifeCycle.SETUP),
        "the EI 4B4C000000000001 in reader 'EI reader 1' is in SETUP, not OPERATIONAL",
    ),
    "EI blocked": (
        _set("eis.0.life_cycle", LifeCycle.BLOCKED),
        "is BLOCKED (import tries exhausted) and can never be loaded",
    ),
    "AS not locked": (
        _set("as_applet.life_cycle", LifeCycle.SETUP),
        "the AS in reader 'AS reader' is in SETUP, not OPERATIONAL",
    ),
    "AS PIN blocked": (
        _set("as_applet.tries", 0),
        "the AS in reader 'AS reader' has its operator PIN blocked",
    ),
    "export limit exhausted": (
        _set("as_applet.keys.10", AppKey(TA10, Usage.MAC, 2, diversify=True, limit=5, count=5)),
        "AS key 10 may be exported 0 more time(s) (limit 5, done 5), this batch needs 2",
    ),
    "export limit too small for the batch": (
        _set("as_applet.keys.10", AppKey(TA10, Usage.MAC, 2, diversify=True, limit=1)),
        "AS key 10 may be exported 1 more time(s) (limit 1, done 0), this batch needs 2",
    ),
    "key too long": (
        _set("as_applet.keys.03", AppKey(bytes(32), Usage.AUTHENTICATE, 1)),
        "AS key 03 is 32 bytes, longer than the 16-byte transport key: it is never exported",
    ),
    "no such AS key": (
        _set("as_applet.keys", {0x10: AppKey(TA10, Usage.MAC, 2)}),
        "the AS in reader 'AS reader' holds no key 03 (it holds: 10)",
    ),
    "slot refuses import": (
        _set("eis.0.slots.01", Slot(16, Usage.AUTHENTICATE, accepts_import=False)),
        "slot 01 of the EI 4B4C000000000001 in reader 'EI reader 1' does not accept imported keys",
    ),
    "slot key length": (
        _set("eis.0.slots.01", Slot(24, Usage.AUTHENTICATE)),
        "takes 24-byte keys, AS key 03 is 16 bytes",
    ),
    "slot usage": (
        _set("eis.0.slots.01", Slot(16, Usage.ENCRYPT)),
        "takes ENCRYPT keys, AS key 03 is a AUTHENTICATE key",
    ),
    "slot holds a newer version": (
        _set("eis.0.slots.01", Slot(16, Usage.AUTHENTICATE, key=bytes(16), version=7)),
        "holds version 0007, newer than version 0001 of AS key 03",
    ),
    "slot holds another key under the same version": (
        _set("eis.0.slots.01", Slot(16, Usage.AUTHENTICATE, key=bytes(16), version=1)),
        "holds another key (KCV",
    ),
}


@pytest.mark.parametrize(
    ("change", "message"), PREFLIGHT_CASES.values(), ids=PREFLIGHT_CASES.keys()
)
def test_preflight_refuses_before_any_key_moves(
    change: Callable[[Station], None], message: str
) -> None:
    s = station()
    change(s)
    with pytest.raises(PreflightError) as caught:
        s.run()
    assert any(message in problem for problem in caught.value.problems), caught.value.problems
    for transport in s.ei_transports:
        assert set(transport.instructions()) <= {"SELECT", "LIST_KEYS"}
    assert set(s.as_transport.instructions()) <= {"SELECT", "LIST_KEYS"}
    assert s.pin_reads == 0
    refused = [r for r in s.audit.records if r["event"] == "preflight_refused"]
    assert [r["message"] for r in refused] == caught.value.problems


def test_preflight_refuses_two_loads_into_one_slot() -> None:
    s = station()
    with pytest.raises(PreflightError, match="two loads target EI slot 01"):
        s.run([Load(3, 1), Load(0x10, 1)])


def test_a_card_pulled_mid_run_does_not_stop_the_others() -> None:
    s = station()
    s.ei_transports[0].remove_at = 4  # SELECT, LIST KEYS, GET CHALLENGE, then IMPORT KEY is lost
    results = s.run()
    first, second, *others = results
    assert (first.outcome, second.outcome) == (Outcome.FAILED, Outcome.FAILED)
    assert "removed from reader 'EI reader 1'" in first.reason
    assert second.reason.startswith("not attempted:")
    assert [r.outcome for r in others] == [Outcome.LOADED, Outcome.LOADED]
    assert failed(results)


def test_a_failed_cas_stops_that_card_to_spare_its_tries() -> None:
    s = station()
    lying = s.eis[0]
    lying.transport_key, lying.reported_kcv = OTHER_T16, crypto.kcv(T16)
    results = s.run()
    assert results[0].outcome == Outcome.FAILED and "(63C9)" in results[0].reason
    assert results[0].sw == 0x63C9
    assert results[1].reason.startswith("not attempted: an earlier import on this card failed")
    assert lying.tries == 9
    assert s.ei_transports[0].instructions().count("IMPORT_KEY") == 1
    assert [r.outcome for r in results[2:]] == [Outcome.LOADED, Outcome.LOADED]


def test_an_export_refused_after_preflight_fails_only_that_key() -> None:
    s = station(eis=1)
    s.on_pin = lambda: setattr(s.as_applet.keys[3], "count", s.as_applet.keys[3].limit)
    s.as_applet.keys[3].limit = 3
    results = s.run()
    assert [(r.load, r.outcome) for r in results] == [
        (Load(3, 1), Outcome.FAILED),
        (Load(0x10, 5), Outcome.LOADED),
    ]
    assert "export limit of this key is reached" in results[0].reason
    assert s.ei_transports[0].instructions().count("IMPORT_KEY") == 1


def test_losing_the_as_ends_the_run_with_the_results_so_far() -> None:
    s = station()
    s.as_transport.remove_at = 6  # SELECT, LIST KEYS, VERIFY, EXPORT, EXPORT, then gone
    with pytest.raises(AsUnavailableError) as caught:
        s.run()
    assert [r.outcome for r in caught.value.results] == [Outcome.LOADED, Outcome.LOADED]
    assert "IMPORT_KEY" not in s.ei_transports[1].instructions()


def test_a_loaded_key_is_reported_with_the_version_and_kcv_the_ei_checked() -> None:
    """No read-back: the EI's 9000 to IMPORT KEY comes only after its SAS check, so the result
    carries the block's version and SAS; an EI that refuses the block is reported failed."""
    s = station(eis=1)
    results = s.run([Load(3, 1)])
    assert (results[0].outcome, results[0].version, results[0].kcv) == (
        Outcome.LOADED,
        1,
        kcv(TA03),
    )
    s = station(eis=1)
    s.eis[0].import_answer = SW.SECURITY_STATUS_NOT_SATISFIED
    results = s.run([Load(3, 1)])
    assert (results[0].outcome, results[0].sw, results[0].kcv) == (Outcome.FAILED, 0x6982, "")


def test_a_wrong_pin_stops_before_any_export() -> None:
    s = station()
    s.as_applet.pin = b"9999"
    with pytest.raises(Exception, match="wrong PIN, 2 tries left"):
        s.run()
    assert "EXPORT_KEY" not in s.as_transport.instructions()


# ------------------------------------------------------------------------------ watch


class Readers:
    """EI readers whose cards the test inserts and removes between two looks of watch mode
    (a ``CardWatch``): each insertion gets the reader a new event count, as pcsc-lite does."""

    def __init__(self, names: list[str]) -> None:
        self.transports = {name: FakeTransport(name, None) for name in names}
        self.events = dict.fromkeys(names, 0)
        self.script: list[Callable[[], None]] = []
        self.steps = 0
        self.waits = 0

    def cards(self) -> dict[str, int | None]:
        return {
            name: self.events[name] if transport.applet else None
            for name, transport in self.transports.items()
        }

    def wait(self, _timeout: float) -> None:
        self.waits += 1

    @contextmanager
    def open_ei(self, name: str) -> Iterator[EiCard]:
        yield EiCard(self.transports[name])

    def should_stop(self) -> bool:
        if self.steps == len(self.script):
            return True
        self.script[self.steps]()
        self.steps += 1
        return False

    def insert(self, name: str, applet: FakeApplet | None) -> Callable[[], None]:
        def step() -> None:
            self.transports[name].applet = applet
            self.events[name] += 1

        return step


def run_watch_with(s: Station, readers: Readers) -> list[LoadResult]:
    return run_watch(
        AsCard(s.as_transport),
        LOADS,
        s.audit,
        s.read_pin,
        readers.open_ei,
        readers,
        readers.should_stop,
    )


def test_watch_serves_each_inserted_card_once_until_it_is_removed() -> None:
    s = station(eis=0)
    readers = Readers(["EI A", "EI B"])
    card1, card2 = standard_ei(SN1), standard_ei(SN2)
    nothing = lambda: None  # noqa: E731
    readers.script = [
        readers.insert("EI A", card1),
        nothing,
        nothing,
        readers.insert("EI B", card2),
        readers.insert("EI A", None),
        readers.insert("EI A", card1),
    ]
    results = run_watch_with(s, readers)
    assert [(r.serial, r.outcome) for r in results] == [
        (SN1.hex().upper(), Outcome.LOADED),
        (SN1.hex().upper(), Outcome.LOADED),
        (SN2.hex().upper(), Outcome.LOADED),
        (SN2.hex().upper(), Outcome.LOADED),
        (SN1.hex().upper(), Outcome.SKIPPED),
        (SN1.hex().upper(), Outcome.SKIPPED),
    ]
    assert s.pin_reads == 1


def test_watch_serves_a_card_swapped_in_between_two_looks() -> None:
    s = station(eis=0)
    readers = Readers(["EI A"])
    card1, card2 = standard_ei(SN1), standard_ei(SN2)
    readers.script = [readers.insert("EI A", card1), readers.insert("EI A", card2)]
    results = run_watch_with(s, readers)
    assert [r.serial for r in results] == [SN1.hex().upper()] * 2 + [SN2.hex().upper()] * 2


def test_watch_reports_a_card_of_another_set_and_goes_on() -> None:
    s = station(eis=0)
    readers = Readers(["EI A"])
    stranger = standard_ei(SN2)
    stranger.transport_key = OTHER_T16
    readers.script = [
        readers.insert("EI A", stranger),
        readers.insert("EI A", None),
        readers.insert("EI A", standard_ei(SN1)),
    ]
    results = run_watch_with(s, readers)
    assert [r.outcome for r in results] == [Outcome.FAILED] * 2 + [Outcome.LOADED] * 2
    assert "belongs to another set" in results[0].reason
    assert stranger.slots[1].key is None


def test_watch_checks_the_as_before_asking_the_pin() -> None:
    s = station(eis=0)
    s.as_applet.life_cycle = LifeCycle.SETUP
    with pytest.raises(PreflightError, match="not OPERATIONAL"):
        run_watch_with(s, Readers(["EI A"]))
    assert s.pin_reads == 0


def test_a_blank_ei_gets_one_plain_problem() -> None:
    s = station(eis=1)
    s.eis[0] = blank = FakeApplet(Role.EI, LifeCycle.SETUP, transport_key=None, pin=None)
    s.ei_transports[0].applet = blank
    with pytest.raises(PreflightError) as caught:
        s.run()
    assert caught.value.problems == [
        "the EI in reader 'EI reader 1' is in SETUP, not OPERATIONAL: "
        "set it up and lock it first (keyload-host setup ei)"
    ]
