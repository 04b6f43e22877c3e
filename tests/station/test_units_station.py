"""The units of a run through pcscd and the simulated station, with the real CLI: a card whose
serial is not expected is refused with nothing spent (the AS counts no export for it, its retry
counter and slots stay as they were, it gets only SELECT and LIST KEYS); the reconciliation of a
run with a loaded, a failed and an unseen unit and its exit status; blank cards enrolled and
loaded in one pass, with serials no later run gives again."""

from __future__ import annotations

import json
import re
import secrets
from collections import Counter
from pathlib import Path

import pytest
from integration_support import (
    CliRun,
    leaked,
    read_card,
    run_verbose_cli,
    write_secret_file,
)
from keyload_host import crypto
from keyload_host.cards import AsCard, EiCard
from keyload_host.manifest import EXIT_INCOMPLETE
from keyload_host.protocol import LifeCycle, Usage
from keyload_host.transport import Pcsc
from keyload_station import supervisor as station
from keyload_station.cardset import AppKey, SetSecrets, set_up_as, set_up_ei
from station_support import StationUp

ROLES = ("AS", "EI", "EI")
AS_READER, EI_A, EI_B = (station.reader_name(index) for index in range(len(ROLES)))
AUTH_KEY = AppKey(0x03, 0x01, Usage.AUTHENTICATE, 16)
MAC_KEY = AppKey(0x10, 0x05, Usage.MAC, 16, diversify=True)
KEYS = (AUTH_KEY, MAC_KEY)
PIN_ENV = "KEYLOAD_UNITS_PIN"
RETRY_LIMIT = 5


class CardSet:
    """The AS of the module, its secrets in memory and on disk as an operator keeps them."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.transport_key = secrets.token_bytes(32)
        self.pin = secrets.token_hex(4)
        self.keys = {spec.ref1: secrets.token_bytes(spec.length) for spec in KEYS}
        self.values = SetSecrets(self.transport_key, self.pin.encode(), self.keys)
        self.transport_key_file = write_secret_file(
            directory / "t.key", self.transport_key.hex().upper()
        )
        self.first = int.from_bytes(b"KL" + secrets.token_bytes(2)) << 32
        self.next = 0
        self.outputs: list[str] = []

    def serials(self, count: int) -> list[bytes]:
        """``count`` consecutive serials never used in this module."""
        numbers = range(self.first + self.next, self.first + self.next + count)
        self.next += count
        return [number.to_bytes(8) for number in numbers]

    def known_secrets(self) -> dict[str, bytes]:
        return {
            "T": self.transport_key,
            "PIN": self.pin.encode(),
            **{f"TA {ref1:02X}": key for ref1, key in self.keys.items()},
        }

    def unit_key(self, spec: AppKey, serial: bytes) -> bytes:
        key = self.keys[spec.ref1]
        return crypto.diversify(key, serial) if spec.diversify else key

    def new_ei(self, reader: str, serial: bytes) -> None:
        """A fresh EI of the set in ``reader``, set up and locked with ``serial``."""
        station.swap(reader, "EI")
        with Pcsc() as pcsc, pcsc.connect(reader) as transport:
            set_up_ei(EiCard(transport), serial, [spec.slot for spec in KEYS], self.values)

    def manifest(self, name: str, serials: list[bytes]) -> Path:
        path = self.directory / name
        path.write_text(
            "serial,site\n" + "".join(f"{s.hex()},bay {n}\n" for n, s in enumerate(serials))
        )
        return path

    def personalize(
        self, audit: Path, *extra: str, readers: tuple[str, ...] = (EI_A, EI_B)
    ) -> CliRun:
        arguments = ["personalize", "--as-reader", AS_READER, "--audit", str(audit)]
        arguments += ["--pin-env", PIN_ENV]
        for reader in readers:
            arguments += ["--ei-reader", reader]
        for spec in KEYS:
            arguments += ["--load", str(spec.load)]
        run = run_verbose_cli([*arguments, *extra], env={PIN_ENV: self.pin})
        self.outputs += [run.stdout, run.stderr, audit.read_text()]
        return run


@pytest.fixture(scope="module")
def card_set(station_up: StationUp, tmp_path_factory: pytest.TempPathFactory) -> CardSet:
    cards = CardSet(tmp_path_factory.mktemp("units"))
    with Pcsc() as pcsc, pcsc.connect(AS_READER) as transport:
        set_up_as(AsCard(transport), KEYS, cards.values)
    yield cards
    assert leaked("\n".join(cards.outputs), cards.known_secrets()) == []
    cards.values.wipe()


def _hex(serial: bytes) -> str:
    return serial.hex().upper()


def _reconciliation(run: CliRun) -> dict[str, str]:
    """The reconciliation table's rows: serial -> result."""
    table = run.stdout[run.stdout.index("Reconciliation:") :].splitlines()
    rows = {}
    for line in table:
        cells = line.split()
        if cells and re.fullmatch("[0-9A-F]{16}", cells[0]):
            rows[cells[0]] = "not seen" if cells[1:3] == ["not", "seen"] else cells[1]
    return rows


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_an_unknown_serial_is_refused_with_nothing_spent(card_set: CardSet) -> None:
    expected, stranger, unseen = card_set.serials(3)
    card_set.new_ei(EI_A, expected)
    card_set.new_ei(EI_B, stranger)
    as_before = read_card(AS_READER, AsCard).by_ref()
    stranger_before = read_card(EI_B, EiCard)
    audit = card_set.directory / "unknown.jsonl"
    run = card_set.personalize(
        audit, "--expect", str(card_set.manifest("unknown.csv", [expected, unseen]))
    )
    assert run.returncode == EXIT_INCOMPLETE, run.stderr
    assert run.commands_to(EI_B) == Counter({"SELECT": 1, "LIST KEYS": 1})
    assert run.received[EI_B] == 2, "the station saw more than the two reads"
    assert run.logged_per_reader() == run.received
    assert read_card(EI_B, EiCard) == stranger_before  # tries, slots: as they were
    as_after = read_card(AS_READER, AsCard).by_ref()
    for spec in KEYS:  # one export per key: the expected card's
        assert as_after[spec.ref1].count == as_before[spec.ref1].count + 1
    assert read_card(EI_A, EiCard).by_ref()[MAC_KEY.ref2].kcv == crypto.kcv(
        card_set.unit_key(MAC_KEY, expected)
    )
    assert _reconciliation(run) == {
        _hex(expected): "loaded",
        _hex(unseen): "not seen",
        _hex(stranger): "refused",
    }
    refused = [r for r in _records(audit) if r["event"] == "card_failed"]
    assert [(r["ei_sn"], r["reader"]) for r in refused] == [(_hex(stranger), EI_B)]
    assert "is not on the list of expected units (unknown.csv)" in refused[0]["message"]
    assert "not on the list of expected units" in run.stdout + run.stderr


