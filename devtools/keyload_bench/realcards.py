"""The benchmark's real-card series: ``personalize --watch`` on a station whose readers follow the
JCOP 4 timing profile (a model of real cards, not a measurement), for 1 to 14 EI readers with one
AS and 14 with two (pcsc-lite serves 16 readers at most), each against the ceiling the AS sets
(1 / the AS's time per card). A card changer per reader swaps a fresh card in as soon as the
reader's card is done."""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from keyload_host import workflow
from keyload_host.audit import AuditLog
from keyload_host.cards import AsCard, EiCard
from keyload_host.transport import Pcsc
from keyload_station import supervisor as station
from keyload_station import timing as timing_profiles
from keyload_station.cardset import SetSecrets, set_up_as, set_up_ei

from .cards import KEYS, LOADS, SLOTS, serial_number

PROFILE = "jcop4"
MOST_EI_READERS = 14
"""pcsc-lite serves at most 16 readers per pcscd (PCSCLITE_MAX_READERS_CONTEXTS in pcsclite.h):
with two AS readers, 14 EI readers is the most one station can have."""
POINTS = ((1, 1), (1, 2), (1, 4), (1, 8), (1, MOST_EI_READERS), (2, MOST_EI_READERS))
"""(AS cards, EI readers) of each point."""
QUICK_POINTS = ((1, 1), (1, 2), (2, 2))
CARDS_PER_READER = 4
MIN_CARDS = 12
CEILING_TARGET = 0.90
"""1 AS, 8 EI readers: at least this share of the AS-bound ceiling."""
POOL_TARGET = 1.8
"""2 AS cards, the most EI readers: at least this many times the figure of 1 AS with as many."""
SERIAL_TARGET = 0.97
"""1 EI reader: at least this share of the best any serial code could do: one card after the
other, each costing its card change and its cards' time, and no host time at all."""
SECONDS_PER_HOUR = 3600.0
NANOS = 1e9
FIRST_SERIAL = 100_000
"""The real-card series' EI serials start here, apart from the zero-latency series' ones."""

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Point:
    """One measured point: how fast, against which ceiling, at what cost to the host."""

    as_cards: int
    ei_readers: int
    cards: int
    wall_s: float
    cards_per_hour: float
    """All cards over the whole run, ramp-up and tail included."""
    steady_cards_per_hour: float
    """Between the first and the last round's worth of cards: the rate a running station keeps."""
    as_ms_per_card: float
    """Card time of the AS cards per EI card (the station's count: modelled time)."""
    ei_ms_per_card: float
    ceiling_cards_per_hour: float
    """``as_cards`` / the AS time per card: what the AS cards allow at most."""
    share_of_ceiling: float
    as_busy_share: float
    host_cpu_ms_per_card: float
    """CPU time of the personalize threads per card (the card changer's excluded)."""
    card_change_ms_median: float
    """Swapping a fresh card in and setting it up (timing model off): the card changer's time,
    mostly pcscd noticing the swap (it looks at vpcd readers every 0.4 s)."""


