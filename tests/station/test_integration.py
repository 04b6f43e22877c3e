"""Issue 3 end to end: pyscard -> pcscd -> vpcd -> the station -> the real applets in jCardSim.

One station for the module, with four readers: an AS reader for the §6 vectors (a fresh AS per
vector), the AS of the card set, and two EI readers that get fresh blank EI cards by swapping.
The card set is set up and personalized once, through the CLI as an operator would (secrets in
chmod-600 files, the PIN in an environment variable, an audit log), and what each EI held right
after its load is kept for the tests, because a swapped-out card cannot be read any more. The
refusal tests then put one wrong EI next to a good one and check that the host says why and sends
no key: the cards' LIST KEYS are unchanged, the verbose log names no GET CHALLENGE, EXPORT KEY,
IMPORT KEY or VERIFY, and the station counted exactly the APDUs that log names.

Like tests/test_station.py, this starts pcscd when none runs and skips, with the reason, when the
applets are not built or a station is already up.
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner
from integration_support import (
    CardState,
    CliRun,
    as_config,
    ei_config,
    leaked,
    read_card,
    run_verbose_cli,
    write_secret_file,
)
from keyload_host import crypto
from keyload_host.audit import EVENT_KEY, EVENT_PREFLIGHT_REFUSED, line_hash
from keyload_host.cards import AsCard, EiCard
from keyload_host.cli import main
from keyload_host.protocol import LifeCycle, Usage, kcv_text
from keyload_host.transport import Pcsc
from keyload_host.workflow import Outcome
from keyload_station import supervisor as station
from keyload_station.cardset import AppKey, SetSecrets, set_up_as
from protocol_vectors import ProtocolVector, protocol_vectors
from station_support import StationUp

ROLES = ("AS", "AS", "EI", "EI")
VECTOR_AS_READER, AS_READER, EI_READER_A, EI_READER_B = (
    station.reader_name(index) for index in range(len(ROLES))
)
EI_READERS = (EI_READER_A, EI_READER_B)

TRANSPORT_KEY_LENGTH = 32
EI_CARD_COUNT = 4
"""Personalized through the two EI readers, two at a time."""
AUTH_KEY = AppKey(0x03, 0x01, Usage.AUTHENTICATE, 16, 0x0001, diversify=False)
MAC_KEY = AppKey(0x10, 0x05, Usage.MAC, 24, 0x0102, diversify=True)
ENC_KEY = AppKey(0x20, 0x0F, Usage.ENCRYPT, 32, 0x0003, diversify=False, export_limit=EI_CARD_COUNT)
"""Its export limit is spent by the card set, for the exhausted-limit refusal."""
APP_KEYS = (AUTH_KEY, MAC_KEY, ENC_KEY)
SERIAL_LENGTHS = (8, 16, 11, 8)
"""One per personalized EI: both bounds of SET SERIAL and a length in between."""
CHALLENGE_LENGTHS = (1, 64, 16, 33)
"""INTERNAL AUTHENTICATE data per personalized EI: both bounds and lengths in between."""
REFUSED_EI_SERIAL_LENGTH = 8
PIN_ENV = "KEYLOAD_INTEGRATION_PIN"
PIN_PREFIX = "PIN"
"""Test PINs start with this (not hex) and go on at random, so that a PIN never reads as hex."""
SENT_ONLY_AFTER_PREFLIGHT = frozenset({"VERIFY", "GET CHALLENGE", "EXPORT KEY", "IMPORT KEY"})
VECTORS = protocol_vectors()


def _hex(value: bytes) -> str:
    return value.hex().upper()


def _summary(loaded: int, skipped: int, failed: int) -> str:
    """The last line `personalize` prints."""
    counts = {Outcome.LOADED: loaded, Outcome.SKIPPED: skipped, Outcome.FAILED: failed}
    return ", ".join(f"{count} {outcome.value}" for outcome, count in counts.items())


def _invoke(arguments: Sequence[str], answer: str | None = None) -> str:
    """Run a CLI command in this process; it must succeed. Returns everything it printed."""
    result = CliRunner().invoke(main, list(arguments), input=answer)
    assert result.exit_code == 0, f"keyload-host {' '.join(arguments)}:\n{result.output}"
    return result.output


# ------------------------------------------------------------------------------ §6 vectors


def test_protocol_document_gives_three_vectors() -> None:
    assert [vector.name for vector in VECTORS] == ["V1", "V2", "V3"]


@pytest.mark.parametrize("vector", VECTORS, ids=lambda vector: vector.name)
def test_as_reproduces_the_protocol_vector(station_up: StationUp, vector: ProtocolVector) -> None:
    station.swap(VECTOR_AS_READER)
    pin = f"{PIN_PREFIX}{secrets.token_hex(4)}".encode()
    with Pcsc() as pcsc, pcsc.connect(VECTOR_AS_READER) as transport:
        card = AsCard(transport)
        assert card.select().life_cycle == LifeCycle.SETUP
        key = AppKey.holding(
            vector.ref1, vector.usage, vector.app_key, vector.version, diversify=vector.diversify
        )
        info = set_up_as(card, (key,), SetSecrets(vector.transport_key, pin))
        assert (info.life_cycle, info.transport_kcv) == (
            LifeCycle.OPERATIONAL,
            vector.transport_kcv,
        )
        card.verify_pin(pin)
        assert _hex(transport.transmit(vector.export_apdu)) == _hex(vector.export_response)


# ------------------------------------------------------------------------------ the card set


@dataclass(frozen=True)
class PersonalizedEi:
    """An EI of the set as read right after its personalization run."""

    reader: str
    serial: bytes
    state: CardState
    challenge: bytes
    authentication: str
    """What `keyload-host authenticate` printed for the auth slot and ``challenge``."""


@dataclass
class CardSet:
    directory: Path
    transport_key_file: Path
    pin: str
    known_secrets: dict[str, bytes]
    """Every secret of the set by a printable name, for the leak checks."""
    app_keys: dict[AppKey, bytes]
    audit_path: Path
    eis: list[PersonalizedEi] = field(default_factory=list)
    loads: list[CliRun] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    rerun: CliRun | None = None
    audit_lines_before_rerun: int = 0
    before_rerun: dict[str, CardState] = field(default_factory=dict)
    after_rerun: dict[str, CardState] = field(default_factory=dict)

    def unit_key(self, spec: AppKey, serial: bytes) -> bytes:
        """The key an EI with ``serial`` must hold for ``spec``."""
        key = self.app_keys[spec]
        return crypto.diversify(key, serial) if spec.diversify else key

    def personalize(self, audit_path: Path) -> CliRun:
        """`keyload-host -v personalize` of every application key into both EI readers."""
        arguments = ["personalize", "--as-reader", AS_READER, "--audit", str(audit_path)]
        arguments += ["--pin-env", PIN_ENV]
        for reader in EI_READERS:
            arguments += ["--ei-reader", reader]
        for spec in APP_KEYS:
            arguments += ["--load", str(spec.load)]
        run = run_verbose_cli(arguments, env={PIN_ENV: self.pin})
        self.outputs += [run.stdout, run.stderr]
        return run

    def new_ei(
        self,
        reader: str,
        name: str,
        serial_length: int = REFUSED_EI_SERIAL_LENGTH,
        *,
        transport_key_file: Path | None = None,
        slots: Sequence[AppKey] = APP_KEYS,
        lock: bool = True,
    ) -> bytes:
        """Swap a fresh blank EI into ``reader`` and set it up through `keyload-host setup ei`;
        ``lock=False`` answers no to the LOCK question. Returns its serial."""
        station.swap(reader)
        serial = secrets.token_bytes(serial_length)
        config = ei_config(
            self.directory,
            name,
            transport_key_file or self.transport_key_file,
            serial,
            slots,
        )
        arguments = ["setup", "ei", "--reader", reader, "--config", str(config)]
        self.outputs.append(
            _invoke([*arguments, "--yes"]) if lock else _invoke(arguments, answer="n\n")
        )
        return serial

    def snapshot(self) -> dict[str, CardState]:
        """INFO and LIST KEYS of the set's AS and of the cards in both EI readers."""
        states = {AS_READER: read_card(AS_READER, AsCard)}
        states.update((reader, read_card(reader, EiCard)) for reader in EI_READERS)
        return states


