"""The adversarial suite's bench: the simulated station's cards through pyscard and pcscd, the
suite's known secrets (cards are set up with them through ``keyload_station.cardset``), raw
APDUs, snapshots of what a card stores, and key blocks forged with the reference crypto.

Every test module of the suite brings its own station up (one per module, down at the end), so
the modules stay independent and each can be run alone.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from keyload_host import crypto
from keyload_host.apdu import Command, Response
from keyload_host.cards import AsCard, EiCard
from keyload_host.config import SlotConfig
from keyload_host.protocol import (
    AES_BLOCK,
    CHALLENGE_LENGTH,
    CLA_ISO,
    CLA_PROPRIETARY,
    FLAG_ACCEPTS_IMPORT,
    FLAG_DIVERSIFY,
    KEY_BLOCK_FORMAT,
    KEY_ENTRY_LENGTH,
    SW,
    SW_VERIFY_FAILED_BASE,
    SW_VERIFY_FAILED_MASK,
    Info,
    Ins,
    KeyBlockHeader,
    KeyEntry,
    LifeCycle,
    Usage,
    key_block_length,
    padded_length,
    parse_key_list,
)
from keyload_host.transport import Pcsc, PcscTransport
from keyload_station import supervisor as station
from keyload_station.cardset import AppKey, SetSecrets

# Test secrets: they exist only on the simulated cards of this suite.
TRANSPORT_KEY = bytes.fromhex("A0A1A2A3A4A5A6A7A8A9AAABACADAEAFB0B1B2B3B4B5B6B7B8B9BABBBCBDBEBF")
OTHER_SET_TRANSPORT_KEY = bytes.fromhex(
    "C0C1C2C3C4C5C6C7C8C9CACBCCCDCECFD0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF"
)
SHORT_TRANSPORT_KEY = bytes.fromhex("E0E1E2E3E4E5E6E7E8E9EAEBECEDEEEF")
PIN = b"2468"
WRONG_PIN = b"1357"
TEST_SET = SetSecrets(TRANSPORT_KEY, PIN)
"""The suite's set, for ``cardset.set_up_as`` and ``set_up_ei`` (its keys bring their values)."""
OTHER_SET = SetSecrets(OTHER_SET_TRANSPORT_KEY, PIN)
SHORT_T_SET = SetSecrets(SHORT_TRANSPORT_KEY, PIN)
"""A set whose transport key (AES-128) is shorter than some of its keys."""

INFO_STATE = 2
INFO_TRIES = 7
ENTRY_COUNT = slice(10, 12)
"""Offsets in INFO and in a LIST KEYS entry of the counters §4 lets a refusal move."""

LE_ANY = 256
"""Le of a short case 2/4 APDU asking for up to 256 bytes (sent as 00)."""


# ------------------------------------------------------------------------------ station


class Bench:
    """Open PC/SC connections to the station's readers, reopened after card events."""

    def __init__(self, roles: Sequence[str]) -> None:
        self.roles = list(roles)
        self.readers = [station.reader_name(index) for index in range(len(roles))]
        self._pcsc: Pcsc | None = None
        self._transports: dict[int, PcscTransport] = {}

    @property
    def pcsc(self) -> Pcsc:
        if self._pcsc is None:
            self._pcsc = Pcsc()
        return self._pcsc

    def transport(self, index: int) -> PcscTransport:
        if index not in self._transports:
            self._transports[index] = self.pcsc.connect(self.readers[index])
        return self._transports[index]

    def as_card(self, index: int) -> AsCard:
        return AsCard(self.transport(index))

    def ei_card(self, index: int) -> EiCard:
        return EiCard(self.transport(index))

    def disconnect(self, index: int) -> None:
        transport = self._transports.pop(index, None)
        if transport is not None:
            transport.disconnect()

    def close(self) -> None:
        """Release every connection and the context (before another program needs the cards)."""
        for index in list(self._transports):
            self.disconnect(index)
        if self._pcsc is not None:
            self._pcsc.close()
            self._pcsc = None

    def fresh(self, index: int) -> None:
        """A new blank card (SETUP) of the reader's role, also into a reader a test left empty."""
        self.disconnect(index)
        station.swap(self.readers[index], self.roles[index])

    def power_cycle(self, index: int) -> None:
        """The card leaves the reader and comes back: a power loss, persistent state kept."""
        self.disconnect(index)
        station.remove(self.readers[index])
        station.reinsert(self.readers[index])

    def warm_reset(self, index: int) -> None:
        self.transport(index).reconnect(reset=True)


