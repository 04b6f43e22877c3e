"""The two applets as Python objects: one method per command of PROTOCOL.md §4.1, over any
``Transport``; ``CardError`` on a status word other than 9000; secret buffers wiped once sent."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from . import apdu
from .apdu import CardError, Command
from .protocol import (
    AID_AS,
    AID_EI,
    AUTH_RESPONSE_LENGTH,
    CHALLENGE_LENGTH,
    CLA_ISO,
    CLA_PROPRIETARY,
    FLAG_ACCEPTS_IMPORT,
    FLAG_DIVERSIFY,
    P1_SELECT_BY_NAME,
    P2_VERIFY_OPERATOR_PIN,
    Info,
    Ins,
    KeyEntry,
    ProtocolError,
    Role,
    Usage,
    parse_key_list,
)
from .transport import Transport

LE_ANY = apdu.LE_MAX


@contextmanager
def _secret_buffer(*parts: bytes | bytearray | int) -> Iterator[bytearray]:
    """Concatenate command data that carries a secret into a buffer wiped on exit."""
    buffer = bytearray()
    for part in parts:
        if isinstance(part, int):
            buffer.append(part)
        else:
            buffer += part
    try:
        yield buffer
    finally:
        buffer[:] = bytes(len(buffer))


class Card:
    """Commands common to both applets."""

    AID: bytes
    ROLE: Role

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    @property
    def reader(self) -> str:
        return self.transport.reader

    def send(self, command: Command) -> bytes:
        """Send ``command``; return its response data, or raise ``CardError``."""
        response = apdu.transmit(self.transport, command)
        if not response.ok:
            raise CardError(command, response.sw, self.reader)
        return response.data

    def _proprietary(self, ins: Ins, data: bytes | bytearray = b"", le: int | None = None) -> bytes:
        return self.send(Command(CLA_PROPRIETARY, ins, data=data, le=le))

    def _info(self, data: bytes) -> Info:
        info = Info.parse(data)
        if info.role != self.ROLE:
            raise ProtocolError(
                f"the applet in reader '{self.reader}' says it is an {info.role.name}, "
                f"not an {self.ROLE.name}"
            )
        return info

    def select(self) -> Info:
        """SELECT the applet by AID; its answer is INFO."""
        return self._info(
            self.send(Command(CLA_ISO, Ins.SELECT, P1_SELECT_BY_NAME, 0, self.AID, LE_ANY))
        )

    def get_info(self) -> Info:
        return self._info(self._proprietary(Ins.GET_INFO, le=LE_ANY))

    def list_keys(self) -> list[KeyEntry]:
        """LIST KEYS: one entry per AS key or EI slot, ascending REF."""
        return parse_key_list(self._proprietary(Ins.LIST_KEYS, le=LE_ANY))

    def set_transport_key(self, transport_key: bytes | bytearray) -> None:
        with _secret_buffer(transport_key) as data:
            self._proprietary(Ins.SET_TRANSPORT_KEY, data)

    def lock(self) -> None:
        """LOCK: SETUP -> OPERATIONAL, irreversibly."""
        self._proprietary(Ins.LOCK)


class AsCard(Card):
    """The master card that holds the application keys and exports them."""

    AID = AID_AS
    ROLE = Role.AS

    def put_app_key(
        self,
        ref1: int,
        usage: Usage,
        version: int,
        diversify: bool,
        export_limit: int,
        key: bytes | bytearray,
    ) -> None:
        header = bytes([ref1, usage, *version.to_bytes(2)])
        flags = FLAG_DIVERSIFY if diversify else 0
        with _secret_buffer(header, flags, export_limit.to_bytes(2), key) as data:
            self._proprietary(Ins.PUT_APP_KEY, data)

    def set_pin(self, pin: bytes | bytearray) -> None:
        with _secret_buffer(pin) as data:
            self._proprietary(Ins.SET_PIN, data)

    def verify_pin(self, pin: bytes | bytearray) -> None:
        """VERIFY the operator PIN; valid until the applet is deselected."""
        with _secret_buffer(pin) as data:
            self.send(Command(CLA_ISO, Ins.VERIFY, 0, P2_VERIFY_OPERATOR_PIN, data))

    def export_key(
        self, ref1: int, ref2: int, challenge: bytes, serial: bytes, transport_version: int = 0
    ) -> bytes:
        """EXPORT KEY: the key block for the EI with ``serial`` that issued ``challenge``, under
        the AS's transport key, or (§9) under the one of ``transport_version`` (P1P2; 0: T)."""
        data = bytes([ref1, ref2]) + challenge + bytes([len(serial)]) + serial
        p1, p2 = transport_version.to_bytes(2)
        return self.send(Command(CLA_PROPRIETARY, Ins.EXPORT_KEY, p1, p2, data, LE_ANY))

    def put_next_transport_key(self, version: int, key: bytes | bytearray) -> None:
        """PUT NEXT TRANSPORT KEY (§9, SETUP): the next T of a rotation campaign."""
        with _secret_buffer(version.to_bytes(2), key) as data:
            self._proprietary(Ins.PUT_NEXT_TRANSPORT_KEY, data)

    def export_transport_key(self, challenge: bytes, serial: bytes) -> bytes:
        """EXPORT TRANSPORT KEY (§9): the next T as a block for the EI ``serial`` and its
        ``challenge``, sealed under the current T."""
        data = challenge + bytes([len(serial)]) + serial
        return self._proprietary(Ins.EXPORT_TRANSPORT_KEY, data, le=LE_ANY)

    def retire_transport_key(self, version: int) -> None:
        """RETIRE TRANSPORT KEY (§9): the next T, of ``version``, becomes T; the old one is gone."""
        self._proprietary(Ins.RETIRE_TRANSPORT_KEY, version.to_bytes(2))