def _audit_records(path: Path) -> list[dict[str, object]]:
    """The audit log as JSON Lines: every line one JSON object."""
    text = path.read_text()
    assert text.endswith("\n")
    records = [json.loads(line) for line in text.splitlines()]
    assert all(isinstance(record, dict) for record in records)
    return records


def _key_records(records: Sequence[dict[str, object]]) -> list[dict[str, object]]:
    return [record for record in records if record["event"] == EVENT_KEY]


@pytest.fixture(scope="module")
def card_set(station_up: StationUp, tmp_path_factory: pytest.TempPathFactory) -> CardSet:
    """An AS with an AES-256 transport key and three keys, set up through the CLI, and four
    EI cards set up and personalized two at a time, then a re-run on the last two."""
    directory = tmp_path_factory.mktemp("card-set")
    transport_key = secrets.token_bytes(TRANSPORT_KEY_LENGTH)
    pin = f"{PIN_PREFIX}{secrets.token_urlsafe(9)}"
    app_keys = {spec: secrets.token_bytes(spec.length) for spec in APP_KEYS}
    transport_key_file = write_secret_file(directory / "t.key", _hex(transport_key))
    key_files = {
        spec: write_secret_file(directory / f"k{spec.ref1:02X}.key", _hex(key))
        for spec, key in app_keys.items()
    }
    pin_file = write_secret_file(directory / "pin", pin)
    cards = CardSet(
        directory=directory,
        transport_key_file=transport_key_file,
        pin=pin,
        known_secrets={
            "T": transport_key,
            "PIN": pin.encode(),
            **{f"TA {spec.ref1:02X}": key for spec, key in app_keys.items()},
        },
        app_keys=app_keys,
        audit_path=directory / "audit.jsonl",
    )
    config = as_config(directory, transport_key_file, pin_file, key_files)
    cards.outputs.append(
        _invoke(["setup", "as", "--reader", AS_READER, "--config", str(config), "--yes"])
    )

    for first in range(0, EI_CARD_COUNT, len(EI_READERS)):
        numbers = dict(zip(EI_READERS, range(first, first + len(EI_READERS)), strict=True))
        serials = {
            reader: cards.new_ei(reader, f"ei-{number}", SERIAL_LENGTHS[number])
            for reader, number in numbers.items()
        }
        run = cards.personalize(cards.audit_path)
        assert run.returncode == 0, run.stderr
        cards.loads.append(run)
        for reader, number in numbers.items():
            serial = serials[reader]
            challenge = secrets.token_bytes(CHALLENGE_LENGTHS[number])
            ref = f"{AUTH_KEY.ref2:02X}"
            authentication = _invoke(
                ["authenticate", "--reader", reader, "--ref", ref, "--challenge", challenge.hex()]
            )
            cards.outputs.append(authentication)
            state = read_card(reader, EiCard)
            cards.eis.append(
                PersonalizedEi(reader, serial, state, challenge, authentication.strip())
            )
            cards.known_secrets.update(
                (f"TA {spec.ref1:02X} of EI {number}", cards.unit_key(spec, serial))
                for spec in APP_KEYS
                if spec.diversify
            )

    cards.before_rerun = cards.snapshot()
    cards.audit_lines_before_rerun = len(cards.audit_path.read_text().splitlines())
    cards.rerun = cards.personalize(cards.audit_path)
    cards.after_rerun = cards.snapshot()
    return cards


