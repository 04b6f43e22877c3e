"""personalize serving every EI reader at once, through pcscd and the station with the JCOP 4
timing model: the readers' work overlaps, export limits and the audit hold, a pool of AS cards
shares the work and the limits, a pulled card or a stalled reader fails alone, and Ctrl-C in the
middle of a round records every card's outcome."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
from keyload_bench.cards import KEYS, LOADS, SLOTS, serial_number
from keyload_host.audit import AuditLog
from keyload_host.cards import AsCard, EiCard
from keyload_host.transport import Pcsc, Transport
from keyload_host.workflow import CardReport, LoadResult, Outcome, run_batch, run_watch
from keyload_station import supervisor as station
from keyload_station.cardset import SetSecrets, set_up_as, set_up_ei
from station_support import StationUp

ROLES = ("AS@jcop4", "AS@jcop4", "EI@jcop4", "EI@jcop4", "EI@jcop4")
AS_READER, SECOND_AS_READER, *EI_READERS = (station.reader_name(i) for i in range(len(ROLES)))
LIMITED = KEYS[0]
"""The key whose export limit the limit tests set."""


@pytest.fixture
def secrets_(station_up: StationUp) -> Iterator[SetSecrets]:
    with SetSecrets.drawn(KEYS) as values:
        yield values


def fresh_as(reader: str, values: SetSecrets, limit: int | None = None) -> None:
    """A fresh AS in ``reader`` with the benchmark's keys, ``limit`` exports of LIMITED."""
    station.swap(reader)
    keys = [
        replace(key, export_limit=limit) if limit is not None and key == LIMITED else key
        for key in KEYS
    ]
    with Pcsc() as pcsc, pcsc.connect(reader) as transport:
        set_up_as(AsCard(transport), keys, values)


def fresh_eis(values: SetSecrets, first_number: int) -> list[bytes]:
    """A fresh EI of the set in every EI reader; their serials."""
    serials = []
    with Pcsc() as pcsc:
        for offset, reader in enumerate(EI_READERS):
            station.swap(reader)
            serial = serial_number(first_number + offset)
            with pcsc.connect(reader) as transport:
                set_up_ei(EiCard(transport), serial, SLOTS, values)
            serials.append(serial)
    return serials


class Spans:
    """When each reader's commands ran (start, end), from transports that note them."""

    def __init__(self) -> None:
        self.spans: dict[str, list[tuple[float, float]]] = {}
        self._lock = threading.Lock()

    def note(self, transport: Transport) -> Transport:
        """``transport``, noting the span of each of its commands."""
        spans = self

        class Noting:
            reader = transport.reader
            stats = transport.stats

            def transmit(self, apdu: bytes) -> bytes:
                began = time.monotonic()
                try:
                    return transport.transmit(apdu)
                finally:
                    with spans._lock:
                        spans.spans.setdefault(transport.reader, []).append(
                            (began, time.monotonic())
                        )

        return Noting()


@contextmanager
def ei_cards(spans: Spans | None = None) -> Iterator[list[EiCard]]:
    """One connection per EI reader, each in a PC/SC context of its own (as personalize does)."""
    contexts = [Pcsc() for _ in EI_READERS]
    try:
        transports = [
            context.connect(reader, reset=False)
            for context, reader in zip(contexts, EI_READERS, strict=True)
        ]
        yield [EiCard(spans.note(t) if spans else t) for t in transports]
        for transport in transports:
            transport.disconnect()
    finally:
        for context in contexts:
            context.close()


def batch(
    values: SetSecrets,
    audit_path: Path,
    as_readers: Sequence[str] = (AS_READER,),
    spans: Spans | None = None,
    apdu_timeout: float = 30.0,
    on_card: Callable[[CardReport], None] | None = None,
) -> list[LoadResult]:
    with (
        AuditLog(audit_path) as audit,
        as_cards_in(as_readers) as as_cards,
        ei_cards(spans) as eis,
    ):
        return run_batch(
            as_cards, eis, LOADS, audit, values.pin, apdu_timeout=apdu_timeout, on_card=on_card
        )


