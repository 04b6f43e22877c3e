"""The units of a run over fake cards: a card not on the manifest is refused once read, with
nothing spent; the reconciliation accounts for every expected unit and sets the exit status;
blank cards are enrolled with serials the inventory gives once, also to threads at once."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from fakes import OTHER_T16, PIN, T16, AppKey, FakeApplet, FakeTransport, Slot, make_as, make_ei
from keyload_host import crypto
from keyload_host.audit import EVENT_CARD_FAILED
from keyload_host.cards import AsCard, EiCard
from keyload_host.cli import main
from keyload_host.config import EiSetup, Load, SlotConfig
from keyload_host.enrolment import (
    Enrolment,
    EnrolmentError,
    SerialAllocator,
    SerialPool,
    serials,
)
from keyload_host.inventory import open_store
from keyload_host.manifest import (
    EXIT_INCOMPLETE,
    Manifest,
    ManifestGate,
    UnitStatus,
    reconcile,
)
from keyload_host.protocol import SW, LifeCycle, Role, Usage
from keyload_host.secret_sources import Secret, SecretKind, SecretSource
from keyload_host.workflow import (
    CardReport,
    LoadResult,
    Outcome,
    PreflightError,
    run_batch,
    run_watch,
)
from test_cli import PERSONALIZE
from test_workflow import LOADS, SN1, SN2, ListAudit, Readers, standard_as, standard_ei

SN3 = bytes.fromhex("4B4C000000000003")


def hexed(*serials: bytes) -> tuple[str, ...]:
    return tuple(serial.hex().upper() for serial in serials)


def manifest(*units: bytes) -> Manifest:
    return Manifest(Path("units.csv"), hexed(*units))


def pin() -> Secret:
    return Secret(PIN, SecretKind.PIN)


# ------------------------------------------------------------------------------ the manifest


def test_an_unknown_serial_is_refused_before_anything_is_spent() -> None:
    as_applet, known, stranger = standard_as(), standard_ei(SN1), standard_ei(SN2)
    as_transport = FakeTransport("AS reader", as_applet)
    ei_transports = [FakeTransport("EI 1", known), FakeTransport("EI 2", stranger)]
    audit, reports = ListAudit(), []
    results = run_batch(
        AsCard(as_transport),
        [EiCard(t) for t in ei_transports],
        LOADS,
        audit,
        pin,
        on_card=reports.append,
        gates=[ManifestGate(manifest(SN1, SN3))],
    )
    assert ei_transports[1].instructions() == ["SELECT", "LIST_KEYS"]
    assert as_transport.instructions().count("EXPORT_KEY") == len(LOADS)  # the known card's
    assert (stranger.tries, stranger.challenge, stranger.slots[1].key) == (10, None, None)
    assert as_applet.keys[0x10].count == 1
    assert [(r.serial, r.outcome) for r in results] == [
        *[(hexed(SN2)[0], Outcome.FAILED)] * 2,
        *[(hexed(SN1)[0], Outcome.LOADED)] * 2,
    ]
    message = (
        f"the EI {hexed(SN2)[0]} in reader 'EI 2' is not on the list of expected units "
        "(units.csv): refused, nothing spent"
    )
    refused = [r for r in audit.records if r["event"] == EVENT_CARD_FAILED]
    assert refused == [
        {"event": EVENT_CARD_FAILED, "reader": "EI 2", "ei_sn": hexed(SN2)[0], "message": message}
    ]
    assert [report.problem for report in reports if report.problem] == [message]


def test_watch_mode_refuses_an_unknown_card_and_serves_the_expected_one() -> None:
    as_transport = FakeTransport("AS reader", standard_as())
    readers = Readers(["EI A"])
    stranger = standard_ei(SN2)
    readers.script = [
        readers.insert("EI A", stranger),
        readers.insert("EI A", standard_ei(SN1)),
    ]
    results = run_watch(
        AsCard(as_transport),
        LOADS,
        ListAudit(),
        pin,
        readers.open_ei,
        readers,
        readers.should_stop,
        gates=[ManifestGate(manifest(SN1))],
    )
    assert [r.outcome for r in results] == [Outcome.FAILED] * 2 + [Outcome.LOADED] * 2
    assert "not on the list of expected units" in results[0].reason
    assert stranger.slots[1].key is None and stranger.tries == 10


def _report(serial: bytes, outcomes: Sequence[Outcome], problem: str = "") -> CardReport:
    sn = serial.hex().upper()
    results = tuple(
        LoadResult("EI A", sn, load, outcome, reason="" if outcome != Outcome.FAILED else "6982")
        for load, outcome in zip(LOADS, outcomes, strict=True)
    )
    return CardReport("EI A", sn, results, problem)


def test_the_reconciliation_accounts_for_every_expected_unit() -> None:
    SN4, SN5 = bytes.fromhex("4B4C000000000004"), bytes.fromhex("4B4C000000000005")
    reports = [
        _report(SN1, [Outcome.LOADED, Outcome.LOADED]),
        _report(SN2, [Outcome.LOADED, Outcome.FAILED]),
        _report(SN4, [Outcome.LOADED, Outcome.FAILED]),  # failed, then put back in: completed
        _report(SN4, [Outcome.SKIPPED, Outcome.LOADED]),
        _report(SN5, [Outcome.FAILED, Outcome.FAILED], "not on the list"),
        CardReport("EI B", "", (), "the card was removed"),
    ]
    reconciliation = reconcile(manifest(SN1, SN2, SN3, SN4), LOADS, reports)
    assert [(r.serial, r.status, r.detail) for r in reconciliation.units] == [
        (hexed(SN1)[0], UnitStatus.LOADED, ""),
        (hexed(SN2)[0], UnitStatus.FAILED, "6982"),
        (hexed(SN3)[0], UnitStatus.NOT_SEEN, ""),
        (hexed(SN4)[0], UnitStatus.LOADED, ""),
    ]
    assert [(r.serial, r.status, r.detail) for r in reconciliation.others] == [
        (hexed(SN5)[0], UnitStatus.REFUSED, "not on the list"),
        ("", UnitStatus.REFUSED, "the card was removed"),
    ]
    assert not reconciliation.complete
    assert reconciliation.summary() == (
        "4 expected unit(s): 2 loaded, 1 failed, 1 not seen; 2 other card(s) refused: INCOMPLETE"
    )
    assert reconcile(manifest(SN1), LOADS, reports).complete


# ------------------------------------------------------------------------------ the CLI

TA03 = bytes.fromhex("00112233445566778899AABBCCDDEEFF")


def cli(*args: str) -> object:
    return CliRunner().invoke(main, list(args), env={"PIN": PIN.decode()}, catch_exceptions=False)


def personalize(audit: Path, *extra: str) -> object:
    return cli(*PERSONALIZE, "--pin-env", "PIN", "--audit", str(audit), *extra)


def cli_station() -> dict[str, FakeApplet | None]:
    return {
        "AS reader": make_as(k03=AppKey(TA03, Usage.AUTHENTICATE, 1)),
        "EI reader 1": make_ei(SN1, s01=Slot(16, Usage.AUTHENTICATE)),
        "EI reader 2": make_ei(SN2, s01=Slot(16, Usage.AUTHENTICATE)),
    }


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_personalize_reconciles_and_exits_3_when_a_unit_is_missing(
    fake_readers, tmp_path: Path
) -> None:
    readers = cli_station()
    readers["EI reader 2"].import_answer = SW.SECURITY_STATUS_NOT_SATISFIED
    fake_readers(readers)
    units = tmp_path / "units.csv"
    units.write_text("serial\n" + "\n".join(hexed(SN1, SN2, SN3)) + "\n")
    audit = tmp_path / "audit.jsonl"
    result = personalize(audit, "--expect", str(units))
    assert result.exit_code == EXIT_INCOMPLETE, result.output
    table = result.output[result.output.index("Reconciliation:") :].splitlines()
    rows = [line.split()[:2] for line in table if line.startswith("4B4C")]
    assert rows == [[hexed(SN1)[0], "loaded"], [hexed(SN2)[0], "failed"], [hexed(SN3)[0], "not"]]
    assert "3 expected unit(s): 1 loaded, 1 failed, 1 not seen: INCOMPLETE" in result.output
    logged = [r for r in records(audit) if r["event"] == "reconciliation"]
    assert [(r.get("ei_sn"), r["result"]) for r in logged] == [
        (hexed(SN1)[0], "loaded"),
        (hexed(SN2)[0], "failed"),
        (hexed(SN3)[0], "not seen"),
        (None, "incomplete"),
    ]
    assert records(audit)[-1]["event"] == "session_end"
    assert records(audit)[-1]["result"] == "failed"


def test_personalize_exits_0_when_every_expected_unit_is_loaded(
    fake_readers, tmp_path: Path
) -> None:
    fake_readers(cli_station())
    units = tmp_path / "units.toml"
    units.write_text(f"serials = {list(hexed(SN1, SN2))}\n".replace("'", '"'))
    audit = tmp_path / "audit.jsonl"
    result = personalize(audit, "--expect", str(units))
    assert result.exit_code == 0, result.output
    assert "2 expected unit(s): 2 loaded, 0 failed, 0 not seen: complete" in result.output
    again = personalize(audit, "--expect", str(units))  # already loaded: skipped, complete
    assert again.exit_code == 0, again.output
    assert "0 loaded, 2 skipped, 0 failed" in again.output


def test_personalize_exits_1_for_a_refused_card_when_every_unit_is_loaded(
    fake_readers, tmp_path: Path
) -> None:
    readers = fake_readers(cli_station())
    units = tmp_path / "units.csv"
    units.write_text(f"serial\n{hexed(SN1)[0]}\n")
    result = personalize(tmp_path / "audit.jsonl", "--expect", str(units))
    assert result.exit_code == 1, result.output
    assert readers.transports["EI reader 2"].instructions() == ["SELECT", "LIST_KEYS"]
    assert "1 expected unit(s): 1 loaded, 0 failed, 0 not seen; 1 other card(s) refused" in (
        result.output
    )


# ------------------------------------------------------------------------------ enrolment

TEMPLATE = EiSetup(
    SecretSource(env="unused"),
    b"",
    5,
    (SlotConfig(0x01, 16, Usage.AUTHENTICATE, True), SlotConfig(0x05, 16, Usage.MAC, True)),
)


def blank() -> FakeApplet:
    return FakeApplet(Role.EI, LifeCycle.SETUP, transport_key=None, pin=None)


@pytest.fixture
def store(tmp_path: Path):
    with open_store(str(tmp_path / "inventory.sqlite")) as opened:
        yield opened


def enrolment(store, pool: SerialPool, audit: ListAudit, key: bytes = T16) -> Enrolment:
    allocator = SerialAllocator(store, pool, "station 1", "run 1")
    return Enrolment(TEMPLATE, "ei.toml", Secret(key, SecretKind.KEY), allocator, audit)


def watch_with(gates: list, readers: Readers, audit: ListAudit) -> list:
    return run_watch(
        AsCard(FakeTransport("AS reader", standard_as())),
        LOADS,
        audit,
        pin,
        readers.open_ei,
        readers,
        readers.should_stop,
        gates=gates,
    )


def test_a_blank_card_is_enrolled_locked_and_loaded_in_one_pass(store) -> None:
    audit = ListAudit()
    units = manifest(SN1, SN2)
    gates = [enrolment(store, SerialPool.of_manifest(units), audit), ManifestGate(units)]
    readers = Readers(["EI A", "EI B"])
    first, second = blank(), blank()
    readers.script = [readers.insert("EI A", first), readers.insert("EI B", second)]
    results = watch_with(gates, readers, audit)
    assert [r.outcome for r in results] == [Outcome.LOADED] * 4
    assert {first.serial, second.serial} == {SN1, SN2}
    for card in (first, second):
        assert (card.life_cycle, card.try_limit, card.transport_key) == (
            LifeCycle.OPERATIONAL,
            5,
            T16,
        )
        assert card.slots[5].key == crypto.diversify(
            bytes.fromhex("8E73B0F7DA0E6452C810F32B809079E5"), card.serial
        )
    events = [(r["event"], r.get("ei_sn")) for r in audit.records if r["event"] != "key"]
    assert sorted(events) == sorted(
        [(e, sn) for sn in hexed(SN1, SN2) for e in ("serial_allocated", "enrolled")]
    )
    with store.engine.connect() as connection:
        rows = dict(connection.execute(sa.select(serials.c.serial, serials.c.state)).all())
    assert rows == dict.fromkeys(hexed(SN1, SN2), "enrolled")
    text = json.dumps(audit.records)
    assert T16.hex() not in text.lower()


def test_a_card_that_fails_before_lock_spoils_its_serial_for_good(store) -> None:
    audit = ListAudit()
    pool = SerialPool.of_manifest(manifest(SN1, SN2, SN3))
    gates = [enrolment(store, pool, audit)]
    readers = Readers(["EI A"])
    readers.transports["EI A"].remove_at = 4  # SELECT, SELECT, SET TRANSPORT KEY, SET SERIAL
    readers.script = [readers.insert("EI A", blank())]
    results = watch_with(gates, readers, audit)
    assert [r.outcome for r in results] == [Outcome.FAILED] * 2
    assert f"serial {hexed(SN1)[0]} is spoiled and never given again" in results[0].reason
    assert results[0].serial == hexed(SN1)[0]
    readers = Readers(["EI A"])
    card = blank()
    readers.script = [readers.insert("EI A", card)]
    watch_with([enrolment(store, pool, audit)], readers, audit)  # another run, same inventory
    assert card.serial == SN2
    states = SerialAllocator(store, pool).states()
    assert states == {hexed(SN1)[0]: "spoiled", hexed(SN2)[0]: "enrolled"}


def test_an_allocated_serial_is_never_given_twice_to_threads_at_once(store, tmp_path: Path) -> None:
    pool = SerialPool.of_range("4B4C000000000001-4B4C000000000050")  # 80 serials
    given: list[str] = []
    errors: list[Exception] = []

    def allocate(number: int) -> None:
        with open_store(str(tmp_path / "inventory.sqlite")) as own:  # a connection of its own
            allocator = SerialAllocator(own, pool, f"station {number}")
            try:
                for _ in range(20):
                    given.append(allocator.allocate(f"EI {number}"))
            except EnrolmentError as error:
                errors.append(error)

    threads = [threading.Thread(target=allocate, args=(n,)) for n in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(given) == len(set(given)) == 80
    assert sorted(given) == list(pool.candidates())
    assert errors and all("has been given" in str(error) for error in errors)


def test_a_serial_already_on_a_unit_of_the_inventory_is_not_given(store, tmp_path: Path) -> None:
    from keyload_host.audit import AuditLog
    from keyload_host.inventory import InventoryFeed
    from units import as_pool
    from units import personalize as load_units

    path = tmp_path / "audit.jsonl"
    with AuditLog(path) as journal:
        InventoryFeed(journal, store, path)
        load_units(as_pool(), [SN1], journal)  # set up by hand, then personalized
        journal.record("reconciliation", ei_sn=hexed(SN2)[0], result="not seen")  # no card
    allocator = SerialAllocator(store, SerialPool.of_manifest(manifest(SN1, SN2)))
    assert allocator.allocate("EI A") == hexed(SN2)[0]


@pytest.mark.parametrize(
    ("wrong", "problem"),
    [
        ("transport key", "has another transport key (KCV"),
        ("slots", "has no slot 05 for load 10:05"),
    ],
)
def test_an_enrolment_that_cannot_fit_the_as_is_refused_before_the_pin(
    store, wrong: str, problem: str
) -> None:
    audit = ListAudit()
    key = OTHER_T16 if wrong == "transport key" else T16
    gate = enrolment(store, SerialPool.of_manifest(manifest(SN1)), audit, key)
    if wrong == "slots":
        gate.template = EiSetup(TEMPLATE.transport_key, b"", 5, TEMPLATE.slots[:1])
    readers = Readers(["EI A"])
    card = blank()
    readers.script = [readers.insert("EI A", card)]
    with pytest.raises(PreflightError, match=re.escape(problem)):
        watch_with([gate], readers, audit)
    assert card.life_cycle == LifeCycle.SETUP and card.serial == b""
    assert readers.transports["EI A"].sent == []


def write_template(folder: Path) -> Path:
    """An EI template in ``folder`` (ei.toml, one 16-byte auth slot) and its transport key T16
    (t.key, chmod 600); returns the template's path."""
    key = folder / "t.key"
    key.write_text(T16.hex() + "\n")
    key.chmod(0o600)
    template = folder / "ei.toml"
    template.write_text(
        'transport_key = { file = "t.key" }\n[[slots]]\nref = 1\nkey_length = 16\nusage = "auth"\n'
    )
    return template