def test_each_load_run_is_three_apdus_per_key(card_set: CardSet) -> None:
    for run in card_set.loads:
        assert _summary(len(EI_READERS) * len(APP_KEYS), 0, 0) in run.stdout
        assert run.commands_to(AS_READER)["VERIFY"] == 1
        assert run.commands_to(AS_READER)["EXPORT KEY"] == len(EI_READERS) * len(APP_KEYS)
        for reader in EI_READERS:
            sent = run.commands_to(reader)
            assert (sent["GET CHALLENGE"], sent["IMPORT KEY"]) == (len(APP_KEYS), len(APP_KEYS))
        assert run.logged_per_reader() == run.received, "the -v log misses APDUs"


def test_every_ei_slot_holds_its_key_and_version(card_set: CardSet) -> None:
    assert len(card_set.eis) == EI_CARD_COUNT
    for ei in card_set.eis:
        assert ei.state.info.life_cycle == LifeCycle.OPERATIONAL
        assert ei.state.info.serial == ei.serial
        slots = ei.state.by_ref()
        for spec in APP_KEYS:
            slot = slots[spec.ref2]
            assert (slot.loaded, slot.key_length, slot.usage, slot.version) == (
                True,
                spec.length,
                spec.usage,
                spec.version,
            ), f"slot {spec.ref2:02X} of EI {_hex(ei.serial)}"
            assert slot.kcv == crypto.kcv(card_set.unit_key(spec, ei.serial))


