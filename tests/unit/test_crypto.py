"""The reference crypto against the three vectors of PROTOCOL.md §6, value by value and APDU by
APDU, and the key block opener against every kind of tampering."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from keyload_host import crypto
from keyload_host.cards import AsCard, EiCard
from keyload_host.protocol import SW, SW_VERIFY_FAILED_BASE, KeyBlockHeader, Usage
from keyload_host.transport import TransportStats


@dataclass(frozen=True)
class Vector:
    name: str
    t: str
    t_kcv: str
    ta: str
    ta_kcv: str
    sn: str
    r: str
    ref1: int
    ref2: int
    usage: Usage
    version: int
    diversify: bool
    t1: str
    k_enc: str
    k_mac: str
    ta_unit: str | None
    ta_unit_kcv: str | None
    header: str
    enc_ta: str
    sas: str
    cas: str
    export_apdu: str
    export_response: str
    import_apdu: str


VECTORS = [
    Vector(
        name="V1",
        t="404142434445464748494A4B4C4D4E4F",
        t_kcv="6F2F9B",
        ta="00112233445566778899AABBCCDDEEFF",
        ta_kcv="53E107",
        sn="4B4C000000000001",
        r="A0A1A2A3A4A5A6A7A8A9AAABACADAEAF",
        ref1=0x03,
        ref2=0x01,
        usage=Usage.AUTHENTICATE,
        version=0x0001,
        diversify=False,
        t1="013CA1DB1D329220572792EF00E42E03",
        k_enc="5AAB6B2A635F2E917FEECAEF25C667DE",
        k_mac="999EA8A1A9436AE12CF403145A48A110",
        ta_unit=None,
        ta_unit_kcv=None,
        header="0101100100010003",
        enc_ta="36DF2DB8E3A3994B2875179A97663F74",
        sas="53E107B36EF2C538",
        cas="B24531CF90F085F41454F3C35D4DFE3E",
        export_apdu="804A00001B0301A0A1A2A3A4A5A6A7A8A9AAABACADAEAF084B4C00000000000100",
        export_response="010110010001000336DF2DB8E3A3994B2875179A97663F7453E107B36EF2C538"
        "B24531CF90F085F41454F3C35D4DFE3E9000",
        import_apdu="804C000030010110010001000336DF2DB8E3A3994B2875179A97663F7453E107B36EF2C538"
        "B24531CF90F085F41454F3C35D4DFE3E",
    ),
    Vector(
        name="V2",
        t="000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F",
        t_kcv="377822",
        ta="8E73B0F7DA0E6452C810F32B809079E562F8EAD2522C6B7B",
        ta_kcv="3A072A",
        sn="0123456789ABCDEFFEDCBA9876543210",
        r="0F0E0D0C0B0A09080706050403020100",
        ref1=0x10,
        ref2=0x05,
        usage=Usage.MAC,
        version=0x0102,
        diversify=True,
        t1="ABB6433874DB1EFE7FF5EE3B114ED3A889BF2B1429E912E6A130725D8172E321",
        k_enc="0A833044DD5D6B391FF3E369BBDDE45F8ADDFF8E942FBA16B1E81A232A56803C",
        k_mac="4E1D10B6F6D7FC769B22AB88317F9D9915FFF41E2C6FCE39E1AC4E8F2524C51C",
        ta_unit="D2B267F340DF3405859A57B8E751C130756BA7D214A3F7F8",
        ta_unit_kcv="E4EEA8",
        header="0105180201020110",
        enc_ta="C8DDB4F6BDEF06E98184063019072386D5DCA4D76BDD56F5271688DA176CADC2",
        sas="E4EEA823C84605E8",
        cas="B556A6BFFD65EBF81FACAD2DD16F764E",
        export_apdu="804A00002310050F0E0D0C0B0A09080706050403020100100123456789ABCDEF"
        "FEDCBA987654321000",
        export_response="0105180201020110C8DDB4F6BDEF06E98184063019072386D5DCA4D76BDD56F5"
        "271688DA176CADC2E4EEA823C84605E8B556A6BFFD65EBF81FACAD2DD16F764E9000",
        import_apdu="804C0000400105180201020110C8DDB4F6BDEF06E98184063019072386D5DCA4D76BDD56F5"
        "271688DA176CADC2E4EEA823C84605E8B556A6BFFD65EBF81FACAD2DD16F764E",
    ),
    Vector(
        name="V3",
        t="603DEB1015CA71BE2B73AEF0857D77811F352C073B6108D72D9810A30914DFF4",
        t_kcv="1A0B2D",
        ta="FFEEDDCCBBAA99887766554433221100F0E1D2C3B4A5968778695A4B3C2D1E0F",
        ta_kcv="38BA99",
        sn="000000000000002A",
        r="5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A",
        ref1=0x7F,
        ref2=0x0F,
        usage=Usage.ENCRYPT,
        version=0xFFFF,
        diversify=False,
        t1="91EBBD30A48923484449D4AF3BF3696AD945B1E487E24844326D70A510054CF6",
        k_enc="5645F2D0E8A38E204BE0047D7A09302FA6EA66C92F4240244AF940C6B6863726",
        k_mac="F8C856E5EA143BA95A99E9C1142490F7CA837D829457B4A57088625B5D6D3B38",
        ta_unit=None,
        ta_unit_kcv=None,
        header="010F2004FFFF007F",
        enc_ta="930C907053B97BDBE9D4DE19B6C3C08A34E3BCC44309326E0E92BA90F92FF087",
        sas="38BA991D37A3A09C",
        cas="6D10333C187E2BD623E73FE55843D2A6",
        export_apdu="804A00001B7F0F5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A08000000000000002A00",
        export_response="010F2004FFFF007F930C907053B97BDBE9D4DE19B6C3C08A34E3BCC44309326E"
        "0E92BA90F92FF08738BA991D37A3A09C6D10333C187E2BD623E73FE55843D2A69000",
        import_apdu="804C000040010F2004FFFF007F930C907053B97BDBE9D4DE19B6C3C08A34E3BCC44309326E"
        "0E92BA90F92FF08738BA991D37A3A09C6D10333C187E2BD623E73FE55843D2A6",
    ),
]


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def build(v: Vector) -> bytes:
    return crypto.build_key_block(
        h(v.t), h(v.ta), h(v.sn), h(v.r), v.ref1, v.ref2, v.usage, v.version, v.diversify
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
def test_check_values(v: Vector) -> None:
    assert crypto.kcv(h(v.t)).hex().upper() == v.t_kcv
    assert crypto.kcv(h(v.ta)).hex().upper() == v.ta_kcv


@vectors
def test_derived_keys(v: Vector) -> None:
    t1 = crypto.derive_t1(h(v.t), h(v.sn))
    assert t1.hex().upper() == v.t1
    keys = crypto.derive_session_keys(t1, h(v.r), v.ref2)
    assert keys.k_enc.hex().upper() == v.k_enc
    assert keys.k_mac.hex().upper() == v.k_mac


@pytest.mark.parametrize("v", [v for v in VECTORS if v.diversify], ids=lambda v: v.name)
def test_diversification(v: Vector) -> None:
    assert v.ta_unit is not None
    ta_unit = crypto.diversify(h(v.ta), h(v.sn))
    assert ta_unit.hex().upper() == v.ta_unit
    assert crypto.kcv(ta_unit).hex().upper() == v.ta_unit_kcv


@vectors
def test_key_block_fields(v: Vector) -> None:
    block = build(v)
    header_end, sas_start = 8, len(block) - 24
    assert block[:header_end].hex().upper() == v.header
    assert block[header_end:sas_start].hex().upper() == v.enc_ta
    assert block[sas_start:-16].hex().upper() == v.sas
    assert block[-16:].hex().upper() == v.cas
    assert crypto.kcv8(h(v.ta_unit or v.ta)).hex().upper() == v.sas


@vectors
def test_export_apdu_and_response(v: Vector) -> None:
    transport = ScriptedTransport(h(v.export_response))
    block = AsCard(transport).export_key(v.ref1, v.ref2, h(v.r), h(v.sn))
    assert transport.sent == [h(v.export_apdu)]
    assert block == build(v)
    assert block + b"\x90\x00" == h(v.export_response)


@vectors
def test_import_apdu(v: Vector) -> None:
    transport = ScriptedTransport(b"\x90\x00")
    EiCard(transport).import_key(build(v))
    assert transport.sent == [h(v.import_apdu)]


@vectors
def test_open_key_block_returns_the_unit_key(v: Vector) -> None:
    opened = crypto.open_key_block(h(v.t), h(v.sn), h(v.r), build(v))
    assert opened.key == h(v.ta_unit or v.ta)
    assert opened.header == KeyBlockHeader.parse(h(v.header))
    assert v.ta not in repr(opened) and (v.ta_unit or v.ta).lower() not in repr(opened).lower()


V1 = VECTORS[0]
V1_BLOCK = build(V1)


@pytest.mark.parametrize("position", range(len(V1_BLOCK)))
def test_open_key_block_rejects_every_tampered_byte(position: int) -> None:
    tampered = bytearray(V1_BLOCK)
    tampered[position] ^= 0x01
    with pytest.raises(crypto.KeyBlockError) as caught:
        crypto.open_key_block(h(V1.t), h(V1.sn), h(V1.r), bytes(tampered))
    # Format (0) and key length (2) are refused from the header; anything else fails the CAS.
    expected = SW.INCORRECT_DATA if position in (0, 2) else SW_VERIFY_FAILED_BASE
    assert caught.value.sw == expected


@pytest.mark.parametrize(
    ("t", "sn", "r"),
    [
        (h(VECTORS[2].t)[:16], h(V1.sn), h(V1.r)),
        (h(V1.t), h("4B4C000000000002"), h(V1.r)),
        (h(V1.t), h(V1.sn), bytes(16)),
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
        crypto.open_key_block(h(V1.t), h(V1.sn), h(V1.r), block)
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
        crypto.open_key_block(h(V1.t), h(V1.sn), h(V1.r), tampered)
    assert decryptions == []


def _resealed(plain: bytes, sas: bytes) -> bytes:
    """A V1 block with chosen plaintext (key || padding) and SAS, under a valid CAS."""
    keys = crypto.derive_session_keys(crypto.derive_t1(h(V1.t), h(V1.sn)), h(V1.r), V1.ref2)
    body = h(V1.header) + crypto._aes_cbc(keys.k_enc, plain, encrypt=True) + sas
    return body + crypto.aes_cmac(keys.k_mac, body)


def test_open_key_block_rejects_a_wrong_sas_under_a_valid_cas() -> None:
    block = _resealed(h(V1.ta), bytes(8))
    with pytest.raises(crypto.KeyBlockError) as caught:
        crypto.open_key_block(h(V1.t), h(V1.sn), h(V1.r), block)
    assert caught.value.sw == SW.SECURITY_STATUS_NOT_SATISFIED


def test_open_key_block_rejects_nonzero_padding() -> None:
    v = VECTORS[1]  # 24-byte key: 8 padding bytes
    t, sn, r = h(v.t), h(v.sn), h(v.r)
    keys = crypto.derive_session_keys(crypto.derive_t1(t, sn), r, v.ref2)
    unit = h(v.ta_unit)
    body = h(v.header) + crypto._aes_cbc(keys.k_enc, unit + b"\x01" * 8, encrypt=True)
    body += crypto.kcv8(unit)
    with pytest.raises(crypto.KeyBlockError) as caught:
        crypto.open_key_block(t, sn, r, body + crypto.aes_cmac(keys.k_mac, body))
    assert caught.value.sw == SW.INCORRECT_DATA


def test_a_key_longer_than_the_transport_key_is_never_exported() -> None:
    with pytest.raises(ValueError, match="longer than the transport key"):
        crypto.build_key_block(
            h(V1.t), h(VECTORS[2].ta), h(V1.sn), h(V1.r), 1, 1, Usage.MAC, 1, False
        )


def test_session_keys_repr_hides_the_keys() -> None:
    keys = crypto.derive_session_keys(h(V1.t1), h(V1.r), V1.ref2)
    assert V1.k_enc.lower() not in repr(keys).lower()
    assert V1.k_mac.lower() not in repr(keys).lower()
