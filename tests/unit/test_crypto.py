"""The reference crypto against the three vectors of PROTOCOL.md §6 (read from the document),
value by value and APDU by APDU, and the key block opener against every kind of tampering."""

from __future__ import annotations

import pytest
from keyload_host import crypto
from keyload_host.cards import AsCard, EiCard
from keyload_host.protocol import SW, SW_VERIFY_FAILED_BASE, KeyBlockHeader, Usage
from keyload_host.transport import TransportStats
from protocol_vectors import ProtocolVector, protocol_vectors

VECTORS = protocol_vectors()


def build(v: ProtocolVector) -> bytes:
    return crypto.build_key_block(
        v.transport_key,
        v.app_key,
        v.serial,
        v.challenge,
        v.ref1,
        v.ref2,
        v.usage,
        v.version,
        v.diversify,
    )


class ScriptedTransport:
    """Records the command bytes and answers with one fixed response."""

    reader = "scripted"

    def __init__(self, response: bytes) -> None:
        self.response = response
        self.sent: list[bytes] = []
        self.stats = TransportStats()

    def transmit(self, apdu: bytes) -> bytes:
        self.sent.append(bytes(apdu))
        return self.response


vectors = pytest.mark.parametrize("v", VECTORS, ids=lambda v: v.name)


@vectors
def test_check_values(v: ProtocolVector) -> None:
    assert crypto.kcv(v.transport_key) == v.transport_kcv
    assert crypto.kcv(v.app_key) == v.app_key_kcv


@vectors
def test_derived_keys(v: ProtocolVector) -> None:
    t1 = crypto.derive_t1(v.transport_key, v.serial)
    assert t1 == v.t1
    keys = crypto.derive_session_keys(t1, v.challenge, v.ref2)
    assert keys.k_enc == v.k_enc
    assert keys.k_mac == v.k_mac


@pytest.mark.parametrize("v", [v for v in VECTORS if v.diversify], ids=lambda v: v.name)
def test_diversification(v: ProtocolVector) -> None:
    assert v.unit_key is not None
    unit_key = crypto.diversify(v.app_key, v.serial)
    assert unit_key == v.unit_key
    assert crypto.kcv(unit_key) == v.unit_key_kcv


@vectors
def test_key_block_fields(v: ProtocolVector) -> None:
    block = build(v)
    header_end, sas_start = 8, len(block) - 24
    assert block[:header_end] == v.header
    assert block[header_end:sas_start] == v.enc_key
    assert block[sas_start:-16] == v.sas
    assert block[-16:] == v.cas
    assert crypto.kcv8(v.unit_key or v.app_key) == v.sas


@vectors
def test_export_apdu_and_response(v: ProtocolVector) -> None:
    transport = ScriptedTransport(v.export_response)
    block = AsCard(transport).export_key(v.ref1, v.ref2, v.challenge, v.serial)
    assert transport.sent == [v.export_apdu]
    assert block == build(v)
    assert block + b"\x90\x00" == v.export_response


@vectors
def test_import_apdu(v: ProtocolVector) -> None:
    transport = ScriptedTransport(b"\x90\x00")
    EiCard(transport).import_key(build(v))
    assert transport.sent == [v.import_apdu]


@vectors
def test_open_key_block_returns_the_unit_key(v: ProtocolVector) -> None:
    opened = crypto.open_key_block(v.transport_key, v.serial, v.challenge, build(v))
    assert opened.key == (v.unit_key or v.app_key)
    assert opened.header == KeyBlockHeader.parse(v.header)
    assert v.app_key.hex().upper() not in repr(opened)
    assert (v.unit_key or v.app_key).hex() not in repr(opened).lower()


V1 = VECTORS[0]
V1_BLOCK = build(V1)


@pytest.mark.parametrize("position", range(len(V1_BLOCK)))
def test_open_key_block_rejects_every_tampered_byte(position: int) -> None:
    tampered = bytearray(V1_BLOCK)
    tampered[position] ^= 0x01
    with pytest.raises(crypto.KeyBlockError) as caught:
        crypto.open_key_block(V1.transport_key, V1.serial, V1.challenge, bytes(tampered))
    # Format (0) and key length (2) are refused from the header; anything else fails the CAS.
    expected = SW.INCORRECT_DATA if position in (0, 2) else SW_VERIFY_FAILED_BASE
    assert caught.value.sw == expected


