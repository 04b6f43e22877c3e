"""Every constant of the keyload wire protocol (PROTOCOL.md) and the parsers of what the cards send:
the host's single source of truth for the contract."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any, TypeVar

from .errors import KeyloadError

PROTOCOL_VERSION = 0x01
"""INFO byte 0 of a card speaking this protocol."""

AID_PACKAGE = bytes.fromhex("F04B45594C4F4144")
AID_AS = AID_PACKAGE + b"\x01"
AID_EI = AID_PACKAGE + b"\x02"

CLA_ISO = 0x00
"""Class byte of the ISO 7816-4 commands: SELECT, VERIFY, GET CHALLENGE, INTERNAL AUTHENTICATE."""
CLA_PROPRIETARY = 0x80
"""Class byte of the keyload-specific commands."""

P1_SELECT_BY_NAME = 0x04
P2_VERIFY_OPERATOR_PIN = 0x81
"""VERIFY names the operator PIN in P2 (a specific reference data, ISO 7816-4)."""


class Ins(IntEnum):
    """Instruction bytes; the name of a member is the command's name in PROTOCOL.md §4.1."""

    SELECT = 0xA4
    GET_INFO = 0x40
    LIST_KEYS = 0x42
    SET_TRANSPORT_KEY = 0x50
    SET_SERIAL = 0x52
    PUT_APP_KEY = 0x54
    DEFINE_SLOT = 0x56
    SET_RETRY_LIMIT = 0x58
    SET_PIN = 0x5A
    LOCK = 0x5E
    VERIFY = 0x20
    GET_CHALLENGE = 0x84
    EXPORT_KEY = 0x4A
    IMPORT_KEY = 0x4C
    INTERNAL_AUTHENTICATE = 0x88
    PUT_NEXT_TRANSPORT_KEY = 0x60
    """§9 (transport key rotation, a keyload extension): AS, SETUP."""
    EXPORT_TRANSPORT_KEY = 0x62
    """§9: AS, OPERATIONAL, PIN verified: the next T for one EI and challenge."""
    RETIRE_TRANSPORT_KEY = 0x64
    """§9: AS, OPERATIONAL, PIN verified: the next T becomes T."""
    IMPORT_TRANSPORT_KEY = 0x66
    """§9: EI, OPERATIONAL: a transport key block replaces T."""
    GET_RESPONSE = 0xC0
    """ISO 7816-4 GET RESPONSE, sent by the host only to T=0 cards that answer 61xx."""

    @property
    def command_name(self) -> str:
        """The name as written in PROTOCOL.md, e.g. ``EXPORT KEY``."""
        return self.name.replace("_", " ")


def ins_name(ins: int) -> str:
    """The command's name for an instruction byte, e.g. ``EXPORT KEY``; ``INS 12`` for one
    the protocol does not know."""
    try:
        return Ins(ins).command_name
    except ValueError:
        return f"INS {ins:02X}"


class Role(IntEnum):
    AS = 0x01
    EI = 0x02


class LifeCycle(IntEnum):
    SETUP = 0x01
    OPERATIONAL = 0x02
    BLOCKED = 0xFF


class Usage(IntEnum):
    """Key usage; an EI slot accepts exactly one."""

    AUTHENTICATE = 0x01
    MAC = 0x02
    ENCRYPT = 0x04


class SlotState(IntEnum):
    EMPTY = 0x00
    LOADED = 0x01


class SW(IntEnum):
    """Status words of PROTOCOL.md §4.4, plus the ISO ones a card OS answers on its own."""

    OK = 0x9000
    WRONG_LENGTH = 0x6700
    SECURITY_STATUS_NOT_SATISFIED = 0x6982
    BLOCKED = 0x6983
    CONDITIONS_NOT_SATISFIED = 0x6985
    COMMAND_NOT_ALLOWED = 0x6986
    INCORRECT_DATA = 0x6A80
    APPLET_NOT_FOUND = 0x6A82
    """Answered by the card OS to a SELECT of an AID it does not hold (not an applet SW)."""
    NOT_ENOUGH_MEMORY = 0x6A84
    INCORRECT_P1P2 = 0x6A86
    REFERENCED_DATA_NOT_FOUND = 0x6A88
    INS_NOT_SUPPORTED = 0x6D00
    CLA_NOT_SUPPORTED = 0x6E00
    UNKNOWN_ERROR = 0x6F00
    """Answered by the card OS when an applet throws an unexpected exception."""


SW1_BYTES_AVAILABLE = 0x61
"""61xx: a T=0 card has xx response bytes waiting for GET RESPONSE."""
SW1_WRONG_LE = 0x6C
"""6Cxx: a T=0 card wants the command repeated with Le = xx."""
SW_VERIFY_FAILED_BASE = 0x63C0
"""63Cx: verification failed, x tries left; the low nibble is the count."""
SW_VERIFY_FAILED_MASK = 0xFFF0

