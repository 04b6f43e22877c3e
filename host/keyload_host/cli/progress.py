"""What ``personalize`` shows while it runs: in a terminal, a live block with one line per EI
reader (what it is doing, cards done and failed), the rate and, for a batch, the expected end;
one line per card that is done or could not be served. Not in a terminal: the card lines only."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Sequence
from typing import TextIO

import click

from .. import workflow

REDRAW_INTERVAL = 0.1
"""Seconds between two redraws of the live block at most."""
CURSOR_UP_AND_CLEAR = "\x1b[{n}F\x1b[J"


class Progress:
    """Thread-safe: the EI threads report through ``on_result`` and ``on_card``."""

    def __init__(
        self,
        readers: Sequence[str],
        *,
        cards_expected: int | None = None,
        stream: TextIO | None = None,
        live: bool | None = None,
    ) -> None:
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self.cards_expected = cards_expected
        self.readers = {reader: "waiting for a card" for reader in readers}
        self.done = dict.fromkeys(readers, 0)
        self.failed = dict.fromkeys(readers, 0)
        self.started = time.monotonic()
        self._keys_seen: dict[str, int] = {}
        self._lines_drawn = 0
        self._drawn_at = 0.0
        self._lock = threading.Lock()

    def on_result(self, result: workflow.LoadResult) -> None:
        """A key of a card in ``result.reader`` is done: that reader is busy with the card."""
        with self._lock:
            seen = self._keys_seen.get(result.reader, 0) + 1
            self._keys_seen[result.reader] = seen
            self.readers[result.reader] = f"{result.serial or 'card'}: {seen} key(s) done"
            self._draw(force=False)

    def on_card(self, report: workflow.CardReport) -> None:
        """A card is done (or could not be served): one line for it, and the reader is free."""
        outcomes = [result.outcome for result in report.results]
        failed = bool(report.problem) or workflow.Outcome.FAILED in outcomes
        with self._lock:
            self._keys_seen.pop(report.reader, None)
            self.done[report.reader] = self.done.get(report.reader, 0) + 1
            self.failed[report.reader] = self.failed.get(report.reader, 0) + failed
            self.readers[report.reader] = "waiting for a card"
            self._print(card_line(report))
            self._draw(force=True)

    def finish(self) -> None:
        """Leave the last state of the live block on screen."""
        with self._lock:
            self._draw(force=True)
            self._lines_drawn = 0

    def _print(self, line: str) -> None:
        self._clear()
        self.stream.write(line + "\n")
        self.stream.flush()

    def _clear(self) -> None:
        if self.live and self._lines_drawn:
            self.stream.write(CURSOR_UP_AND_CLEAR.format(n=self._lines_drawn))
            self._lines_drawn = 0

    def _draw(self, *, force: bool) -> None:
        if not self.live or (not force and time.monotonic() - self._drawn_at < REDRAW_INTERVAL):
            return
        self._clear()
        lines = [
            f"  {reader}: {state}  ({self.done[reader]} done, {self.failed[reader]} failed)"
            for reader, state in self.readers.items()
        ]
        lines.append("  " + self.summary())
        self.stream.write("\n".join(lines) + "\n")
        self.stream.flush()
        self._lines_drawn = len(lines)
        self._drawn_at = time.monotonic()

    def summary(self) -> str:
        """Cards done and failed, the rate, and for a batch the expected end."""
        done, failed = sum(self.done.values()), sum(self.failed.values())
        elapsed = time.monotonic() - self.started
        rate = done / elapsed * 3600 if elapsed > 0 else 0.0
        text = f"{done} card(s) done, {failed} failed, {rate:.0f} cards/hour"
        if self.cards_expected and done:
            left = self.cards_expected - done
            text += f", {left} to go, about {left * elapsed / done:.0f} s left"
        return text


def card_line(report: workflow.CardReport) -> str:
    """One line for a card: its keys' outcomes, or why it could not be served and what to do."""
    who = f"EI {report.serial}" if report.serial else "a card"
    where = f"{who} in reader '{report.reader}'"
    if report.problem:
        return f"{where}: not served: {report.problem}"
    counts = {outcome: 0 for outcome in workflow.Outcome}
    for result in report.results:
        counts[result.outcome] += 1
    text = ", ".join(f"{n} {outcome.value}" for outcome, n in counts.items() if n)
    reasons = sorted({r.reason for r in report.results if r.outcome == workflow.Outcome.FAILED})
    return f"{where}: {text}" + (f" ({'; '.join(reasons)})" if reasons else "")


def echo_card(report: workflow.CardReport) -> None:
    """``card_line`` to standard output (used when no live block is drawn)."""
    click.echo(card_line(report))
