"""The reference the benchmark compares the host with: a minimal pyscard loop of
``SCardTransmit``, timed around the call, sending one command again and again
or replaying what ``personalize`` sent."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

from keyload_host.apdu import LE_MAX, Command
from keyload_host.errors import KeyloadError
from keyload_host.protocol import (
    CHALLENGE_LENGTH,
    CLA_ISO,
    CLA_PROPRIETARY,
    P1_SELECT_BY_NAME,
    SW,
    Info,
    Ins,
    Role,
)
from smartcard import scard

_PCI = {scard.SCARD_PROTOCOL_T0: scard.SCARD_PCI_T0, scard.SCARD_PROTOCOL_T1: scard.SCARD_PCI_T1}
APDU_HEADER_LENGTH = 5
"""CLA INS P1 P2 Lc: where command data starts in a short APDU."""
EXPORT_CHALLENGE_OFFSET = APDU_HEADER_LENGTH + 2
"""EXPORT KEY data is REF1, REF2, R, len(SN), SN: R starts after the two references."""
EXPORT_SERIAL_OFFSET = EXPORT_CHALLENGE_OFFSET + CHALLENGE_LENGTH
"""Where len(SN), then SN, stand in EXPORT KEY."""


def select_command(aid: bytes) -> bytes:
    return bytes(Command(CLA_ISO, Ins.SELECT, P1_SELECT_BY_NAME, 0, aid, LE_MAX).encode())


GET_INFO_COMMAND = bytes(Command(CLA_PROPRIETARY, Ins.GET_INFO, le=LE_MAX).encode())
"""The trivial APDU of the latency comparison: a few bytes of INFO, no crypto, no writes."""


@dataclass(frozen=True)
class Recorded:
    """One APDU of a recorded session: the reader, the command as sent and the response."""

    reader: str
    command: bytearray
    """Wiped by ``wipe``: VERIFY carries the PIN."""
    response: bytes


Script = list[Recorded]


def wipe(script: Script) -> None:
    for recorded in script:
        recorded.command[:] = bytes(len(recorded.command))


class BenchError(KeyloadError):
    """The benchmark could not measure what it set out to (a card refused, a reader vanished)."""


@dataclass(frozen=True)
class RawCard:
    """A card connected over pyscard's thin layer: the handle and the protocol header to use."""

    reader: str
    handle: int
    pci: object

    def exchange(self, command: bytes | bytearray) -> tuple[bytes, float]:
        """Send ``command``; the response and the seconds ``SCardTransmit`` took."""
        words = list(command)
        began = time.perf_counter()
        hresult, response = scard.SCardTransmit(self.handle, self.pci, words)
        seconds = time.perf_counter() - began
        if hresult != scard.SCARD_S_SUCCESS:
            raise BenchError(
                f"transmit to '{self.reader}' failed: {scard.SCardGetErrorMessage(hresult).strip()}"
            )
        return bytes(response), seconds

    def command(self, command: bytes | bytearray) -> tuple[bytes, float]:
        """Like ``exchange``, but anything other than 9000 is an error; returns the data."""
        response, seconds = self.exchange(command)
        sw = int.from_bytes(response[-2:]) if len(response) >= 2 else None
        if sw != SW.OK:
            shown = "no status word" if sw is None else f"{sw:04X}"
            raise BenchError(
                f"the card in '{self.reader}' answered {shown} to INS {command[1]:02X}"
            )
        return response[:-2], seconds


@contextmanager
def raw_cards(readers: Sequence[str]) -> Iterator[dict[str, RawCard]]:
    """Connect to the cards in ``readers``, shared, and disconnect without a reset: the AS
    session of the series being measured is open beside these connections and must outlive
    them."""
    hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if hresult != scard.SCARD_S_SUCCESS:
        raise BenchError(f"no PC/SC context: {scard.SCardGetErrorMessage(hresult).strip()}")
    with ExitStack() as stack:
        stack.callback(scard.SCardReleaseContext, context)
        cards = {}
        for reader in readers:
            hresult, handle, protocol = scard.SCardConnect(
                context,
                reader,
                scard.SCARD_SHARE_SHARED,
                scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1,
            )
            if hresult != scard.SCARD_S_SUCCESS:
                message = scard.SCardGetErrorMessage(hresult).strip()
                raise BenchError(f"cannot connect to the card in '{reader}': {message}")
            stack.callback(scard.SCardDisconnect, handle, scard.SCARD_LEAVE_CARD)
            cards[reader] = RawCard(reader, handle, _PCI[protocol])
        yield cards


def round_trips(card: RawCard, command: bytes, samples: int, work: float = 0.0) -> list[float]:
    """Seconds of each of ``samples`` round trips of ``command``; with ``work``, each round trip
    follows that many seconds of busy computing, as a host's own work between two APDUs."""
    seconds = []
    for _ in range(samples):
        if work:
            _compute(work)
        seconds.append(card.command(command)[1])
    return seconds


def _compute(seconds: float) -> None:
    """Keep the CPU busy for ``seconds`` (a sleep would let it idle, which is not host work)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def replay(cards: dict[str, RawCard], script: Script) -> float:
    """Send the commands of the script again; the sum of the round trips in seconds.

    The script is what ``personalize`` sent to cards of the same serials, so every command is
    sent unchanged except for what a fresh card makes fresh: the challenge R in EXPORT KEY
    (taken from the last GET CHALLENGE answered by the EI it names) and the key block in IMPORT
    KEY (taken from the last EXPORT KEY answered for that EI). The EI cards were served at the
    same time, so their commands interleave: each EI is found by the serial its SELECT answered.
    Any status word other than 9000 stops the replay.
    """
    total = 0.0
    reader_of: dict[bytes, str] = {}
    challenges: dict[str, bytes] = {}
    blocks: dict[str, bytes] = {}
    for recorded in script:
        command = bytearray(recorded.command)
        ins = command[1]
        if ins == Ins.EXPORT_KEY:
            length = command[EXPORT_SERIAL_OFFSET]
            serial = bytes(command[EXPORT_SERIAL_OFFSET + 1 : EXPORT_SERIAL_OFFSET + 1 + length])
            ei = reader_of[serial]
            command[EXPORT_CHALLENGE_OFFSET : EXPORT_CHALLENGE_OFFSET + CHALLENGE_LENGTH] = (
                challenges[ei]
            )
        elif ins == Ins.IMPORT_KEY:
            command[APDU_HEADER_LENGTH:] = blocks[recorded.reader]
        data, seconds = cards[recorded.reader].command(command)
        command[:] = bytes(len(command))
        total += seconds
        if ins == Ins.SELECT:
            info = Info.parse(data)
            if info.role == Role.EI:
                reader_of[info.serial] = recorded.reader
        elif ins == Ins.GET_CHALLENGE:
            challenges[recorded.reader] = data
        elif ins == Ins.EXPORT_KEY:
            blocks[ei] = data
    return total
