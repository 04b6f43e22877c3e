"""One run of ``keyload-host bench``: start the station, set up the AS, measure round trips,
APDUs per card, throughput, host overhead and reader scaling, and build the report
(see docs/DESIGN.md, Benchmark, and docs/PERFORMANCE.md)."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from keyload_host.audit import AuditLog
from keyload_host.cards import AsCard
from keyload_host.protocol import AID_EI, Ins
from keyload_host.transport import Pcsc
from keyload_station import supervisor as station
from keyload_station.cardset import SetSecrets, set_up_as

from .cards import KEYS
from .raw import GET_INFO_COMMAND, BenchError, raw_cards, round_trips, select_command
from .runs import Overhead, Rig, floor_series, overhead, personalize_series, warm_up
from .stock import stock_bridge_card
from .timing import Exchange, RoundTimes, Tally, TimedAudit

FLOOR_PER_KEY = 3
"""GET CHALLENGE, EXPORT KEY, IMPORT KEY."""
FLOOR_PER_CARD = 1 + FLOOR_PER_KEY * len(KEYS)
"""One SELECT of the EI, then three APDUs per key."""
SPEEDUP_TARGET = 50.0
OVERHEAD_TARGET = 1.5
FLAT_TOLERANCE = 0.10
"""Time per card at the largest N may exceed that at N = 10 by this fraction and count as flat."""
FLAT_FROM = 10
DRIFT_PARTS = 5
"""Drift within the largest run compares its first and last fifth of rounds."""
LOAD_COMMANDS = (Ins.GET_CHALLENGE, Ins.EXPORT_KEY, Ins.IMPORT_KEY)
PERCENTILE_95 = 19
"""Index of the 95th percentile among ``statistics.quantiles(n=20)``."""
EI_APPLET_CLASS = "keyload.applet.EiApplet"
HOST_WORK_US = 100
"""Microseconds of busy computing before each round trip in the second latency series: about
what ``personalize`` computes between two APDUs on the station (its host share per card over
its APDUs per card), to show what that work costs the APDU after it."""
RAM_DIR = Path("/dev/shm")
DEFAULT_AUDIT_DIR = str(RAM_DIR) if RAM_DIR.is_dir() else None
AS_ROLE, EI_ROLE, EMPTY_ROLE = "AS", "EI", "EMPTY"
MS = 1e3

Progress = Callable[[str], None]


@dataclass(frozen=True)
class BenchOptions:
    """How much to measure. The defaults are the full run documented in docs/PERFORMANCE.md."""

    sizes: tuple[int, ...] = (1, 10, 100, 500)
    """Numbers of EI cards for the throughput series."""
    warmup_loads: int = 300
    """Loads of every key into one EI before anything is timed: jCardSim runs interpreted until
    the JVM has compiled it, which takes some hundreds of loads."""
    series_readers: int = 1
    """EI readers of the throughput, floor and overhead series: one, so that the card's time,
    the PC/SC stack's, the audit log's and the host's add up to the wall time (with several
    readers served at once their times overlap)."""
    reader_counts: tuple[int, ...] = (1, 2, 4)
    reader_cards: int = 24
    overhead_cards: int = 40
    floor_cards: int = 10
    station_samples: int = 2000
    stock_samples: int = 200
    stock: bool = True
    audit_dir: str | None = DEFAULT_AUDIT_DIR
    """Where the audit log goes. A RAM file system by default: the figures are keyload's and the
    PC/SC stack's, not the disk's, whose fsync latency on a shared machine ranges from 0.3 ms to
    seconds. None: the system's temporary directory."""
    control_port: int = 35990
    base_port: int = 35963

    @property
    def ei_readers(self) -> int:
        return max(self.series_readers, *self.reader_counts)


QUICK = BenchOptions(
    sizes=(1, 2),
    warmup_loads=10,
    reader_counts=(1, 2),
    reader_cards=2,
    overhead_cards=2,
    floor_cards=2,
    station_samples=200,
    stock_samples=10,
)
"""The smoke run: every measurement, a few cards each; seconds instead of minutes."""


