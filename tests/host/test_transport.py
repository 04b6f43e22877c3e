"""Reader selection and the mapping of PC/SC result codes, with pyscard's scard layer faked."""

from __future__ import annotations

import pytest
from keyload_host.transport import (
    AmbiguousReaderError,
    CardRemovedError,
    NoCardError,
    Pcsc,
    PcscUnavailableError,
    ReaderBusyError,
    ReaderNotFoundError,
    TransportError,
    match_reader,
)
from smartcard import scard

READERS = [
    "keyload station 0 00 00",
    "keyload station 0 00 01",
    "keyload station 1 00 00",
    "Gemalto PC Twin Reader [GemPC Twin] 00 00",
]


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("keyload station 0 00 01", "keyload station 0 00 01"),
        ("*station 1*", "keyload station 1 00 00"),
        ("keyload station 0 00 0?", None),
        ("Gemalto PC Twin Reader [GemPC Twin] 00 00", "Gemalto PC Twin Reader [GemPC Twin] 00 00"),
        ("Gemalto*", "Gemalto PC Twin Reader [GemPC Twin] 00 00"),
    ],
    ids=["exact", "pattern", "ambiguous pattern", "exact with brackets", "prefix"],
)
def test_match_reader(pattern: str, expected: str | None) -> None:
    if expected is None:
        with pytest.raises(AmbiguousReaderError) as caught:
            match_reader(pattern, READERS)
        assert "'keyload station 0 00 00', 'keyload station 0 00 01'" in str(caught.value)
        assert "station 1" not in str(caught.value)
    else:
        assert match_reader(pattern, READERS) == expected


def test_a_substring_is_not_a_match() -> None:
    with pytest.raises(ReaderNotFoundError):
        match_reader("station 1 00 00", READERS)


def test_a_missing_reader_lists_the_readers_present() -> None:
    with pytest.raises(ReaderNotFoundError) as caught:
        match_reader("keyload station 2 00 00", READERS)
    message = str(caught.value)
    assert "no reader matches 'keyload station 2 00 00'" in message
    assert all(f"'{name}'" in message for name in READERS)


def test_no_reader_at_all() -> None:
    with pytest.raises(ReaderNotFoundError, match="readers present: none"):
        match_reader("x", [])


def test_matching_is_case_sensitive() -> None:
    with pytest.raises(ReaderNotFoundError):
        match_reader("KEYLOAD station 0 00 00", READERS)


@pytest.fixture
def fake_pcsc(monkeypatch: pytest.MonkeyPatch) -> dict:
    """Fake the scard calls Pcsc makes; the returned dict sets their results."""
    results = {
        "establish": scard.SCARD_S_SUCCESS,
        "readers": READERS[:2],
        "connect": scard.SCARD_S_SUCCESS,
        "transmit": [(scard.SCARD_S_SUCCESS, [0x90, 0x00])],
        "present": True,
        "disconnects": [],
        "listings": 0,
        "events": 3,
        "waits": [],
    }

    def list_readers(_context: int, _groups: list) -> tuple:
        results["listings"] += 1
        return scard.SCARD_S_SUCCESS, results["readers"]

    def connect(_context: int, reader: str, _share: int, _protocols: int) -> tuple:
        known = reader in results["readers"]
        code = results["connect"] if known else scard.SCARD_E_UNKNOWN_READER
        return code, 11, scard.SCARD_PROTOCOL_T1

    monkeypatch.setattr(scard, "SCardEstablishContext", lambda _scope: (results["establish"], 7))
    monkeypatch.setattr(scard, "SCardReleaseContext", lambda _context: scard.SCARD_S_SUCCESS)
    monkeypatch.setattr(scard, "SCardListReaders", list_readers)
    monkeypatch.setattr(scard, "SCardConnect", connect)
    monkeypatch.setattr(
        scard, "SCardTransmit", lambda _card, _pci, _apdu: results["transmit"].pop(0)
    )

    def status_change(_context: int, timeout: int, states: list) -> tuple:
        """Presence and card event count as set in ``results``; as pcsc-lite, a state given
        with a count in its upper word is compared with the count too; a wait for a change that
        never comes times out."""
        presence = scard.SCARD_STATE_PRESENT if results["present"] else scard.SCARD_STATE_EMPTY
        event = results["events"] << 16 | presence

        def unchanged(state: int) -> bool:
            return state & 0xFFFF == presence and state >> 16 in (0, results["events"])

        results["waits"].append((timeout, states))
        if timeout and all(unchanged(state) for _name, state in states):
            return scard.SCARD_E_TIMEOUT, states
        changed = event | scard.SCARD_STATE_CHANGED
        return scard.SCARD_S_SUCCESS, [(name, changed, [0x3B, 0x00]) for name, _state in states]

    monkeypatch.setattr(scard, "SCardGetStatusChange", status_change)
    monkeypatch.setattr(
        scard,
        "SCardDisconnect",
        lambda _card, disposition: (
            results["disconnects"].append(disposition) or scard.SCARD_S_SUCCESS
        ),
    )
    return results


