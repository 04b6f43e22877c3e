"""The benchmark's figure, four panels drawn from the report. Needs matplotlib (the ``bench``
extra of keyload-devtools); ``report.write`` skips the figure when it is missing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt  # after use(): the backend must be chosen first

SPLIT = (
    ("host", "host (keyload)"),
    ("audit", "audit log (fsync)"),
    ("pcsc", "PC/SC stack"),
    ("card", "card (jCardSim)"),
)
FIGURE_SIZE = (12, 8.5)
DPI = 110


def _round_trips(axes: Any, round_trip: dict[str, Any]) -> None:
    bridges = [
        ("keyload station", "station", "tab:green"),
        ("station, after\nhost work", "station_after_host_work", "tab:olive"),
        ("jCardSim stock bridge", "stock", "tab:gray"),
    ]
    present = [(name, round_trip[key], color) for name, key, color in bridges if key in round_trip]
    labels = [label for label, _, _ in present]
    medians = [stats["median_ms"] for _, stats, _ in present]
    p95 = [stats["p95_ms"] for _, stats, _ in present]
    axes.bar(labels, medians, color=[color for _, _, color in present], label="median")
    axes.scatter(labels, p95, color="black", marker="_", s=400, label="p95", zorder=3)
    axes.set_yscale("log")
    axes.set_ylabel("ms per APDU (log)")
    title = "1. Trivial APDU round trip"
    if "speedup" in round_trip:
        title += f": station {round_trip['speedup']:.0f}x faster"
    axes.set_title(title)
    axes.legend()


def _split_bars(axes: Any, rows: list[dict[str, Any]], key: str, title: str) -> None:
    labels = [str(row[key]) for row in rows]
    bottom = [0.0] * len(rows)
    for part, label in SPLIT:
        values = [
            row["split_ms_per_card"][part] if row["split_ms_per_card"] else 0.0 for row in rows
        ]
        axes.bar(labels, values, bottom=bottom, label=label)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    overlapping = [row["ms_per_card"] if not row["split_ms_per_card"] else 0.0 for row in rows]
    if any(overlapping):  # several readers at once: their shares overlap, only the total counts
        axes.bar(labels, overlapping, color="tab:gray", label="readers at once (no split)")
        bottom = [max(b, o) for b, o in zip(bottom, overlapping, strict=True)]
    for index, row in enumerate(rows):
        axes.annotate(
            f"{row['cards_per_second']:.0f}/s",
            (index, bottom[index]),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    axes.set_ylabel("ms per card")
    axes.set_title(title)
    axes.legend(fontsize=8)


def _apdus(axes: Any, apdus: dict[str, Any], keys: int) -> None:
    runs = [("personalize", apdus["with_checks"]), ("floor", apdus["floor"])]
    names = list(dict.fromkeys(name for _, run in runs for name in run["per_card"]["commands"]))
    left = [0.0] * len(runs)
    for name in names:
        counts = [run["per_card"]["commands"].get(name, 0) for _, run in runs]
        axes.barh([label for label, _ in runs], counts, left=left, label=name)
        left = [a + b for a, b in zip(left, counts, strict=True)]
    axes.axvline(apdus["floor_per_card"], color="black", linestyle="--", linewidth=1)
    axes.set_xlabel(f"APDUs per EI card ({keys} keys); dashed: the floor")
    axes.set_title("2. APDUs per card by command")
    axes.set_xlim(0, apdus["floor_per_card"] * 1.6)
    axes.legend(fontsize=7, loc="center right")


def plot(report: dict[str, Any], path: Path) -> None:
    figure, panels = plt.subplots(2, 2, figsize=FIGURE_SIZE)
    _round_trips(panels[0][0], report["round_trip"])
    _apdus(panels[0][1], report["apdus"], report["keys"])
    _split_bars(panels[1][0], report["throughput"], "cards", "3. Time per card against N cards")
    panels[1][0].set_xlabel("EI cards personalized (N)")
    _split_bars(panels[1][1], report["readers"], "readers", "5. Time per card against readers")
    panels[1][1].set_xlabel("EI readers")
    machine = report["machine"]
    figure.suptitle(
        f"keyload personalize on the simulated station; host overhead ratio "
        f"{report['host_overhead']['ratio']:.2f}. {machine['cpu']}, {machine['cores']} cores",
        fontsize=10,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)
    plt.close(figure)


def plot_real_cards(series: dict[str, Any], path: Path) -> None:
    """Cards per hour against EI readers with one AS and with two, each against its ceiling."""
    figure, axes = plt.subplots(figsize=(8, 5))
    for as_cards, color in ((1, "tab:blue"), (2, "tab:orange")):
        points = [p for p in series["points"] if p["as_cards"] == as_cards]
        if not points:
            continue
        readers = [p["ei_readers"] for p in points]
        axes.plot(
            readers,
            [p["steady_cards_per_hour"] for p in points],
            marker="o",
            color=color,
            label=f"{as_cards} AS: personalize --watch (steady)",
        )
        ceiling = max(p["ceiling_cards_per_hour"] for p in points)
        axes.axhline(ceiling, color=color, linestyle="--", label=f"{as_cards} AS: ceiling")
    axes.set_xscale("log", base=2)
    ticks = sorted({p["ei_readers"] for p in series["points"]})
    axes.set_xticks(ticks, labels=[str(t) for t in ticks])
    axes.set_xlabel("EI readers")
    axes.set_ylabel("cards per hour")
    axes.set_ylim(bottom=0)
    profile = series["profile"]["name"]
    axes.set_title(f"Cards per hour, {profile} timing profile (a model, not a measurement)")
    axes.legend(loc="lower right")
    axes.grid(True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