@contextmanager
def as_cards_in(readers: Sequence[str]) -> Iterator[list[AsCard]]:
    """The AS cards of ``readers``, each in a PC/SC context of its own, reset when closed."""
    contexts = [Pcsc() for _ in readers]
    try:
        yield [
            AsCard(context.connect(reader))
            for context, reader in zip(contexts, readers, strict=True)
        ]
    finally:
        for context in contexts:
            context.close()


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def slot_versions(reader: str) -> dict[int, int]:
    with Pcsc() as pcsc, pcsc.connect(reader, reset=False) as transport:
        card = EiCard(transport)
        card.select()
        return {entry.ref: entry.version for entry in card.list_keys() if entry.loaded}


def test_every_ei_reader_is_served_at_once(secrets_: SetSecrets, tmp_path: Path) -> None:
    fresh_as(AS_READER, secrets_)
    serials = fresh_eis(secrets_, 1)
    spans = Spans()
    results = batch(secrets_, tmp_path / "audit.jsonl", spans=spans)
    assert [r.outcome for r in results] == [Outcome.LOADED] * len(LOADS) * len(serials)
    # While one reader waited for an answer, another's command was in flight.
    first, second, third = (spans.spans[reader] for reader in EI_READERS)
    overlaps = sum(1 for a in first for b in second + third if a[0] < b[1] and b[0] < a[1])
    assert overlaps > 0, "the EI readers were served one after the other"


def test_export_limits_hold_when_cards_are_served_at_once(
    secrets_: SetSecrets, tmp_path: Path
) -> None:
    """Two exports left for three cards in the readers at once: the watch session gives the key
    to exactly two of them, the third is refused by the AS (6983), the audit says the same."""
    fresh_as(AS_READER, secrets_, limit=2)
    serials = fresh_eis(secrets_, 11)
    audit_path = tmp_path / "audit.jsonl"
    reports: list[CardReport] = []
    with (
        AuditLog(audit_path) as audit,
        as_cards_in([AS_READER]) as as_cards,
        Pcsc() as watcher,
    ):
        contexts = {reader: Pcsc() for reader in EI_READERS}

        @contextmanager
        def open_ei(reader: str) -> Iterator[EiCard]:
            with contexts[reader].connect(reader, reset=False) as transport:
                yield EiCard(transport)

        looks = []
        results = run_watch(
            as_cards,
            LOADS,
            audit,
            secrets_.pin,
            open_ei,
            watcher.watch(EI_READERS),
            lambda: bool(looks.append(1)) or len(looks) > 1,
            on_card=reports.append,
        )
        for context in contexts.values():
            context.close()
    limited = [r for r in results if r.load == LIMITED.load]
    assert sorted(r.outcome for r in limited) == [Outcome.FAILED, Outcome.LOADED, Outcome.LOADED]
    (refused,) = [r for r in limited if r.outcome == Outcome.FAILED]
    assert refused.sw == 0x6983
    assert len(reports) == len(serials)
    logged = [
        (r["ei_sn"], r["result"]) for r in records(audit_path) if r.get("ref1") == LIMITED.ref1
    ]
    assert sorted(logged) == sorted((r.serial, r.outcome.value) for r in limited)
    with Pcsc() as pcsc, pcsc.connect(AS_READER) as transport:
        card = AsCard(transport)
        card.select()
        assert {e.ref: e.count for e in card.list_keys()}[LIMITED.ref1] == 2


def test_a_pool_of_two_as_cards_shares_the_exports_and_sums_the_limits(
    secrets_: SetSecrets, tmp_path: Path
) -> None:
    """Each AS may export the limited key twice; three cards need three: the pool serves them,
    and each AS keeps its own count."""
    fresh_as(AS_READER, secrets_, limit=2)
    fresh_as(SECOND_AS_READER, secrets_, limit=2)
    fresh_eis(secrets_, 21)
    results = batch(secrets_, tmp_path / "audit.jsonl", as_readers=(AS_READER, SECOND_AS_READER))
    assert {r.outcome for r in results} == {Outcome.LOADED}
    counts = []
    for reader in (AS_READER, SECOND_AS_READER):
        with Pcsc() as pcsc, pcsc.connect(reader) as transport:
            card = AsCard(transport)
            card.select()
            counts.append({e.ref: e.count for e in card.list_keys()}[LIMITED.ref1])
    assert sorted(counts) in ([1, 2], [2, 1]) and sum(counts) == 3