class EiCard(Card):
    """A terminal security module that receives application keys."""

    AID = AID_EI
    ROLE = Role.EI

    def set_serial(self, serial: bytes) -> None:
        self._proprietary(Ins.SET_SERIAL, serial)

    def define_slot(self, ref2: int, key_length: int, usage: Usage, accepts_import: bool) -> None:
        flags = FLAG_ACCEPTS_IMPORT if accepts_import else 0
        self._proprietary(Ins.DEFINE_SLOT, bytes([ref2, key_length, usage, flags]))

    def set_retry_limit(self, limit: int) -> None:
        self._proprietary(Ins.SET_RETRY_LIMIT, bytes([limit]))

    def get_challenge(self) -> bytes:
        """GET CHALLENGE: a fresh single-use R for the next IMPORT KEY."""
        challenge = self.send(Command(CLA_ISO, Ins.GET_CHALLENGE, le=CHALLENGE_LENGTH))
        if len(challenge) != CHALLENGE_LENGTH:
            raise ProtocolError(f"GET CHALLENGE answered {len(challenge)} bytes, not 16")
        return challenge

    def import_key(self, block: bytes) -> None:
        """IMPORT KEY: hand over a key block made by the AS for the last challenge."""
        self._proprietary(Ins.IMPORT_KEY, block)

    def import_transport_key(self, block: bytes) -> None:
        """IMPORT TRANSPORT KEY (§9): a transport key block replaces T (slots are kept)."""
        self._proprietary(Ins.IMPORT_TRANSPORT_KEY, block)

    def internal_authenticate(self, ref2: int, data: bytes) -> bytes:
        """INTERNAL AUTHENTICATE: AES-CMAC of ``data`` under the key in slot ``ref2``."""
        response = self.send(
            Command(CLA_ISO, Ins.INTERNAL_AUTHENTICATE, 0, ref2, data, AUTH_RESPONSE_LENGTH)
        )
        if len(response) != AUTH_RESPONSE_LENGTH:
            raise ProtocolError(f"INTERNAL AUTHENTICATE answered {len(response)} bytes, not 16")
        return response


CARD_TYPES: tuple[type[Card], ...] = (AsCard, EiCard)


def identify(transport: Transport) -> tuple[Card, Info] | None:
    """Find which keyload applet the card holds: select the AS, then the EI.

    Returns None when the card answers neither (6A82 or another refusal of SELECT).
    """
    for card_type in CARD_TYPES:
        card = card_type(transport)
        try:
            return card, card.select()
        except CardError:
            continue
    return None
