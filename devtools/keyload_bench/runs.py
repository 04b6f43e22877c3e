"""Series of the benchmark on the simulated station: one ``personalize --watch`` session serving
fresh EI cards that the benchmark swaps into the EI readers, round after round; and the floor
series, which does only what the method cannot do without."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from keyload_host import workflow
from keyload_host.audit import NullAuditLog
from keyload_host.cards import AsCard, EiCard
from keyload_host.transport import Pcsc
from keyload_station import supervisor as station
from keyload_station.cardset import SetSecrets, set_up_ei

from .cards import KEYS, LOADS, SLOTS, serial_number
from .raw import BenchError, Script, raw_cards, replay, wipe
from .timing import CannedTransport, Recorder, Stopwatch, Tally, TimedAudit

AfterRound = Callable[[Sequence[str], Script], None]
"""What to do, untimed, after a round: its readers and the APDUs it sent."""


@dataclass
class Rig:
    """The station, the AS in it and everything the series share."""

    pcsc: Pcsc
    values: SetSecrets
    as_reader: str
    control_port: int
    audit: TimedAudit
    card_numbers: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    swap_seconds: list[float] = field(default_factory=list)
    """How long each card swap took the station and pcscd (not part of any timed stretch)."""
    serials: dict[str, bytes] = field(default_factory=dict)
    """The serial of the EI now in each reader."""


def fresh_cards(rig: Rig, readers: Sequence[str], serials: Sequence[bytes] = ()) -> None:
    """Swap a blank EI into each reader and set it up and LOCK it; new serials unless given."""
    serials = list(serials) or [serial_number(next(rig.card_numbers)) for _ in readers]
    for reader, serial in zip(readers, serials, strict=True):
        began = time.perf_counter()
        station.swap(reader, "EI")
        rig.swap_seconds.append(time.perf_counter() - began)
        with rig.pcsc.connect(reader) as transport:
            set_up_ei(EiCard(transport), serial, SLOTS, rig.values)
        rig.serials[reader] = serial


def batches(readers: Sequence[str], cards: int) -> list[list[str]]:
    """The readers of each round: all of them, and fewer in the last round if ``cards`` asks."""
    rounds, rest = divmod(cards, len(readers))
    return [list(readers)] * rounds + ([list(readers[:rest])] if rest else [])


class BenchReaders:
    """The EI readers as watch mode sees them (a ``workflow.CardWatch``), with the benchmark
    behind: the first look ends the timed opening of the AS session, and every wait ends a
    round, does ``after_round`` and swaps the next round's fresh cards in, all untimed."""

    def __init__(
        self,
        rig: Rig,
        rounds: Sequence[Sequence[str]],
        stopwatch: Stopwatch,
        tally: Tally,
        after_round: AfterRound | None,
    ) -> None:
        self.rig = rig
        self.inner = rig.pcsc.watch(rounds[0])  # the first round has every reader
        self.rounds = list(rounds)
        self.stopwatch = stopwatch
        self.tally = tally
        self.after_round = after_round
        self.replayed = 0
        """How much of the recorder's script earlier rounds handed to ``after_round``."""

    def cards(self) -> dict[str, int | None]:
        if not self.tally.session:  # watch mode's first look: the AS session is open
            self.tally.session.append(self.stopwatch.lap(0))
        began = time.perf_counter()
        cards = self.inner.cards()
        self.stopwatch.recorder.connecting.append(time.perf_counter() - began)
        return cards

    def wait(self, _timeout: float) -> None:
        batch = self.rounds[len(self.tally.rounds)]
        self.tally.rounds.append(self.stopwatch.lap(len(batch)))
        if self.after_round:
            script = self.stopwatch.recorder.script or []
            self.after_round(batch, script[self.replayed :])
            self.replayed = len(script)
        if not self.should_stop():
            fresh_cards(self.rig, self.rounds[len(self.tally.rounds)])
        self.stopwatch.restart()

    def should_stop(self) -> bool:
        return len(self.tally.rounds) == len(self.rounds)


