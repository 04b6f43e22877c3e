"""Reference implementation of the keyload cryptography (PROTOCOL.md §2 and §3): KDF, CMAC, key
blocks and check values, the test oracle for the applets and the host."""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from .errors import KeyloadError
from .protocol import (
    AES_BLOCK,
    FLAG_DIVERSIFY,
    HEADER_LENGTH,
    KCV8_LENGTH,
    KCV_LENGTH,
    KEY_BLOCK_FORMAT,
    KEY_LENGTHS,
    REF_NONE,
    SAS_LENGTH,
    SW,
    SW_VERIFY_FAILED_BASE,
    TRANSPORT_BLOCK_FORMAT,
    KeyBlockHeader,
    key_block_length,
    padded_length,
)

# KDF derivation constants (the byte "c" of §2).
LABEL_T1 = 0x10
LABEL_K_ENC = 0x11
LABEL_K_MAC = 0x12
LABEL_DIVERSIFY = 0x20

_KDF_LABEL_PREFIX = bytes(11)
"""SCP03 layout: 11 zero bytes before the derivation constant."""
_KDF_SEPARATOR = b"\x00"
_ZERO_IV = bytes(AES_BLOCK)


def aes_cmac(key: bytes, data: bytes) -> bytes:
    """AES-CMAC (NIST SP 800-38B), 16 bytes."""
    mac = cmac.CMAC(algorithms.AES(bytes(key)))
    mac.update(bytes(data))
    return mac.finalize()


def kdf(key: bytes, label: int, length: int, context: bytes) -> bytes:
    """NIST SP 800-108 counter mode, AES-CMAC PRF, SCP03 input layout; ``length`` in bytes.

    block_i = AES-CMAC(K, 00*11 || c || 00 || L(2 bytes, in bits) || i || ctx)
    """
    length_bits = (8 * length).to_bytes(2)
    output = b""
    counter = 1
    while len(output) < length:
        derivation_data = (
            _KDF_LABEL_PREFIX
            + bytes([label])
            + _KDF_SEPARATOR
            + length_bits
            + bytes([counter])
            + bytes(context)
        )
        output += aes_cmac(key, derivation_data)
        counter += 1
    return output[:length]


def derive_t1(transport_key: bytes, serial: bytes) -> bytes:
    """T1 = KDF(T, 0x10, 8·len(T), SN): the per-unit operation key."""
    return kdf(transport_key, LABEL_T1, len(transport_key), serial)


@dataclass(frozen=True)
class SessionKeys:
    """K_enc and K_mac of one export/import; ``repr`` hides them so they cannot be logged."""

    k_enc: bytes = field(repr=False)
    k_mac: bytes = field(repr=False)


def derive_session_keys(t1: bytes, challenge: bytes, ref2: int) -> SessionKeys:
    """K_enc, K_mac = KDF(T1, 0x11 / 0x12, 8·len(T), R || REF2); len(T1) = len(T)."""
    context = bytes(challenge) + bytes([ref2])
    return SessionKeys(
        k_enc=kdf(t1, LABEL_K_ENC, len(t1), context),
        k_mac=kdf(t1, LABEL_K_MAC, len(t1), context),
    )


def diversify(app_key: bytes, serial: bytes) -> bytes:
    """TA_unit = KDF(TA, 0x20, 8·len(TA), SN), for keys marked "diversify per unit"."""
    return kdf(app_key, LABEL_DIVERSIFY, len(app_key), serial)


def kcv8(key: bytes) -> bytes:
    """KCV8(K): leftmost 8 bytes of AES-CMAC(K, 16 zero bytes); the SAS of a key block."""
    return aes_cmac(key, bytes(AES_BLOCK))[:KCV8_LENGTH]


def kcv(key: bytes) -> bytes:
    """KCV(K): the 3-byte check value shown to people."""
    return kcv8(key)[:KCV_LENGTH]


def _aes_cbc(key: bytes, data: bytes, *, encrypt: bool) -> bytes:
    cipher = Cipher(algorithms.AES(bytes(key)), modes.CBC(_ZERO_IV))
    operation = cipher.encryptor() if encrypt else cipher.decryptor()
    return operation.update(bytes(data)) + operation.finalize()


