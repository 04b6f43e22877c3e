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
from .audit import AuditSink
from .bench_cards import KEYS, LOADS, BenchSecrets, serial_number, set_up_ei
from .bench_raw import BenchError, raw_cards, replay
from .bench_timing import RecordingTransport, RoundTimes, Tally, card_seconds, timed_connection
from .cards import AsCard, EiCard
from .transport import Pcsc

Body = Callable[[AsCard, list[EiCard]], None]
Script = list[tuple[str, bytearray]]


@dataclass
class Rig:
    """The station, the AS in it and everything the rounds share."""

    pcsc: Pcsc
    values: BenchSecrets
    as_reader: str
    control_port: int
    audit: AuditSink
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
    return RoundTimes(len(readers), wall, transmit, sum(connecting), card, exchanges)


def personalize_round(rig: Rig, readers: Sequence[str], script: Script | None = None) -> RoundTimes:
    """One timed ``personalize`` of the cards in ``readers``; every key must load."""

    def body(as_card: AsCard, ei_cards: list[EiCard]) -> None:
        results = workflow.run_batch(as_card, ei_cards, LOADS, rig.audit, rig.values.pin)
        failed = [result for result in results if result.outcome != workflow.Outcome.LOADED]
        if failed or len(results) != len(LOADS) * len(ei_cards):
            reasons = "; ".join(f"{r.serial} {r.load}: {r.reason}" for r in failed)
            raise BenchError(f"personalize did not load every key: {reasons or 'keys missing'}")

    return _timed_round(rig, readers, body, script)


def floor_round(rig: Rig, readers: Sequence[str]) -> RoundTimes:
    """One timed load at the method's floor: no preflight, no read-back, no audit."""

    def body(as_card: AsCard, ei_cards: list[EiCard]) -> None:
        as_card.select()
        with rig.values.pin() as pin:
            as_card.verify_pin(pin.reveal())
        for ei_card in ei_cards:
            serial = ei_card.select().serial
            for key in KEYS:
                challenge = ei_card.get_challenge()
                ei_card.import_key(as_card.export_key(key.ref1, key.ref2, challenge, serial))

    return _timed_round(rig, readers, body)


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


def overhead(rig: Rig, readers: Sequence[str], cards: int) -> tuple[Tally, float]:
    """``personalize`` rounds, each followed by the replay of its APDUs through the minimal
    pyscard loop to fresh cards of the same serials; the tally and the replays' seconds."""
    tally = Tally()
    raw = 0.0
    while tally.cards < cards:
        batch = readers[: min(len(readers), cards - tally.cards)]
        serials = fresh_cards(rig, batch)
        script: Script = []
        try:
            tally.add(personalize_round(rig, batch, script))
            fresh_cards(rig, batch, serials)
            with raw_cards([rig.as_reader, *batch]) as cards_by_reader:
                raw += replay(cards_by_reader, script)
        finally:
            for _reader, command in script:
                command[:] = bytes(len(command))
    return tally, raw
