"""The audit log's hash chain: every kind of edit is found and located, concurrent writers keep
one chain, and what the chain alone cannot see (a cut tail, a log rewritten whole) passes it,
as docs/SECURITY.md says; the anchors for those are tested with the inventory and the station."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest
from click.testing import CliRunner
from keyload_host.audit import AuditLog, line_hash
from keyload_host.audit_chain import verify_chain
from keyload_host.cli import main

RECORDS = 12


def write_log(path: Path, count: int = RECORDS) -> list[bytes]:
    """A log of ``count`` key records after its start record, some written in groups."""
    with AuditLog(path, station="test station") as audit:
        for index in range(count):
            if index % 4 == 0:
                with audit.group():
                    audit.record("key", ei_sn=f"{index:016X}", ref1=3, ref2=1, result="loaded")
                    audit.record("key", ei_sn=f"{index:016X}", ref1=16, ref2=5, result="loaded")
            else:
                audit.record("key", ei_sn=f"{index:016X}", ref1=3, ref2=1, result="loaded")
    return path.read_bytes().splitlines()


def put(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(line + b"\n" for line in lines))


def rechain(lines: list[bytes]) -> list[bytes]:
    """What someone who rewrites the whole tail does: sequence numbers and hashes recomputed."""
    out: list[bytes] = []
    for index, line in enumerate(lines):
        record = json.loads(line)
        record["seq"] = index
        record["prev"] = line_hash(out[-1]) if out else None
        out.append(json.dumps(record, separators=(",", ":")).encode())
    return out


def problems(path: Path) -> list[str]:
    return [f"{problem.line}: {problem.text}" for problem in verify_chain(path).problems]


def test_a_log_opens_with_its_start_record_and_every_record_chains_to_the_one_before(
    tmp_path: Path,
) -> None:
    path = tmp_path / "audit.jsonl"
    lines = write_log(path)
    records = [json.loads(line) for line in lines]
    assert records[0]["event"] == "log_start" and records[0]["seq"] == 0
    assert records[0]["prev"] is None
    assert {record["log"] for record in records} == {records[0]["log"]}
    assert [record["seq"] for record in records] == list(range(len(records)))
    for before, record in zip(lines, records[1:], strict=False):
        assert record["prev"] == line_hash(before)
    assert {record["station"] for record in records} == {"test station"}
    report = verify_chain(path)
    assert report.problems == []
    assert report.heads[records[0]["log"]].seq == len(records) - 1


def test_an_edited_record_is_found_where_it_is(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    lines = write_log(path)
    lines[5] = lines[5].replace(b'"loaded"', b'"failed"')
    put(path, lines)
    assert problems(path) == ["7: line 6 was changed: line 7 holds the hash of another text"]


def test_a_deleted_record_is_found_where_it_was(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    lines = write_log(path)
    del lines[5:7]
    put(path, lines)
    assert problems(path) == ["6: 2 record(s) missing before line 6 (sequence 5 to 6): deleted"]


def test_an_inserted_record_is_found(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    lines = write_log(path)
    forged = json.loads(lines[4])
    forged["ei_sn"] = "FFFFFFFFFFFFFFFF"
    lines.insert(5, json.dumps(forged, separators=(",", ":")).encode())
    put(path, lines)
    found = problems(path)
    assert found[0] == "6: line 6 has sequence 4 where 5 belongs: a record inserted or moved"
    assert found[1:] == [
        "7: line 7 was chained to line 5, not to line 6: a record inserted or moved between them"
    ]


def test_a_copy_of_a_record_from_another_log_is_found(tmp_path: Path) -> None:
    path, other = tmp_path / "audit.jsonl", tmp_path / "other.jsonl"
    lines = write_log(path)
    lines.insert(3, write_log(other)[3])
    put(path, lines)
    assert problems(path)[0].startswith("4: line 4 (log ")
    assert "does not follow the record before it" in problems(path)[0]


def test_reordered_records_are_found(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    lines = write_log(path)
    lines[5], lines[6] = lines[6], lines[5]
    put(path, lines)
    assert problems(path) == [
        "6: 1 record(s) missing before line 6 (sequence 5 to 5): deleted",
        "7: line 7 has sequence 5 where 7 belongs: a record inserted or moved",
        "8: line 8 was chained to line 6, not to line 7: a record inserted or moved between them",
    ]


def test_chain_fields_stripped_or_a_torn_line_are_found(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    lines = write_log(path)
    record = json.loads(lines[3])
    del record["prev"]
    lines[3] = json.dumps(record).encode()
    put(path, lines)
    assert problems(path)[0].startswith("4: line 4 carries no chain fields")
    path.write_bytes(path.read_bytes() + b'{"event":"ke')
    assert f"{len(lines) + 1}: the last line is cut short (no newline)" in problems(path)


def test_a_writer_after_a_torn_line_starts_a_new_log_chained_to_it(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_log(path, 2)
    path.write_bytes(path.read_bytes() + b'{"event":"ke')
    with AuditLog(path) as audit:
        audit.record("session_start")
    lines = path.read_bytes().splitlines()
    start = json.loads(lines[-2])
    assert start["event"] == "log_start" and start["prev"] == line_hash(lines[-3])
    assert [problem.line for problem in verify_chain(path).problems] == [len(lines) - 2]


def test_a_cut_tail_is_not_found_by_the_chain_alone(tmp_path: Path) -> None:
    """SECURITY.md: nothing follows the last record to disagree; the inventory's chain heads
    and the AS's export counters are the anchors for this."""
    path = tmp_path / "audit.jsonl"
    lines = write_log(path)
    put(path, lines[:-3])
    assert problems(path) == []