class _CardChanger:
    """The EI readers as watch mode sees them (a ``workflow.CardWatch``), with a card changer
    behind: a reader whose card is done is hidden, gets a fresh card of the set (swapped in and
    set up at full speed, the timing model off meanwhile), and shows it; one changer per reader,
    as on a personalization machine; until ``cards`` were handed out."""

    def __init__(
        self, readers: Sequence[str], values: SetSecrets, cards: int, next_serial: Iterator[int]
    ) -> None:
        self.readers = list(readers)
        self.values = values
        self.wanted = cards
        self.next_serial = next_serial
        self.handed_out = 0
        self.done_times: list[float] = []
        self.change_seconds: list[float] = []
        self.changer_cpu = 0.0
        self._hidden: set[str] = set()
        self._changers: list[threading.Thread] = []
        self._refilled = threading.Event()
        self._lock = threading.Lock()
        self._watcher = Pcsc()
        self._watch = self._watcher.watch(self.readers)

    def __enter__(self) -> _CardChanger:
        for reader in self.readers:
            self._change(reader)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for changer in self._changers:
            changer.join()
        self._watcher.close()

    # CardWatch
    def cards(self) -> Mapping[str, int | None]:
        seen = self._watch.cards()
        with self._lock:
            return {r: None if r in self._hidden else card for r, card in seen.items()}

    def wait(self, timeout: float) -> None:
        """Until a changer shows a fresh card (the only way a card arrives here)."""
        self._refilled.wait(timeout)
        self._refilled.clear()

    def should_stop(self) -> bool:
        with self._lock:
            return len(self.done_times) >= self.wanted

    def on_card(self, report: workflow.CardReport) -> None:
        """A card is done: note when, and change it (or leave the reader empty at the end)."""
        with self._lock:
            self.done_times.append(time.perf_counter())
            self._hidden.add(report.reader)
            if self.handed_out >= self.wanted:
                return
            self.handed_out += 1
        changer = threading.Thread(target=self._change_counted, args=(report.reader,), daemon=True)
        with self._lock:
            self._changers.append(changer)
        changer.start()

    def _change_counted(self, reader: str) -> None:
        began = time.thread_time()
        self._change(reader, counted=True)
        with self._lock:
            self.changer_cpu += time.thread_time() - began
        self._refilled.set()

    def _change(self, reader: str, counted: bool = False) -> None:
        began = time.perf_counter()
        with self._lock:
            self._hidden.add(reader)
            if not counted:
                self.handed_out += 1
        serial = serial_number(next(self.next_serial))
        station.set_timing(reader, None)
        station.swap(reader)
        with Pcsc() as pcsc, pcsc.connect(reader) as transport:
            set_up_ei(EiCard(transport), serial, SLOTS, self.values)
        station.set_timing(reader, PROFILE)
        with self._lock:
            self.change_seconds.append(time.perf_counter() - began)
            self._hidden.discard(reader)


def _fresh_as(reader: str, values: SetSecrets) -> None:
    station.set_timing(reader, None)
    station.swap(reader)
    with Pcsc() as pcsc, pcsc.connect(reader) as transport:
        set_up_as(AsCard(transport), KEYS, values)
    station.set_timing(reader, PROFILE)


def _steady_rate(done_times: Sequence[float], readers: int) -> float:
    """Cards per hour between the first and the last round's worth of cards."""
    first, last = readers, len(done_times) - readers
    if last - first < 2:
        first, last = 0, len(done_times) - 1
    span = done_times[last] - done_times[first]
    return (last - first) / span * SECONDS_PER_HOUR if span > 0 else 0.0


@contextmanager
def _contexts(readers: Sequence[str]) -> Iterator[dict[str, Pcsc]]:
    with ExitStack() as stack:
        yield {reader: stack.enter_context(Pcsc()) for reader in readers}


def measure_point(
    as_readers: Sequence[str],
    ei_readers: Sequence[str],
    values: SetSecrets,
    audit_path: Path,
    next_serial: Iterator[int],
) -> Point:
    """One ``personalize --watch`` session of ``max(MIN_CARDS, CARDS_PER_READER * readers)``
    cards through ``ei_readers`` with the AS cards of ``as_readers``."""
    for reader in as_readers:
        _fresh_as(reader, values)
    cards = max(MIN_CARDS, CARDS_PER_READER * len(ei_readers))
    with (
        _CardChanger(ei_readers, values, cards, next_serial) as changer,
        _contexts([*as_readers, *ei_readers]) as contexts,
        AuditLog(audit_path) as audit,
        ExitStack() as connections,
    ):
        as_cards = [AsCard(connections.enter_context(contexts[r].connect(r))) for r in as_readers]

        @contextmanager
        def open_ei(reader: str) -> Iterator[EiCard]:
            with contexts[reader].connect(reader, reset=False) as transport:
                yield EiCard(transport)

        as_before, ei_before = station.card_seconds(as_readers), station.card_seconds(ei_readers)
        began, cpu_began = time.perf_counter(), time.process_time()
        results = workflow.run_watch(
            as_cards,
            LOADS,
            audit,
            values.pin,
            open_ei,
            changer,
            changer.should_stop,
            on_card=changer.on_card,
        )
        wall = time.perf_counter() - began
        cpu = time.process_time() - cpu_began
        as_seconds = station.card_seconds(as_readers) - as_before
        ei_seconds = station.card_seconds(ei_readers) - ei_before
    failed = [r for r in results if r.outcome != workflow.Outcome.LOADED]
    if failed or len(results) != cards * len(LOADS):
        reasons = "; ".join(sorted({f"{r.reason}" for r in failed}))
        raise RuntimeError(f"the real-card series did not load every key: {reasons}")
    as_per_card = as_seconds / cards
    ceiling = len(as_readers) * SECONDS_PER_HOUR / as_per_card
    steady = _steady_rate(changer.done_times, len(ei_readers))
    return Point(
        as_cards=len(as_readers),
        ei_readers=len(ei_readers),
        cards=cards,
        wall_s=wall,
        cards_per_hour=cards / wall * SECONDS_PER_HOUR,
        steady_cards_per_hour=steady,
        as_ms_per_card=as_per_card * 1e3,
        ei_ms_per_card=ei_seconds / cards * 1e3,
        ceiling_cards_per_hour=ceiling,
        share_of_ceiling=steady / ceiling,
        as_busy_share=as_seconds / len(as_readers) / wall,
        host_cpu_ms_per_card=(cpu - changer.changer_cpu) / cards * 1e3,
        card_change_ms_median=statistics.median(changer.change_seconds) * 1e3,
    )