# ------------------------------------------------------------------------------ key loads


def export_for(as_card: AsCard, ei_card: EiCard, ref1: int, ref2: int) -> tuple[bytes, bytes]:
    """GET CHALLENGE on the EI, then EXPORT KEY on the (PIN-verified) AS: (R, key block)."""
    challenge = ei_card.get_challenge()
    serial = ei_card.get_info().serial
    return challenge, as_card.export_key(ref1, ref2, challenge, serial)


def load(as_card: AsCard, ei_card: EiCard, ref1: int, ref2: int) -> bytes:
    """The three APDUs of one key load; raises CardError on a refusal. Returns the block."""
    _challenge, block = export_for(as_card, ei_card, ref1, ref2)
    ei_card.import_key(block)
    return block


# ------------------------------------------------------------------------------ raw APDUs


def exchange(transport: PcscTransport, apdu: bytes) -> Response:
    """Send raw bytes, no T=0 handling: the station's readers are T=1."""
    return Response.parse(transport.transmit(bytes(apdu)))


def command(
    cla: int, ins: int, p1: int = 0, p2: int = 0, data: bytes = b"", le: int | None = None
) -> bytes:
    """A short APDU as the host library encodes it."""
    return bytes(Command(cla, ins, p1, p2, data, le).encode())


def proprietary(ins: Ins, data: bytes = b"", le: int | None = None) -> bytes:
    return command(CLA_PROPRIETARY, ins, data=data, le=le)


GET_INFO = command(CLA_PROPRIETARY, Ins.GET_INFO, le=LE_ANY)
LIST_KEYS = command(CLA_PROPRIETARY, Ins.LIST_KEYS, le=LE_ANY)
GET_CHALLENGE = command(CLA_ISO, Ins.GET_CHALLENGE, le=CHALLENGE_LENGTH)


_FORGED_HEADER = bytes([KEY_BLOCK_FORMAT, 0x01, 16, Usage.AUTHENTICATE, 0, 1, 0, 0x03])
WELL_FORMED_FORGERY = _FORGED_HEADER + bytes(key_block_length(16) - len(_FORGED_HEADER))
"""A key block of the right format and length for an AES-128 key whose CAS is wrong: it reaches
the CAS check and spends a try."""


def export_data(ref1: int, ref2: int, challenge: bytes, serial: bytes) -> bytes:
    """EXPORT KEY command data: REF1, REF2, R, len(SN), SN."""
    return bytes([ref1, ref2]) + challenge + bytes([len(serial)]) + serial


def verify_apdu(pin: bytes) -> bytes:
    return command(CLA_ISO, Ins.VERIFY, 0, 0x81, pin)


# ------------------------------------------------------------------------------ snapshots


@dataclass(frozen=True)
class Snapshot:
    """INFO and LIST KEYS as a card sends them: everything it stores that the protocol shows."""

    info: bytes
    keys: bytes

    @property
    def tries(self) -> int:
        return self.info[INFO_TRIES]

    @property
    def life_cycle(self) -> LifeCycle:
        return LifeCycle(self.info[INFO_STATE])

    @property
    def parsed_info(self) -> Info:
        return Info.parse(self.info)

    def entries(self) -> dict[int, KeyEntry]:
        return {entry.ref: entry for entry in parse_key_list(self.keys)}

    def without_tries(self) -> Snapshot:
        """The snapshot with the try counter and the life cycle (BLOCKED follows the counter on
        an EI) blanked: what a refusal that spends a try must leave unchanged."""
        info = bytearray(self.info)
        info[INFO_TRIES] = info[INFO_STATE] = 0
        return Snapshot(bytes(info), self.keys)

    def without_export_counts(self) -> Snapshot:
        """The snapshot with the AS export counters blanked."""
        keys = bytearray(self.keys)
        for offset in range(0, len(keys), KEY_ENTRY_LENGTH):
            keys[offset + ENTRY_COUNT.start : offset + ENTRY_COUNT.stop] = b"\0\0"
        return Snapshot(self.info, bytes(keys))


