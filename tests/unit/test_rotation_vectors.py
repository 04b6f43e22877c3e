"""The reference crypto against the transport key rotation vectors of PROTOCOL.md §9.8, value by
value, and the EI's side (open_transport_key_block) on each of them, with its refusals."""

from __future__ import annotations

import pytest
from keyload_host import crypto
from keyload_host.protocol import SW, SW_VERIFY_FAILED_BASE
from protocol_vectors import RotationVector, rotation_vectors

VECTORS = rotation_vectors()


def test_the_document_gives_three_rotation_vectors() -> None:
    assert [vector.name for vector in VECTORS] == ["R1", "R2", "R3"]


@pytest.mark.parametrize("v", VECTORS, ids=lambda v: v.name)
def test_reference_crypto_reproduces_the_vector(v: RotationVector) -> None:
    assert crypto.kcv(v.transport_key) == v.transport_kcv
    assert crypto.kcv(v.new_transport_key) == v.new_transport_kcv
    t1 = crypto.derive_t1(v.transport_key, v.serial)
    keys = crypto.derive_session_keys(t1, v.challenge, 0x00)
    assert (t1, keys.k_enc, keys.k_mac) == (v.t1, v.k_enc, v.k_mac)
    block = crypto.build_transport_key_block(
        v.transport_key, v.new_transport_key, v.version, v.serial, v.challenge
    )
    assert block == v.header + v.enc_key + v.sas + v.cas
    assert v.export_response == block + SW.OK.to_bytes(2)
    data = v.challenge + bytes([len(v.serial)]) + v.serial
    assert v.export_apdu == bytes([0x80, 0x62, 0, 0, len(data)]) + data + b"\x00"
    assert v.import_apdu == bytes([0x80, 0x66, 0, 0, len(block)]) + block


@pytest.mark.parametrize("v", VECTORS, ids=lambda v: v.name)
def test_the_ei_side_opens_the_vector_and_refuses_its_variants(v: RotationVector) -> None:
    block = v.header + v.enc_key + v.sas + v.cas
    opened = crypto.open_transport_key_block(v.transport_key, v.serial, v.challenge, block, 1)
    assert (opened.key, opened.header.version) == (v.new_transport_key, v.version)
    refusals = {
        "replayed for another challenge": (v.serial, bytes(16), block, 1),
        "redirected to another EI": (bytes(8), v.challenge, block, 1),
        "an equal version": (v.serial, v.challenge, block, v.version),
    }
    expected = {
        "replayed for another challenge": SW_VERIFY_FAILED_BASE,
        "redirected to another EI": SW_VERIFY_FAILED_BASE,
        "an equal version": SW.INCORRECT_DATA,
    }
    for what, (serial, challenge, data, current) in refusals.items():
        with pytest.raises(crypto.KeyBlockError) as refused:
            crypto.open_transport_key_block(v.transport_key, serial, challenge, data, current)
        assert refused.value.sw == expected[what], what
    with pytest.raises(crypto.KeyBlockError) as refused:  # a block under another T
        crypto.open_transport_key_block(v.new_transport_key, v.serial, v.challenge, block, 1)
    assert refused.value.sw == SW_VERIFY_FAILED_BASE