def test_enrolment_needs_an_audit_log_and_an_inventory(fake_readers, tmp_path: Path) -> None:
    fake_readers(cli_station())
    template = write_template(tmp_path)
    arguments = [
        "--ei-template",
        str(template),
        "--serial-range",
        "4B4C000000000001-4B4C0000000000FF",
    ]
    result = personalize(tmp_path / "audit.jsonl", *arguments, "--store", "none")
    assert result.exit_code == 2
    assert "--ei-template needs --audit and an inventory" in result.output
    result = personalize(tmp_path / "audit.jsonl", "--ei-template", str(template))
    assert result.exit_code == 2
    assert "needs the serials to give" in result.output
    assert T16.hex() not in result.output.lower()


def test_the_cli_enrols_a_blank_card_from_a_range(fake_readers, tmp_path: Path) -> None:
    readers = cli_station()
    readers["EI reader 2"] = blank()
    fake_readers(readers)
    template = write_template(tmp_path)
    audit = tmp_path / "audit.jsonl"
    result = personalize(
        audit, "--ei-template", str(template), "--serial-range", "4B4C000000000101-4B4C0000000001FF"
    )
    assert result.exit_code == 0, result.output
    assert readers["EI reader 2"].serial == bytes.fromhex("4B4C000000000101")
    assert readers["EI reader 2"].slots[1].key == TA03
    assert T16.hex() not in (result.output + audit.read_text()).lower()
    history = cli(
        "inventory",
        "unit",
        "4B4C000000000101",
        "--store",
        str(tmp_path / "keyload-inventory.sqlite"),
        "--json",
    )
    assert [row["event"] for row in json.loads(history.output)] == [
        "serial_allocated",
        "enrolled",
        "key",
    ]