def snapshot(transport: PcscTransport) -> Snapshot:
    """GET INFO and LIST KEYS of the selected applet."""
    info, keys = exchange(transport, GET_INFO), exchange(transport, LIST_KEYS)
    assert (info.sw, keys.sw) == (SW.OK, SW.OK), f"GET INFO {info.sw:04X}, LIST KEYS {keys.sw:04X}"
    return Snapshot(info.data, keys.data)


def is_verification_failure(sw: int) -> bool:
    return sw & SW_VERIFY_FAILED_MASK == SW_VERIFY_FAILED_BASE


def refused(
    transport: PcscTransport, apdu: bytes, sw: int, *, spends_try: bool = False
) -> Response:
    """Send ``apdu``; it must be answered ``sw`` and leave INFO and LIST KEYS byte for byte as
    they were; when ``spends_try``, the try counter must have gone down by exactly one (and a
    63Cx must name the tries left), and only it and the life cycle may differ."""
    before = snapshot(transport)
    response = exchange(transport, apdu)
    after = snapshot(transport)
    assert f"{response.sw:04X}" == f"{sw:04X}", f"{apdu.hex().upper()}: answered {response.sw:04X}"
    assert response.data == b"", f"{apdu.hex().upper()}: a refusal carries no data"
    if spends_try:
        assert after.tries == before.tries - 1, f"tries {before.tries} -> {after.tries}"
        assert after.without_tries() == before.without_tries(), (
            f"{apdu.hex().upper()} changed state"
        )
        if is_verification_failure(sw):
            assert sw & ~SW_VERIFY_FAILED_MASK == after.tries
    else:
        assert after == before, f"{apdu.hex().upper()} changed what the card stores"
    return response


# ------------------------------------------------------------------------------ forged key blocks


def _cbc_encrypt(key: bytes, data: bytes) -> bytes:
    encryptor = Cipher(algorithms.AES(key), modes.CBC(bytes(AES_BLOCK))).encryptor()
    return encryptor.update(data) + encryptor.finalize()


def forge_block(
    transport_key: bytes,
    serial: bytes,
    challenge: bytes,
    header: KeyBlockHeader,
    key: bytes,
    *,
    padding: bytes | None = None,
    sas: bytes | None = None,
) -> bytes:
    """A key block built as the AS would (§3) from values the test chooses, with a valid CAS:
    it lets a test reach the EI's checks after the CAS (slot, padding, SAS, version) with one
    field wrong. ``padding`` replaces the zero padding, ``sas`` the key's KCV8."""
    keys = crypto.derive_session_keys(
        crypto.derive_t1(transport_key, serial), challenge, header.ref2
    )
    if padding is None:
        padding = bytes(padded_length(len(key)) - len(key))
    enc_ta = _cbc_encrypt(keys.k_enc, key + padding)
    body = header.encode() + enc_ta + (crypto.kcv8(key) if sas is None else sas)
    return body + crypto.aes_cmac(keys.k_mac, body)


def header_for(key: AppKey, ref2: int, **changes: int) -> KeyBlockHeader:
    """The header the AS would write for ``key`` into ``ref2``, with fields changed."""
    fields = {
        "ref2": ref2,
        "key_length": len(key.key),
        "usage": key.usage,
        "version": key.version,
        "flags": FLAG_DIVERSIFY if key.diversify else 0,
        "ref1": key.ref1,
        "format": KEY_BLOCK_FORMAT,
    }
    fields.update(changes)
    return KeyBlockHeader(**fields)


def flags_of(slot: SlotConfig) -> int:
    return FLAG_ACCEPTS_IMPORT if slot.accepts_import else 0


def wait_for(condition: callable, timeout: float = 5.0, what: str = "condition") -> None:
    """Poll ``condition`` until true (for PC/SC events that pcscd notices on its next poll)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