def test_the_diversified_key_differs_per_card(card_set: CardSet) -> None:
    kcvs = [ei.state.by_ref()[MAC_KEY.ref2].kcv for ei in card_set.eis]
    expected = [
        crypto.kcv(crypto.diversify(card_set.app_keys[MAC_KEY], ei.serial)) for ei in card_set.eis
    ]
    assert kcvs == expected
    assert len(set(kcvs)) == EI_CARD_COUNT
    assert crypto.kcv(card_set.app_keys[MAC_KEY]) not in kcvs


def test_internal_authenticate_answers_with_the_loaded_key(card_set: CardSet) -> None:
    for ei in card_set.eis:
        expected = crypto.aes_cmac(card_set.unit_key(AUTH_KEY, ei.serial), ei.challenge)
        assert ei.authentication == _hex(expected), f"EI {_hex(ei.serial)}"


def test_the_as_counted_one_export_per_card_and_key(card_set: CardSet) -> None:
    keys = card_set.before_rerun[AS_READER].by_ref()
    assert {spec.ref1: keys[spec.ref1].count for spec in APP_KEYS} == dict.fromkeys(
        (spec.ref1 for spec in APP_KEYS), EI_CARD_COUNT
    )
    assert keys[ENC_KEY.ref1].limit == ENC_KEY.export_limit


def test_the_audit_log_has_one_record_per_load(card_set: CardSet) -> None:
    records = _audit_records(card_set.audit_path)[: card_set.audit_lines_before_rerun]
    loads = _key_records(records)
    assert all(record["result"] == Outcome.LOADED.value for record in loads)
    assert Counter((record["ei_sn"], record["ref1"], record["ref2"]) for record in loads) == {
        (_hex(ei.serial), spec.ref1, spec.ref2): 1 for ei in card_set.eis for spec in APP_KEYS
    }
    for record in loads:
        (ei,) = (ei for ei in card_set.eis if _hex(ei.serial) == record["ei_sn"])
        (spec,) = (spec for spec in APP_KEYS if spec.ref1 == record["ref1"])
        assert (record["version"], record["kcv"]) == (
            spec.version,
            kcv_text(crypto.kcv(card_set.unit_key(spec, ei.serial))),
        )