def build_key_block(
    transport_key: bytes,
    app_key: bytes,
    serial: bytes,
    challenge: bytes,
    ref1: int,
    ref2: int,
    usage: int,
    version: int,
    diversify_per_unit: bool,
) -> bytes:
    """What the AS does for EXPORT KEY (§3, §4.2 step 5): header || encTA || SAS || CAS."""
    if len(app_key) not in KEY_LENGTHS or len(transport_key) not in KEY_LENGTHS:
        raise ValueError("keys must be 16, 24 or 32 bytes")
    if len(app_key) > len(transport_key):
        raise ValueError("an application key longer than the transport key is never exported")
    unit_key = diversify(app_key, serial) if diversify_per_unit else bytes(app_key)
    header = KeyBlockHeader(
        ref2=ref2,
        key_length=len(app_key),
        usage=usage,
        version=version,
        flags=FLAG_DIVERSIFY if diversify_per_unit else 0,
        ref1=ref1,
    ).encode()
    keys = derive_session_keys(derive_t1(transport_key, serial), challenge, ref2)
    padding = bytes(padded_length(len(unit_key)) - len(unit_key))
    enc_ta = _aes_cbc(keys.k_enc, unit_key + padding, encrypt=True)
    sas = kcv8(unit_key)
    cas = aes_cmac(keys.k_mac, header + enc_ta + sas)
    return header + enc_ta + sas + cas


class KeyBlockError(KeyloadError):
    """A key block the EI would refuse; ``sw`` is the status word the EI answers (§4.3).

    For a CAS mismatch ``sw`` is 63C0: this oracle keeps no retry counter, so x is always 0.
    """

    def __init__(self, sw: int, reason: str) -> None:
        super().__init__(f"{reason} ({sw:04X})")
        self.sw = sw
        self.reason = reason


@dataclass(frozen=True)
class OpenedKey:
    """A key block that passed every check: its header and the key as the slot stores it."""

    header: KeyBlockHeader
    key: bytes = field(repr=False)


def open_key_block(
    transport_key: bytes, serial: bytes, challenge: bytes, block: bytes
) -> OpenedKey:
    """What the EI does for IMPORT KEY (§4.3 steps 3, 5 and 8), without slots or retry counter.

    The CAS is compared in constant time before anything is decrypted, so a forged block never
    reaches the cipher; then the padding and the SAS are checked.
    """
    block = bytes(block)
    if len(block) < HEADER_LENGTH:
        raise KeyBlockError(SW.WRONG_LENGTH, "the key block is shorter than its header")
    header = KeyBlockHeader.parse(block)
    if header.format != KEY_BLOCK_FORMAT or header.key_length not in KEY_LENGTHS:
        raise KeyBlockError(SW.INCORRECT_DATA, "unknown key block format or key length")
    if len(block) != key_block_length(header.key_length):
        raise KeyBlockError(SW.WRONG_LENGTH, "the key block length does not match its key length")

    enc_end = HEADER_LENGTH + padded_length(header.key_length)
    enc_ta = block[HEADER_LENGTH:enc_end]
    sas = block[enc_end : enc_end + SAS_LENGTH]
    cas = block[enc_end + SAS_LENGTH :]

    keys = derive_session_keys(derive_t1(transport_key, serial), challenge, header.ref2)
    expected_cas = aes_cmac(keys.k_mac, block[: enc_end + SAS_LENGTH])
    if not hmac.compare_digest(expected_cas, cas):
        raise KeyBlockError(SW_VERIFY_FAILED_BASE, "the certificate (CAS) does not verify")

    padded_key = _aes_cbc(keys.k_enc, enc_ta, encrypt=False)
    key, padding = padded_key[: header.key_length], padded_key[header.key_length :]
    if any(padding):
        raise KeyBlockError(SW.INCORRECT_DATA, "the key padding is not zero")
    if not hmac.compare_digest(kcv8(key), sas):
        raise KeyBlockError(SW.SECURITY_STATUS_NOT_SATISFIED, "the key check value (SAS) differs")
    return OpenedKey(header=header, key=key)