KEY_LENGTHS = (16, 24, 32)
"""AES-128, AES-192, AES-256, for both the transport key T and the application keys TA."""
AES_BLOCK = 16
SERIAL_MIN, SERIAL_MAX = 8, 16
PIN_MIN, PIN_MAX = 4, 16
PIN_TRY_LIMIT = 3
RETRY_LIMIT_MIN, RETRY_LIMIT_MAX, RETRY_LIMIT_DEFAULT = 1, 15, 10
REF_MIN, REF_MAX = 0x01, 0x7F
"""REF 0x00 is reserved for a later transport-key rollover."""
REF_NONE = 0x00
"""§9: REF2 of a transport key block and of its K_enc/K_mac context (the reserved REF)."""
MAX_KEYS = 16
"""At most 16 keys in an AS and 16 slots in an EI."""
VERSION_MIN, VERSION_MAX = 0x0001, 0xFFFF
EXPORT_LIMIT_UNLIMITED = 0xFFFF
CHALLENGE_LENGTH = 16
AUTH_DATA_MIN, AUTH_DATA_MAX = 1, 64
"""INTERNAL AUTHENTICATE accepts 1..64 bytes."""
AUTH_RESPONSE_LENGTH = 16

FLAG_DIVERSIFY = 0x01
"""AS key flag (PUT APP KEY, LIST KEYS, key block header): diversify per unit."""
FLAG_ACCEPTS_IMPORT = 0x01
"""EI slot flag (DEFINE SLOT, LIST KEYS): the slot accepts IMPORT KEY."""

KEY_BLOCK_FORMAT = 0x01
TRANSPORT_BLOCK_FORMAT = 0x02
"""§9: the block that carries a new transport key (REF2, usage, flags and REF1 are 00)."""
TRANSPORT_VERSION_INITIAL = 0x0001
"""§9: the version of a transport key set by SET TRANSPORT KEY; a rotation only moves it up."""
HEADER_LENGTH = 8
SAS_LENGTH = 8
CAS_LENGTH = 16
KCV8_LENGTH = 8
KCV_LENGTH = 3

KCV_METHOD = "cmac-aes"
"""The method of every check value keyload shows, logs or stores (§2): the leftmost bytes of
AES-CMAC(K, 16 zero bytes), as ANSI X9.24-1 defines the KCV of an AES key. Named with the value
(``cmac-aes:1A2B3C``) because the older encrypt-zeros KCV gives another value for the same key."""


def kcv_text(value: bytes) -> str:
    """A check value as people and files see it: method, colon, hex (``cmac-aes:53E107``)."""
    return f"{KCV_METHOD}:{value.hex().upper()}"


def parse_kcv_text(text: str) -> tuple[str, str]:
    """(method, hex) of a check value written by ``kcv_text``; a bare hex value (audit logs of
    keyload before the method was named) is ``cmac-aes``, the only method keyload ever used."""
    method, _, value = text.rpartition(":")
    value = value.upper()
    if not value or any(char not in "0123456789ABCDEF" for char in value):
        raise ValueError(f"'{text}' is not a check value (method:hex)")
    return method or KCV_METHOD, value


INFO_FIXED_LENGTH = 11
"""INFO bytes 0..10; the serial follows."""
INFO_EXTENSION_LENGTH = 8
"""§9: after the serial, T's version (2), the next T's length (1), KCV (3) and version (2); a card
without the rotation extension sends none of it."""
KEY_ENTRY_LENGTH = 14


class ProtocolError(KeyloadError):
    """A card answered with data that does not follow PROTOCOL.md (not a status word error)."""


