"""Command and response APDUs, the T=0 response dance (61xx, 6Cxx), and every status word as a
sentence for the operator, by command; no message ever shows command data."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from .errors import KeyloadError
from .protocol import (
    CLA_ISO,
    SW,
    SW1_BYTES_AVAILABLE,
    SW1_WRONG_LE,
    SW_VERIFY_FAILED_BASE,
    SW_VERIFY_FAILED_MASK,
    Ins,
    ProtocolError,
    ins_name,
)
from .transport import Transport

log = logging.getLogger(__name__)

LE_MAX = 256
"""Short APDUs: Le 1..256, where 256 is encoded as 00."""
LC_MAX = 255
MAX_RESPONSE_PARTS = 64
"""Bound on GET RESPONSE rounds, so that a broken card cannot keep the host looping."""


@dataclass(frozen=True)
class Command:
    """A short command APDU. ``le`` is the number of bytes expected (1..256), or None for none."""

    cla: int
    ins: int
    p1: int = 0
    p2: int = 0
    data: bytes | bytearray = field(default=b"", repr=False)
    le: int | None = None

    def __post_init__(self) -> None:
        if len(self.data) > LC_MAX:
            raise ValueError(f"command data is {len(self.data)} bytes, at most {LC_MAX}")
        if self.le is not None and not 1 <= self.le <= LE_MAX:
            raise ValueError(f"Le must be 1..{LE_MAX}, got {self.le}")

    @property
    def name(self) -> str:
        return ins_name(self.ins)

    def encode(self) -> bytearray:
        """The APDU bytes, as a bytearray so that a caller sending a secret can wipe them."""
        apdu = bytearray([self.cla, self.ins, self.p1, self.p2])
        if self.data:
            apdu.append(len(self.data))
            apdu += self.data
        if self.le is not None:
            apdu.append(self.le % LE_MAX)
        return apdu

    def with_le(self, le: int) -> Command:
        return Command(self.cla, self.ins, self.p1, self.p2, self.data, le)


@dataclass(frozen=True)
class Response:
    data: bytes
    sw: int

    @classmethod
    def parse(cls, raw: bytes) -> Response:
        if len(raw) < 2:
            raise ProtocolError(f"the card answered {len(raw)} bytes, no status word")
        return cls(data=bytes(raw[:-2]), sw=int.from_bytes(raw[-2:]))

    @property
    def ok(self) -> bool:
        return self.sw == SW.OK


def get_response(length: int) -> Command:
    return Command(CLA_ISO, Ins.GET_RESPONSE, le=length or LE_MAX)


def _exchange(transport: Transport, command: Command) -> Response:
    apdu = command.encode()
    try:
        return Response.parse(transport.transmit(bytes(apdu)))
    finally:
        apdu[:] = bytes(len(apdu))


def transmit(transport: Transport, command: Command) -> Response:
    """Send a command and return its complete response, handling T=0 cards.

    6Cxx: the command is sent again once with Le = xx. 61xx: GET RESPONSE is sent with Le = xx
    until the card answers something else, and the data parts are concatenated.
    """
    response = _exchange(transport, command)
    if response.sw >> 8 == SW1_WRONG_LE:
        response = _exchange(transport, command.with_le(response.sw & 0xFF or LE_MAX))
    data = response.data
    rounds = 0
    while response.sw >> 8 == SW1_BYTES_AVAILABLE:
        rounds += 1
        if rounds > MAX_RESPONSE_PARTS:
            raise ProtocolError(f"the card kept answering 61xx to {command.name}")
        response = _exchange(transport, get_response(response.sw & 0xFF))
        data += response.data
    if log.isEnabledFor(logging.DEBUG):  # naming the command costs more than the check
        name, reader = command.name, transport.reader
        log.debug("%s on '%s': %04X, %d bytes", name, reader, response.sw, len(data))
    return Response(data=data, sw=response.sw)


# Sentences per status word: the first entry is for any command, the others refine it for one.
_ANY = None
_SW_TEXT: dict[int, dict[Ins | None, str]] = {
    SW.OK: {_ANY: "success"},
    SW.WRONG_LENGTH: {
        _ANY: "the card refused the length of the data",
        Ins.SET_TRANSPORT_KEY: "a transport key must be 16, 24 or 32 bytes",
        Ins.SET_SERIAL: "a serial must be 8 to 16 bytes",
        Ins.SET_PIN: "a PIN must be 4 to 16 bytes",
        Ins.VERIFY: "a PIN must be 4 to 16 bytes",
        Ins.PUT_APP_KEY: "the key data has the wrong length (a key must be 16, 24 or 32 bytes)",
        Ins.EXPORT_KEY: "the EI serial must be 8 to 16 bytes",
        Ins.IMPORT_KEY: "the key block has the wrong length",
        Ins.INTERNAL_AUTHENTICATE: "the challenge must be 1 to 64 bytes",
    },
    SW.SECURITY_STATUS_NOT_SATISFIED: {
        _ANY: "security status not satisfied",
        Ins.EXPORT_KEY: "the operator PIN has not been verified",
        Ins.IMPORT_KEY: ("the key check value (SAS) did not match; this counts as a failed try"),
    },
    SW.BLOCKED: {
        _ANY: "blocked: tries exhausted or limit reached",
        Ins.VERIFY: "the operator PIN is blocked (no tries left)",
        Ins.EXPORT_KEY: "the export limit of this key is reached",
        Ins.IMPORT_KEY: "the EI is BLOCKED for good: its import tries are exhausted",
        Ins.GET_CHALLENGE: "the EI is BLOCKED for good: its import tries are exhausted",
    },
    SW.CONDITIONS_NOT_SATISFIED: {
        _ANY: "conditions of use not satisfied (wrong life-cycle state)",
        Ins.SET_TRANSPORT_KEY: "the card is no longer in SETUP (it is locked)",
        Ins.SET_SERIAL: "the card is no longer in SETUP (it is locked)",
        Ins.PUT_APP_KEY: "the card is no longer in SETUP (it is locked)",
        Ins.DEFINE_SLOT: "the card is no longer in SETUP (it is locked)",
        Ins.SET_RETRY_LIMIT: "the card is no longer in SETUP (it is locked)",
        Ins.SET_PIN: "the card is no longer in SETUP (it is locked)",
        Ins.LOCK: (
            "LOCK refused: the card is not in SETUP, or setup is incomplete (transport key, and "
            "for an AS the PIN and one key, for an EI the serial and one slot)"
        ),
        Ins.VERIFY: "the AS is not OPERATIONAL (lock it first)",
        Ins.GET_CHALLENGE: "the EI is not OPERATIONAL (lock it first)",
        Ins.EXPORT_KEY: (
            "the AS is not OPERATIONAL, or the application key is longer than the transport key"
        ),
        Ins.IMPORT_KEY: (
            "the EI is not OPERATIONAL, or no fresh challenge was issued since SELECT "
            "(GET CHALLENGE must come right before each IMPORT KEY)"
        ),
        Ins.INTERNAL_AUTHENTICATE: (
            "the EI is not OPERATIONAL, or the key in this slot is not an authentication key"
        ),
    },
    SW.COMMAND_NOT_ALLOWED: {
        _ANY: "command not allowed",
        Ins.IMPORT_KEY: "the target slot does not accept imported keys",
    },
    SW.INCORRECT_DATA: {
        _ANY: "incorrect data: a value is out of range",
        Ins.PUT_APP_KEY: "a value is out of range (reference, usage, key length or version 0)",
        Ins.DEFINE_SLOT: "a value is out of range (reference, key length or usage)",
        Ins.SET_RETRY_LIMIT: "the retry limit must be 1 to 15",
        Ins.EXPORT_KEY: "the target slot REF2 must be 01 to 7F",
        Ins.IMPORT_KEY: (
            "the EI refused the key: key length or usage differ from the slot's, bad padding, "
            "or a version lower than the slot's (or the same version with another key)"
        ),
    },
    SW.APPLET_NOT_FOUND: {_ANY: "the card does not hold this applet"},
    SW.NOT_ENOUGH_MEMORY: {
        _ANY: "not enough memory",
        Ins.PUT_APP_KEY: "the AS already holds 16 keys",
        Ins.DEFINE_SLOT: "the EI already has 16 slots",
    },
    SW.INCORRECT_P1P2: {_ANY: "incorrect P1/P2"},
    SW.REFERENCED_DATA_NOT_FOUND: {
        _ANY: "referenced data not found",
        Ins.EXPORT_KEY: "the AS holds no key with this REF1",
        Ins.IMPORT_KEY: "the EI has no slot with this REF2",
        Ins.INTERNAL_AUTHENTICATE: "the slot is undefined or empty",
    },
    SW.INS_NOT_SUPPORTED: {
        _ANY: (
            "instruction not supported: a command of the other role "
            "(AS command sent to an EI or the reverse), or an unknown instruction"
        ),
    },
    SW.CLA_NOT_SUPPORTED: {_ANY: "class byte not supported"},
    SW.UNKNOWN_ERROR: {_ANY: "unexpected error inside the card"},
}


def _command_ins(command: Command | Ins | None) -> Ins | None:
    if isinstance(command, Command):
        try:
            return Ins(command.ins)
        except ValueError:
            return None
    return command


def _references(command: Command | Ins | None) -> str:
    """References named by a command, shown to tell which key failed; never any other data."""
    if not isinstance(command, Command):
        return ""
    if command.ins == Ins.EXPORT_KEY and len(command.data) >= 2:
        return f" (REF1 {command.data[0]:02X} to REF2 {command.data[1]:02X})"
    if command.ins == Ins.IMPORT_KEY and len(command.data) >= 8:
        return f" (REF1 {command.data[7]:02X} to REF2 {command.data[1]:02X})"
    if command.ins == Ins.INTERNAL_AUTHENTICATE:
        return f" (slot {command.p2:02X})"
    return ""


def _tries(count: int, what: str = "") -> str:
    return f"{count} {what}{'try' if count == 1 else 'tries'} left"


def _verify_failed_text(ins: Ins | None, tries: int) -> str:
    if ins == Ins.VERIFY:
        if tries == 0:
            return "wrong PIN; the PIN is now blocked"
        return f"wrong PIN, {_tries(tries)}"
    if ins == Ins.IMPORT_KEY:
        outcome = "the EI is now BLOCKED for good" if tries == 0 else _tries(tries, "import ")
        return (
            "the key block's certificate (CAS) did not verify: the EI and the AS do not share the "
            f"transport key, or the block was altered; {outcome}"
        )
    return f"verification failed, {_tries(tries)}"


def describe_sw(sw: int, command: Command | Ins | None = None) -> str:
    """A plain sentence saying what ``sw`` means as the answer to ``command``."""
    ins = _command_ins(command)
    if sw & SW_VERIFY_FAILED_MASK == SW_VERIFY_FAILED_BASE:
        text = _verify_failed_text(ins, sw & ~SW_VERIFY_FAILED_MASK)
    elif sw >> 8 == SW1_BYTES_AVAILABLE:
        text = f"{sw & 0xFF or LE_MAX} more response bytes are waiting (GET RESPONSE)"
    elif sw >> 8 == SW1_WRONG_LE:
        text = f"wrong expected length; the card has {sw & 0xFF or LE_MAX} bytes"
    elif sw in _SW_TEXT:
        texts = _SW_TEXT[sw]
        text = texts.get(ins, texts[_ANY])
    else:
        text = "unknown status word"
    return text + _references(command)


class CardError(KeyloadError):
    """A card answered a command with a status word other than 9000."""

    def __init__(self, command: Command | Ins, sw: int, reader: str | None = None) -> None:
        self.command = command
        self.sw = sw
        self.reader = reader
        name = command.name if isinstance(command, Command) else command.command_name
        where = f" in reader '{reader}'" if reader else ""
        super().__init__(f"{name}{where} failed ({sw:04X}): {describe_sw(sw, command)}")

    @property
    def counts_as_failed_try(self) -> bool:
        """True for the IMPORT KEY answers that spent one of the EI's retry tries (CAS or SAS)."""
        ins = _command_ins(self.command)
        return ins == Ins.IMPORT_KEY and (
            self.sw & SW_VERIFY_FAILED_MASK == SW_VERIFY_FAILED_BASE
            or self.sw == SW.SECURITY_STATUS_NOT_SATISFIED
        )
