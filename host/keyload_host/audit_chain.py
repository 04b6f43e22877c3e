"""Verify audit logs: the hash chain (an edited, deleted, inserted or reordered record is found
and located by line), and cross-checks with what cannot be edited: the chain heads an inventory
kept (a cut or rewritten tail), the AS's export counters (a deleted or invented export) and the
slots of an EI at hand (versions and KCVs).

What the chain alone cannot see, and docs/SECURITY.md says: a tail cut off after the last
record (nothing follows to disagree), and a whole log rewritten with a chain recomputed from its
start. The anchors are for those."""

from __future__ import annotations

import hmac
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .audit import CHAIN_FIELDS, EVENT_KEY, EVENT_LOG_START, line_hash
from .errors import KeyloadError
from .protocol import Info, KeyEntry, kcv_text


class AuditReadError(KeyloadError):
    """An audit log could not be read at all."""


@dataclass(frozen=True)
class Problem:
    """One finding, located: the file and, when it has one, the line (1-based)."""

    path: Path
    line: int | None
    text: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else f"{self.path}"
        return f"{where}: {self.text}"


@dataclass(frozen=True)
class Head:
    """The last record of one log as a file holds it."""

    log: str
    seq: int
    hash: str
    line: int


@dataclass
class ChainReport:
    """One file checked: its records (parsed, in order), the heads of the logs it holds, and
    every problem found."""

    path: Path
    lines: int = 0
    records: list[dict[str, Any]] = field(default_factory=list)
    heads: dict[str, Head] = field(default_factory=dict)
    hashes: dict[tuple[str, int], str] = field(default_factory=dict)
    """(log, seq) -> the hash of that record's line."""
    line_of: dict[str, int] = field(default_factory=dict)
    """The hash of a line -> its number."""
    problems: list[Problem] = field(default_factory=list)

    def problem(self, line: int | None, text: str) -> None:
        self.problems.append(Problem(self.path, line, text))


def _chained(record: object) -> bool:
    return isinstance(record, dict) and all(name in record for name in CHAIN_FIELDS)