def test_a_card_pulled_among_several_fails_alone(secrets_: SetSecrets, tmp_path: Path) -> None:
    fresh_as(AS_READER, secrets_)
    fresh_eis(secrets_, 31)
    station.pull(EI_READERS[1], 4, "before")  # SELECT, LIST KEYS, GET CHALLENGE, IMPORT KEY
    results = batch(secrets_, tmp_path / "audit.jsonl")
    by_reader = {reader: [r for r in results if r.reader == reader] for reader in EI_READERS}
    assert {r.outcome for r in by_reader[EI_READERS[1]]} == {Outcome.FAILED}
    for reader in (EI_READERS[0], EI_READERS[2]):
        assert {r.outcome for r in by_reader[reader]} == {Outcome.LOADED}
    station.reinsert(EI_READERS[1])


def test_a_stalled_reader_fails_its_card_and_the_others_go_on(
    secrets_: SetSecrets, tmp_path: Path
) -> None:
    fresh_as(AS_READER, secrets_)
    fresh_eis(secrets_, 41)
    stalled = EI_READERS[2]
    station.stall(stalled, 4)  # its first IMPORT KEY is never answered
    reports: list[CardReport] = []

    def on_card(report: CardReport) -> None:
        reports.append(report)
        if report.stalled:  # as the operator would: the card comes out, the command ends
            station.remove(stalled)

    audit_path = tmp_path / "audit.jsonl"
    results = batch(secrets_, audit_path, apdu_timeout=2.0, on_card=on_card)
    for reader in EI_READERS[:2]:
        assert {r.outcome for r in results if r.reader == reader} == {Outcome.LOADED}
    (report,) = [r for r in reports if r.reader == stalled]
    assert report.stalled
    assert report.problem == (f"reader '{stalled}' stalled: no answer to IMPORT KEY within 2 s"), (
        report
    )
    assert any(
        r["event"] == "card_failed" and "stalled" in r.get("message", "")
        for r in records(audit_path)
    )
    station.reinsert(stalled)


def test_ctrl_c_in_the_middle_of_a_concurrent_round_records_every_card(
    secrets_: SetSecrets, tmp_path: Path
) -> None:
    """The operator's Ctrl-C while three cards are being loaded: the CLI stops each after its
    current key, prints the summary, and the audit log holds what every card really got."""
    fresh_as(AS_READER, secrets_)
    fresh_eis(secrets_, 51)
    pin_file = tmp_path / "pin"
    with secrets_.pin() as pin:
        pin_file.write_bytes(pin.reveal())
    pin_file.chmod(0o600)
    audit_path = tmp_path / "audit.jsonl"
    arguments = ["personalize", "--watch", "--as-reader", AS_READER, "--audit", str(audit_path)]
    arguments += ["--pin-file", str(pin_file)]
    for reader in EI_READERS:
        arguments += ["--ei-reader", reader]
    for load in LOADS:
        arguments += ["--load", str(load)]
    executable = shutil.which("keyload-host")
    assert executable is not None
    process = subprocess.Popen(
        [executable, *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    output = []
    for line in process.stdout:  # the first key loaded: the round is under way
        output.append(line)
        if ": loaded" in line:
            break
    process.send_signal(signal.SIGINT)
    rest, _ = process.communicate(timeout=60)
    output.append(rest)
    text = "".join(output)
    assert process.returncode == 1, text  # keys not attempted count as failed
    assert "Stopped." in text
    logged = records(audit_path)
    assert logged[-1]["event"] == "session_end"
    keys = [r for r in logged if r["event"] == "key"]
    assert len(keys) == len(LOADS) * len(EI_READERS), text  # every key of every card
    stopped = [r for r in keys if "stopped by the operator" in r.get("message", "")]
    assert stopped, "Ctrl-C came after every card was done"
    for reader in EI_READERS:
        loaded = {r["ref2"] for r in keys if r["reader"] == reader and r["result"] == "loaded"}
        assert set(slot_versions(reader)) == loaded, reader