def test_transmit_counts_apdus_and_bytes(fake_pcsc: dict) -> None:
    fake_pcsc["transmit"] = [(scard.SCARD_S_SUCCESS, [1, 2, 0x90, 0x00])] * 2
    with Pcsc() as pcsc, pcsc.connect("*00 01") as card:
        assert card.reader == READERS[1]
        assert card.transmit(b"\x80\x42\x00\x00\x00") == b"\x01\x02\x90\x00"
        card.transmit(b"\x80\x40\x00\x00")
        assert (card.stats.apdus, card.stats.bytes_sent, card.stats.bytes_received) == (2, 9, 8)
    assert fake_pcsc["disconnects"] == [scard.SCARD_RESET_CARD]


def test_an_exact_name_is_connected_to_without_reading_the_reader_list(fake_pcsc: dict) -> None:
    with Pcsc() as pcsc, pcsc.connect(f" {READERS[0]} ") as card:
        assert card.reader == READERS[0]
    assert fake_pcsc["listings"] == 0


def test_an_absent_exact_name_names_the_readers_present(fake_pcsc: dict) -> None:
    with Pcsc() as pcsc, pytest.raises(ReaderNotFoundError) as caught:
        pcsc.connect("Absent Reader 00 00")
    assert str(caught.value) == (
        f"no reader matches 'Absent Reader 00 00'; readers present: '{READERS[0]}', '{READERS[1]}'"
    )


def test_a_connection_can_close_without_resetting_the_card(fake_pcsc: dict) -> None:
    with Pcsc() as pcsc:
        pcsc.connect(READERS[0], reset=False).disconnect()
        pcsc.connect(READERS[0]).disconnect()
    assert fake_pcsc["disconnects"] == [scard.SCARD_LEAVE_CARD, scard.SCARD_RESET_CARD]


@pytest.mark.parametrize("code", [scard.SCARD_W_REMOVED_CARD, scard.SCARD_E_NO_SMARTCARD])
def test_a_card_removed_mid_command(fake_pcsc: dict, code: int) -> None:
    fake_pcsc["transmit"] = [(code, [])]
    with (
        Pcsc() as pcsc,
        pcsc.connect(READERS[0]) as card,
        pytest.raises(CardRemovedError) as caught,
    ):
        card.transmit(b"\x80\x42\x00\x00\x00")
    assert READERS[0] in str(caught.value)


def test_a_failed_exchange_with_the_card_gone_is_a_removal(fake_pcsc: dict) -> None:
    fake_pcsc["transmit"] = [(scard.SCARD_E_NOT_TRANSACTED, [])]
    fake_pcsc["present"] = False
    with Pcsc() as pcsc, pcsc.connect(READERS[0]) as card, pytest.raises(CardRemovedError):
        card.transmit(b"\x80\x42\x00\x00\x00")


def test_a_failed_exchange_with_the_card_present_is_not_a_removal(fake_pcsc: dict) -> None:
    fake_pcsc["transmit"] = [(scard.SCARD_E_NOT_TRANSACTED, [])]
    with Pcsc() as pcsc, pcsc.connect(READERS[0]) as card, pytest.raises(TransportError) as caught:
        card.transmit(b"\x80\x42\x00\x00\x00")
    assert not isinstance(caught.value, CardRemovedError)


def test_a_card_reset_by_another_program(fake_pcsc: dict) -> None:
    fake_pcsc["transmit"] = [(scard.SCARD_W_RESET_CARD, [])]
    with (
        Pcsc() as pcsc,
        pcsc.connect(READERS[0]) as card,
        pytest.raises(CardRemovedError, match="reset"),
    ):
        card.transmit(b"\x80\x42\x00\x00\x00")


