"""Serving EI cards at once over fake cards: the AS pool (shared exports, summed limits, an AS
lost mid-run), a stalled reader given up on while the others finish, and what the operator sees
(one line per card, the live block per reader)."""

from __future__ import annotations

import io
import re
import threading

import pytest
from fakes import FakeApplet, FakeTransport
from keyload_host.audit import AuditError
from keyload_host.cards import AsCard, EiCard
from keyload_host.cli.progress import Progress, card_line
from keyload_host.workflow import CardReport, LoadResult, Outcome, run_batch
from test_workflow import LOADS, SN1, SN2, ListAudit, Station, standard_as, standard_ei


class StallingTransport(FakeTransport):
    """A reader that never answers its ``stall_at``-th command until ``release`` is set."""

    def __init__(self, reader: str, applet: FakeApplet, stall_at: int) -> None:
        super().__init__(reader, applet)
        self.stall_at = stall_at
        self.release = threading.Event()

    def transmit(self, apdu: bytes) -> bytes:
        if len(self.sent) + 1 == self.stall_at:
            self.release.wait(10)
        return super().transmit(apdu)


def test_a_pool_of_two_as_cards_serves_beyond_one_cards_limit() -> None:
    """Key 10 may leave each AS once: two cards need two exports, the pool has them."""
    first, second = standard_as(), standard_as()
    for applet in (first, second):
        applet.keys[0x10].limit = 1
    s = Station(first, [standard_ei(SN1), standard_ei(SN2)])
    pool = [AsCard(s.as_transport), AsCard(FakeTransport("AS reader 2", second))]
    results = run_batch(pool, [EiCard(t) for t in s.ei_transports], LOADS, s.audit, s.read_pin)
    assert {r.outcome for r in results} == {Outcome.LOADED}
    assert (first.keys[0x10].count, second.keys[0x10].count) == (1, 1)
    assert s.pin_reads == 1  # one PIN for the pool


def test_an_as_lost_mid_run_leaves_the_pool_and_the_other_one_goes_on() -> None:
    first, second = standard_as(), standard_as()
    s = Station(first, [standard_ei(SN1), standard_ei(SN2)])
    s.as_transport.remove_at = 5  # SELECT, LIST KEYS, VERIFY, one EXPORT KEY, then gone
    second_transport = FakeTransport("AS reader 2", second)
    pool = [AsCard(s.as_transport), AsCard(second_transport)]
    results = run_batch(pool, [EiCard(t) for t in s.ei_transports], LOADS, s.audit, s.read_pin)
    assert {r.outcome for r in results} == {Outcome.LOADED}
    lost = [r for r in s.audit.records if r["event"] == "card_failed"]
    assert [r["reader"] for r in lost] == ["AS reader"]


def test_a_stalled_reader_fails_its_card_and_the_others_finish() -> None:
    s = Station(standard_as(), [standard_ei(SN1)])
    stalled = StallingTransport("EI reader 2", standard_ei(SN2), stall_at=3)  # its GET CHALLENGE
    reports: list[CardReport] = []
    try:
        results = run_batch(
            AsCard(s.as_transport),
            [EiCard(s.ei_transports[0]), EiCard(stalled)],
            LOADS,
            s.audit,
            s.read_pin,
            apdu_timeout=0.3,
            on_card=reports.append,
        )
    finally:
        stalled.release.set()
    assert [(r.serial, r.outcome) for r in results] == [(SN1.hex().upper(), Outcome.LOADED)] * 2
    (report,) = [r for r in reports if r.stalled]
    assert report.problem == "reader 'EI reader 2' stalled: no answer to GET CHALLENGE within 0.3 s"
    assert any(r.get("message") == report.problem for r in s.audit.records)


def _result(reader: str, outcome: Outcome, reason: str = "") -> LoadResult:
    return LoadResult(reader, "4B4C000000000001", LOADS[0], outcome, 1, "cmac-aes:53E107", reason)


def test_a_card_is_one_line_with_its_outcomes_or_why_it_was_not_served() -> None:
    served = CardReport(
        "EI A",
        "4B4C000000000001",
        (_result("EI A", Outcome.LOADED), _result("EI A", Outcome.SKIPPED)),
    )
    assert card_line(served) == "EI 4B4C000000000001 in reader 'EI A': 1 loaded, 1 skipped"
    refused = CardReport(
        "EI A",
        "4B4C000000000002",
        (),
        "the EI ... belongs to another set: its transport key KCV is X",
    )
    assert card_line(refused) == (
        "EI 4B4C000000000002 in reader 'EI A': not served: "
        "the EI ... belongs to another set: its transport key KCV is X"
    )


def test_progress_prints_card_lines_only_when_not_a_terminal() -> None:
    stream = io.StringIO()
    progress = Progress(["EI A", "EI B"], stream=stream, live=False)
    progress.on_result(_result("EI A", Outcome.LOADED))
    progress.on_card(CardReport("EI A", "4B4C000000000001", (_result("EI A", Outcome.LOADED),)))
    progress.finish()
    assert stream.getvalue() == "EI 4B4C000000000001 in reader 'EI A': 1 loaded\n"


def test_progress_keeps_a_live_block_per_reader_with_rate_and_expected_end() -> None:
    stream = io.StringIO()
    progress = Progress(["EI A", "EI B"], cards_expected=4, stream=stream, live=True)
    progress.on_card(
        CardReport("EI A", "4B4C000000000001", (_result("EI A", Outcome.FAILED, "6982"),))
    )
    progress.finish()
    screen = re.sub(r"\x1b\[\d*[A-Z]", "", stream.getvalue())  # cursor moves and clears
    block = screen.splitlines()[-3:]
    assert block[0] == "  EI A: waiting for a card  (1 done, 1 failed)"
    assert block[1] == "  EI B: waiting for a card  (0 done, 0 failed)"
    assert block[2].startswith("  1 card(s) done, 1 failed, ")
    assert "3 to go, about" in block[2] and "cards/hour" in block[2]


class FailingAudit(ListAudit):
    """An audit log whose disk fills up at the first key record."""

    def record(self, event: str, **fields: object) -> dict[str, object]:
        if event == "key":
            raise AuditError("audit.jsonl: cannot write the audit log: No space left on device")
        return super().record(event, **fields)


def test_an_unforeseen_error_in_a_card_thread_ends_the_run_instead_of_hanging_it() -> None:
    s = Station(standard_as(), [standard_ei(SN1), standard_ei(SN2)])
    s.audit = FailingAudit()
    with pytest.raises(AuditError, match="No space left"):
        s.run()
