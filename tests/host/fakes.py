"""Test doubles: a small Python model of the AS and EI applets behind a fake transport.

The model answers APDUs as PROTOCOL.md §4 says (only what the host tests need), using the
reference crypto (itself checked against the §6 vectors), so the host's cards, workflow and CLI
run unchanged on top of it. Every APDU sent is recorded, so tests can assert what went over the
wire (e.g. that no IMPORT KEY was sent after a refused preflight).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from keyload_host import crypto
from keyload_host.protocol import (
    AID_AS,
    AID_EI,
    EXPORT_LIMIT_UNLIMITED,
    FLAG_DIVERSIFY,
    PROTOCOL_VERSION,
    SW,
    SW_VERIFY_FAILED_BASE,
    Ins,
    LifeCycle,
    Role,
    SlotState,
    Usage,
    key_block_length,
)
from keyload_host.transport import CardRemovedError, TransportStats

_Opened = TypeVar("_Opened")

T16 = bytes.fromhex("404142434445464748494A4B4C4D4E4F")
OTHER_T16 = bytes(range(0x60, 0x70))
PIN = b"1234"


class Answer(Exception):
    """Raised inside the model to answer with a status word."""

    def __init__(self, sw: int) -> None:
        self.sw = sw


@dataclass
class AppKey:
    key: bytes
    usage: Usage
    version: int
    diversify: bool = False
    limit: int = EXPORT_LIMIT_UNLIMITED
    count: int = 0


@dataclass
class Slot:
    key_length: int
    usage: Usage
    accepts_import: bool = True
    key: bytes | None = None
    version: int = 0


@dataclass
class FakeApplet:
    role: Role
    life_cycle: LifeCycle = LifeCycle.OPERATIONAL
    transport_key: bytes | None = T16
    serial: bytes = b""
    pin: bytes | None = PIN
    tries: int = 3
    try_limit: int = 3
    keys: dict[int, AppKey] = field(default_factory=dict)
    slots: dict[int, Slot] = field(default_factory=dict)
    reported_kcv: bytes | None = None
    """When set, INFO reports this transport KCV instead of the real one (a lying card)."""
    import_answer: int | None = None
    """When set, IMPORT KEY answers this status word instead of loading (e.g. 6982, SAS wrong)."""
    selected: bool = False
    pin_verified: bool = False
    p1p2: int = 0
    """P1P2 of the command being handled."""
    challenge: bytes | None = None
    transport_version: int = 1
    """§9: T's version; the AS's next T (None: none held) and its version."""
    next_transport_key: bytes | None = None
    next_transport_version: int = 0

    @property
    def aid(self) -> bytes:
        return AID_AS if self.role == Role.AS else AID_EI

    def info(self) -> bytes:
        t_length = len(self.transport_key) if self.transport_key else 0
        kcv = self.reported_kcv or (
            crypto.kcv(self.transport_key) if self.transport_key else bytes(3)
        )
        count = len(self.keys) if self.role == Role.AS else len(self.slots)
        return (
            bytes([PROTOCOL_VERSION, self.role, self.life_cycle, t_length])
            + kcv
            + bytes([self.tries, self.try_limit, count, len(self.serial)])
            + self.serial
            + (self.transport_version if self.transport_key else 0).to_bytes(2)
            + bytes([len(self.next_transport_key or b"")])
            + (crypto.kcv(self.next_transport_key) if self.next_transport_key else bytes(3))
            + self.next_transport_version.to_bytes(2)
        )

    def list_keys(self) -> bytes:
        out = b""
        if self.role == Role.AS:
            for ref, key in sorted(self.keys.items()):
                out += (
                    bytes([ref, SlotState.LOADED, len(key.key), key.usage])
                    + key.version.to_bytes(2)
                    + bytes([FLAG_DIVERSIFY if key.diversify else 0])
                    + crypto.kcv(key.key)
                    + key.count.to_bytes(2)
                    + key.limit.to_bytes(2)
                )
        else:
            for ref, slot in sorted(self.slots.items()):
                loaded = slot.key is not None
                out += (
                    bytes([ref, SlotState.LOADED if loaded else SlotState.EMPTY])
                    + bytes([slot.key_length, slot.usage])
                    + slot.version.to_bytes(2)
                    + bytes([1 if slot.accepts_import else 0])
                    + (crypto.kcv(slot.key) if loaded else bytes(3))
                    + bytes(4)
                )
        return out

    def require(self, state: LifeCycle) -> None:
        if self.life_cycle != state:
            raise Answer(SW.CONDITIONS_NOT_SATISFIED)

    def handle(self, ins: int, p2: int, data: bytes) -> bytes:
        if ins == Ins.SELECT:
            if data != self.aid:
                self.selected = False
                raise Answer(SW.APPLET_NOT_FOUND)
            self.selected, self.pin_verified, self.challenge = True, False, None
            return self.info()
        if not self.selected:
            raise Answer(SW.INS_NOT_SUPPORTED)
        handler = getattr(self, f"do_{Ins(ins).name.lower()}", None)
        if handler is None:
            raise Answer(SW.INS_NOT_SUPPORTED)
        return handler(p2, data) or b""

    def do_get_info(self, _p2: int, _data: bytes) -> bytes:
        return self.info()

    def do_list_keys(self, _p2: int, _data: bytes) -> bytes:
        return self.list_keys()

    def do_set_transport_key(self, _p2: int, data: bytes) -> None:
        self.require(LifeCycle.SETUP)
        self.transport_key = data

    def do_set_serial(self, _p2: int, data: bytes) -> None:
        self.require(LifeCycle.SETUP)
        self.serial = data

    def do_set_pin(self, _p2: int, data: bytes) -> None:
        self.require(LifeCycle.SETUP)
        self.pin = data

    def do_set_retry_limit(self, _p2: int, data: bytes) -> None:
        self.require(LifeCycle.SETUP)
        self.tries = self.try_limit = data[0]

    def do_put_app_key(self, _p2: int, data: bytes) -> None:
        self.require(LifeCycle.SETUP)
        self.keys[data[0]] = AppKey(
            key=data[7:],
            usage=Usage(data[1]),
            version=int.from_bytes(data[2:4]),
            diversify=bool(data[4] & FLAG_DIVERSIFY),
            limit=int.from_bytes(data[5:7]),
        )

    def do_define_slot(self, _p2: int, data: bytes) -> None:
        self.require(LifeCycle.SETUP)
        self.slots[data[0]] = Slot(data[1], Usage(data[2]), bool(data[3] & 1))

    def do_lock(self, _p2: int, _data: bytes) -> None:
        self.require(LifeCycle.SETUP)
        self.life_cycle = LifeCycle.OPERATIONAL

    def do_verify(self, _p2: int, data: bytes) -> None:
        self.require(LifeCycle.OPERATIONAL)
        if self.tries == 0:
            raise Answer(SW.BLOCKED)
        if data != self.pin:
            self.tries -= 1
            raise Answer(SW_VERIFY_FAILED_BASE | self.tries)
        self.tries, self.pin_verified = self.try_limit, True

    def _transport_key_for(self, p1p2: int) -> bytes:
        if p1p2 in (0, self.transport_version):
            return self.transport_key
        if self.next_transport_key and p1p2 == self.next_transport_version:
            return self.next_transport_key
        raise Answer(SW.INCORRECT_P1P2)

    def do_export_key(self, _p2: int, data: bytes) -> bytes:
        transport_key = self._transport_key_for(self.p1p2)
        self.require(LifeCycle.OPERATIONAL)
        if not self.pin_verified:
            raise Answer(SW.SECURITY_STATUS_NOT_SATISFIED)
        ref1, ref2, challenge, serial = data[0], data[1], data[2:18], data[19:]
        key = self.keys.get(ref1)
        if key is None:
            raise Answer(SW.REFERENCED_DATA_NOT_FOUND)
        if len(key.key) > len(self.transport_key):
            raise Answer(SW.CONDITIONS_NOT_SATISFIED)
        if key.limit != EXPORT_LIMIT_UNLIMITED and key.count >= key.limit:
            raise Answer(SW.BLOCKED)
        key.count += 1
        return crypto.build_key_block(
            transport_key,
            key.key,
            serial,
            challenge,
            ref1,
            ref2,
            key.usage,
            key.version,
            key.diversify,
        )

    def do_get_challenge(self, _p2: int, _data: bytes) -> bytes:
        self.require(LifeCycle.OPERATIONAL)
        self.challenge = os.urandom(16)
        return self.challenge

    def _spend_challenge(self) -> bytes:
        """What an IMPORT checks first, as the EI does: not BLOCKED, OPERATIONAL, a challenge;
        the challenge is spent whatever follows."""
        if self.tries == 0:
            raise Answer(SW.BLOCKED)
        self.require(LifeCycle.OPERATIONAL)
        if self.challenge is None:
            raise Answer(SW.CONDITIONS_NOT_SATISFIED)
        challenge, self.challenge = self.challenge, None
        return challenge

    def _open(self, open_block: Callable[[], _Opened]) -> _Opened:
        """The block opened by ``open_block``; a block that fails verification spends a try."""
        try:
            return open_block()
        except crypto.KeyBlockError as error:
            if error.sw == SW_VERIFY_FAILED_BASE:
                self.tries -= 1
                raise Answer(SW_VERIFY_FAILED_BASE | self.tries) from None
            raise Answer(error.sw) from None

    def do_import_key(self, _p2: int, data: bytes) -> None:
        challenge = self._spend_challenge()
        if self.import_answer is not None:
            raise Answer(self.import_answer)
        if len(data) < 8 or len(data) != key_block_length(data[2]):
            raise Answer(SW.WRONG_LENGTH)
        opened = self._open(
            lambda: crypto.open_key_block(self.transport_key, self.serial, challenge, data)
        )
        slot = self.slots.get(opened.header.ref2)
        if slot is None:
            raise Answer(SW.REFERENCED_DATA_NOT_FOUND)
        if not slot.accepts_import:
            raise Answer(SW.COMMAND_NOT_ALLOWED)
        if opened.header.version < slot.version:
            raise Answer(SW.INCORRECT_DATA)
        slot.key, slot.version = opened.key, opened.header.version

    def do_export_transport_key(self, _p2: int, data: bytes) -> bytes:
        self.require(LifeCycle.OPERATIONAL)
        if not self.pin_verified:
            raise Answer(SW.SECURITY_STATUS_NOT_SATISFIED)
        if self.next_transport_key is None:
            raise Answer(SW.REFERENCED_DATA_NOT_FOUND)
        challenge, serial = data[:16], data[17:]
        return crypto.build_transport_key_block(
            self.transport_key,
            self.next_transport_key,
            self.next_transport_version,
            serial,
            challenge,
        )

    def do_retire_transport_key(self, _p2: int, data: bytes) -> None:
        self.require(LifeCycle.OPERATIONAL)
        if not self.pin_verified:
            raise Answer(SW.SECURITY_STATUS_NOT_SATISFIED)
        if self.next_transport_key is None:
            raise Answer(SW.REFERENCED_DATA_NOT_FOUND)
        if int.from_bytes(data) != self.next_transport_version:
            raise Answer(SW.INCORRECT_DATA)
        self.transport_key, self.transport_version = self.next_transport_key, int.from_bytes(data)
        self.next_transport_key, self.next_transport_version = None, 0

    def do_import_transport_key(self, _p2: int, data: bytes) -> None:
        challenge = self._spend_challenge()
        opened = self._open(
            lambda: crypto.open_transport_key_block(
                self.transport_key, self.serial, challenge, data, self.transport_version
            )
        )
        self.transport_key, self.transport_version = opened.key, opened.header.version

    def do_internal_authenticate(self, p2: int, data: bytes) -> bytes:
        slot = self.slots.get(p2)
        if slot is None or slot.key is None:
            raise Answer(SW.REFERENCED_DATA_NOT_FOUND)
        return crypto.aes_cmac(slot.key, data)


@dataclass
class FakeTransport:
    """A reader holding a ``FakeApplet``; records every APDU and can pull the card."""

    reader: str
    applet: FakeApplet | None
    protocol: str = "T=1"
    stats: TransportStats = field(default_factory=TransportStats)
    sent: list[bytes] = field(default_factory=list)
    remove_at: int | None = None
    """Pull the card when this APDU (1-based count of this transport) is sent."""

    def transmit(self, apdu: bytes) -> bytes:
        apdu = bytes(apdu)
        if self.applet is None or (
            self.remove_at is not None and len(self.sent) + 1 >= self.remove_at
        ):
            self.applet = None
            raise CardRemovedError(f"the card was removed from reader '{self.reader}'")
        self.sent.append(apdu)
        ins, p2 = apdu[1], apdu[3]
        if self.applet is not None:
            self.applet.p1p2 = int.from_bytes(apdu[2:4])
        data = apdu[5 : 5 + apdu[4]] if len(apdu) > 5 else b""
        try:
            response = self.applet.handle(ins, p2, data) + SW.OK.to_bytes(2)
        except Answer as answer:
            response = answer.sw.to_bytes(2)
        self.stats.count(len(apdu), len(response))
        return response

    def instructions(self) -> list[str]:
        return [Ins(apdu[1]).name for apdu in self.sent]

    # Context manager and disconnect, as PcscTransport.
    def disconnect(self) -> None:
        if self.applet:
            self.applet.selected = False

    def __enter__(self) -> FakeTransport:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.disconnect()


def make_as(**keys: AppKey) -> FakeApplet:
    """An OPERATIONAL AS holding ``keys`` (by name ``k03`` -> REF1 0x03)."""
    return FakeApplet(Role.AS, keys={int(name[1:], 16): key for name, key in keys.items()})


def make_ei(serial: bytes, **slots: Slot) -> FakeApplet:
    """An OPERATIONAL EI with ``slots`` (by name ``s01`` -> REF2 0x01), tries 10/10."""
    return FakeApplet(
        Role.EI,
        serial=serial,
        pin=None,
        tries=10,
        try_limit=10,
        slots={int(name[1:], 16): slot for name, slot in slots.items()},
    )