def _ei_opener(recorder: Recorder) -> workflow.EiOpener:
    @contextmanager
    def open_ei(reader: str) -> Iterator[EiCard]:
        with recorder.connect(reader, reset=False) as transport:
            yield EiCard(transport)

    return open_ei


def _check_results(results: Sequence[workflow.LoadResult], cards: int) -> None:
    failed = [result for result in results if result.outcome != workflow.Outcome.LOADED]
    if failed or len(results) != len(LOADS) * cards:
        reasons = "; ".join(f"{r.serial} {r.load}: {r.reason}" for r in failed)
        raise BenchError(f"personalize did not load every key: {reasons or 'keys missing'}")


def personalize_series(
    rig: Rig,
    readers: Sequence[str],
    cards: int,
    script: Script | None = None,
    after_round: AfterRound | None = None,
) -> Tally:
    """One timed ``personalize --watch`` session serving ``cards`` fresh EI cards through
    ``readers``; every key must load. With a ``script``, every APDU is recorded into it (the
    caller wipes it), and ``after_round`` gets each round's part."""
    rounds = batches(readers, cards)
    fresh_cards(rig, rounds[0])
    recorder = Recorder(rig.pcsc, script)
    tally = Tally()
    stopwatch = Stopwatch(recorder, rig.audit, rig.control_port)
    bench_readers = BenchReaders(rig, rounds, stopwatch, tally, after_round)
    with recorder.connect(rig.as_reader, reset=True) as as_transport:
        results = workflow.run_watch(
            AsCard(as_transport),
            LOADS,
            rig.audit,
            rig.values.pin,
            _ei_opener(recorder),
            bench_readers,
            bench_readers.should_stop,
        )
    tally.session.append(stopwatch.lap(0))
    _check_results(results, cards)
    return tally


def _load_at_floor(rig: Rig, as_card: AsCard, ei_card: EiCard, times: int = 1) -> None:
    """One SELECT of the EI, then ``times`` over GET CHALLENGE, EXPORT KEY, IMPORT KEY for
    every key. Nothing is checked: a refusal raises CardError."""
    serial = ei_card.select().serial
    for _ in range(times):
        for key in KEYS:
            challenge = ei_card.get_challenge()
            ei_card.import_key(as_card.export_key(key.ref1, key.ref2, challenge, serial))


def _open_as_at_floor(rig: Rig, as_card: AsCard) -> None:
    as_card.select()
    with rig.values.pin() as pin:
        as_card.verify_pin(pin.reveal())


def floor_series(rig: Rig, readers: Sequence[str], cards: int) -> Tally:
    """One timed load of ``cards`` fresh EI cards at the method's floor: no preflight, no
    audit log, no reader watch."""
    rounds = batches(readers, cards)
    fresh_cards(rig, rounds[0])
    recorder = Recorder(rig.pcsc)
    tally = Tally()
    stopwatch = Stopwatch(recorder, rig.audit, rig.control_port)
    with recorder.connect(rig.as_reader, reset=True) as as_transport:
        as_card = AsCard(as_transport)
        _open_as_at_floor(rig, as_card)
        tally.session.append(stopwatch.lap(0))
        for index, batch in enumerate(rounds):
            if index:
                fresh_cards(rig, batch)
                stopwatch.restart()
            for reader in batch:
                with recorder.connect(reader, reset=False) as ei_transport:
                    _load_at_floor(rig, as_card, EiCard(ei_transport))
            tally.rounds.append(stopwatch.lap(len(batch)))
    tally.session.append(stopwatch.lap(0))
    return tally


