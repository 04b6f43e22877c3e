"""The benchmark's report as text tables and files: performance.json, and the plot when
matplotlib is installed (``pip install -e '.[bench]'``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .tables import format_table

REPORT_NAME = "performance.json"
PLOT_NAME = "performance.png"


def _ms(value: float) -> str:
    return f"{value:.3f}" if value < 1 else f"{value:.2f}"


def _latency_rows(round_trip: dict[str, Any]) -> list[list[str]]:
    bridges = [("keyload station", "station"), ("jCardSim VSmartCard (stock)", "stock")]
    return [
        [
            label,
            round_trip[key]["samples"],
            _ms(round_trip[key]["median_ms"]),
            _ms(round_trip[key]["p95_ms"]),
        ]
        for label, key in bridges
        if key in round_trip
    ]


def _apdu_rows(apdus: dict[str, Any]) -> list[list[str]]:
    rows = []
    for label, key in (("personalize (with checks)", "with_checks"), ("floor run", "floor")):
        run = apdus[key]
        card, batch = run["per_card"], run["per_batch"]
        rows.append(
            [
                label,
                f"{card['apdus']:g}",
                f"{run['per_key']:.2f}",
                f"{card['bytes_sent']:.0f}/{card['bytes_received']:.0f}",
                f"{batch['apdus']:g}",
                _ms(run["ms_per_card"]),
            ]
        )
    return rows


def _command_rows(apdus: dict[str, Any]) -> list[list[str]]:
    checked = apdus["with_checks"]["per_card"]["commands"]
    floor = apdus["floor"]["per_card"]["commands"]
    names = list(dict.fromkeys([*checked, *floor]))
    return [[name, f"{checked.get(name, 0):g}", f"{floor.get(name, 0):g}"] for name in names]


def _throughput_rows(rows: Sequence[dict[str, Any]]) -> list[list[str]]:
    return [
        [
            row["cards"],
            row["readers"],
            f"{row['cards_per_second']:.1f}",
            _ms(row["ms_per_card"]),
            _ms(row["median_round_ms_per_card"]),
            _ms(row["split_ms_per_card"]["host"]),
            _ms(row["split_ms_per_card"]["pcsc"]),
            _ms(row["split_ms_per_card"]["card"]),
            f"{row['apdus_per_card']:g}",
        ]
        for row in rows
    ]


_THROUGHPUT_HEADERS = [
    "cards",
    "readers",
    "cards/s",
    "ms/card",
    "median",
    "host",
    "pc/sc",
    "card",
    "apdus/card",
]


def format_report(report: dict[str, Any]) -> str:
    """The whole report as the terminal shows it."""
    machine = report["machine"]
    round_trip = report["round_trip"]
    overhead = report["host_overhead"]
    apdus = report["apdus"]
    parts = [
        f"keyload benchmark, {report['date']}: {machine['cpu']}, {machine['cores']} cores, "
        f"{machine['memory_gib']} GiB; {machine['os']}; Python {machine['python']}; "
        f"{machine['java']}; {machine['pcscd']}",
        "",
        f"1. Round trip of a trivial APDU ({round_trip['command']}), pyscard -> pcscd -> vpcd",
        format_table(["bridge", "samples", "median ms", "p95 ms"], _latency_rows(round_trip)),
    ]
    if "speedup" in round_trip:
        parts.append(f"the station is {round_trip['speedup']:.0f}x faster than the stock bridge")
    parts += [
        "",
        f"2. APDUs per EI card with {apdus['keys']} keys "
        f"(floor: {apdus['floor_per_card']} per card, {apdus['floor_per_key']} per key)",
        format_table(
            ["run", "apdus/card", "apdus/key", "bytes out/in per card", "apdus/batch", "ms/card"],
            _apdu_rows(apdus),
        ),
        format_table(["command per card", "personalize", "floor"], _command_rows(apdus)),
        "",
        "3. Throughput of personalize (ms per card: mean, median round, and the mean split)",
        format_table(_THROUGHPUT_HEADERS, _throughput_rows(report["throughput"])),
        "",
        f"4. Host overhead: personalize {overhead['wall_s'] * 1e3:.1f} ms wall for "
        f"{overhead['cards']} cards, the same APDUs raw {overhead['raw_round_trips_s'] * 1e3:.1f} "
        f"ms: ratio {overhead['ratio']:.2f} ({overhead['ratio_without_connect']:.2f} without "
        f"connecting and disconnecting the cards, {overhead['connect_disconnect_s'] * 1e3:.1f} ms)",
        "",
        "5. Throughput against the number of EI readers",
        format_table(_THROUGHPUT_HEADERS, _throughput_rows(report["readers"])),
        f"(a card swap takes the station and pcscd {report['swap_ms_median']:.0f} ms, not timed)",
        "",
        "Targets",
        format_table(
            ["target", "value", "met"],
            [
                [row["target"], row["value"], "yes" if row["met"] else "NO"]
                for row in report["targets"]
            ],
        ),
    ]
    return "\n".join(parts)


def write(report: dict[str, Any], out: Path) -> tuple[Path, Path | None]:
    """Write performance.json and, if matplotlib is there, performance.png into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / REPORT_NAME
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    try:
        from .bench_plot import plot
    except ImportError:
        return json_path, None
    png_path = out / PLOT_NAME
    plot(report, png_path)
    return json_path, png_path
