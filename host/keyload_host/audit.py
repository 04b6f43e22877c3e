"""Append-only JSON Lines audit log of what was done to which card: one ``write`` and one ``fsync``
per record or per group of records (one EI card), and a guard that refuses secret values."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from .errors import KeyloadError
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
)
"""The fields a record may carry besides ``time`` and ``event``."""

EVENT_SESSION_START = "session_start"
EVENT_PREFLIGHT_REFUSED = "preflight_refused"
EVENT_KEY = "key"
EVENT_CARD_FAILED = "card_failed"
EVENT_SESSION_END = "session_end"

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
    """An open audit log file; use as a context manager or call ``close``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._fd: int | None = os.open(
                path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600
            )
        except OSError as error:
            raise AuditError(f"{path}: cannot open the audit log: {error.strerror}") from None
        self._thread = threading.local()
        """Per thread (EI cards are served at the same time), ``grouped``: the lines of the group
        being written, None outside a group."""
        self._write_lock = threading.Lock()

    @property
    def _grouped(self) -> list[bytes] | None:
        return getattr(self._thread, "grouped", None)

    @_grouped.setter
    def _grouped(self, lines: list[bytes] | None) -> None:
        self._thread.grouped = lines

    def record(self, event: str, **fields: Any) -> dict[str, Any]:
        """Write one record and make it durable (inside ``group()``: when the group ends);
        returns the record as written."""
        _validate(fields)
        if self._fd is None:
            raise AuditError(f"{self.path}: the audit log is closed")
        record = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "event": event,
            **{name: fields[name] for name in FIELDS if fields.get(name) is not None},
        }
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        if self._grouped is None:
            self._write(line)
        else:
            self._grouped.append(line)
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
            lines, self._grouped = self._grouped, None
            if lines:
                self._write(b"".join(lines))

    def _write(self, lines: bytes) -> None:
        if self._fd is None:
            raise AuditError(f"{self.path}: the audit log is closed")
        try:
            with self._write_lock:
                os.write(self._fd, lines)
                os.fsync(self._fd)
        except OSError as error:
            raise AuditError(f"{self.path}: cannot write the audit log: {error.strerror}") from None

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