def choose_options(*, quick: bool = False, audit_dir: Path | None = None) -> BenchOptions:
    """The full run or the smoke run, with the audit log where asked."""
    chosen = QUICK if quick else BenchOptions()
    return chosen if audit_dir is None else replace(chosen, audit_dir=str(audit_dir))


def _roles(options: BenchOptions) -> list[str]:
    return [AS_ROLE, *[EI_ROLE] * options.ei_readers, EMPTY_ROLE]


def _latency(samples: Sequence[float]) -> dict[str, float]:
    return {
        "samples": len(samples),
        "median_ms": statistics.median(samples) * MS,
        "p95_ms": statistics.quantiles(samples, n=20, method="inclusive")[PERCENTILE_95 - 1] * MS,
    }


def _round_trips(
    options: BenchOptions, ei_reader: str, stock_index: int, workdir: Path
) -> dict[str, Any]:
    with raw_cards([ei_reader]) as cards:
        card = cards[ei_reader]
        card.command(select_command(AID_EI))
        result: dict[str, Any] = {
            "command": "GET INFO to the EI applet",
            "station": _latency(round_trips(card, GET_INFO_COMMAND, options.station_samples)),
            "host_work_us": HOST_WORK_US,
            "station_after_host_work": _latency(
                round_trips(card, GET_INFO_COMMAND, options.station_samples, HOST_WORK_US / 1e6)
            ),
        }
    if options.stock:
        port = options.base_port + stock_index
        reader = station.reader_name(stock_index)
        with stock_bridge_card(reader, port, EI_APPLET_CLASS, AID_EI, workdir) as card:
            result["stock"] = _latency(round_trips(card, GET_INFO_COMMAND, options.stock_samples))
        result["speedup"] = result["stock"]["median_ms"] / result["station"]["median_ms"]
    return result


def _role(exchange: Exchange, as_reader: str) -> str:
    return AS_ROLE if exchange.reader == as_reader else EI_ROLE


def _counts(exchanges: Sequence[Exchange], as_reader: str, divisor: int) -> dict[str, Any]:
    by_command = Counter(f"{e.command_name} ({_role(e, as_reader)})" for e in exchanges)
    return {
        "apdus": len(exchanges) / divisor,
        "bytes_sent": sum(e.sent for e in exchanges) / divisor,
        "bytes_received": sum(e.received for e in exchanges) / divisor,
        "commands": {name: count / divisor for name, count in by_command.items()},
    }


def _accounting(tally: Tally, as_reader: str, sessions: int) -> dict[str, Any]:
    """APDUs and bytes per card and per key. The AS session (SELECT and VERIFY, and for
    ``personalize`` LIST KEYS) counts per session: it is opened once per ``personalize`` run,
    whatever the number of cards."""
    per_card = [exchange for r in tally.rounds for exchange in r.exchanges]
    per_session = [exchange for r in tally.session for exchange in r.exchanges]
    keys = tally.cards * len(KEYS)
    load_apdus = sum(1 for exchange in per_card if exchange.ins in LOAD_COMMANDS)
    return {
        "cards": tally.cards,
        "sessions": sessions,
        "per_card": _counts(per_card, as_reader, tally.cards),
        "per_session": _counts(per_session, as_reader, sessions),
        "load_apdus_per_key": load_apdus / keys,
        "apdus_per_key": len(per_card) / keys,
        "ms_per_card": tally.per_card_ms("wall"),
    }


def _throughput(tally: Tally, readers: int) -> dict[str, Any]:
    """Cards per second and time per card; the split of that time only for one reader (several
    are served at once, and their host, PC/SC and card times overlap: they add up to more than
    the wall time)."""
    return {
        "cards": tally.cards,
        "readers": readers,
        "rounds": len(tally.rounds),
        "cards_per_second": tally.cards_per_second,
        "ms_per_card": tally.per_card_ms("wall"),
        "median_round_ms_per_card": statistics.median(_round_ms_per_card(tally.rounds)),
        "split_ms_per_card": tally.split_ms() if readers == 1 else None,
        "apdus_per_card": sum(1 for _ in tally.exchanges) / tally.cards,
    }


def _round_ms_per_card(rounds: Sequence[RoundTimes]) -> list[float]:
    return [r.wall / r.cards * MS for r in rounds]