def test_no_secret_in_the_audit_log_or_any_output(card_set: CardSet) -> None:
    diversified = sum(spec.diversify for spec in APP_KEYS)
    assert len(card_set.known_secrets) == 2 + len(APP_KEYS) + diversified * EI_CARD_COUNT
    assert leaked(card_set.audit_path.read_text(), card_set.known_secrets) == []
    assert leaked("\n".join(card_set.outputs), card_set.known_secrets) == []


def test_a_rerun_loads_nothing(card_set: CardSet) -> None:
    rerun = card_set.rerun
    assert rerun is not None
    assert rerun.returncode == 0, rerun.stderr
    assert _summary(0, len(EI_READERS) * len(APP_KEYS), 0) in rerun.stdout
    sent = {command for _reader, command in rerun.logged}
    assert sent & SENT_ONLY_AFTER_PREFLIGHT == set()
    assert rerun.logged_per_reader() == rerun.received
    assert card_set.after_rerun == card_set.before_rerun
    records = _audit_records(card_set.audit_path)[card_set.audit_lines_before_rerun :]
    assert {record["result"] for record in _key_records(records)} == {Outcome.SKIPPED.value}
    assert len(_key_records(records)) == len(EI_READERS) * len(APP_KEYS)


# ------------------------------------------------------------------------------ refusals


@pytest.fixture(scope="module")
def good_ei(card_set: CardSet) -> bytes:
    """A fresh EI of the set in reader B, ready for every key: the refusals must spare it too."""
    return card_set.new_ei(EI_READER_B, "good")


def _assert_refused_without_import(
    card_set: CardSet,
    name: str,
    expected: Sequence[str],
    other_secrets: Mapping[str, bytes] | None = None,
) -> None:
    """Personalize both EI readers: it must fail with ``expected`` in the message, change no
    card, and send nothing but reads (checked in the -v log and by the station's counters)."""
    before = card_set.snapshot()
    audit_path = card_set.directory / f"refused-{name}.jsonl"
    run = card_set.personalize(audit_path)
    assert run.returncode != 0
    for fragment in expected:
        assert fragment in run.stderr
    sent = {command for _reader, command in run.logged}
    assert sent & SENT_ONLY_AFTER_PREFLIGHT == set()
    assert run.logged_per_reader() == run.received, "the -v log misses APDUs"
    assert card_set.snapshot() == before
    records = _audit_records(audit_path)
    assert _key_records(records) == []
    refusals = " ".join(
        str(record["message"]) for record in records if record["event"] == EVENT_PREFLIGHT_REFUSED
    )
    for fragment in expected:
        assert fragment in refusals
    all_secrets = {**card_set.known_secrets, **(other_secrets or {})}
    assert leaked(run.stdout + run.stderr, all_secrets) == []


def _ei_name(serial: bytes, reader: str) -> str:
    return f"the EI {_hex(serial)} in reader '{reader}'"


def test_refuses_an_ei_of_another_set(card_set: CardSet, good_ei: bytes) -> None:
    other_key = secrets.token_bytes(TRANSPORT_KEY_LENGTH)
    other_file = write_secret_file(card_set.directory / "other-t.key", _hex(other_key))
    serial = card_set.new_ei(EI_READER_A, "other-set", transport_key_file=other_file)
    transport_key = card_set.known_secrets["T"]
    _assert_refused_without_import(
        card_set,
        "other-set",
        [
            f"{_ei_name(serial, EI_READER_A)} belongs to another set",
            f"its transport key KCV is {kcv_text(crypto.kcv(other_key))}",
            f"the AS has {kcv_text(crypto.kcv(transport_key))}",
        ],
        other_secrets={"the other set's T": other_key},
    )


def test_refuses_an_ei_without_a_slot(card_set: CardSet, good_ei: bytes) -> None:
    slots = [spec for spec in APP_KEYS if spec is not MAC_KEY]
    serial = card_set.new_ei(EI_READER_A, "missing-slot", slots=slots)
    _assert_refused_without_import(
        card_set,
        "missing-slot",
        [f"{_ei_name(serial, EI_READER_A)} has no slot {MAC_KEY.ref2:02X}"],
    )