def verify_chain(path: Path) -> ChainReport:
    """Walk the file once: every record must carry the hash of the line before it, its log's id
    and the next sequence number of that log; every break is reported where it is."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise AuditReadError(f"{path}: cannot read the audit log: {error.strerror}") from None
    report = ChainReport(path)
    if data and not data.endswith(b"\n"):
        report.problem(data.count(b"\n") + 1, "the last line is cut short (no newline)")
    previous_hash: str | None = None
    log: str | None = None
    seq = 0
    for number, raw in enumerate(data.splitlines(), start=1):
        report.lines = number
        this_hash = line_hash(raw)
        try:
            record = json.loads(raw)
        except ValueError:
            record = None
        if not _chained(record):
            what = "is not a JSON record" if record is None else "carries no chain fields"
            report.problem(
                number, f"line {number} {what} (written before the chain, torn, or edited)"
            )
            previous_hash, log = this_hash, None
            continue
        _check_link(report, number, record, previous_hash, log, seq)
        this_seq = record["seq"] if isinstance(record["seq"], int) else -1
        # a record moved back does not move the expected sequence back (one problem, not three)
        seq = max(seq, this_seq) if str(record["log"]) == log else this_seq
        log = str(record["log"])
        report.records.append(record)
        report.heads[log] = Head(log, this_seq, this_hash, number)
        report.hashes[(log, this_seq)] = this_hash
        report.line_of[this_hash] = number
        previous_hash = this_hash
    return report


def _check_link(
    report: ChainReport,
    number: int,
    record: dict[str, Any],
    previous_hash: str | None,
    log: str | None,
    seq: int,
) -> None:
    """Report what is wrong between line ``number`` and the line before it (at most one
    problem per line: the most telling one)."""
    linked = hmac.compare_digest(str(record["prev"]), str(previous_hash))
    if record["event"] == EVENT_LOG_START:
        if record["seq"] != 0:
            report.problem(number, f"line {number} starts a log with sequence {record['seq']}")
        elif str(record["log"]) in report.heads:
            report.problem(number, f"line {number} starts log {record['log']} a second time")
        elif not linked:
            report.problem(
                number,
                f"line {number} starts a log but holds the hash of another line before it: "
                "records before it were changed, inserted, deleted or moved",
            )
        return
    if log is None or str(record["log"]) != log:
        report.problem(
            number,
            f"line {number} (log {record['log']}, sequence {record['seq']}) does not follow the "
            "record before it: inserted from elsewhere, or moved",
        )
        return
    expected = seq + 1
    if record["seq"] != expected and isinstance(record["seq"], int) and record["seq"] > expected:
        missing = record["seq"] - expected
        report.problem(
            number,
            f"{missing} record(s) missing before line {number} (sequence {expected} to "
            f"{record['seq'] - 1}): deleted",
        )
    elif record["seq"] != expected:
        report.problem(
            number,
            f"line {number} has sequence {record['seq']} where {expected} belongs: "
            "a record inserted or moved",
        )
    elif not linked and str(record["prev"]) in report.line_of:
        report.problem(
            number,
            f"line {number} was chained to line {report.line_of[str(record['prev'])]}, not to "
            f"line {number - 1}: a record inserted or moved between them",
        )
    elif not linked:
        report.problem(
            number,
            f"line {number - 1} was changed: line {number} holds the hash of another text",
        )


def compare_heads(report: ChainReport, stored: Mapping[str, tuple[int, str]]) -> list[Problem]:
    """The file against the chain heads a store kept for its logs ({log: (seq, hash)}): a store
    head the file lacks is a cut tail, one with another hash a rewritten log. Logs the store
    never saw are not problems here (``unknown_logs`` lists them)."""
    problems = []
    for log, (seq, expected) in stored.items():
        if log not in report.heads:
            continue
        found = report.hashes.get((log, seq))
        if found is None:
            problems.append(
                Problem(
                    report.path,
                    None,
                    f"the store holds record {seq} of log {log}, the file ends at record "
                    f"{report.heads[log].seq}: its tail was cut off",
                )
            )
        elif not hmac.compare_digest(found, expected):
            problems.append(
                Problem(
                    report.path,
                    None,
                    f"record {seq} of log {log} is not the one the store saw: the log was "
                    "rewritten (its chain recomputed)",
                )
            )
    return problems


def unknown_logs(report: ChainReport, stored: Mapping[str, tuple[int, str]]) -> list[str]:
    return [log for log in report.heads if log not in stored]


def key_records(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [record for record in records if record.get("event") == EVENT_KEY]


def check_exports(
    records: Iterable[dict[str, Any]], as_id: str, keys: Sequence[KeyEntry]
) -> list[str]:
    """The exports the logs record for this AS against the counts the AS itself reports (which
    no one can edit): per key, the AS's count must equal the key records marked ``exported``."""
    logged = Counter(
        record.get("ref1")
        for record in key_records(records)
        if record.get("exported") is True and record.get("as_id") == as_id
    )
    problems = []
    for key in keys:
        if not key.loaded:
            continue
        recorded = logged.get(key.ref, 0)
        if key.count > recorded:
            problems.append(
                f"AS key {key.ref:02X}: the AS counted {key.count} export(s), the logs record "
                f"{recorded}: {key.count - recorded} missing (a record deleted, or a log of this "
                "AS not given)"
            )
        elif key.count < recorded:
            problems.append(
                f"AS key {key.ref:02X}: the logs record {recorded} export(s), the AS counted "
                f"{key.count}: {recorded - key.count} record(s) the AS never did"
            )
    return problems


def check_card(
    records: Iterable[dict[str, Any]], info: Info, slots: Sequence[KeyEntry]
) -> list[str]:
    """An EI at hand against the logs: each loaded slot must hold the version and KCV of the
    last record that loaded (or found) it, and a slot the logs say was loaded must be so."""
    serial = info.serial.hex().upper()
    last: dict[int, dict[str, Any]] = {}
    for record in key_records(records):
        if record.get("ei_sn") == serial and record.get("result") in ("loaded", "skipped"):
            last[record.get("ref2", -1)] = record
    problems = []
    for slot in slots:
        record = last.pop(slot.ref, None)
        if record is None:
            if slot.loaded:
                problems.append(
                    f"EI {serial} slot {slot.ref:02X} holds version {slot.version:04X} "
                    f"({kcv_text(slot.kcv)}), which no record of the logs loaded"
                )
            continue
        held = f"version {slot.version:04X} {kcv_text(slot.kcv)}" if slot.loaded else "nothing"
        said = f"version {record.get('version', 0):04X} {record.get('kcv')}"
        same = slot.loaded and record.get("version") == slot.version
        same = hmac.compare_digest(str(record.get("kcv")), kcv_text(slot.kcv)) and same
        if not same:
            problems.append(
                f"EI {serial} slot {slot.ref:02X}: the logs say {said}, the card holds {held}"
            )
    for ref2, record in sorted(last.items()):
        problems.append(
            f"EI {serial}: the logs say slot {ref2:02X} holds version "
            f"{record.get('version', 0):04X}, the card has no such slot"
        )
    return problems