def warm_up(rig: Rig, reader: str, times: int) -> None:
    """Before anything is timed, let the JVM compile jCardSim's hot paths: one fresh EI, then
    ``times`` loads of every key into it. An EI accepts a key of the version and check value it
    already holds, without writing (PROTOCOL.md §4.3 step 9), so one card serves throughout.
    Then one untimed ``personalize`` series of a card, so that the first timed series does not
    pay for the process's first audit record and first run of the workflow."""
    fresh_cards(rig, [reader])
    with rig.pcsc.connect(rig.as_reader) as as_transport, rig.pcsc.connect(reader) as ei_transport:
        as_card = AsCard(as_transport)
        _open_as_at_floor(rig, as_card)
        _load_at_floor(rig, as_card, EiCard(ei_transport), times)
    personalize_series(rig, [reader], 1)


@dataclass
class Overhead:
    """A ``personalize`` series and what its APDUs cost without the host around them."""

    tally: Tally
    raw_session: float
    """Seconds of the AS session's APDUs (SELECT, LIST KEYS, VERIFY) in the minimal loop."""
    raw_rounds: list[float]
    """Per round, seconds of its APDUs in the minimal loop."""
    host_alone: float
    """Seconds the whole series takes the host on the recorded answers, without any I/O."""


class CannedReaders:
    """The readers of a recorded series as watch mode sees them, without PC/SC: each round's
    readers hold a new card, the others none."""

    def __init__(self, readers: Sequence[str], rounds: Sequence[Sequence[str]]) -> None:
        self.readers = list(readers)
        self.rounds = list(rounds)
        self.done = 0

    def cards(self) -> dict[str, int | None]:
        batch = self.rounds[self.done]
        return {reader: self.done if reader in batch else None for reader in self.readers}

    def wait(self, _timeout: float) -> None:
        self.done += 1

    def should_stop(self) -> bool:
        return self.done == len(self.rounds)


def host_alone(rig: Rig, readers: Sequence[str], cards: int, script: Script) -> float:
    """Seconds ``personalize --watch`` takes to serve the series recorded in ``script`` on its
    recorded answers, without I/O and without an audit log: the host's own work alone."""
    canned = CannedReaders(readers, batches(readers, cards))

    @contextmanager
    def open_ei(reader: str) -> Iterator[EiCard]:
        yield ei_cards[reader]

    ei_cards = {reader: EiCard(CannedTransport(reader, script)) for reader in readers}
    as_card = AsCard(CannedTransport(rig.as_reader, script))
    began = time.perf_counter()
    results = workflow.run_watch(
        as_card, LOADS, NullAuditLog(), rig.values.pin, open_ei, canned, canned.should_stop
    )
    seconds = time.perf_counter() - began
    _check_results(results, cards)
    return seconds


def overhead(rig: Rig, readers: Sequence[str], cards: int) -> Overhead:
    """A ``personalize`` series in which each round is followed, untimed, by the replay of its
    APDUs through the minimal pyscard loop to fresh cards of the same serials (the AS session's
    APDUs are replayed once, before the first round's); then the same series on the recorded
    answers without I/O: the host alone."""
    script: Script = []
    raw_rounds: list[float] = []
    raw_session: list[float] = []

    def after_round(batch: Sequence[str], round_script: Script) -> None:
        fresh_cards(rig, batch, [rig.serials[reader] for reader in batch])
        with raw_cards([rig.as_reader, *batch]) as cards_by_reader:
            if not raw_session:  # the AS session's SELECT, LIST KEYS, VERIFY come first
                opening = len(
                    list(itertools.takewhile(lambda r: r.reader == rig.as_reader, round_script))
                )
                raw_session.append(replay(cards_by_reader, round_script[:opening]))
                round_script = round_script[opening:]
            raw_rounds.append(replay(cards_by_reader, round_script))

    try:
        tally = personalize_series(rig, readers, cards, script, after_round)
        alone = host_alone(rig, readers, cards, script)
    finally:
        wipe(script)
    return Overhead(tally, raw_session[0], raw_rounds, alone)
