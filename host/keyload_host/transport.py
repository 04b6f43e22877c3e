"""PC/SC access over pyscard's thin ``smartcard.scard`` layer: readers and their states, the reader
selection rule (exact name, or a ``*``/``?`` pattern matching exactly one reader; see
docs/DESIGN.md), connections and raw APDUs."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from smartcard import scard

from .errors import KeyloadError

log = logging.getLogger(__name__)

_PROTOCOL_HEADERS = {
    scard.SCARD_PROTOCOL_T0: scard.SCARD_PCI_T0,
    scard.SCARD_PROTOCOL_T1: scard.SCARD_PCI_T1,
}
_PROTOCOL_NAMES = {scard.SCARD_PROTOCOL_T0: "T=0", scard.SCARD_PROTOCOL_T1: "T=1"}
_CARD_GONE = {scard.SCARD_W_REMOVED_CARD, scard.SCARD_E_NO_SMARTCARD}
_MAYBE_CARD_GONE = {scard.SCARD_E_NOT_TRANSACTED, scard.SCARD_E_READER_UNAVAILABLE}
_NO_SERVICE = {scard.SCARD_E_NO_SERVICE, scard.SCARD_E_SERVICE_STOPPED}
_WILDCARDS = {"*": ".*", "?": "."}
_EVENT_COUNT_SHIFT = 16
"""pcsc-lite keeps a reader's count of card events in the upper 16 bits of its event state."""
STATUS_WORD_LENGTH = 2
REMOVAL_GRACE = 1.5
"""Seconds to wait for pcscd to notice a card removal after a failed exchange (vpcd readers are
polled every 0.4 s)."""


class TransportError(KeyloadError):
    """PC/SC could not do what was asked."""


class PcscUnavailableError(TransportError):
    """The PC/SC daemon is not reachable."""


class ReaderNotFoundError(TransportError):
    """No reader matches the given name or pattern."""


class AmbiguousReaderError(TransportError):
    """Several readers match the given pattern."""


class NoCardError(TransportError):
    """The reader is empty."""


class ReaderBusyError(TransportError):
    """Another program holds the card exclusively."""


class CardRemovedError(TransportError):
    """The card left the reader (or was reset by someone else) while we were talking to it."""


@dataclass
class TransportStats:
    """Counts of raw exchanges, kept by every transport so that benchmarks can read them."""

    apdus: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0

    def count(self, sent: int, received: int) -> None:
        self.apdus += 1
        self.bytes_sent += sent
        self.bytes_received += received


class Transport(Protocol):
    """What the APDU layer needs: send raw command bytes, get raw response bytes (data || SW)."""

    reader: str
    stats: TransportStats

    def transmit(self, apdu: bytes) -> bytes: ...


@dataclass(frozen=True)
class ReaderStatus:
    name: str
    card_present: bool
    atr: bytes
    exclusive: bool
    """Another program holds the card exclusively."""
    state: int = scard.SCARD_STATE_UNAWARE
    """The reader's event state as PC/SC reported it (without the "changed" flag): what a wait
    for the next change starts from; its upper 16 bits count the reader's card events."""

    @property
    def card_events(self) -> int:
        return self.state >> _EVENT_COUNT_SHIFT

    @property
    def card_mute(self) -> bool:
        """A card is in the reader but does not answer (no ATR)."""
        return bool(self.state & scard.SCARD_STATE_MUTE)


def _error_text(hresult: int) -> str:
    message = scard.SCardGetErrorMessage(hresult).strip().rstrip(".")
    return f"{message} (0x{hresult & 0xFFFFFFFF:08X})"


def _check(hresult: int, what: str) -> None:
    if hresult == scard.SCARD_S_SUCCESS:
        return
    if hresult in _NO_SERVICE:
        raise PcscUnavailableError(f"pcscd is not running: {_error_text(hresult)}")
    raise TransportError(f"{what}: {_error_text(hresult)}")


def _quoted_list(names: Iterable[str]) -> str:
    names = list(names)
    return ", ".join(f"'{name}'" for name in names) if names else "none"


def _reader_pattern(pattern: str) -> re.Pattern[str]:
    """``*`` and ``?`` as wildcards, every other character literal."""
    return re.compile("".join(_WILDCARDS.get(char, re.escape(char)) for char in pattern), re.DOTALL)