def test_refuses_an_ei_that_is_not_locked(card_set: CardSet, good_ei: bytes) -> None:
    serial = card_set.new_ei(EI_READER_A, "not-locked", lock=False)
    _assert_refused_without_import(
        card_set,
        "not-locked",
        [f"{_ei_name(serial, EI_READER_A)} is in SETUP, not OPERATIONAL"],
    )


def test_refuses_a_batch_beyond_the_export_limit(card_set: CardSet, good_ei: bytes) -> None:
    card_set.new_ei(EI_READER_A, "over-limit")
    _assert_refused_without_import(
        card_set,
        "over-limit",
        [
            f"AS key {ENC_KEY.ref1:02X} may be exported 0 more time(s) "
            f"(limit {EI_CARD_COUNT}, done {EI_CARD_COUNT}), this batch needs {len(EI_READERS)}"
        ],
    )


# ------------------------------------------------------------------------------ watch mode

WATCH_KEYS = (AUTH_KEY, MAC_KEY)
"""The keys watch mode loads: the encryption key's export limit is spent by the card set."""
WATCH_TIMEOUT = 30.0


class WatchProcess:
    """`keyload-host personalize --watch` in its own process, its output read line by line."""

    def __init__(self, arguments: Sequence[str], env: Mapping[str, str]) -> None:
        executable = shutil.which("keyload-host")
        assert executable is not None, "keyload-host is not on PATH: run scripts/install"
        self.process = subprocess.Popen(
            [executable, *arguments],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def expect(self, fragment: str, count: int) -> list[str]:
        """The next ``count`` lines that contain ``fragment``; fails after WATCH_TIMEOUT."""
        found: list[str] = []
        deadline = time.monotonic() + WATCH_TIMEOUT
        while len(found) < count:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"no line with '{fragment}' in time; output so far: {self.seen}")
            self.seen.append(line)
            if fragment in line:
                found.append(line)
        return found

    def interrupt(self) -> tuple[int, str]:
        """Ctrl-C, as the operator ends a session: the exit code and the rest of the output."""
        self.process.send_signal(signal.SIGINT)
        returncode = self.process.wait(timeout=WATCH_TIMEOUT)
        self.reader.join(timeout=WATCH_TIMEOUT)  # the output ends with the process
        rest = []
        while not self.lines.empty():
            rest.append(self.lines.get_nowait())
        self.seen += rest
        return returncode, "\n".join(rest)


def test_watch_mode_serves_cards_as_they_are_inserted(card_set: CardSet) -> None:
    """An operator's watch session: a card already in a reader is loaded, a card inserted
    during the session is loaded as soon as PC/SC sees it, a card taken out and put back is
    checked again and skipped, and Ctrl-C ends the session with the summary."""
    first = card_set.new_ei(EI_READER_A, "watch-first")
    inserted = card_set.new_ei(EI_READER_B, "watch-inserted")
    station.remove(EI_READER_B)  # kept aside, set up and locked, until the session runs
    audit_path = card_set.directory / "watch.jsonl"
    arguments = ["personalize", "--watch", "--as-reader", AS_READER, "--audit", str(audit_path)]
    arguments += ["--pin-env", PIN_ENV, "--ei-reader", EI_READER_A, "--ei-reader", EI_READER_B]
    for spec in WATCH_KEYS:
        arguments += ["--load", str(spec.load)]
    watch = WatchProcess(arguments, {PIN_ENV: card_set.pin})
    try:
        loaded = watch.expect(": loaded", len(WATCH_KEYS))
        assert all(line.startswith(_hex(first)) for line in loaded)
        station.reinsert(EI_READER_B)
        loaded = watch.expect(": loaded", len(WATCH_KEYS))
        assert all(line.startswith(_hex(inserted)) for line in loaded)
        station.remove(EI_READER_A)
        station.reinsert(EI_READER_A)
        skipped = watch.expect(": skipped", len(WATCH_KEYS))
        assert all(line.startswith(_hex(first)) for line in skipped)
    finally:
        returncode, rest = watch.interrupt()
    assert returncode == 0, "\n".join(watch.seen)
    assert "Stopped." in rest
    assert _summary(2 * len(WATCH_KEYS), len(WATCH_KEYS), 0) in rest
    for serial, reader in ((first, EI_READER_A), (inserted, EI_READER_B)):
        slots = read_card(reader, EiCard).by_ref()
        for spec in WATCH_KEYS:
            assert slots[spec.ref2].kcv == crypto.kcv(card_set.unit_key(spec, serial))
    records = _audit_records(audit_path)
    assert [record["event"] for record in records] == [
        "log_start",
        "session_start",
        *["key"] * 3 * len(WATCH_KEYS),
        "session_end",
    ]
    assert records[-1]["result"] == "ok"
    assert leaked("\n".join(watch.seen) + audit_path.read_text(), card_set.known_secrets) == []