@pytest.mark.parametrize(
    ("code", "error", "text"),
    [
        (scard.SCARD_E_NO_SMARTCARD, NoCardError, "there is no card in reader"),
        (scard.SCARD_E_SHARING_VIOLATION, ReaderBusyError, "in use by another program"),
    ],
)
def test_connect_errors(fake_pcsc: dict, code: int, error: type, text: str) -> None:
    fake_pcsc["connect"] = code
    with Pcsc() as pcsc, pytest.raises(error, match=text):
        pcsc.connect(READERS[0])


def test_no_pcscd(fake_pcsc: dict) -> None:
    fake_pcsc["establish"] = scard.SCARD_E_NO_SERVICE
    with pytest.raises(PcscUnavailableError, match="pcscd is not running"):
        Pcsc()


def test_reader_states(fake_pcsc: dict) -> None:
    with Pcsc() as pcsc:
        states = pcsc.readers()
    assert [(state.name, state.card_present, state.atr) for state in states] == [
        (READERS[0], True, b"\x3b\x00"),
        (READERS[1], True, b"\x3b\x00"),
    ]


def test_a_reader_watch_tells_cards_apart_by_their_event_count(fake_pcsc: dict) -> None:
    with Pcsc() as pcsc:
        watch = pcsc.watch(READERS[:2])
        assert watch.cards() == {READERS[0]: 3, READERS[1]: 3}
        fake_pcsc["events"] = 5  # a card swapped: removed and inserted
        assert watch.cards() == {READERS[0]: 5, READERS[1]: 5}
        fake_pcsc["present"] = False
        assert watch.cards() == {READERS[0]: None, READERS[1]: None}


def test_a_reader_watch_waits_for_a_change_from_what_it_saw_last(fake_pcsc: dict) -> None:
    with Pcsc() as pcsc:
        watch = pcsc.watch([READERS[0]])
        watch.cards()
        watch.wait(0.25)  # nothing changes: times out quietly
        seen = 3 << 16 | scard.SCARD_STATE_PRESENT
        assert fake_pcsc["waits"][-1] == (250, [(READERS[0], seen)])


def test_a_reader_watch_that_cannot_wait_says_so(
    fake_pcsc: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Pcsc() as pcsc:
        watch = pcsc.watch([READERS[0]])
        monkeypatch.setattr(
            scard, "SCardGetStatusChange", lambda *_args: (scard.SCARD_E_NO_SERVICE, [])
        )
        with pytest.raises(PcscUnavailableError):
            watch.wait(0.25)


def test_no_readers(fake_pcsc: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        scard, "SCardListReaders", lambda _c, _g: (scard.SCARD_E_NO_READERS_AVAILABLE, [])
    )
    with Pcsc() as pcsc:
        assert pcsc.readers() == []


@pytest.mark.parametrize("noticed_late", [False, True])
def test_an_empty_answer_from_a_pulled_card_is_a_removal(
    fake_pcsc: dict, monkeypatch: pytest.MonkeyPatch, noticed_late: bool
) -> None:
    """vpcd answers a card pulled mid-command with success and no bytes; pcscd may notice the
    removal only at its next poll of the reader."""
    fake_pcsc["transmit"] = [(scard.SCARD_S_SUCCESS, [])]
    fake_pcsc["present"] = noticed_late
    if noticed_late:
        monkeypatch.setattr(
            scard,
            "SCardGetStatusChange",
            lambda _c, timeout, states: (
                scard.SCARD_S_SUCCESS,
                [
                    (n, scard.SCARD_STATE_EMPTY if timeout else scard.SCARD_STATE_PRESENT, [])
                    for n, _ in states
                ],
            ),
        )
    with Pcsc() as pcsc, pcsc.connect(READERS[0]) as card, pytest.raises(CardRemovedError):
        card.transmit(b"\x80\x42\x00\x00\x00")


def test_an_empty_answer_with_the_card_present_is_passed_on(fake_pcsc: dict) -> None:
    fake_pcsc["transmit"] = [(scard.SCARD_S_SUCCESS, [])]
    with Pcsc() as pcsc, pcsc.connect(READERS[0]) as card:
        assert card.transmit(b"\x80\x42\x00\x00\x00") == b""