def _overhead(measured: Overhead) -> dict[str, Any]:
    """The ratio over the whole series, as defined, and the median of the rounds' ratios, which
    one stalled ``fsync`` or descheduled process cannot move; both without the audit log, and
    without it and the connections, to show what each costs."""
    tally = measured.tally
    wall, connect, audit = (tally.total(what) for what in ("wall", "connect", "audit"))
    raw_seconds = measured.raw_session + sum(measured.raw_rounds)

    def median_ratio(excluded: Sequence[str]) -> float:
        return statistics.median(
            (r.wall - sum(getattr(r, what) for what in excluded)) / seconds
            for r, seconds in zip(tally.rounds, measured.raw_rounds, strict=True)
        )

    return {
        "cards": tally.cards,
        "wall_s": wall,
        "raw_round_trips_s": raw_seconds,
        "transmit_s": tally.total("transmit"),
        "connect_disconnect_s": connect,
        "audit_s": audit,
        "host_s": tally.total("host"),
        "host_alone_s": measured.host_alone,
        "ratio": wall / raw_seconds,
        "ratio_without_audit": (wall - audit) / raw_seconds,
        "ratio_without_audit_and_connect": (wall - audit - connect) / raw_seconds,
        "median_round_ratio": median_ratio(()),
        "median_round_ratio_without_audit": median_ratio(("audit",)),
        "median_round_ratio_without_audit_and_connect": median_ratio(("audit", "connect")),
    }


