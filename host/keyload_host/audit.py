"""Append-only JSON Lines audit log of what was done to which card: one ``write`` and one ``fsync``
per record or per group of records (one EI card), a guard that refuses secret values, and a
SHA-256 hash chain: a per-log start record, then every record carries its log's id, its sequence
number and the SHA-256 of the line before it (``audit_chain`` verifies it)."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from .errors import KeyloadError
from .protocol import Info, KeyEntry
from .secret_sources import Secret

FIELDS = (
    "reader",
    "as_sn",
    "ei_sn",
    "ref1",
    "ref2",
    "version",
    "kcv",
    "result",
    "sw",
    "message",
    "usage",
    "kcv_t",
    "as_id",
    "exported",
    "diversify",
)
"""The fields a record may carry besides ``time`` and ``event``: ``kcv`` and ``kcv_t`` (the EI's
transport key) are check values with their method (``cmac-aes:53E107``), ``as_id`` names the AS
(``as_identity``), ``exported`` is true when the AS counted an export for this key record,
``diversify`` when the key is diversified per unit (its KCV differs in every unit)."""

CONTEXT_FIELDS = ("station", "run")
"""What the log itself adds to every record: the station (host name, or the name given) and the
run (one id per ``AuditLog`` opened, i.e. per command)."""
CHAIN_FIELDS = ("log", "seq", "prev")
"""What the chain adds, last in every record: the log's id (from its start record), the record's
sequence number in that log (the start record is 0) and the SHA-256 (hex) of the previous line."""

EVENT_SESSION_START = "session_start"
EVENT_PREFLIGHT_REFUSED = "preflight_refused"
EVENT_KEY = "key"
EVENT_CARD_FAILED = "card_failed"
EVENT_SESSION_END = "session_end"
EVENT_LOG_START = "log_start"
"""The first record of a log (a new file, or after lines that carry no chain): sequence 0."""


def line_hash(line: bytes) -> str:
    """SHA-256 (hex) of one record's line, without its newline: what the next record's ``prev``
    holds, and for the last record the log's head."""
    return hashlib.sha256(line).hexdigest()


def as_identity(info: Info, keys: Iterable[KeyEntry]) -> str:
    """A name for an AS, which has no serial: SHA-256 over its transport KCV and, per key,
    reference, usage, length, version, diversify flag and KCV (nothing that changes after LOCK),
    first 8 bytes in hex. Two ASs set up alike (clones) share it."""
    digest = hashlib.sha256(info.transport_kcv)
    for key in sorted(keys, key=lambda entry: entry.ref):
        digest.update(bytes([key.ref, key.usage, key.key_length, key.diversify]))
        digest.update(key.version.to_bytes(2) + key.kcv)
    return digest.hexdigest()[:16].upper()


_FIELD_NAMES = frozenset(FIELDS)
_FORBIDDEN_TYPES = (bytes, bytearray, memoryview, Secret)
_PLAIN_TYPES = frozenset({str, int, float, bool, type(None)})
"""Exactly these types (not their subclasses) pass the guard without a closer look."""
_SEQUENCE_TYPES = (list, tuple)


class AuditError(KeyloadError):
    """A record was refused or could not be written."""


class AuditSink(Protocol):
    """What the workflow writes to: an ``AuditLog`` or a ``NullAuditLog``."""

    def record(self, event: str, **fields: Any) -> dict[str, Any]: ...

    def group(self) -> AbstractContextManager[None]:
        """Records written inside reach the disk together, at the end of the block."""
        ...


def _validate(fields: dict[str, Any]) -> None:
    """Refuse unknown fields and values that could carry key material."""
    unknown = fields.keys() - _FIELD_NAMES
    if unknown:
        raise AuditError(f"unknown audit field(s): {', '.join(sorted(unknown))}")
    for name, value in fields.items():
        if type(value) not in _PLAIN_TYPES:  # runs between two APDUs: keep the usual case cheap
            _check_value(name, value)


def _check_value(name: str, value: Any) -> None:
    if isinstance(value, _FORBIDDEN_TYPES):
        raise AuditError(
            f"audit field '{name}' holds {type(value).__name__}: refused, the audit log takes only "
            "text and numbers so that it can never carry key material"
        )
    if isinstance(value, _SEQUENCE_TYPES):
        for item in value:
            _check_value(name, item)
    elif isinstance(value, dict):
        for item in value.values():
            _check_value(name, item)