def padded_length(key_length: int) -> int:
    """Length of encTA: the key padded with zeros to a multiple of the AES block."""
    return -(-key_length // AES_BLOCK) * AES_BLOCK


def key_block_length(key_length: int) -> int:
    """Total length of a key block carrying a key of ``key_length`` bytes (§3)."""
    return HEADER_LENGTH + padded_length(key_length) + SAS_LENGTH + CAS_LENGTH


_E = TypeVar("_E", bound=IntEnum)


def _enum_value(enum: type[_E], value: int, what: str) -> _E:
    try:
        return enum(value)
    except ValueError:
        raise ProtocolError(f"the card sent an unknown {what} 0x{value:02X}") from None


@dataclass(frozen=True)
class Info:
    """INFO, the answer to SELECT and GET INFO (§4.1)."""

    protocol_version: int
    role: Role
    life_cycle: LifeCycle
    transport_key_length: int
    transport_kcv: bytes
    tries_remaining: int
    try_limit: int
    key_count: int
    serial: bytes
    transport_version: int | None = None
    """§9: T's version (0 when T is not set); None from a card without the rotation extension."""
    next_transport_length: int = 0
    """§9, AS: the length of the next T held for a rotation campaign (0: none)."""
    next_transport_kcv: bytes = bytes(KCV_LENGTH)
    next_transport_version: int = 0

    @classmethod
    def parse(cls, data: bytes) -> Info:
        if len(data) < INFO_FIXED_LENGTH:
            raise ProtocolError(f"INFO is {len(data)} bytes, at least {INFO_FIXED_LENGTH} expected")
        if data[0] != PROTOCOL_VERSION:
            raise ProtocolError(
                f"the card speaks protocol version 0x{data[0]:02X}, "
                f"this host 0x{PROTOCOL_VERSION:02X}"
            )
        serial_length = data[10]
        end = INFO_FIXED_LENGTH + serial_length
        if len(data) not in (end, end + INFO_EXTENSION_LENGTH):
            raise ProtocolError(
                f"INFO is {len(data)} bytes but announces a {serial_length}-byte serial"
            )
        extension = data[end:]
        rotation: dict[str, Any] = {}
        if extension:
            rotation = {
                "transport_version": int.from_bytes(extension[0:2]),
                "next_transport_length": extension[2],
                "next_transport_kcv": bytes(extension[3:6]),
                "next_transport_version": int.from_bytes(extension[6:8]),
            }
        return cls(
            protocol_version=data[0],
            role=_enum_value(Role, data[1], "role"),
            life_cycle=_enum_value(LifeCycle, data[2], "life cycle"),
            transport_key_length=data[3],
            transport_kcv=bytes(data[4:7]),
            tries_remaining=data[7],
            try_limit=data[8],
            key_count=data[9],
            serial=bytes(data[INFO_FIXED_LENGTH:end]),
            **rotation,
        )

    @property
    def transport_key_set(self) -> bool:
        return self.transport_key_length != 0

    @property
    def holds_next_transport_key(self) -> bool:
        """§9, AS: a next T is held for a rotation campaign."""
        return self.next_transport_length != 0


@dataclass(frozen=True)
class KeyEntry:
    """One 14-byte LIST KEYS entry: an AS key or an EI slot (§4.1).

    ``flags`` bit 0 means "diversify per unit" on an AS and "accepts import" on an EI; the two
    properties below name both readings, and the caller knows which card it asked.
    """

    ref: int
    state: SlotState
    key_length: int
    usage: Usage
    version: int
    flags: int
    kcv: bytes
    count: int
    limit: int

    @classmethod
    def parse(cls, data: bytes) -> KeyEntry:
        if len(data) != KEY_ENTRY_LENGTH:
            raise ProtocolError(f"a LIST KEYS entry is {KEY_ENTRY_LENGTH} bytes, got {len(data)}")
        return cls(
            ref=data[0],
            state=_enum_value(SlotState, data[1], "slot state"),
            key_length=data[2],
            usage=_enum_value(Usage, data[3], "key usage"),
            version=int.from_bytes(data[4:6]),
            flags=data[6],
            kcv=bytes(data[7:10]),
            count=int.from_bytes(data[10:12]),
            limit=int.from_bytes(data[12:14]),
        )

    @property
    def loaded(self) -> bool:
        return self.state == SlotState.LOADED

    @property
    def diversify(self) -> bool:
        """AS reading of flag bit 0."""
        return bool(self.flags & FLAG_DIVERSIFY)

    @property
    def accepts_import(self) -> bool:
        """EI reading of flag bit 0."""
        return bool(self.flags & FLAG_ACCEPTS_IMPORT)

    @property
    def unlimited(self) -> bool:
        return self.limit == EXPORT_LIMIT_UNLIMITED

    @property
    def exports_left(self) -> int | None:
        """Exports the AS still allows for this key; None when unlimited."""
        return None if self.unlimited else max(self.limit - self.count, 0)


def parse_key_list(data: bytes) -> list[KeyEntry]:
    """Split a LIST KEYS response into its entries."""
    if len(data) % KEY_ENTRY_LENGTH:
        raise ProtocolError(
            f"LIST KEYS answered {len(data)} bytes, not a multiple of {KEY_ENTRY_LENGTH}"
        )
    return [
        KeyEntry.parse(data[offset : offset + KEY_ENTRY_LENGTH])
        for offset in range(0, len(data), KEY_ENTRY_LENGTH)
    ]


@dataclass(frozen=True)
class KeyBlockHeader:
    """The 8-byte header of a key block (§3); it travels in clear and is covered by the CAS."""

    ref2: int
    key_length: int
    usage: int
    version: int
    flags: int
    ref1: int
    format: int = KEY_BLOCK_FORMAT

    def encode(self) -> bytes:
        return (
            bytes([self.format, self.ref2, self.key_length, self.usage])
            + self.version.to_bytes(2)
            + bytes([self.flags, self.ref1])
        )

    @classmethod
    def parse(cls, data: bytes) -> KeyBlockHeader:
        if len(data) < HEADER_LENGTH:
            raise ProtocolError(f"a key block header is {HEADER_LENGTH} bytes, got {len(data)}")
        return cls(
            format=data[0],
            ref2=data[1],
            key_length=data[2],
            usage=data[3],
            version=int.from_bytes(data[4:6]),
            flags=data[6],
            ref1=data[7],
        )

    @property
    def diversified(self) -> bool:
        return bool(self.flags & FLAG_DIVERSIFY)


def block_sas(block: bytes) -> bytes:
    """The SAS field of a well-formed key block: it sits right before the 16-byte CAS."""
    return bytes(block[-(CAS_LENGTH + SAS_LENGTH) : -CAS_LENGTH])