def test_a_log_rewritten_whole_is_not_found_by_the_chain_alone(tmp_path: Path) -> None:
    """SECURITY.md: a chain recomputed from the start record is a valid chain."""
    path = tmp_path / "audit.jsonl"
    lines = write_log(path)
    del lines[4]
    lines[2] = lines[2].replace(b'"loaded"', b'"failed"')
    put(path, rechain(lines))
    assert problems(path) == []


def _writer(path: str, name: str, count: int) -> None:
    with AuditLog(Path(path), station=name) as audit:
        for index in range(count):
            if index % 2:
                audit.record("key", ei_sn=f"{index:016X}", result="loaded")
            else:
                with audit.group():
                    audit.record("key", ei_sn=f"{index:016X}", ref2=1, result="loaded")
                    audit.record("key", ei_sn=f"{index:016X}", ref2=2, result="loaded")


def test_concurrent_writers_keep_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    context = multiprocessing.get_context("fork")
    writers = [
        context.Process(target=_writer, args=(str(path), f"station {n}", 60)) for n in range(4)
    ]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(30)
        assert writer.exitcode == 0
    report = verify_chain(path)
    assert report.problems == []
    assert len(report.heads) == 1, "one log: every writer chained to the file's tail"
    assert report.lines == 1 + 4 * (30 + 2 * 30)


def test_audit_verify_command(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    lines = write_log(path)
    result = CliRunner().invoke(main, ["audit", "verify", str(path)])
    assert result.exit_code == 0, result.output
    assert "chain intact" in result.output and result.output.endswith("verified\n")
    del lines[2]
    put(path, lines)
    result = CliRunner().invoke(main, ["audit", "verify", str(path)])
    assert result.exit_code == 1
    assert f"problem: {path}:3: 1 record(s) missing before line 3" in result.output
    missing = tmp_path / "missing.jsonl"
    result = CliRunner().invoke(main, ["audit", "verify", str(missing)])
    assert result.exit_code == 1 and "cannot read the audit log" in result.output


@pytest.mark.parametrize("count", [1, 3])
def test_each_run_appends_to_the_same_chain(tmp_path: Path, count: int) -> None:
    path = tmp_path / "audit.jsonl"
    for _ in range(count):
        write_log(path, 2)
    report = verify_chain(path)
    assert report.problems == [] and len(report.heads) == 1
    assert len({record["run"] for record in report.records}) == count