class AuditLog:
    """An open audit log file; use as a context manager or call ``close``.

    Writers of one file, in this process or others, take an exclusive ``flock`` while they read
    the last line (to chain to it) and append theirs, so concurrent runs never break the chain.
    """

    def __init__(self, path: Path, *, station: str | None = None) -> None:
        self.path = path
        self.station = station or socket.gethostname()
        self.run = uuid.uuid4().hex[:16]
        try:
            self._fd: int | None = os.open(
                path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600
            )
        except OSError as error:
            raise AuditError(f"{path}: cannot open the audit log: {error.strerror}") from None
        self._thread = threading.local()
        """Per thread (EI cards are served at the same time), ``grouped``: the records of the
        group being written, None outside a group."""
        self._write_lock = threading.Lock()
        """One writer at a time in this process (flock does not tell its threads apart)."""
        self.head: tuple[str, int, str] | None = None
        """(log id, sequence, hash) of the last record this log wrote: the chain's head."""
        self.on_written: Callable[[list[bytes]], None] | None = None
        """Called with the lines of every write once they are durable (the inventory's feed)."""

    @property
    def _grouped(self) -> list[dict[str, Any]] | None:
        return getattr(self._thread, "grouped", None)

    @_grouped.setter
    def _grouped(self, records: list[dict[str, Any]] | None) -> None:
        self._thread.grouped = records

    def record(self, event: str, **fields: Any) -> dict[str, Any]:
        """Write one record and make it durable (inside ``group()``: when the group ends);
        returns the record as written (its chain fields are set once it is written)."""
        _validate(fields)
        if self._fd is None:
            raise AuditError(f"{self.path}: the audit log is closed")
        record = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "event": event,
            **{name: fields[name] for name in FIELDS if fields.get(name) is not None},
            "station": self.station,
            "run": self.run,
        }
        if self._grouped is None:
            self._write([record])
        else:
            self._grouped.append(record)
        return record

    @contextmanager
    def group(self) -> Iterator[None]:
        """Records made inside are written together when the block ends (also on an error):
        one ``write``, one ``fsync``. Groups do not nest: an inner one joins the outer. Each
        thread has its own group, so cards served at the same time do not mix."""
        if self._grouped is not None:
            yield
            return
        self._grouped = []
        try:
            yield
        finally:
            records, self._grouped = self._grouped, None
            if records:
                self._write(records)

    def _tail(self, fd: int) -> bytes:
        """The file's last line (with its newline if it has one), b"" for an empty file."""
        end = os.fstat(fd).st_size
        chunk = 4096
        while True:
            start = max(0, end - chunk)
            data = os.pread(fd, end - start, start)
            cut = data.rfind(b"\n", 0, len(data) - 1)
            if cut >= 0 or start == 0:
                return data[cut + 1 :]
            chunk *= 4

    def _chain(self, tail: bytes) -> tuple[list[bytes], str, int, str]:
        """Where new records go: (lines to write first, log id, last sequence, last hash)."""
        lead: list[bytes] = []
        if tail:
            if not tail.endswith(b"\n"):  # a torn last line: ours start on a line of their own
                lead.append(b"")
            last = tail.rstrip(b"\n")
            try:
                previous = json.loads(last)
                chained = isinstance(previous, dict) and all(k in previous for k in CHAIN_FIELDS)
            except ValueError:
                chained = False
            if chained:
                return lead, str(previous["log"]), int(previous["seq"]), line_hash(last)
        start: dict[str, Any] = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "event": EVENT_LOG_START,
            "station": self.station,
            "run": self.run,
            "log": uuid.uuid4().hex,
            "seq": 0,
            "prev": line_hash(tail.rstrip(b"\n")) if tail else None,
        }
        line = json.dumps(start, separators=(",", ":")).encode()
        return [*lead, line], start["log"], 0, line_hash(line)

    def _write(self, records: list[dict[str, Any]]) -> None:
        fd = self._fd
        if fd is None:
            raise AuditError(f"{self.path}: the audit log is closed")
        try:
            with self._write_lock:
                fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    lines, log, seq, prev = self._chain(self._tail(fd))
                    for record in records:
                        seq += 1
                        record.update(log=log, seq=seq, prev=prev)
                        line = json.dumps(record, separators=(",", ":")).encode()
                        prev = line_hash(line)
                        lines.append(line)
                    os.write(fd, b"\n".join(lines) + b"\n")
                    os.fsync(fd)
                    self.head = (log, seq, prev)
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
        except OSError as error:
            raise AuditError(f"{self.path}: cannot write the audit log: {error.strerror}") from None
        if self.on_written is not None:
            self.on_written([line for line in lines if line])

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class NullAuditLog:
    """Stands in when no audit log was asked for; still applies the guard, so that a secret
    passed by mistake fails in every run, not only in runs that keep a log."""

    def record(self, event: str, **fields: Any) -> dict[str, Any]:
        _validate(fields)
        return {"event": event, **fields}

    def group(self) -> AbstractContextManager[None]:
        return nullcontext()

    def close(self) -> None:
        """Nothing to close."""
