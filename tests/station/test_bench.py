"""A smoke run of ``keyload-host bench`` on the real station: it must work end to end and report
every figure in the expected shape. No timing is asserted (a benchmark is not a timed test);
counts that follow from the method are (three APDUs per key, the floor run at the floor).

Starts its own station like tests/test_station.py, so it is skipped when the applets are not
built or a station is already running.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from keyload_bench import report as bench_report
from keyload_bench import run as bench
from keyload_bench.stock import install_command
from keyload_bench.timing import SHARES
from keyload_host.protocol import AID_EI
from keyload_station import supervisor as station

REPO = Path(__file__).resolve().parents[2]
EI_APPLET_CLASS = REPO / "build/applets/classes/keyload/applet/EiApplet.class"
SMOKE = replace(bench.QUICK, sizes=(1,), overhead_cards=1, floor_cards=1)
SECTIONS = ("1. Round trip", "2. APDUs", "3. Throughput", "4. Host overhead", "5. Throughput")


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    if not EI_APPLET_CLASS.is_file():
        pytest.skip(f"the applets are not built ({EI_APPLET_CLASS} missing): run `ant station`")
    if station.status().running:
        pytest.skip("a station is already running; the benchmark would disturb it")
    return bench.run(SMOKE)


def test_round_trips_compare_both_bridges(report: dict[str, Any]) -> None:
    round_trip = report["round_trip"]
    assert round_trip["station"]["samples"] == SMOKE.station_samples
    assert round_trip["stock"]["samples"] == SMOKE.stock_samples
    assert round_trip["station_after_host_work"]["samples"] == SMOKE.station_samples
    for bridge in ("station", "station_after_host_work", "stock"):
        assert 0 < round_trip[bridge]["median_ms"] <= round_trip[bridge]["p95_ms"]
    assert round_trip["speedup"] == pytest.approx(
        round_trip["stock"]["median_ms"] / round_trip["station"]["median_ms"]
    )


def test_apdus_are_counted_per_card_key_and_session(report: dict[str, Any]) -> None:
    apdus = report["apdus"]
    floor, checked = apdus["floor"], apdus["with_checks"]
    assert floor["per_card"]["apdus"] == apdus["floor_per_card"] == 1 + 3 * report["keys"]
    assert floor["load_apdus_per_key"] == checked["load_apdus_per_key"] == 3
    assert checked["cards"] == sum(SMOKE.sizes)
    assert checked["per_card"]["apdus"] >= floor["per_card"]["apdus"]
    assert checked["per_card"]["commands"]["IMPORT KEY (EI)"] == report["keys"]
    assert floor["per_session"]["commands"] == {"SELECT (AS)": 1, "VERIFY (AS)": 1}
    assert checked["per_session"]["commands"] == {
        "SELECT (AS)": 1,
        "LIST KEYS (AS)": 1,
        "VERIFY (AS)": 1,
    }
    assert checked["per_card"]["apdus"] == floor["per_card"]["apdus"] + 1  # the EI's LIST KEYS
    for run in (floor, checked):
        assert sum(run["per_card"]["commands"].values()) == run["per_card"]["apdus"]
        assert run["per_card"]["bytes_sent"] > 0 and run["per_card"]["bytes_received"] > 0


def test_throughput_rows_split_the_time_of_every_card(report: dict[str, Any]) -> None:
    rows = report["throughput"] + report["readers"]
    assert [row["cards"] for row in report["throughput"]] == list(SMOKE.sizes)
    assert [row["readers"] for row in report["readers"]] == list(SMOKE.reader_counts)
    for row in rows:
        split = row["split_ms_per_card"]
        if row["readers"] > 1:  # readers served at once: their shares overlap, no split
            assert split is None
            continue
        assert set(split) == set(SHARES)
        assert sum(split.values()) == pytest.approx(row["ms_per_card"])
        assert split["card"] > 0 and split["pcsc"] > 0 and split["audit"] > 0
        assert row["cards_per_second"] == pytest.approx(1e3 / row["ms_per_card"])


def test_host_overhead_sets_personalize_against_the_raw_replay(report: dict[str, Any]) -> None:
    overhead = report["host_overhead"]
    assert overhead["cards"] == SMOKE.overhead_cards
    assert overhead["ratio"] == pytest.approx(overhead["wall_s"] / overhead["raw_round_trips_s"])
    assert overhead["ratio"] > overhead["ratio_without_audit"]
    assert overhead["ratio_without_audit"] > overhead["ratio_without_audit_and_connect"]
    assert 0 < overhead["host_alone_s"] < overhead["wall_s"]
    assert overhead["median_round_ratio"] > overhead["median_round_ratio_without_audit"]


def test_every_target_is_judged(report: dict[str, Any]) -> None:
    targets = [row["target"] for row in report["targets"]]
    assert any("per key" in target for target in targets)
    assert any("per card" in target for target in targets)
    assert any("stock bridge" in target for target in targets)
    assert any("overhead" in target for target in targets)
    assert report["flatness"] is None  # the smoke sizes stay below N = 10
    assert all(isinstance(row["met"], bool) for row in report["targets"])


def test_the_report_is_printed_and_written(report: dict[str, Any], tmp_path: Path) -> None:
    text = bench_report.format_report(report)
    assert all(section in text for section in SECTIONS)
    json_path, png_path = bench_report.write(report, tmp_path)
    assert json.loads(json_path.read_text()) == json.loads(json.dumps(report))
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert png_path is None
    else:
        assert png_path is not None
        assert png_path.read_bytes().startswith(b"\x89PNG")


def test_the_stock_bridge_gets_globalplatform_install_parameters() -> None:
    command = install_command(AID_EI)
    assert command[:4] == bytes.fromhex("80B80000")
    assert command[4:] == bytes([len(AID_EI) + 3, len(AID_EI)]) + AID_EI + b"\x00\x00"


@pytest.fixture(scope="module")
def real_cards(report: dict[str, Any]) -> dict[str, Any]:
    """The real-card series' smoke run (after the zero-latency one: one station at a time)."""
    from keyload_bench import realcards

    return realcards.run_series(None, quick=True)


def test_real_card_series_sets_each_point_against_the_as_ceiling(
    real_cards: dict[str, Any], tmp_path: Path
) -> None:
    from keyload_bench import realcards

    points = real_cards["points"]
    assert [(p["as_cards"], p["ei_readers"]) for p in points] == list(realcards.QUICK_POINTS)
    assert real_cards["profile"]["name"] == realcards.PROFILE
    assert "not a measurement" in real_cards["model_note"]
    for point in points:
        assert point["ceiling_cards_per_hour"] == pytest.approx(
            point["as_cards"] * 3600 / (point["as_ms_per_card"] / 1e3)
        )
        assert 0 < point["as_busy_share"] <= 1 and point["share_of_ceiling"] > 0
        assert point["as_ms_per_card"] > 100, "the AS's modelled EXPORT KEY time, 3 keys a card"
    text = bench_report.format_real_cards(real_cards)
    assert "a model of real cards" in text and "Targets of the real-card series" in text
    json_path, _png = bench_report.write_real_cards(real_cards, tmp_path)
    assert json.loads(json_path.read_text())["points"] == points
