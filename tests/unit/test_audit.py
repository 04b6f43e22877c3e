"""The audit log: JSON Lines, appended, fsync'ed per record, and never a secret."""

from __future__ import annotations

import json
import os
import stat
import threading
from datetime import datetime
from pathlib import Path

import pytest
from keyload_host.audit import AuditError, AuditLog, NullAuditLog
from keyload_host.secret_sources import Secret, SecretKind


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_records_are_json_lines_with_utc_time(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path) as audit:
        audit.record(
            "key",
            reader="R",
            ei_sn="4B4C000000000001",
            ref1=3,
            ref2=1,
            version=1,
            kcv="53E107",
            result="loaded",
            sw="9000",
        )
        audit.record("session_end", result="ok")
    start, first, second = lines(path)
    assert start["event"] == "log_start", "a new log opens with its start record"
    assert first["event"] == "key" and second["event"] == "session_end"
    assert {
        k: first[k] for k in ("reader", "ei_sn", "ref1", "ref2", "version", "kcv", "result", "sw")
    } == {
        "reader": "R",
        "ei_sn": "4B4C000000000001",
        "ref1": 3,
        "ref2": 1,
        "version": 1,
        "kcv": "53E107",
        "result": "loaded",
        "sw": "9000",
    }
    assert datetime.fromisoformat(first["time"]).utcoffset().total_seconds() == 0
    assert "ref1" not in second, "fields that are not given are left out"


def test_the_log_is_appended_to_and_private(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_text('{"event": "earlier"}\n')
    path.chmod(0o600)
    with AuditLog(path) as audit:
        audit.record("session_start")
    assert [record["event"] for record in lines(path)] == ["earlier", "log_start", "session_start"]
    new = tmp_path / "new.jsonl"
    AuditLog(new).close()
    assert stat.S_IMODE(new.stat().st_mode) == 0o600


@pytest.fixture
def synced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """For every ``fsync``, the number of lines the log at tmp_path/audit.jsonl had then."""
    path = tmp_path / "audit.jsonl"
    counts: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        counts.append(len(path.read_text().splitlines()))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return counts


def test_each_record_is_fsynced_before_record_returns(tmp_path: Path, synced: list[int]) -> None:
    with AuditLog(tmp_path / "audit.jsonl") as audit:
        audit.record("a")  # written with the log's start record, in the same write
        assert synced == [2]
        audit.record("b")
        assert synced == [2, 3]


def test_a_group_of_records_is_fsynced_once_when_it_ends(tmp_path: Path, synced: list[int]) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path) as audit:
        with audit.group():
            audit.record("a")
            with audit.group():  # joins the outer group
                audit.record("b")
            assert (path.read_text(), synced) == ("", [])
        assert synced == [3]
        events = [json.loads(line)["event"] for line in path.read_text().splitlines()]
        assert events == ["log_start", "a", "b"]
        with pytest.raises(RuntimeError), audit.group():
            audit.record("c")
            raise RuntimeError
        assert synced == [3, 4]
        with audit.group():
            pass
        assert synced == [3, 4]
        audit.record("d")
        assert synced == [3, 4, 5]


@pytest.mark.parametrize(
    "value",
    [
        b"\x40\x41",
        bytearray(b"\x40\x41"),
        memoryview(b"\x40\x41"),
        Secret(bytes(16), SecretKind.KEY),
        ["53E107", b"\x00"],
        {"nested": bytearray(1)},
    ],
    ids=["bytes", "bytearray", "memoryview", "Secret", "in a list", "in a dict"],
)
def test_the_guard_refuses_key_material(tmp_path: Path, value: object) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path) as audit, pytest.raises(AuditError, match="refused"):
        audit.record("key", message=value)
    assert path.read_text() == ""
    with pytest.raises(AuditError):
        NullAuditLog().record("key", kcv=value)


def test_unknown_fields_are_refused(tmp_path: Path) -> None:
    with (
        AuditLog(tmp_path / "audit.jsonl") as audit,
        pytest.raises(AuditError, match="transport_key"),
    ):
        audit.record("key", transport_key="4041")


def test_a_closed_log_refuses_records(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.jsonl")
    audit.close()
    with pytest.raises(AuditError, match="closed"):
        audit.record("key")


def test_an_unwritable_location(tmp_path: Path) -> None:
    with pytest.raises(AuditError, match="cannot open"):
        AuditLog(tmp_path / "missing-dir" / "audit.jsonl")


def test_groups_of_threads_serving_cards_at_once_are_written_whole(tmp_path: Path) -> None:
    """Each EI thread's card group reaches the file as one block, never mixed with another's."""

    barrier = threading.Barrier(4)
    with AuditLog(tmp_path / "audit.jsonl") as log:

        def card(reader: str) -> None:
            with log.group():
                for ref in range(1, 4):
                    log.record("key", reader=reader, ref2=ref)
                    if ref == 1:
                        barrier.wait(timeout=5)  # every thread is inside its group now

        threads = [threading.Thread(target=card, args=(f"EI {n}",)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    lines = (tmp_path / "audit.jsonl").read_text().splitlines()
    readers = [json.loads(line)["reader"] for line in lines[1:]]  # after the log's start record
    assert len(readers) == 12
    assert all(readers[i : i + 3] == [readers[i]] * 3 for i in range(0, 12, 3))