def test_ctrl_c_in_watch_mode_still_reconciles(
    fake_readers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The operator ends a watch session early: the units seen so far and the others are
    listed, in the output and the log, and the exit status says the run is incomplete."""
    from keyload_host import workflow

    pcsc = fake_readers(cli_station())
    pcsc.watch = lambda names: names

    def served_one_then_ctrl_c(*_args: object, on_card: Callable, **_kwargs: object) -> None:
        sn = hexed(SN1)[0]
        loaded = LoadResult("EI reader 1", sn, Load(0x03, 0x01), Outcome.LOADED)
        on_card(CardReport("EI reader 1", sn, (loaded,)))
        raise KeyboardInterrupt

    monkeypatch.setattr(workflow, "run_watch", served_one_then_ctrl_c)
    units = tmp_path / "units.csv"
    units.write_text("serial\n" + "\n".join(hexed(SN1, SN2)) + "\n")
    audit = tmp_path / "audit.jsonl"
    result = personalize(audit, "--watch", "--expect", str(units))
    assert result.exit_code == EXIT_INCOMPLETE, result.output
    assert "Stopped." in result.output
    assert "2 expected unit(s): 1 loaded, 0 failed, 1 not seen: INCOMPLETE" in result.output
    logged = [
        (r.get("ei_sn"), r["result"]) for r in records(audit) if r["event"] == "reconciliation"
    ]
    assert logged == [(hexed(SN1)[0], "loaded"), (hexed(SN2)[0], "not seen"), (None, "incomplete")]
