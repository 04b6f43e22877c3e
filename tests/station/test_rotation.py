"""Transport key rotation (PROTOCOL.md §9) end to end: pyscard -> pcscd -> the station -> the real
applets. The AS reproduces the §9.8 vectors byte for byte; a campaign rotates many EI cards through
`keyload-host rotate-transport` (batch, three readers at a time, with audit log and inventory),
keeping their keys and skipping them when run again; a rotated card is personalized under the
new T during the campaign; an EI not rotated refuses blocks under the new T; a replayed block, a
block redirected to another EI and an older or equal version are refused and change nothing; after
`retire-transport` the AS's T is the new one. Tearing at every write is JUnit's
(`TearingRotationTest`): the station cannot cut a command between two writes."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from keyload_host import crypto
from keyload_host.apdu import CardError
from keyload_host.cards import AsCard, EiCard
from keyload_host.cli import main
from keyload_host.protocol import SW, LifeCycle, Usage, kcv_text
from keyload_host.secret_sources import SecretKind
from keyload_host.transport import Pcsc
from keyload_station import supervisor as station
from keyload_station.cardset import AppKey, SetSecrets, set_up_as, set_up_ei
from protocol_vectors import RotationVector, rotation_vectors
from station_support import StationUp

ROLES = ("AS", "AS", "EI", "EI", "EI")
SPARE_AS_READER, AS_READER, *EI_READERS = (station.reader_name(i) for i in range(len(ROLES)))
AUTH_KEY = AppKey(0x03, 0x01, Usage.AUTHENTICATE, 16, 0x0001)
MAC_KEY = AppKey(0x10, 0x05, Usage.MAC, 24, 0x0102, diversify=True)
KEYS = (AUTH_KEY, MAC_KEY)
NEXT_VERSION = 0x0002
ROUNDS = 3
"""Rounds of the campaign, a fresh EI in each of the three EI readers per round."""
PIN_ENV = "KEYLOAD_ROTATION_PIN"
PROBE = bytes.fromhex("C0FFEE")
VECTORS = rotation_vectors()


def _invoke(arguments: Sequence[str], env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(arguments), env=env)
    return result.exit_code, result.output


@dataclass
class Campaign:
    values: SetSecrets
    next_key: bytes
    pin: bytes
    directory: Path

    @property
    def env(self) -> dict[str, str]:
        return {PIN_ENV: self.pin.decode()}


def _as_with_next(reader: str, values: SetSecrets, next_key: bytes, version: int) -> None:
    station.swap(reader)
    with Pcsc() as pcsc, pcsc.connect(reader) as transport:
        card = AsCard(transport)
        set_up_as(card, KEYS, values, lock=False)
        card.put_next_transport_key(version, next_key)
        card.lock()


def _fresh_eis(values: SetSecrets, first: int) -> list[bytes]:
    serials = []
    with Pcsc() as pcsc:
        for offset, reader in enumerate(EI_READERS):
            station.swap(reader)
            serial = (0x4B4C00000000A000 + first + offset).to_bytes(8)
            with pcsc.connect(reader) as transport:
                set_up_ei(EiCard(transport), serial, [key.slot for key in KEYS], values)
            serials.append(serial)
    return serials


def _ei(reader: str) -> Iterator[EiCard]:
    with Pcsc() as pcsc, pcsc.connect(reader, reset=False) as transport:
        card = EiCard(transport)
        card.select()
        yield card


@pytest.fixture(scope="module")
def campaign(station_up: StationUp, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Campaign]:
    with SetSecrets.drawn(KEYS) as values:
        next_key = secrets.token_bytes(32)
        _as_with_next(AS_READER, values, next_key, NEXT_VERSION)
        yield Campaign(values, next_key, values.pin().reveal(), tmp_path_factory.mktemp("rotation"))


def _personalize(c: Campaign, *loads: str) -> tuple[int, str]:
    arguments = ["personalize", "--as-reader", AS_READER, "--pin-env", PIN_ENV, "--store", "none"]
    arguments += [a for reader in EI_READERS for a in ("--ei-reader", reader)]
    arguments += [a for load in loads for a in ("--load", load)]
    return _invoke(arguments, c.env)


def _rotate(c: Campaign, audit: Path) -> tuple[int, str]:
    arguments = ["rotate-transport", "--as-reader", AS_READER, "--pin-env", PIN_ENV]
    arguments += [a for reader in EI_READERS for a in ("--ei-reader", reader)]
    return _invoke([*arguments, "--audit", str(audit)], c.env)


# ------------------------------------------------------------------------------ §9.8 vectors


@pytest.mark.parametrize("vector", VECTORS, ids=lambda vector: vector.name)
def test_as_reproduces_the_rotation_vector(campaign: Campaign, vector: RotationVector) -> None:
    station.swap(SPARE_AS_READER)
    key = AppKey.holding(0x03, Usage.AUTHENTICATE, bytes(range(16)))
    with Pcsc() as pcsc, pcsc.connect(SPARE_AS_READER) as transport:
        card = AsCard(transport)
        with SetSecrets(vector.transport_key, campaign.pin) as values:
            set_up_as(card, (key,), values, lock=False)
            card.put_next_transport_key(vector.version, vector.new_transport_key)
            card.lock()
            card.select()
            card.verify_pin(campaign.pin)
        assert transport.transmit(vector.export_apdu) == vector.export_response


# ------------------------------------------------------------------------------ the campaign


def test_a_campaign_rotates_many_cards_keeping_their_keys(campaign: Campaign) -> None:
    audit = campaign.directory / "rotation.jsonl"
    next_kcv = crypto.kcv(campaign.next_key)
    rotated: list[bytes] = []
    for round_ in range(ROUNDS):
        serials = _fresh_eis(campaign.values, 3 * round_)
        assert _personalize(campaign, str(AUTH_KEY.load))[0] == 0
        before = {}
        for reader in EI_READERS:
            for card in _ei(reader):
                before[reader] = card.list_keys()
        code, output = _rotate(campaign, audit)
        assert code == 0, output
        assert "3 rotated, 0 skipped, 0 failed" in output
        for reader in EI_READERS:
            for card in _ei(reader):
                info = card.get_info()
                assert (info.transport_kcv, info.transport_version) == (next_kcv, NEXT_VERSION)
                assert card.list_keys() == before[reader]
                key = campaign.values.load(AUTH_KEY.source, SecretKind.KEY, "key", False).reveal()
                assert card.internal_authenticate(AUTH_KEY.ref2, PROBE) == crypto.aes_cmac(
                    bytes(key), PROBE
                )
        code, output = _rotate(campaign, audit)
        assert code == 0 and "0 rotated, 3 skipped, 0 failed" in output, output
        rotated += serials
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    done = {
        r["ei_sn"] for r in records if r["event"] == "transport_key" and r["result"] == "rotated"
    }
    assert done == {serial.hex().upper() for serial in rotated}
    assert {r["kcv_t"] for r in records if r["event"] == "transport_key"} == {kcv_text(next_kcv)}
    text = audit.read_text()
    for secret in (campaign.next_key, campaign.pin):
        assert secret.hex().upper() not in text.upper()
    store = campaign.directory / "keyload-inventory.sqlite"
    assert store.is_file(), "the inventory is fed beside the audit log, as personalize's"
    code, output = _invoke(["inventory", "unit", rotated[0].hex(), "--store", str(store), "--json"])
    assert code == 0 and "transport_key" in output and kcv_text(next_kcv) in output, output


def test_a_rotated_card_is_personalized_under_the_new_transport_key(campaign: Campaign) -> None:
    _fresh_eis(campaign.values, 100)
    with Pcsc() as pcsc, pcsc.connect(AS_READER) as transport:
        as_card = AsCard(transport)
        as_card.select()
        as_card.verify_pin(campaign.pin)
        for card in _ei(EI_READERS[0]):
            serial = card.get_info().serial
            block = as_card.export_transport_key(card.get_challenge(), serial)
            card.import_transport_key(block)
    code, output = _personalize(campaign, str(AUTH_KEY.load), str(MAC_KEY.load))
    assert code == 0, output
    assert "6 loaded" in output
    for reader in EI_READERS:
        for card in _ei(reader):
            assert all(slot.loaded for slot in card.list_keys())


def test_an_ei_refuses_unrotated_replayed_redirected_and_rolled_back_blocks(
    campaign: Campaign,
) -> None:
    _fresh_eis(campaign.values, 200)
    with Pcsc() as pcsc, pcsc.connect(AS_READER) as transport:
        as_card = AsCard(transport)
        as_card.select()
        as_card.verify_pin(campaign.pin)
        cards = [EiCard(pcsc.connect(reader, reset=False)) for reader in EI_READERS[:2]]
        a, b = cards
        sn_a, sn_b = (card.select().serial for card in cards)
        t_kcv = a.get_info().transport_kcv

        # not rotated: a key block under the next T fails its CAS, a try is spent and given back
        challenge = a.get_challenge()
        block = as_card.export_key(AUTH_KEY.ref1, AUTH_KEY.ref2, challenge, sn_a, NEXT_VERSION)
        with pytest.raises(CardError) as refused:
            a.import_key(block)
        assert refused.value.sw == 0x63C9
        assert a.get_info().transport_kcv == t_kcv

        # redirected: A's block for B's challenge
        block = as_card.export_transport_key(a.get_challenge(), sn_a)
        b.get_challenge()
        with pytest.raises(CardError) as refused:
            b.import_transport_key(block)
        assert refused.value.sw == 0x63C9
        assert b.get_info().transport_kcv == t_kcv

        # A takes its own block once; replayed: no challenge, then a challenge it was not made for
        block = as_card.export_transport_key(a.get_challenge(), sn_a)
        a.import_transport_key(block)
        after = a.list_keys(), a.get_info()
        with pytest.raises(CardError) as refused:
            a.import_transport_key(block)
        assert refused.value.sw == SW.CONDITIONS_NOT_SATISFIED
        a.get_challenge()
        with pytest.raises(CardError) as refused:
            a.import_transport_key(block)
        assert refused.value.sw == 0x63C9
        assert a.get_info().transport_version == NEXT_VERSION
        assert a.list_keys() == after[0]

        # rolled back: an AS of the new T whose next key has the EI's version (equal), refused
        drawn = {
            key.ref1: bytes(campaign.values.load(key.source, SecretKind.KEY, "key", False).reveal())
            for key in KEYS
        }
        with SetSecrets(campaign.next_key, campaign.pin, drawn) as rotated_set:
            _as_with_next(SPARE_AS_READER, rotated_set, campaign.next_key[::-1], NEXT_VERSION)
        with pcsc.connect(SPARE_AS_READER) as spare_transport:
            spare = AsCard(spare_transport)
            spare.select()
            spare.verify_pin(campaign.pin)
            block = spare.export_transport_key(a.get_challenge(), sn_a)
            with pytest.raises(CardError) as refused:
                a.import_transport_key(block)
            assert refused.value.sw == SW.INCORRECT_DATA
        info = a.get_info()
        assert (info.transport_kcv, info.transport_version) == (
            crypto.kcv(campaign.next_key),
            NEXT_VERSION,
        )
        assert sn_b != sn_a
        for card in cards:
            card.transport.disconnect()


def test_retire_makes_the_new_transport_key_the_as_key(campaign: Campaign) -> None:
    arguments = ["retire-transport", "--as-reader", AS_READER, "--pin-env", PIN_ENV]
    code, output = _invoke(arguments, campaign.env)
    assert code == 0, output
    assert kcv_text(crypto.kcv(campaign.next_key)) in output
    with Pcsc() as pcsc, pcsc.connect(AS_READER) as transport:
        info = AsCard(transport).select()
    assert (info.transport_kcv, info.transport_version) == (
        crypto.kcv(campaign.next_key),
        NEXT_VERSION,
    )
    assert not info.holds_next_transport_key and info.life_cycle == LifeCycle.OPERATIONAL
    # the cards rotated in the last test take keys under the AS's T now (P1P2 0000)
    code, output = _personalize(campaign, str(MAC_KEY.load))
    assert code != 0 and "belongs to another set" in output  # the third EI was never rotated
