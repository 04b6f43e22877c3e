"""Where the time of ``personalize`` goes: what the benchmark wraps around the host's own code.

A round's wall time is split three ways. The **card** share is what the station measured inside
jCardSim (its ``TIMES`` control command, summed over every reader). The **PC/SC stack** share is
the time spent in ``SCardTransmit``, ``SCardConnect`` and ``SCardDisconnect`` (pyscard, pcscd,
vpcd and the station's socket) less the card share. The **host** share is the rest: keyload's
own Python, its checks, the audit log.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from . import station
from .protocol import Ins
from .transport import Pcsc, PcscTransport, TransportStats

NANOS_PER_SECOND = 1e9


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
    script, keeps each command for ``bench_raw.replay`` (the caller wipes the script: VERIFY
    carries the PIN)."""

    def __init__(
        self,
        inner: PcscTransport,
        exchanges: list[Exchange],
        script: list[tuple[str, bytearray]] | None = None,
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
            self.script.append((self.reader, bytearray(apdu)))
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


def card_seconds(control_port: int) -> float:
    """Seconds the station's cards have spent in jCardSim since it started, all readers.

    Goes through the station module's control client (private there: no other caller needs
    TIMES) rather than a second copy of it.
    """
    lines = station._control(control_port, "TIMES")
    return sum(int(line.split()[2]) for line in lines) / NANOS_PER_SECOND


@dataclass
class RoundTimes:
    """One timed round: how many cards, where its time went, and every APDU it sent."""

    cards: int
    wall: float
    transmit: float
    connect: float
    card: float
    exchanges: list[Exchange] = field(default_factory=list)

    @property
    def pcsc(self) -> float:
        return self.transmit + self.connect - self.card

    @property
    def host(self) -> float:
        return self.wall - self.transmit - self.connect


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
        """Mean time per card: wall, and its host / PC/SC stack / card split."""
        return {what: self.per_card_ms(what) for what in ("wall", "host", "pcsc", "card")}


def apdu_counts(exchanges: Iterable[Exchange], readers: Sequence[str]) -> dict[str, int]:
    """Number of APDUs, bytes sent and received, over the exchanges with ``readers``."""
    chosen = [exchange for exchange in exchanges if exchange.reader in readers]
    return {
        "apdus": len(chosen),
        "bytes_sent": sum(exchange.sent for exchange in chosen),
        "bytes_received": sum(exchange.received for exchange in chosen),
    }


def commands(exchanges: Iterable[Exchange]) -> Counter[str]:
    """How often each command was sent."""
    return Counter(exchange.command_name for exchange in exchanges)
