"""Rounds of the benchmark on the simulated station: fresh EI cards swapped into the EI readers
and set up (not timed), then one timed pass of ``personalize`` over them.

A timed round is what ``keyload-host personalize`` does once it has its PC/SC context: connect
the AS and the EI cards, ``workflow.run_batch`` (read and check every card, VERIFY the PIN, three
APDUs per key, read-back, one audit record per key), disconnect with a reset. The floor round does
only what the method cannot do without: SELECT and VERIFY on the AS, and per EI one SELECT and
GET CHALLENGE, EXPORT KEY, IMPORT KEY per key, without any check.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field

from . import station, workflow
from .audit import AuditSink, NullAuditLog
from .bench_cards import KEYS, LOADS, BenchSecrets, serial_number, set_up_ei
from .bench_raw import BenchError, Script, raw_cards, replay, wipe
from .bench_timing import (
    CannedTransport,
    RecordingTransport,
    RoundTimes,
    Tally,
    TimedAudit,
    card_seconds,
    timed_connection,
)
from .cards import AsCard, EiCard
from .transport import Pcsc

Body = Callable[[AsCard, list[EiCard]], None]


@dataclass
class Rig:
    """The station, the AS in it and everything the rounds share."""

    pcsc: Pcsc
    values: BenchSecrets
    as_reader: str
    control_port: int
    audit: TimedAudit
    card_numbers: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    swap_seconds: list[float] = field(default_factory=list)
    """How long each card swap took the station and pcscd (not part of any timed round)."""


def fresh_cards(rig: Rig, readers: Sequence[str], serials: Sequence[bytes] = ()) -> list[bytes]:
    """Swap a blank EI into each reader and set it up and LOCK it; new serials unless given."""
    serials = list(serials) or [serial_number(next(rig.card_numbers)) for _ in readers]
    for reader, serial in zip(readers, serials, strict=True):
        began = time.perf_counter()
        station.swap(reader, "EI")
        rig.swap_seconds.append(time.perf_counter() - began)
        set_up_ei(rig.pcsc, reader, serial, rig.values)
    return serials


def _timed_round(
    rig: Rig, readers: Sequence[str], body: Body, script: Script | None = None
) -> RoundTimes:
    exchanges = []
    connecting: list[float] = []
    card_before = card_seconds(rig.control_port)
    audit_before = rig.audit.seconds
    began = time.perf_counter()
    with ExitStack() as stack:

        def recorded(reader: str) -> RecordingTransport:
            transport = stack.enter_context(timed_connection(rig.pcsc, reader, connecting))
            return RecordingTransport(transport, exchanges, script)

        as_card = AsCard(recorded(rig.as_reader))
        body(as_card, [EiCard(recorded(reader)) for reader in readers])
    wall = time.perf_counter() - began
    card = card_seconds(rig.control_port) - card_before
    transmit = sum(exchange.seconds for exchange in exchanges)
    audit = rig.audit.seconds - audit_before
    return RoundTimes(len(readers), wall, transmit, sum(connecting), card, audit, exchanges)


def _personalize(rig: Rig, as_card: AsCard, ei_cards: list[EiCard], audit: AuditSink) -> None:
    """``workflow.run_batch`` as ``keyload-host personalize`` runs it; every key must load."""
    results = workflow.run_batch(as_card, ei_cards, LOADS, audit, rig.values.pin)
    failed = [result for result in results if result.outcome != workflow.Outcome.LOADED]
    if failed or len(results) != len(LOADS) * len(ei_cards):
        reasons = "; ".join(f"{r.serial} {r.load}: {r.reason}" for r in failed)
        raise BenchError(f"personalize did not load every key: {reasons or 'keys missing'}")


def personalize_round(rig: Rig, readers: Sequence[str], script: Script | None = None) -> RoundTimes:
    """One timed ``personalize`` of the cards in ``readers``."""

    def body(as_card: AsCard, ei_cards: list[EiCard]) -> None:
        _personalize(rig, as_card, ei_cards, rig.audit)

    return _timed_round(rig, readers, body, script)


def host_alone(rig: Rig, readers: Sequence[str], script: Script) -> float:
    """Seconds ``personalize`` takes on canned responses (a recorded round's, so that every
    check passes), without I/O and without an audit log: the host's own work alone."""
    as_card = AsCard(CannedTransport(rig.as_reader, script))
    ei_cards = [EiCard(CannedTransport(reader, script)) for reader in readers]
    began = time.perf_counter()
    _personalize(rig, as_card, ei_cards, NullAuditLog())
    return time.perf_counter() - began