def targets(points: Sequence[Point]) -> list[dict[str, Any]]:
    """The goals of the real-card series, met or not, each with its value."""
    by = {(p.as_cards, p.ei_readers): p for p in points}
    rows = []
    if (1, 8) in by:
        p = by[(1, 8)]
        rows.append(
            {
                "target": f"1 AS, 8 EI readers: >= {CEILING_TARGET:.0%} of the AS-bound ceiling",
                "value": f"{p.share_of_ceiling:.1%} ({p.steady_cards_per_hour:.0f} of "
                f"{p.ceiling_cards_per_hour:.0f} cards/hour)",
                "met": p.share_of_ceiling >= CEILING_TARGET,
            }
        )
    most = MOST_EI_READERS
    if (1, most) in by and (2, most) in by:
        ratio = by[(2, most)].steady_cards_per_hour / by[(1, most)].steady_cards_per_hour
        rows.append(
            {
                "target": f"2 AS cards, {most} EI readers (16 in the issue; pcsc-lite's limit): "
                f">= {POOL_TARGET:g}x the 1-AS figure",
                "value": f"{ratio:.2f}x",
                "met": ratio >= POOL_TARGET,
            }
        )
    if (1, 1) in by:
        p = by[(1, 1)]
        cycle_ms = p.as_ms_per_card + p.ei_ms_per_card + p.card_change_ms_median
        serial = SECONDS_PER_HOUR / (cycle_ms / 1e3)
        share = p.steady_cards_per_hour / serial
        rows.append(
            {
                "target": f"1 EI reader: >= {SERIAL_TARGET:.0%} of the best a serial run can do "
                "(card change, then the EI's and the AS's time, no host cost at all)",
                "value": f"{share:.1%} ({p.steady_cards_per_hour:.0f} of {serial:.0f} cards/hour)",
                "met": share >= SERIAL_TARGET,
            }
        )
    return rows


def run_series(
    audit_dir: str | None,
    quick: bool = False,
    progress: Progress = lambda _message: None,
) -> dict[str, Any]:
    """Start a station of JCOP 4 model cards, measure every point, stop it."""
    if station.status().running:
        raise RuntimeError("a simulated station is already running: stop it first (sim down)")
    points_wanted = QUICK_POINTS if quick else POINTS
    as_count = max(a for a, _ in points_wanted)
    ei_count = max(e for _, e in points_wanted)
    roles = [f"AS@{PROFILE}"] * as_count + [f"EI@{PROFILE}"] * ei_count
    readers = [station.reader_name(i) for i in range(len(roles))]
    as_readers, ei_readers = readers[:as_count], readers[as_count:]
    progress(f"real-card series: starting the station with {' '.join(roles)}")
    station.up(roles)
    profile = timing_profiles.load(PROFILE)
    points: list[Point] = []
    serials = iter(range(FIRST_SERIAL, FIRST_SERIAL + 10**6))
    try:
        with (
            tempfile.TemporaryDirectory(prefix="keyload-bench-", dir=audit_dir) as work,
            SetSecrets.drawn(KEYS) as values,
        ):
            for index, (as_wanted, ei_wanted) in enumerate(points_wanted):
                progress(f"real-card series: {as_wanted} AS, {ei_wanted} EI reader(s)")
                points.append(
                    measure_point(
                        as_readers[:as_wanted],
                        ei_readers[:ei_wanted],
                        values,
                        Path(work) / f"audit-{index}.jsonl",
                        serials,
                    )
                )
    finally:
        station.down()
    return {
        "profile": asdict(profile),
        "model_note": "a model of real cards (docs/PERFORMANCE.md), not a measurement",
        "points": [asdict(point) for point in points],
        "targets": targets(points),
    }
