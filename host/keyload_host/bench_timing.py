"""Where the time of ``personalize`` goes: what the benchmark wraps around the host's own code.

A round's wall time is split four ways. The **card** share is what the station measured inside
jCardSim (its ``TIMES`` control command, summed over every reader). The **PC/SC stack** share is
the time spent in ``SCardTransmit``, ``SCardConnect`` and ``SCardDisconnect`` (pyscard, pcscd,
vpcd and the station's socket) less the card share. The **audit** share is the time spent writing
audit records (one ``fsync`` each). The **host** share is the rest: keyload's own Python, its
checks and bookkeeping.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from . import station
from .audit import AuditSink
from .bench_raw import Recorded, Script
from .protocol import Ins
from .transport import Pcsc, PcscTransport, TransportStats

NANOS_PER_SECOND = 1e9
SHARES = ("host", "audit", "pcsc", "card")
"""The parts a round's wall time is split into (see ``RoundTimes``)."""


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
        try:
            return Ins(self.ins).command_name
        except ValueError:
            return f"INS {self.ins:02X}"


class RecordingTransport:
    """A ``Transport`` around a PC/SC connection that times every exchange and, when given a
    script, keeps each command and response for a replay (the caller wipes the script)."""

    def __init__(
        self, inner: PcscTransport, exchanges: list[Exchange], script: Script | None = None
    ) -> None:
        self.inner = inner
        self.reader = inner.reader
        self.stats: TransportStats = inner.stats
        self.exchanges = exchanges
        self.script = script

    def transmit(self, apdu: bytes) -> bytes:
        began = time.perf_counter()
        response = self.inner.transmit(apdu)
        seconds = time.perf_counter() - began
        self.exchanges.append(Exchange(self.reader, apdu[1], len(apdu), len(response), seconds))
        if self.script is not None:
            self.script.append(Recorded(self.reader, bytearray(apdu), response))
        return response


@contextmanager
def timed_connection(pcsc: Pcsc, reader: str, seconds: list[float]) -> Iterator[PcscTransport]:
    """``pcsc.connect`` for a ``with`` block, adding the time of connecting and of disconnecting
    (with the reset the host always does) to ``seconds``."""
    began = time.perf_counter()
    transport = pcsc.connect(reader)
    seconds.append(time.perf_counter() - began)
    try:
        yield transport
    finally:
        began = time.perf_counter()
        transport.disconnect()
        seconds.append(time.perf_counter() - began)


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


def card_seconds(control_port: int) -> float:
    """Seconds the station's cards have spent in jCardSim since it started, all readers.

    Goes through the station module's control client (private there: no other caller needs
    TIMES) rather than a second copy of it.
    """
    lines = station.control(control_port, "TIMES")
    return sum(int(line.split()[2]) for line in lines) / NANOS_PER_SECOND


@dataclass
class RoundTimes:
    """One timed round: how many cards, where its time went, and every APDU it sent."""

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


@dataclass
class Tally:
    """Rounds added up: totals, per-card means and the APDU accounting."""

    rounds: list[RoundTimes] = field(default_factory=list)

    def add(self, round_times: RoundTimes) -> None:
        self.rounds.append(round_times)

    @property
    def cards(self) -> int:
        return sum(r.cards for r in self.rounds)

    def total(self, what: str) -> float:
        return sum(getattr(r, what) for r in self.rounds)

    def per_card_ms(self, what: str) -> float:
        return 1e3 * self.total(what) / self.cards

    @property
    def cards_per_second(self) -> float:
        return self.cards / self.total("wall")

    @property
    def exchanges(self) -> Iterable[Exchange]:
        return (exchange for r in self.rounds for exchange in r.exchanges)

    def split_ms(self) -> dict[str, float]:
        """Mean time per card in each share of the wall time."""
        return {what: self.per_card_ms(what) for what in SHARES}
