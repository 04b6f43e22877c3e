"""APDU encoding, the T=0 response handling (61xx, 6Cxx) and status words in words."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from keyload_host.apdu import CardError, Command, Response, describe_sw, transmit
from keyload_host.cards import AsCard
from keyload_host.protocol import CLA_ISO, CLA_PROPRIETARY, SW, Ins, ProtocolError
from keyload_host.transport import TransportStats


class T0Card:
    """A fake transport answering like a T=0 card: ``answer`` maps a command to a response."""

    reader = "t0"

    def __init__(self, answer: Callable[[bytes], bytes]) -> None:
        self.answer = answer
        self.sent: list[bytes] = []
        self.stats = TransportStats()

    def transmit(self, apdu: bytes) -> bytes:
        self.sent.append(bytes(apdu))
        response = self.answer(bytes(apdu))
        self.stats.count(len(apdu), len(response))
        return response


@pytest.mark.parametrize(
    ("command", "encoded"),
    [
        (Command(CLA_PROPRIETARY, Ins.LOCK), "805E0000"),
        (Command(CLA_PROPRIETARY, Ins.LIST_KEYS, le=256), "8042000000"),
        (Command(CLA_ISO, Ins.GET_CHALLENGE, le=16), "0084000010"),
        (Command(CLA_PROPRIETARY, Ins.SET_SERIAL, data=bytes(8)), "80520000080000000000000000"),
        (Command(CLA_ISO, Ins.INTERNAL_AUTHENTICATE, 0, 5, b"\xaa", 16), "0088000501AA10"),
    ],
    ids=["case 1", "case 2 Le 256", "case 2 Le 16", "case 3", "case 4"],
)
def test_command_encoding(command: Command, encoded: str) -> None:
    assert command.encode() == bytes.fromhex(encoded)


@pytest.mark.parametrize(
    "kwargs", [{"data": bytes(256)}, {"le": 0}, {"le": 257}], ids=["Lc", "Le 0", "Le 257"]
)
def test_command_refuses_what_a_short_apdu_cannot_carry(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        Command(CLA_PROPRIETARY, Ins.PUT_APP_KEY, **kwargs)


def test_command_repr_never_shows_data() -> None:
    command = Command(CLA_ISO, Ins.VERIFY, 0, 0x81, b"\x13\x57\x9b\xdf")
    assert "13579bdf" not in repr(command).lower()
    assert "\\x13" not in repr(command)


def test_response_parse() -> None:
    assert Response.parse(bytes.fromhex("01029000")) == Response(b"\x01\x02", 0x9000)
    with pytest.raises(ProtocolError):
        Response.parse(b"\x90")


def test_61xx_is_followed_by_get_response_and_concatenated() -> None:
    parts = iter(
        [bytes.fromhex("6105"), bytes.fromhex("01020304056103"), bytes.fromhex("0607089000")]
    )
    card = T0Card(lambda _apdu: next(parts))
    response = transmit(card, Command(CLA_PROPRIETARY, Ins.LIST_KEYS, le=256))
    assert response == Response(bytes.fromhex("0102030405060708"), 0x9000)
    assert card.sent[1:] == [bytes.fromhex("00C0000005"), bytes.fromhex("00C0000003")]
    assert card.stats.apdus == 3


def test_6cxx_repeats_the_command_with_the_right_le() -> None:
    def answer(apdu: bytes) -> bytes:
        return bytes(16) + b"\x90\x00" if apdu[-1] == 0x10 else bytes.fromhex("6C10")

    card = T0Card(answer)
    response = transmit(card, Command(CLA_ISO, Ins.GET_CHALLENGE, le=256))
    assert response == Response(bytes(16), 0x9000)
    assert card.sent == [bytes.fromhex("0084000000"), bytes.fromhex("0084000010")]


def test_6cxx_then_61xx() -> None:
    answers = iter([bytes.fromhex("6C02"), bytes.fromhex("6102"), bytes.fromhex("AABB9000")])
    card = T0Card(lambda _apdu: next(answers))
    response = transmit(card, Command(CLA_PROPRIETARY, Ins.GET_INFO, le=256))
    assert response == Response(b"\xaa\xbb", 0x9000)
    assert card.sent == [bytes.fromhex(x) for x in ("8040000000", "8040000002", "00C0000002")]


def test_a_card_that_keeps_answering_61xx_is_stopped() -> None:
    card = T0Card(lambda _apdu: bytes.fromhex("AA6101"))
    with pytest.raises(ProtocolError, match="61xx"):
        transmit(card, Command(CLA_PROPRIETARY, Ins.LIST_KEYS, le=256))
    assert len(card.sent) < 100


def test_an_error_answer_is_returned_as_is() -> None:
    card = T0Card(lambda _apdu: bytes.fromhex("6A88"))
    assert transmit(card, Command(CLA_PROPRIETARY, Ins.LIST_KEYS, le=256)) == Response(b"", 0x6A88)
    assert len(card.sent) == 1


# Every status word of PROTOCOL.md §4.4 (and the card OS ones) has its own sentence.
GENERIC = {
    SW.OK: "success",
    SW.WRONG_LENGTH: "length",
    SW.SECURITY_STATUS_NOT_SATISFIED: "security status",
    SW.BLOCKED: "blocked",
    SW.CONDITIONS_NOT_SATISFIED: "conditions of use",
    SW.COMMAND_NOT_ALLOWED: "not allowed",
    SW.INCORRECT_DATA: "incorrect data",
    SW.APPLET_NOT_FOUND: "does not hold this applet",
    SW.NOT_ENOUGH_MEMORY: "memory",
    SW.INCORRECT_P1P2: "P1/P2",
    SW.REFERENCED_DATA_NOT_FOUND: "not found",
    SW.INS_NOT_SUPPORTED: "instruction not supported",
    SW.CLA_NOT_SUPPORTED: "class",
    SW.UNKNOWN_ERROR: "unexpected error inside the card",
}


@pytest.mark.parametrize("sw", list(SW), ids=lambda sw: f"{sw:04X}")
def test_every_status_word_has_a_sentence(sw: SW) -> None:
    assert GENERIC[sw] in describe_sw(sw)


@pytest.mark.parametrize(
    ("sw", "ins", "expected"),
    [
        (0x6982, Ins.EXPORT_KEY, "the operator PIN has not been verified"),
        (
            0x6982,
            Ins.IMPORT_KEY,
            "the key check value (SAS) did not match; this counts as a failed try",
        ),
        (0x6983, Ins.EXPORT_KEY, "export limit"),
        (0x6983, Ins.VERIFY, "PIN is blocked"),
        (0x6983, Ins.IMPORT_KEY, "BLOCKED for good"),
        (0x6983, Ins.GET_CHALLENGE, "BLOCKED for good"),
        (0x6985, Ins.IMPORT_KEY, "no fresh challenge"),
        (0x6985, Ins.EXPORT_KEY, "longer than the transport key"),
        (0x6985, Ins.PUT_APP_KEY, "no longer in SETUP"),
        (0x6985, Ins.LOCK, "setup is incomplete"),
        (0x6985, Ins.INTERNAL_AUTHENTICATE, "not an authentication key"),
        (0x6986, Ins.IMPORT_KEY, "does not accept imported keys"),
        (0x6A80, Ins.IMPORT_KEY, "version lower than the slot's"),
        (0x6A80, Ins.SET_RETRY_LIMIT, "1 to 15"),
        (0x6A84, Ins.PUT_APP_KEY, "16 keys"),
        (0x6A84, Ins.DEFINE_SLOT, "16 slots"),
        (0x6A88, Ins.EXPORT_KEY, "the AS holds no key with this REF1"),
        (0x6A88, Ins.IMPORT_KEY, "the EI has no slot with this REF2"),
        (0x6A88, Ins.INTERNAL_AUTHENTICATE, "undefined or empty"),
        (0x6700, Ins.SET_SERIAL, "8 to 16 bytes"),
        (0x6700, Ins.IMPORT_KEY, "key block has the wrong length"),
    ],
)
def test_sentences_depend_on_the_command(sw: int, ins: Ins, expected: str) -> None:
    assert expected in describe_sw(sw, ins)


@pytest.mark.parametrize(
    ("sw", "ins", "expected"),
    [
        (0x63C2, Ins.VERIFY, "wrong PIN, 2 tries left"),
        (0x63C0, Ins.VERIFY, "the PIN is now blocked"),
        (0x63C9, Ins.IMPORT_KEY, "9 import tries left"),
        (0x63C1, Ins.IMPORT_KEY, "1 import try left"),
        (0x63C0, Ins.IMPORT_KEY, "now BLOCKED for good"),
        (0x63C5, None, "5 tries left"),
        (0x6110, None, "16 more response bytes"),
        (0x6C08, None, "the card has 8 bytes"),
        (0x6F00, None, "unexpected error"),
        (0x6B00, None, "unknown status word"),
    ],
)
def test_counted_and_other_status_words(sw: int, ins: Ins | None, expected: str) -> None:
    assert expected in describe_sw(sw, ins)


def test_sentences_name_the_references_of_the_command() -> None:
    command = Command(CLA_PROPRIETARY, Ins.EXPORT_KEY, data=bytes([0x10, 0x05]) + bytes(25), le=256)
    assert describe_sw(0x6A88, command) == "the AS holds no key with this REF1 (REF1 10 to REF2 05)"


def test_card_error_names_command_reader_and_meaning_but_no_data() -> None:
    pin = b"\x13\x57\x9b\xdf"

    class Refusing:
        reader = "reader A"
        stats = TransportStats()

        def transmit(self, _apdu: bytes) -> bytes:
            return bytes.fromhex("63C1")

    with pytest.raises(CardError) as caught:
        AsCard(Refusing()).verify_pin(pin)
    message = str(caught.value)
    assert message == "VERIFY in reader 'reader A' failed (63C1): wrong PIN, 1 try left"
    assert pin.hex() not in message.lower() and pin.hex() not in repr(caught.value.command).lower()
    assert caught.value.sw == 0x63C1


@pytest.mark.parametrize(
    ("sw", "counts"), [(0x63C3, True), (0x6982, True), (0x6A80, False), (0x6985, False)]
)
def test_which_import_errors_spent_a_try(sw: int, counts: bool) -> None:
    assert CardError(Ins.IMPORT_KEY, sw).counts_as_failed_try is counts
    assert CardError(Ins.EXPORT_KEY, sw).counts_as_failed_try is False
