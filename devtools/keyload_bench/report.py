"""The benchmark's report as text tables and files: performance.json, and the plot when
matplotlib is installed (``pip install -e 'devtools[bench]'``)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from keyload_host.tables import format_table

from .timing import SHARES

REPORT_NAME = "performance.json"
PLOT_NAME = "performance.png"
REAL_CARDS_REPORT_NAME = "real-cards.json"
REAL_CARDS_PLOT_NAME = "real-cards.png"
REAL_CARDS_HEADERS = [
    "AS",
    "EI readers",
    "cards",
    "cards/hour",
    "steady",
    "ceiling",
    "of ceiling",
    "AS busy",
    "AS ms/card",
    "EI ms/card",
    "host CPU ms/card",
    "card change ms",
]
BRIDGES = (
    ("keyload station", "station"),
    ("keyload station, after host work", "station_after_host_work"),
    ("jCardSim VSmartCard (stock)", "stock"),
)
RUNS = (("personalize (with checks)", "with_checks"), ("floor run", "floor"))
SHARE_HEADERS = {"host": "host", "audit": "audit", "pcsc": "pc/sc", "card": "card"}
THROUGHPUT_HEADERS = [
    "cards",
    "readers",
    "cards/s",
    "at median",
    "ms/card",
    "median",
    *SHARE_HEADERS.values(),
    "apdus/card",
]


def _ms(value: float) -> str:
    return f"{value:.3f}" if value < 1 else f"{value:.2f}"


def _latency_rows(round_trip: dict[str, Any]) -> list[list[object]]:
    return [
        [
            label,
            round_trip[key]["samples"],
            _ms(round_trip[key]["median_ms"]),
            _ms(round_trip[key]["p95_ms"]),
        ]
        for label, key in BRIDGES
        if key in round_trip
    ]


def _apdu_rows(apdus: dict[str, Any]) -> list[list[str]]:
    rows = []
    for label, key in RUNS:
        run = apdus[key]
        card, session = run["per_card"], run["per_session"]
        rows.append(
            [
                label,
                f"{card['apdus']:g}",
                f"{run['load_apdus_per_key']:g}",
                f"{run['apdus_per_key']:.2f}",
                f"{card['bytes_sent']:.0f}/{card['bytes_received']:.0f}",
                f"{session['apdus']:g}",
                _ms(run["ms_per_card"]),
            ]
        )
    return rows


def _command_rows(apdus: dict[str, Any]) -> Iterator[list[str]]:
    runs = [apdus[key] for _, key in RUNS]
    for scope in ("per_card", "per_session"):
        names = list(dict.fromkeys(name for run in runs for name in run[scope]["commands"]))
        yield from (
            [f"{name}, {scope.replace('_', ' ')}"]
            + [f"{run[scope]['commands'].get(name, 0):g}" for run in runs]
            for name in names
        )


def _throughput_rows(rows: Sequence[dict[str, Any]]) -> list[list[object]]:
    return [
        [
            row["cards"],
            row["readers"],
            f"{row['cards_per_second']:.1f}",
            f"{1e3 / row['median_round_ms_per_card']:.1f}",
            _ms(row["ms_per_card"]),
            _ms(row["median_round_ms_per_card"]),
            *(
                _ms(row["split_ms_per_card"][share]) if row["split_ms_per_card"] else "-"
                for share in SHARES
            ),
            f"{row['apdus_per_card']:g}",
        ]
        for row in rows
    ]


def _overhead_lines(overhead: dict[str, Any]) -> list[str]:
    cards = overhead["cards"]

    def per_card(seconds: float) -> str:
        return f"{seconds / cards * 1e3:.2f} ms/card"

    return [
        f"personalize: {per_card(overhead['wall_s'])} wall, of which the audit log "
        f"{per_card(overhead['audit_s'])}, connecting, disconnecting and watching the cards "
        f"{per_card(overhead['connect_disconnect_s'])}, keyload's own work "
        f"{per_card(overhead['host_s'])}",
        f"its APDU round trips: {per_card(overhead['transmit_s'])}; the same APDUs through a "
        f"minimal pyscard loop: {per_card(overhead['raw_round_trips_s'])}",
        f"personalize on the recorded responses, without I/O (the host alone): "
        f"{per_card(overhead['host_alone_s'])}",
        f"ratio over the run {overhead['ratio']:.2f}; without the audit log "
        f"{overhead['ratio_without_audit']:.2f}; without it and the connections "
        f"{overhead['ratio_without_audit_and_connect']:.2f}",
        f"median of the rounds' ratios {overhead['median_round_ratio']:.2f}; without the audit "
        f"log {overhead['median_round_ratio_without_audit']:.2f}; without it and the "
        f"connections {overhead['median_round_ratio_without_audit_and_connect']:.2f}",
    ]


def format_report(report: dict[str, Any]) -> str:
    """The whole report as the terminal shows it."""
    machine = report["machine"]
    round_trip = report["round_trip"]
    apdus = report["apdus"]
    parts = [
        f"keyload benchmark, {report['date']}: {machine['cpu']}, {machine['cores']} cores, "
        f"{machine['memory_gib']} GiB; {machine['os']}; Python {machine['python']}; "
        f"{machine['java']}; {machine['pcscd']}",
        "",
        f"1. Round trip of a trivial APDU ({round_trip['command']}), pyscard -> pcscd -> vpcd",
        format_table(["bridge", "samples", "median ms", "p95 ms"], _latency_rows(round_trip)),
    ]
    parts.append(
        f"(after host work: each round trip follows {round_trip['host_work_us']} us of busy "
        "computing, as between two APDUs of personalize)"
    )
    if "speedup" in round_trip:
        parts.append(f"the station is {round_trip['speedup']:.0f}x faster than the stock bridge")
    parts += [
        "",
        f"2. APDUs per EI card with {report['keys']} keys (floor: {apdus['floor_per_card']} per "
        f"card, {apdus['floor_per_key']} per key); the AS session's count once per run",
        format_table(
            [
                "run",
                "apdus/card",
                "load apdus/key",
                "apdus/key",
                "bytes out/in per card",
                "apdus/session",
                "ms/card",
            ],
            _apdu_rows(apdus),
        ),
        format_table(["command", "personalize", "floor"], list(_command_rows(apdus))),
        "",
        "3. Throughput of personalize: cards/s over the whole run and at the median round; "
        "ms per card: mean, median round, and the mean's split",
        format_table(THROUGHPUT_HEADERS, _throughput_rows(report["throughput"])),
        "",
        "4. Host overhead",
        *_overhead_lines(report["host_overhead"]),
        "",
        "5. Throughput against the number of EI readers",
        format_table(THROUGHPUT_HEADERS, _throughput_rows(report["readers"])),
        f"(a card swap takes the station and pcscd {report['swap_ms_median']:.0f} ms; not timed)",
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


def format_real_cards(series: dict[str, Any]) -> str:
    """The real-card series as a table and its targets; says that the cards are a model."""
    profile = series["profile"]
    rows = [
        [
            p["as_cards"],
            p["ei_readers"],
            p["cards"],
            f"{p['cards_per_hour']:.0f}",
            f"{p['steady_cards_per_hour']:.0f}",
            f"{p['ceiling_cards_per_hour']:.0f}",
            f"{p['share_of_ceiling']:.1%}",
            f"{p['as_busy_share']:.1%}",
            f"{p['as_ms_per_card']:.0f}",
            f"{p['ei_ms_per_card']:.0f}",
            f"{p['host_cpu_ms_per_card']:.1f}",
            f"{p['card_change_ms_median']:.0f}",
        ]
        for p in series["points"]
    ]
    return "\n".join(
        [
            f"Real-card series: every reader follows the timing profile {profile['name']} "
            f"({profile['description']}): {series['model_note']}.",
            "cards/hour: the whole run; steady: between the first and the last round's worth of "
            "cards; ceiling: AS cards / AS time per card",
            format_table(REAL_CARDS_HEADERS, rows),
            "",
            "Targets of the real-card series",
            format_table(
                ["target", "value", "met"],
                [[t["target"], t["value"], "yes" if t["met"] else "NO"] for t in series["targets"]],
            ),
        ]
    )


def write_real_cards(series: dict[str, Any], out: Path) -> tuple[Path, Path | None]:
    """Write real-cards.json and, if matplotlib is there, real-cards.png into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / REAL_CARDS_REPORT_NAME
    json_path.write_text(json.dumps(series, indent=2) + "\n")
    try:
        from .plot import plot_real_cards
    except ImportError:
        return json_path, None
    png_path = out / REAL_CARDS_PLOT_NAME
    plot_real_cards(series, png_path)
    return json_path, png_path


def write(report: dict[str, Any], out: Path) -> tuple[Path, Path | None]:
    """Write performance.json and, if matplotlib is there, performance.png into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / REPORT_NAME
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    try:
        from .plot import plot
    except ImportError:
        return json_path, None
    png_path = out / PLOT_NAME
    plot(report, png_path)
    return json_path, png_path