def _load_at_floor(rig: Rig, as_card: AsCard, ei_cards: list[EiCard], times: int = 1) -> None:
    """SELECT and VERIFY on the AS; per EI one SELECT, then ``times`` over GET CHALLENGE,
    EXPORT KEY, IMPORT KEY for every key. Nothing is checked: a refusal raises CardError."""
    as_card.select()
    with rig.values.pin() as pin:
        as_card.verify_pin(pin.reveal())
    for ei_card in ei_cards:
        serial = ei_card.select().serial
        for _ in range(times):
            for key in KEYS:
                challenge = ei_card.get_challenge()
                ei_card.import_key(as_card.export_key(key.ref1, key.ref2, challenge, serial))


def floor_round(rig: Rig, readers: Sequence[str]) -> RoundTimes:
    """One timed load at the method's floor: no preflight, no read-back, no audit."""

    def body(as_card: AsCard, ei_cards: list[EiCard]) -> None:
        _load_at_floor(rig, as_card, ei_cards)

    return _timed_round(rig, readers, body)


def warm_up(rig: Rig, reader: str, times: int) -> None:
    """Before anything is timed, let the JVM compile jCardSim's hot paths: one fresh EI, then
    ``times`` loads of every key into it. An EI accepts a key of the version and check value it
    already holds, without writing (PROTOCOL.md §4.3 step 9), so one card serves throughout.
    Then one untimed ``personalize`` of a fresh card, so that the first timed round does not pay
    for the process's first audit record and first run of the workflow."""
    fresh_cards(rig, [reader])
    with rig.pcsc.connect(rig.as_reader) as as_transport, rig.pcsc.connect(reader) as ei_transport:
        _load_at_floor(rig, AsCard(as_transport), [EiCard(ei_transport)], times)
    fresh_cards(rig, [reader])
    personalize_round(rig, [reader])


def series(
    rig: Rig, readers: Sequence[str], cards: int, run: Callable[[Rig, Sequence[str]], RoundTimes]
) -> Tally:
    """``cards`` fresh EI cards through ``readers``, as many per round as there are readers."""
    tally = Tally()
    while tally.cards < cards:
        batch = readers[: min(len(readers), cards - tally.cards)]
        fresh_cards(rig, batch)
        tally.add(run(rig, batch))
    return tally


def overhead(rig: Rig, readers: Sequence[str], cards: int) -> tuple[Tally, list[float], float]:
    """``personalize`` rounds, each followed by the replay of its APDUs through the minimal
    pyscard loop to fresh cards of the same serials, and by a run of the host alone on the
    recorded responses: the tally, each round's replay seconds, and the host-alone seconds."""
    tally = Tally()
    raw: list[float] = []
    alone = 0.0
    while tally.cards < cards:
        batch = readers[: min(len(readers), cards - tally.cards)]
        serials = fresh_cards(rig, batch)
        script: Script = []
        try:
            tally.add(personalize_round(rig, batch, script))
            fresh_cards(rig, batch, serials)
            with raw_cards([rig.as_reader, *batch]) as cards_by_reader:
                raw.append(replay(cards_by_reader, script))
            alone += host_alone(rig, batch, script)
        finally:
            wipe(script)
    return tally, raw, alone