def match_reader(pattern: str, names: Sequence[str]) -> str:
    """Apply the reader selection rule (see the module docstring) to the readers present."""
    pattern = pattern.strip()
    if pattern in names:
        return pattern
    regex = _reader_pattern(pattern)
    matches = [name for name in names if regex.fullmatch(name)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise ReaderNotFoundError(
            f"no reader matches '{pattern}'; readers present: {_quoted_list(names)}"
        )
    raise AmbiguousReaderError(
        f"'{pattern}' matches {len(matches)} readers: {_quoted_list(matches)}; "
        "give the exact name or a pattern that matches only one"
    )


class Pcsc:
    """A PC/SC context: lists readers and opens connections. Use as a context manager."""

    def __init__(self) -> None:
        hresult, self._context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        _check(hresult, "cannot open a PC/SC context")

    def close(self) -> None:
        if self._context is not None:
            scard.SCardReleaseContext(self._context)
            self._context = None

    def __enter__(self) -> Pcsc:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def reader_names(self) -> list[str]:
        hresult, names = scard.SCardListReaders(self._context, [])
        if hresult == scard.SCARD_E_NO_READERS_AVAILABLE:
            return []
        _check(hresult, "cannot list the readers")
        return list(names)

    def readers(self, names: Sequence[str] | None = None) -> list[ReaderStatus]:
        """Card presence and ATR of ``names`` (default: every reader), without connecting."""
        names = self.reader_names() if names is None else list(names)
        if not names:
            return []
        states = [(name, scard.SCARD_STATE_UNAWARE) for name in names]
        hresult, new_states = scard.SCardGetStatusChange(self._context, 0, states)
        _check(hresult, "cannot read the reader states")
        return [
            ReaderStatus(
                name=name,
                card_present=bool(event & scard.SCARD_STATE_PRESENT),
                atr=bytes(atr),
                exclusive=bool(event & scard.SCARD_STATE_EXCLUSIVE),
                state=event & ~scard.SCARD_STATE_CHANGED,
            )
            for name, event, atr in new_states
        ]

    def card_leaves(self, reader: str, within: float) -> bool:
        """Whether the card in ``reader`` is gone now or leaves within ``within`` seconds.

        Used after a failed or empty exchange: pcscd notices a removed card only when it next
        polls the reader, so "present" right after the failure proves nothing yet.
        """
        try:
            (status,) = self.readers([reader])
        except TransportError:
            return True
        if not status.card_present:
            return True
        hresult, states = scard.SCardGetStatusChange(
            self._context, int(within * 1000), [(reader, scard.SCARD_STATE_PRESENT)]
        )
        if hresult == scard.SCARD_E_TIMEOUT:
            return False
        if hresult != scard.SCARD_S_SUCCESS:
            return True
        ((_name, event, _atr),) = states
        return not event & scard.SCARD_STATE_PRESENT

    def wait_for_change(self, seen: Sequence[ReaderStatus], timeout: float) -> None:
        """Return when one of the readers' state differs from ``seen``, or after ``timeout``
        seconds."""
        states = [(status.name, status.state) for status in seen]
        hresult, _states = scard.SCardGetStatusChange(self._context, int(timeout * 1000), states)
        if hresult != scard.SCARD_E_TIMEOUT:
            _check(hresult, "cannot wait for a card")

    def watch(self, names: Sequence[str]) -> ReaderWatch:
        """Follow the cards in ``names``, for serving cards as they are inserted."""
        return ReaderWatch(self, names)

    def find_reader(self, pattern: str) -> str:
        return match_reader(pattern, self.reader_names())

    def connect(self, pattern: str, *, exclusive: bool = True, reset: bool = True) -> PcscTransport:
        """Connect to the card in the one reader matching ``pattern``.

        Exclusive by default so that no other program can slip commands between ours (a PIN
        verified on the AS stays valid until the applet is deselected). ``reset``: whether
        closing the connection resets the card (see ``PcscTransport``).

        A pattern without wildcards can only match the reader of that exact name, so it is
        connected to directly; the reader list is read only when that reader is not there (to
        name the readers that are) or when the pattern has wildcards.
        """
        pattern = pattern.strip()
        has_wildcards = any(char in pattern for char in _WILDCARDS)
        reader = self.find_reader(pattern) if has_wildcards else pattern
        share = scard.SCARD_SHARE_EXCLUSIVE if exclusive else scard.SCARD_SHARE_SHARED
        hresult, card, protocol = scard.SCardConnect(
            self._context, reader, share, scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1
        )
        if hresult == scard.SCARD_E_UNKNOWN_READER and not has_wildcards:
            self.find_reader(pattern)  # raises ReaderNotFoundError naming the readers present
        if hresult in _CARD_GONE:
            raise NoCardError(f"there is no card in reader '{reader}'")
        if hresult == scard.SCARD_E_SHARING_VIOLATION:
            raise ReaderBusyError(f"the card in reader '{reader}' is in use by another program")
        _check(hresult, f"cannot connect to the card in reader '{reader}'")
        return PcscTransport(self, reader, card, protocol, share, reset_on_close=reset)


class ReaderWatch:
    """Which card is in each of some readers, and a wait for the next change.

    Cards are told apart by their reader's event count: pcsc-lite counts the card insertions and
    removals of every reader (the upper 16 bits of the event state), so a card swapped between
    two looks, or taken out and put back, shows a new count although no look saw the reader
    empty. Waiting is PC/SC's own (``SCardGetStatusChange`` on the states last seen), so a card
    is noticed as soon as pcscd sees it, not at the next tick of a poll.
    """

    def __init__(self, pcsc: Pcsc, names: Sequence[str]) -> None:
        self._pcsc = pcsc
        self._names = list(names)
        self._seen = [ReaderStatus(name, False, b"", False) for name in self._names]

    def cards(self) -> dict[str, int | None]:
        """Per reader: the event count of the card in it, None when it is empty."""
        self._seen = self._pcsc.readers(self._names)
        return {
            status.name: status.card_events if status.card_present else None
            for status in self._seen
        }

    def wait(self, timeout: float) -> None:
        """Return when a reader's state differs from the one ``cards`` last saw, or after
        ``timeout`` seconds."""
        self._pcsc.wait_for_change(self._seen, timeout)


class PcscTransport:
    """An open connection to one card. Closing it resets the card unless ``reset_on_close`` is
    false, so that no verified PIN or selected applet outlives the session. The reset goes
    through the reader to the card (about as long as three APDUs on the simulated station), so
    connections to a card that holds no session worth ending skip it: an EI (it has no PIN,
    and a challenge left unused is worth nothing without the AS's export for it)."""

    def __init__(
        self,
        pcsc: Pcsc,
        reader: str,
        card: int,
        protocol: int,
        share: int,
        *,
        reset_on_close: bool = True,
    ) -> None:
        self.pcsc = pcsc
        self.reader = reader
        self.stats = TransportStats()
        self._card: int | None = card
        self._protocol = protocol
        self._share = share
        self._reset_on_close = reset_on_close

    def transmit(self, apdu: bytes) -> bytes:
        if self._card is None:
            raise TransportError(f"the connection to reader '{self.reader}' is closed")
        hresult, response = scard.SCardTransmit(
            self._card, _PROTOCOL_HEADERS[self._protocol], list(apdu)
        )
        if hresult != scard.SCARD_S_SUCCESS:
            self._raise_transmit_error(hresult)
        if len(response) < STATUS_WORD_LENGTH and self._card_left():
            # vpcd (and some drivers) answer a card pulled mid-command with an empty response
            raise CardRemovedError(f"the card was removed from reader '{self.reader}'")
        self.stats.count(len(apdu), len(response))
        return bytes(response)

    def _raise_transmit_error(self, hresult: int) -> None:
        if hresult == scard.SCARD_W_RESET_CARD:
            raise CardRemovedError(
                f"the card in reader '{self.reader}' was reset by another program; "
                "its session (selected applet, verified PIN) is lost"
            )
        if hresult in _CARD_GONE or (hresult in _MAYBE_CARD_GONE and self._card_left()):
            raise CardRemovedError(f"the card was removed from reader '{self.reader}'")
        _check(hresult, f"the exchange with the card in reader '{self.reader}' failed")

    def _card_left(self) -> bool:
        return self.pcsc.card_leaves(self.reader, REMOVAL_GRACE)

    @property
    def protocol(self) -> str:
        """The protocol pcscd negotiated from the card's ATR: "T=0" or "T=1"."""
        return _PROTOCOL_NAMES[self._protocol]

    @property
    def atr(self) -> bytes:
        hresult, _reader, _state, _protocol, atr = scard.SCardStatus(self._card)
        if hresult in _CARD_GONE:
            raise CardRemovedError(f"the card was removed from reader '{self.reader}'")
        _check(hresult, f"cannot read the ATR in reader '{self.reader}'")
        return bytes(atr)

    def reconnect(self, *, reset: bool = False) -> None:
        """Re-establish the connection, e.g. after another program reset the card."""
        init = scard.SCARD_RESET_CARD if reset else scard.SCARD_LEAVE_CARD
        hresult, self._protocol = scard.SCardReconnect(
            self._card, self._share, scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1, init
        )
        if hresult in _CARD_GONE:
            raise CardRemovedError(f"the card was removed from reader '{self.reader}'")
        _check(hresult, f"cannot reconnect to the card in reader '{self.reader}'")

    def disconnect(self) -> None:
        if self._card is None:
            return
        disposition = scard.SCARD_RESET_CARD if self._reset_on_close else scard.SCARD_LEAVE_CARD
        hresult = scard.SCardDisconnect(self._card, disposition)
        self._card = None
        if hresult not in (scard.SCARD_S_SUCCESS, *_CARD_GONE):
            log.debug("disconnect from '%s': %s", self.reader, _error_text(hresult))

    def __enter__(self) -> PcscTransport:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.disconnect()