# ------------------------------------------------------------------------------ audit and inventory


def _rechained(lines: Sequence[bytes], drop: Callable[[dict], bool]) -> bytes:
    """The log as someone who deletes records and recomputes the chain would leave it."""
    out: list[bytes] = []
    for line in lines:
        record = json.loads(line)
        if drop(record):
            continue
        record["seq"] = len(out)
        record["prev"] = line_hash(out[-1]) if out else None
        out.append(json.dumps(record, separators=(",", ":")).encode())
    return b"".join(line + b"\n" for line in out)


def test_the_logs_verify_against_the_as_counters_the_cards_and_the_inventory(
    card_set: CardSet,
) -> None:
    """Through the station: every log of the AS (the card set's and watch mode's) verifies
    against the AS's export counters, the EI cards in the readers and the inventory the runs
    fed; a key record deleted under a recomputed chain is found by the AS's counters."""
    logs = [card_set.audit_path, card_set.directory / "watch.jsonl"]
    logs = [path for path in logs if path.exists()]
    store = f"sqlite:///{card_set.directory / 'keyload-inventory.sqlite'}"
    output = _invoke(
        ["audit", "verify", *map(str, logs), "--as-reader", AS_READER, "--store", store,
         "--ei-reader", EI_READER_A, "--ei-reader", EI_READER_B],
    )  # fmt: skip
    assert output.endswith("verified\n") and "the same as the logs record" in output
    holders = json.loads(
        _invoke(["inventory", "holding", f"{MAC_KEY.ref2:02X}", f"{MAC_KEY.version:04X}",
                 "--store", store, "--json"])
    )  # fmt: skip
    assert {_hex(ei.serial) for ei in card_set.eis} <= {row["sn"] for row in holders}
    kcvs = {row["sn"]: row["kcv"] for row in holders}
    for ei in card_set.eis:
        assert kcvs[_hex(ei.serial)] == kcv_text(ei.state.by_ref()[MAC_KEY.ref2].kcv)
    assert _invoke(["inventory", "duplicates", "--store", store]) == "none\n"
    tampered = card_set.directory / "tampered.jsonl"
    victim = _hex(card_set.eis[0].serial)
    tampered.write_bytes(
        _rechained(
            card_set.audit_path.read_bytes().splitlines(),
            lambda r: r.get("ei_sn") == victim and r.get("ref1") == MAC_KEY.ref1,
        )
    )
    result = CliRunner().invoke(
        main, ["audit", "verify", str(tampered), *map(str, logs[1:]), "--as-reader", AS_READER]
    )
    assert result.exit_code == 1, result.output
    assert f"AS key {MAC_KEY.ref1:02X}: the AS counted" in result.output
    assert "1 missing (a record deleted, or a log of this AS not given)" in result.output
