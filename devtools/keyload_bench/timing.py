"""Where the time of ``personalize`` goes: the wrappers the benchmark puts around the host's own
code to split a stretch's wall time into card, PC/SC stack, audit log and host shares."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from keyload_host.audit import AuditSink
from keyload_host.protocol import ins_name
from keyload_host.transport import Pcsc, PcscTransport, TransportStats
from keyload_station import supervisor as station

from .raw import Recorded, Script

NANOS_PER_SECOND = 1e9
SHARES = ("host", "audit", "pcsc", "card")
"""The parts a stretch's wall time is split into (see ``RoundTimes``)."""


@dataclass(frozen=True)
class Exchange:
    """One APDU as the host sent it: to which reader, which command, sizes, round-trip time."""

    reader: str
    ins: int
    sent: int
    received: int
    seconds: float

    @property
    def command_name(self) -> str:
        return ins_name(self.ins)


class Recorder:
    """Opens the connections of a series and keeps what crosses them: every exchange (timed),
    the time of every connect and disconnect, and, when given a script, each command and
    response for a replay (the caller wipes the script).

    Its connections are shared where ``personalize`` connects exclusively, so that the minimal
    loop can replay to the AS while the series' session with it is open; pcscd takes as long
    to open either kind.
    """

    def __init__(self, pcsc: Pcsc, script: Script | None = None) -> None:
        self.pcsc = pcsc
        self.script = script
        self.exchanges: list[tuple[str, int, int, int, float]] = []
        """The fields of an ``Exchange`` for every APDU."""
        self.connecting: list[float] = []
        """Seconds of each connect, each disconnect and each look at the readers."""

    def connect(self, reader: str, *, reset: bool) -> RecordingTransport:
        """``pcsc.connect``, timed; the connection's disconnect is timed too."""
        began = time.perf_counter()
        inner = self.pcsc.connect(reader, exclusive=False, reset=reset)
        self.connecting.append(time.perf_counter() - began)
        return RecordingTransport(inner, self)


class RecordingTransport:
    """A ``Transport`` around a PC/SC connection that its ``Recorder`` times and records."""

    def __init__(self, inner: PcscTransport, recorder: Recorder) -> None:
        self.inner = inner
        self.reader = inner.reader
        self.stats: TransportStats = inner.stats
        self.recorder = recorder

    def transmit(self, apdu: bytes) -> bytes:
        began = time.perf_counter()
        response = self.inner.transmit(apdu)
        ended = time.perf_counter()
        # a tuple, not an Exchange: what the benchmark does here counts as the host's time
        exchange = (self.reader, apdu[1], len(apdu), len(response), ended - began)
        self.recorder.exchanges.append(exchange)
        if self.recorder.script is not None:
            self.recorder.script.append(Recorded(self.reader, bytearray(apdu), response))
        return response

    def disconnect(self) -> None:
        began = time.perf_counter()
        self.inner.disconnect()
        self.recorder.connecting.append(time.perf_counter() - began)

    def __enter__(self) -> RecordingTransport:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.disconnect()


class CannedTransport:
    """A ``Transport`` that answers the n-th command with the n-th response recorded for its
    reader: the workflow runs as on the station, without any I/O, to time the host alone."""

    def __init__(self, reader: str, script: Script) -> None:
        self.reader = reader
        self.stats = TransportStats()
        self._responses = iter([r.response for r in script if r.reader == reader])

    def transmit(self, apdu: bytes) -> bytes:
        return next(self._responses)


class TimedAudit:
    """An ``AuditSink`` around the real one that adds up the time spent writing records, so
    that the host share can tell keyload's own work from the audit log's ``fsync``."""

    def __init__(self, inner: AuditSink) -> None:
        self.inner = inner
        self.seconds = 0.0

    def record(self, event: str, **fields: Any) -> dict[str, Any]:
        began = time.perf_counter()
        try:
            return self.inner.record(event, **fields)
        finally:
            self.seconds += time.perf_counter() - began

    @contextmanager
    def group(self) -> Iterator[None]:
        """The inner group; the time its end takes (the ``fsync``) counts as the audit's."""
        began = time.perf_counter()
        with self.inner.group():
            self.seconds += time.perf_counter() - began
            try:
                yield
            finally:
                began = time.perf_counter()
        self.seconds += time.perf_counter() - began


def card_seconds(control_port: int) -> float:
    """Seconds the station's cards have spent in jCardSim since it started, all readers."""
    lines = station.control(control_port, "TIMES")
    return sum(int(line.split()[2]) for line in lines) / NANOS_PER_SECOND


@dataclass
class RoundTimes:
    """One timed stretch: how many cards it served, where its time went, every APDU it sent."""

    cards: int
    wall: float
    transmit: float
    connect: float
    card: float
    audit: float
    exchanges: list[Exchange] = field(default_factory=list)

    @property
    def pcsc(self) -> float:
        return self.transmit + self.connect - self.card

    @property
    def host(self) -> float:
        """keyload's own work, the audit log excluded."""
        return self.wall - self.transmit - self.connect - self.audit


class Stopwatch:
    """Cuts a series into timed stretches: ``lap`` ends one and starts the next, ``restart``
    starts the next one later, so that what happens between a lap and a restart (card swaps,
    replays) is not timed."""

    def __init__(self, recorder: Recorder, audit: TimedAudit, control_port: int) -> None:
        self.recorder = recorder
        self.audit = audit
        self.control_port = control_port
        self.restart()

    def restart(self) -> None:
        self._card = card_seconds(self.control_port)
        self._exchanges = len(self.recorder.exchanges)
        self._connecting = len(self.recorder.connecting)
        self._audit = self.audit.seconds
        self._began = time.perf_counter()

    def lap(self, cards: int) -> RoundTimes:
        """The stretch since the last lap or restart, as serving ``cards`` cards."""
        wall = time.perf_counter() - self._began
        card = card_seconds(self.control_port) - self._card
        exchanges = [Exchange(*fields) for fields in self.recorder.exchanges[self._exchanges :]]
        connect = sum(self.recorder.connecting[self._connecting :])
        audit = self.audit.seconds - self._audit
        transmit = sum(exchange.seconds for exchange in exchanges)
        times = RoundTimes(cards, wall, transmit, connect, card, audit, exchanges)
        self.restart()
        return times


@dataclass
class Tally:
    """A series added up: its AS session (opening and closing it, once per series, no card),
    its rounds of cards, totals and per-card means."""

    session: list[RoundTimes] = field(default_factory=list)
    rounds: list[RoundTimes] = field(default_factory=list)

    @property
    def cards(self) -> int:
        return sum(r.cards for r in self.rounds)

    def total(self, what: str) -> float:
        return sum(getattr(r, what) for r in self.session + self.rounds)

    def per_card_ms(self, what: str) -> float:
        return 1e3 * self.total(what) / self.cards

    @property
    def cards_per_second(self) -> float:
        return self.cards / self.total("wall")

    @property
    def exchanges(self) -> Iterable[Exchange]:
        return (exchange for r in self.session + self.rounds for exchange in r.exchanges)

    def split_ms(self) -> dict[str, float]:
        """Mean time per card in each share of the wall time."""
        return {what: self.per_card_ms(what) for what in SHARES}