# ------------------------------------------------------------------ transport key rotation (§9)


def transport_block_header(new_transport_key_length: int, version: int) -> KeyBlockHeader:
    """The header of a transport key block: format 02, the new T's length and version, REF2,
    usage, flags and REF1 all 00."""
    return KeyBlockHeader(
        ref2=REF_NONE,
        key_length=new_transport_key_length,
        usage=0,
        version=version,
        flags=0,
        ref1=REF_NONE,
        format=TRANSPORT_BLOCK_FORMAT,
    )


def build_transport_key_block(
    transport_key: bytes, new_transport_key: bytes, version: int, serial: bytes, challenge: bytes
) -> bytes:
    """What the AS does for EXPORT TRANSPORT KEY (§9): the new T sealed as an application key is
    (§3), under K_enc and K_mac derived from the current T, SN and R || 00."""
    if len(new_transport_key) not in KEY_LENGTHS or len(transport_key) not in KEY_LENGTHS:
        raise ValueError("keys must be 16, 24 or 32 bytes")
    if len(new_transport_key) < len(transport_key):
        raise ValueError("a new transport key is at least as long as the one it replaces")
    header = transport_block_header(len(new_transport_key), version).encode()
    keys = derive_session_keys(derive_t1(transport_key, serial), challenge, REF_NONE)
    padding = bytes(padded_length(len(new_transport_key)) - len(new_transport_key))
    enc_t = _aes_cbc(keys.k_enc, bytes(new_transport_key) + padding, encrypt=True)
    sas = kcv8(new_transport_key)
    cas = aes_cmac(keys.k_mac, header + enc_t + sas)
    return header + enc_t + sas + cas


def open_transport_key_block(
    transport_key: bytes, serial: bytes, challenge: bytes, block: bytes, current_version: int
) -> OpenedKey:
    """What the EI does for IMPORT TRANSPORT KEY (§9), without the retry counter: shape, CAS in
    constant time before any decryption, length, padding, SAS, then the version (only forward)."""
    block = bytes(block)
    if len(block) < HEADER_LENGTH:
        raise KeyBlockError(SW.WRONG_LENGTH, "the block is shorter than its header")
    header = KeyBlockHeader.parse(block)
    fields = (header.ref2, header.usage, header.flags, header.ref1)
    if (
        header.format != TRANSPORT_BLOCK_FORMAT
        or any(fields)
        or header.key_length not in KEY_LENGTHS
    ):
        raise KeyBlockError(SW.INCORRECT_DATA, "not a transport key block")
    if len(block) != key_block_length(header.key_length):
        raise KeyBlockError(SW.WRONG_LENGTH, "the block length does not match its key length")
    enc_end = HEADER_LENGTH + padded_length(header.key_length)
    keys = derive_session_keys(derive_t1(transport_key, serial), challenge, REF_NONE)
    expected_cas = aes_cmac(keys.k_mac, block[: enc_end + SAS_LENGTH])
    if not hmac.compare_digest(expected_cas, block[enc_end + SAS_LENGTH :]):
        raise KeyBlockError(SW_VERIFY_FAILED_BASE, "the certificate (CAS) does not verify")
    if header.key_length < len(transport_key):
        raise KeyBlockError(SW.INCORRECT_DATA, "the new transport key is shorter than the current")
    padded_key = _aes_cbc(keys.k_enc, block[HEADER_LENGTH:enc_end], encrypt=False)
    key, padding = padded_key[: header.key_length], padded_key[header.key_length :]
    if any(padding):
        raise KeyBlockError(SW.INCORRECT_DATA, "the key padding is not zero")
    if not hmac.compare_digest(kcv8(key), block[enc_end : enc_end + SAS_LENGTH]):
        raise KeyBlockError(SW.SECURITY_STATUS_NOT_SATISFIED, "the key check value (SAS) differs")
    if header.version <= current_version:
        raise KeyBlockError(SW.INCORRECT_DATA, "the version does not move forward")
    return OpenedKey(header=header, key=key)