def _flatness(throughput: Sequence[dict[str, Any]], largest: Tally) -> dict[str, Any] | None:
    """Time per card at the largest N against N = 10 (or the smallest N from 10 up), and within
    the largest run, its last fifth of rounds against its first fifth (medians: the machine's
    other work makes single rounds slow now and then, which says nothing about N)."""
    large = [row for row in throughput if row["cards"] >= FLAT_FROM]
    if len(large) < 2:
        return None
    first, last = large[0], large[-1]
    per_round = _round_ms_per_card(largest.rounds)
    fifth = max(1, len(per_round) // DRIFT_PARTS)
    drift = statistics.median(per_round[-fifth:]) / statistics.median(per_round[:fifth]) - 1
    return {
        "from_cards": first["cards"],
        "to_cards": last["cards"],
        "growth_mean": last["ms_per_card"] / first["ms_per_card"] - 1,
        "growth_median": last["median_round_ms_per_card"] / first["median_round_ms_per_card"] - 1,
        "drift_within_largest": drift,
    }


def _target(target: str, value: str, met: bool) -> dict[str, Any]:
    return {"target": target, "value": value, "met": met}


def _targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    checked, floor = report["apdus"]["with_checks"], report["apdus"]["floor"]
    rows = [
        _target(
            f"APDUs per key = {FLOOR_PER_KEY} (GET CHALLENGE, EXPORT KEY, IMPORT KEY)",
            f"{checked['load_apdus_per_key']:g}",
            checked["load_apdus_per_key"] == FLOOR_PER_KEY,
        ),
        _target(
            f"APDUs per card = {FLOOR_PER_CARD} (1 SELECT + {FLOOR_PER_KEY} per key)",
            f"personalize {checked['per_card']['apdus']:g}, "
            f"floor run {floor['per_card']['apdus']:g}",
            checked["per_card"]["apdus"] == FLOOR_PER_CARD,
        ),
    ]
    speedup = report["round_trip"].get("speedup")
    if speedup is not None:
        rows.append(
            _target(
                f"station >= {SPEEDUP_TARGET:g}x faster than the stock bridge",
                f"{speedup:.0f}x",
                speedup >= SPEEDUP_TARGET,
            )
        )
    overhead = report["host_overhead"]
    rows.append(
        _target(
            f"host overhead ratio <= {OVERHEAD_TARGET:g}",
            f"{overhead['ratio']:.2f}, median round {overhead['median_round_ratio']:.2f} "
            f"({overhead['median_round_ratio_without_audit']:.2f} without the audit log)",
            max(overhead["ratio"], overhead["median_round_ratio"]) <= OVERHEAD_TARGET,
        )
    )
    flat = report["flatness"]
    if flat is not None:
        rows.append(
            _target(
                f"time per card flat (within {FLAT_TOLERANCE:.0%}) from N = {flat['from_cards']} "
                f"to N = {flat['to_cards']}",
                f"median {flat['growth_median']:+.1%}, mean {flat['growth_mean']:+.1%}, within "
                f"N = {flat['to_cards']} {flat['drift_within_largest']:+.1%}",
                max(flat["growth_median"], flat["drift_within_largest"]) <= FLAT_TOLERANCE,
            )
        )
    return rows


def _command_output(command: Sequence[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    lines = (done.stdout + done.stderr).strip().splitlines()
    return lines[0] if lines else "unknown"


def machine() -> dict[str, Any]:
    """What the figures depend on: CPU, cores, memory, OS, the runtimes and pcsc-lite."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        memory_kb = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal:")
        )
    except (OSError, StopIteration, ValueError):
        memory_kb = 0
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kb / 2**20, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "java": _command_output(["java", "-version"]),
        "pcscd": _command_output(["pcscd", "--version"]),
    }


def run(options: BenchOptions, progress: Progress = lambda _message: None) -> dict[str, Any]:
    """Start the station, measure everything, stop it; the report as a JSON-ready dict."""
    if station.status().running:
        raise BenchError(
            "a simulated station is already running; the benchmark starts its own: "
            "stop it first (keyload-host sim down)"
        )
    roles = _roles(options)
    readers = [station.reader_name(index) for index in range(len(roles))]
    as_reader, ei_readers = readers[0], readers[1 : 1 + options.ei_readers]
    series_readers = ei_readers[: options.series_readers]
    report: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "options": asdict(options),
        "keys": len(KEYS),
    }
    progress(f"starting the station: {' '.join(roles)}")
    station.up(roles, control_port=options.control_port, base_port=options.base_port)
    try:
        with (
            tempfile.TemporaryDirectory(prefix="keyload-bench-", dir=options.audit_dir) as work,
            SetSecrets.drawn(KEYS) as values,
            Pcsc() as pcsc,
            AuditLog(Path(work) / "audit.jsonl") as audit,
        ):
            with pcsc.connect(as_reader) as transport:
                set_up_as(AsCard(transport), KEYS, values)
            rig = Rig(pcsc, values, as_reader, options.control_port, TimedAudit(audit))
            progress(
                f"warm-up: {options.warmup_loads} loads of each key (the JVM compiles jCardSim)"
            )
            warm_up(rig, series_readers[0], options.warmup_loads)
            report["throughput"] = []
            with_checks = Tally()
            for size in options.sizes:
                progress(f"personalize: {size} EI card(s) through {len(series_readers)} reader(s)")
                largest = personalize_series(rig, series_readers, size)
                with_checks.session += largest.session
                with_checks.rounds += largest.rounds
                report["throughput"].append(_throughput(largest, len(series_readers)))
            report["flatness"] = _flatness(report["throughput"], largest)
            progress(f"floor run: {options.floor_cards} EI cards, no checks")
            floor = floor_series(rig, series_readers, options.floor_cards)
            report["apdus"] = {
                "floor_per_card": FLOOR_PER_CARD,
                "floor_per_key": FLOOR_PER_KEY,
                "with_checks": _accounting(with_checks, as_reader, len(options.sizes)),
                "floor": _accounting(floor, as_reader, 1),
            }
            progress(f"host overhead: {options.overhead_cards} EI cards, each load replayed raw")
            report["host_overhead"] = _overhead(
                overhead(rig, series_readers, options.overhead_cards)
            )
            report["readers"] = []
            for count in options.reader_counts:
                progress(f"readers: {options.reader_cards} EI cards through {count} reader(s)")
                tally = personalize_series(rig, ei_readers[:count], options.reader_cards)
                report["readers"].append(_throughput(tally, count))
            report["swap_ms_median"] = statistics.median(rig.swap_seconds) * MS
            progress("round trips of a trivial APDU: the station, then jCardSim's stock bridge")
            report["round_trip"] = _round_trips(options, ei_readers[0], len(roles) - 1, Path(work))
    finally:
        station.down()
    report["targets"] = _targets(report)
    return report
