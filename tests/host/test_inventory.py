"""The inventory on SQLite, fed by the real workflow over fake cards: each record stored once
however often it is fed, the store down mid-batch and caught up, the chain heads that anchor
``audit verify``, and every question answered on 600 units (timings printed)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from keyload_host import crypto
from keyload_host.audit import AuditLog, line_hash
from keyload_host.cli import main
from keyload_host.inventory import InventoryFeed, Store, events, open_store
from keyload_host.protocol import kcv_text
from keyload_host.workflow import Outcome
from units import TA10, Load, as_pool, personalize, serial

UNITS = 600
REKEYED = 200


def store_at(tmp_path: Path) -> Store:
    return open_store(f"sqlite:///{tmp_path / 'inventory.sqlite'}")


def count(store: Store) -> int:
    with store.engine.connect() as connection:
        return connection.execute(sa.select(sa.func.count()).select_from(events)).scalar_one()


def chained_lines(*paths: Path) -> int:
    return sum(len(path.read_text().splitlines()) for path in paths)


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def test_each_record_is_stored_once_however_often_it_is_fed(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with store_at(tmp_path) as store, AuditLog(path) as journal:
        InventoryFeed(journal, store, path)
        personalize(as_pool(), [serial(n) for n in range(5)], journal)
        assert count(store) == chained_lines(path) == 1 + 5 * 2
        assert store.sync(path) == (11, 0)
        assert store.ingest([*feed_rows(path)]) == 0
    result = run("inventory", "sync", str(path), "--store", str(tmp_path / "other.sqlite"))
    assert result.exit_code == 0, result.output
    assert result.output == f"{path}: 11 record(s), 11 new to the inventory\n"
    result = run("inventory", "sync", str(path), "--store", str(tmp_path / "other.sqlite"))
    assert result.output == f"{path}: 11 record(s), 0 new to the inventory\n"


def feed_rows(path: Path) -> list[dict]:
    from keyload_host.inventory import read_rows

    return read_rows(path)


def test_the_store_down_mid_batch_catches_up_without_duplicates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "audit.jsonl"
    pool = as_pool()
    with store_at(tmp_path) as store, AuditLog(path) as journal:
        feed = InventoryFeed(journal, store, path)
        feed.RETRY_AFTER = 0.0
        personalize(pool, [serial(n) for n in range(3)], journal)
        real_ingest = store.ingest

        def down(*_args, **_kwargs):
            raise sa.exc.OperationalError("INSERT", {}, Exception("connection refused"))

        monkeypatch.setattr(store, "ingest", down)
        personalize(pool, [serial(n) for n in range(3, 8)], journal)
        assert count(store) == 1 + 3 * 2, "nothing new while the store is down"
        warnings = [r.getMessage() for r in caplog.records if "unreachable" in r.getMessage()]
        assert len(warnings) == 1, "one warning line, not one per card"
        assert "connection refused" in warnings[0] and str(path) in warnings[0]
        monkeypatch.setattr(store, "ingest", real_ingest)
        personalize(pool, [serial(8)], journal)  # the next card takes the waiting ones along
        assert count(store) == chained_lines(path) == 1 + 9 * 2
        assert store.sync(path)[1] == 0


def test_the_store_keeps_each_logs_chain_head_and_audit_verify_uses_it(tmp_path: Path) -> None:
    """SECURITY.md: with a store, a tail cut off or a log rewritten is found, up to the last
    sync."""
    path = tmp_path / "audit.jsonl"
    with AuditLog(path) as journal:
        personalize(as_pool(), [serial(n) for n in range(4)], journal)
    store_url = f"sqlite:///{tmp_path / 'inventory.sqlite'}"
    with open_store(store_url) as store:
        store.sync(path)
        (log, (seq, head)) = next(iter(store.chain_heads().items()))
    lines = path.read_bytes().splitlines()
    assert (seq, head) == (len(lines) - 1, line_hash(lines[-1]))
    assert run("audit", "verify", str(path), "--store", store_url).exit_code == 0
    path.write_bytes(b"".join(line + b"\n" for line in lines[:-2]))
    result = run("audit", "verify", str(path), "--store", store_url)
    assert result.exit_code == 1
    assert f"the store holds record {seq} of log {log}, the file ends at record {seq - 2}" in (
        result.output
    )
    rewritten = []
    for line in lines:
        record = json.loads(line)
        record["result"] = "failed" if record.get("result") == "loaded" else record.get("result")
        record["prev"] = line_hash(rewritten[-1]) if rewritten else None
        rewritten.append(json.dumps(record, separators=(",", ":")).encode())
    path.write_bytes(b"".join(line + b"\n" for line in rewritten))
    assert run("audit", "verify", str(path)).exit_code == 0, "the chain alone is satisfied"
    result = run("audit", "verify", str(path), "--store", store_url)
    assert result.exit_code == 1
    assert f"record {seq} of log {log} is not the one the store saw" in result.output


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """600 units loaded (03 -> 01, 10 -> 05 version 1) on two stations, then 200 re-keyed with
    version 2 of the MAC key; one record with a duplicated diversified KCV written by hand."""
    directory = tmp_path_factory.mktemp("campaign")
    url = f"sqlite:///{directory / 'inventory.sqlite'}"
    cards: dict = {}
    began = time.perf_counter()
    with open_store(url) as store:
        for station, numbers in (("station 1", range(0, 300)), ("station 2", range(300, UNITS))):
            path = directory / f"{station.replace(' ', '-')}.jsonl"
            with AuditLog(path, station=station) as journal:
                InventoryFeed(journal, store, path)
                personalize(as_pool(1), map(serial, numbers), journal, cards=cards)
        path = directory / "rekey.jsonl"
        with AuditLog(path, station="station 3") as journal:
            InventoryFeed(journal, store, path)
            results = personalize(
                as_pool(2), map(serial, range(REKEYED)), journal, [Load(0x10, 0x05)], cards=cards
            )
            assert {result.outcome for result in results} == {Outcome.LOADED}
            other = kcv_text(crypto.kcv(crypto.diversify(TA10, serial(1))))
            journal.record(
                "key", ei_sn=serial(999).hex().upper(), ref1=0x10, ref2=5, version=1, kcv=other,
                result="loaded", diversify=True,
            )  # fmt: skip
    print(f"\n{UNITS} units personalized and fed to SQLite in {time.perf_counter() - began:.2f} s")
    return directory, url


QUESTIONS = {
    "holding 05 0002": ["inventory", "holding", "05", "0002"],
    "lacking 05 0002": ["inventory", "lacking", "05", "0002"],
    "duplicates": ["inventory", "duplicates"],
    "loads --by station": ["inventory", "loads", "--by", "station"],
    "loads --by day": ["inventory", "loads", "--by", "day"],
    "loads --by run": ["inventory", "loads", "--by", "run"],
    "unit": ["inventory", "unit", serial(7).hex().upper()],
}


def test_every_question_on_600_units_under_a_second(campaign: tuple[Path, str]) -> None:
    _directory, url = campaign
    answers = {}
    figures = []
    for name, args in QUESTIONS.items():
        began = time.perf_counter()
        result = run(*args, "--store", url, "--json")
        elapsed = time.perf_counter() - began
        figures.append(
            f"  {name:<20} {elapsed * 1000:7.1f} ms  {len(json.loads(result.output))} row(s)"
        )
        answers[name] = json.loads(result.output)
        assert elapsed < 1.0, f"{name} took {elapsed:.2f} s"
    print(
        f"\ninventory questions on {UNITS} units (SQLite, CLI end to end):\n" + "\n".join(figures)
    )
    holding = answers["holding 05 0002"]
    assert len(holding) == REKEYED
    assert {row["sn"] for row in holding} == {serial(n).hex().upper() for n in range(REKEYED)}
    assert {row["station"] for row in holding} == {"station 3"}
    assert all(row["kcv"].startswith("cmac-aes:") for row in holding)
    lacking = answers["lacking 05 0002"]
    assert len(lacking) == UNITS - REKEYED + 1  # and the unit of the hand-written record
    assert {row["holds version"] for row in lacking} == {1}
    (duplicate,) = answers["duplicates"]
    assert duplicate["unit keys"] == 2
    assert {duplicate["first sn"], duplicate["last sn"]} == {
        serial(1).hex().upper(), serial(999).hex().upper()
    }  # fmt: skip
    by_station = {row["station"]: row for row in answers["loads --by station"]}
    assert by_station["station 1"]["loaded"] == by_station["station 2"]["loaded"] == 600
    assert by_station["station 3"]["loaded"] == REKEYED + 1
    assert sum(row["loaded"] for row in answers["loads --by day"]) == 2 * UNITS + REKEYED + 1
    assert len(answers["loads --by run"]) == 3
    history = answers["unit"]
    assert [(row["ref2"], row["version"]) for row in history] == [(1, 1), (5, 1), (5, 2)]
    assert {row["kcv_t"] for row in history} == {"cmac-aes:6F2F9B"}


def test_the_answers_as_tables_and_csv(campaign: tuple[Path, str]) -> None:
    _directory, url = campaign
    table = run("inventory", "holding", "05", "0002", "--store", url).output.splitlines()
    assert table[0].split()[:4] == ["SN", "REF2", "USAGE", "VERSION"]
    assert table[1].split()[:4] == [serial(0).hex().upper(), "05", "mac", "0002"]
    assert table[-1] == f"{REKEYED} row(s)"
    csv_lines = run("inventory", "lacking", "05", "0002", "--store", url, "--csv").output
    assert csv_lines.splitlines()[0] == "sn,holds version,since,station"
    assert run("inventory", "duplicates", "--store", url).exit_code == 1
    assert run("inventory", "unit", "FFFF", "--store", url).output == "none\n"