def test_the_reconciliation_lists_loaded_failed_and_unseen_units(card_set: CardSet) -> None:
    loaded, failed, unseen = card_set.serials(3)
    card_set.new_ei(EI_A, loaded)
    card_set.new_ei(EI_B, failed)
    station.pull(EI_B, 3)  # SELECT, LIST KEYS, then the card leaves at GET CHALLENGE
    audit = card_set.directory / "reconciliation.jsonl"
    try:
        run = card_set.personalize(
            audit, "--expect", str(card_set.manifest("run.csv", [loaded, failed, unseen]))
        )
    finally:
        station.reinsert(EI_B)
    assert run.returncode == EXIT_INCOMPLETE, run.stderr
    assert _reconciliation(run) == {
        _hex(loaded): "loaded",
        _hex(failed): "failed",
        _hex(unseen): "not seen",
    }
    assert "3 expected unit(s): 1 loaded, 1 failed, 1 not seen: INCOMPLETE" in run.stdout
    records = [r for r in _records(audit) if r["event"] == "reconciliation"]
    assert [(r.get("ei_sn"), r["result"]) for r in records] == [
        (_hex(loaded), "loaded"),
        (_hex(failed), "failed"),
        (_hex(unseen), "not seen"),
        (None, "incomplete"),
    ]
    assert "removed" in records[1]["message"]


def test_blank_cards_are_enrolled_and_loaded_in_one_pass(card_set: CardSet) -> None:
    first, second, third = card_set.serials(3)
    station.swap(EI_A, "EI")
    station.swap(EI_B, "EI")
    template = card_set.directory / "ei-template.toml"
    lines = [f'transport_key = {{ file = "{card_set.transport_key_file.name}" }}']
    lines.append(f"retry_limit = {RETRY_LIMIT}")
    for spec in KEYS:
        slot = spec.slot
        lines += ["[[slots]]", f"ref = {slot.ref}", f"key_length = {slot.key_length}"]
        lines.append(f'usage = "{ {Usage.AUTHENTICATE: "auth", Usage.MAC: "mac"}[slot.usage] }"')
    template.write_text("\n".join(lines) + "\n")
    audit = card_set.directory / "enrolment.jsonl"
    manifest = card_set.manifest("blank.csv", [first, second])
    run = card_set.personalize(audit, "--expect", str(manifest), "--ei-template", str(template))
    assert run.returncode == 0, run.stdout + run.stderr
    given = set()
    for reader in (EI_A, EI_B):
        state = read_card(reader, EiCard)
        serial = state.info.serial
        given.add(serial)
        assert state.info.life_cycle == LifeCycle.OPERATIONAL
        assert state.info.try_limit == RETRY_LIMIT
        for spec in KEYS:
            assert state.by_ref()[spec.ref2].kcv == crypto.kcv(card_set.unit_key(spec, serial))
    assert given == {first, second}
    events = Counter(r["event"] for r in _records(audit))
    assert (events["serial_allocated"], events["enrolled"], events["key"]) == (2, 2, 4)
    assert _reconciliation(run) == {_hex(first): "loaded", _hex(second): "loaded"}

    station.swap(EI_A, "EI")  # another run, another blank card, the same inventory
    serial_range = f"{_hex(first)}-{_hex(third)}"
    run = card_set.personalize(
        audit, "--ei-template", str(template), "--serial-range", serial_range, readers=(EI_A,)
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert read_card(EI_A, EiCard).info.serial == third