@pytest.mark.parametrize(
    ("t", "sn", "r"),
    [
        (VECTORS[2].transport_key[:16], V1.serial, V1.challenge),
        (V1.transport_key, bytes.fromhex("4B4C000000000002"), V1.challenge),
        (V1.transport_key, V1.serial, bytes(16)),
    ],
    ids=["other transport key", "other serial", "other challenge"],
)
def test_open_key_block_rejects_other_context(t: bytes, sn: bytes, r: bytes) -> None:
    with pytest.raises(crypto.KeyBlockError) as caught:
        crypto.open_key_block(t, sn, r, V1_BLOCK)
    assert caught.value.sw == SW_VERIFY_FAILED_BASE


@pytest.mark.parametrize("length", [0, 7, len(V1_BLOCK) - 1, len(V1_BLOCK) + 1])
def test_open_key_block_rejects_wrong_lengths(length: int) -> None:
    block = (V1_BLOCK + bytes(1))[:length]
    with pytest.raises(crypto.KeyBlockError) as caught:
        crypto.open_key_block(V1.transport_key, V1.serial, V1.challenge, block)
    assert caught.value.sw == SW.WRONG_LENGTH


def test_open_key_block_never_decrypts_when_the_cas_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    decryptions = []
    real = crypto._aes_cbc
    monkeypatch.setattr(
        crypto,
        "_aes_cbc",
        lambda key, data, *, encrypt: (
            decryptions.append(encrypt) or real(key, data, encrypt=encrypt)
        ),
    )
    tampered = V1_BLOCK[:-1] + bytes([V1_BLOCK[-1] ^ 0xFF])
    with pytest.raises(crypto.KeyBlockError):
        crypto.open_key_block(V1.transport_key, V1.serial, V1.challenge, tampered)
    assert decryptions == []


def _resealed(plain: bytes, sas: bytes) -> bytes:
    """A V1 block with chosen plaintext (key || padding) and SAS, under a valid CAS."""
    keys = crypto.derive_session_keys(
        crypto.derive_t1(V1.transport_key, V1.serial), V1.challenge, V1.ref2
    )
    body = V1.header + crypto._aes_cbc(keys.k_enc, plain, encrypt=True) + sas
    return body + crypto.aes_cmac(keys.k_mac, body)


def test_open_key_block_rejects_a_wrong_sas_under_a_valid_cas() -> None:
    block = _resealed(V1.app_key, bytes(8))
    with pytest.raises(crypto.KeyBlockError) as caught:
        crypto.open_key_block(V1.transport_key, V1.serial, V1.challenge, block)
    assert caught.value.sw == SW.SECURITY_STATUS_NOT_SATISFIED


def test_open_key_block_rejects_nonzero_padding() -> None:
    v = VECTORS[1]  # 24-byte key: 8 padding bytes
    t, sn, r = v.transport_key, v.serial, v.challenge
    keys = crypto.derive_session_keys(crypto.derive_t1(t, sn), r, v.ref2)
    unit = v.unit_key
    body = v.header + crypto._aes_cbc(keys.k_enc, unit + b"\x01" * 8, encrypt=True)
    body += crypto.kcv8(unit)
    with pytest.raises(crypto.KeyBlockError) as caught:
        crypto.open_key_block(t, sn, r, body + crypto.aes_cmac(keys.k_mac, body))
    assert caught.value.sw == SW.INCORRECT_DATA


def test_a_key_longer_than_the_transport_key_is_never_exported() -> None:
    with pytest.raises(ValueError, match="longer than the transport key"):
        crypto.build_key_block(
            V1.transport_key, VECTORS[2].app_key, V1.serial, V1.challenge, 1, 1, Usage.MAC, 1, False
        )


def test_session_keys_repr_hides_the_keys() -> None:
    keys = crypto.derive_session_keys(V1.t1, V1.challenge, V1.ref2)
    assert V1.k_enc.hex() not in repr(keys).lower()
    assert V1.k_mac.hex() not in repr(keys).lower()
