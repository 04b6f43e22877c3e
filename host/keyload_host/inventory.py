"""The inventory: every audit record in a database that answers questions (which units hold a key
at a version, which lack it, duplicate KCVs among diversified keys, loads per station, day or
run, the history of one unit).

The audit log stays the first durable write: the store is fed from its records, each keyed by
its chain hash and by (log, sequence), so feeding the same record twice stores it once, and a
``sync`` of the files after an outage catches up without duplicates. SQLite (a file, nothing to
start) by default; PostgreSQL for stations sharing one inventory. SQLAlchemy Core for the
queries, Alembic (``keyload_host/migrations``) for the schema."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from .audit import CHAIN_FIELDS, EVENT_KEY, AuditLog, line_hash
from .errors import KeyloadError
from .protocol import parse_kcv_text

log = logging.getLogger(__name__)

STORE_ENV = "KEYLOAD_STORE"
"""The store to use when no --store is given."""
DEFAULT_STORE_NAME = "keyload-inventory.sqlite"
"""The SQLite file used by default: beside the audit log for ``personalize`` and ``inventory
sync``, in the current directory for the questions."""

metadata = sa.MetaData()

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("log_id", sa.String(64), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("hash", sa.String(64), nullable=False, unique=True),
    sa.Column("time", sa.String(40), nullable=False),
    sa.Column("event", sa.String(40), nullable=False),
    sa.Column("station", sa.String(255)),
    sa.Column("run", sa.String(64)),
    sa.Column("reader", sa.String(255)),
    sa.Column("as_id", sa.String(64)),
    sa.Column("ei_sn", sa.String(64)),
    sa.Column("ref1", sa.Integer),
    sa.Column("ref2", sa.Integer),
    sa.Column("usage", sa.String(16)),
    sa.Column("version", sa.Integer),
    sa.Column("kcv_method", sa.String(32)),
    sa.Column("kcv", sa.String(64)),
    sa.Column("kcv_t", sa.String(100)),
    sa.Column("diversify", sa.Boolean),
    sa.Column("exported", sa.Boolean),
    sa.Column("result", sa.String(16)),
    sa.Column("sw", sa.String(8)),
    sa.Column("message", sa.Text),
    sa.UniqueConstraint("log_id", "seq", name="uq_events_log_seq"),
    sa.Index("ix_events_unit", "ei_sn", "ref2"),
    sa.Index("ix_events_kcv", "kcv"),
    sa.Index("ix_events_event", "event", "result"),
)
"""One row per audit record: what it says, where it is in its log, and its chain hash."""

audit_logs = sa.Table(
    "audit_logs",
    metadata,
    sa.Column("log_id", sa.String(64), primary_key=True),
    sa.Column("head_seq", sa.Integer, nullable=False),
    sa.Column("head_hash", sa.String(64), nullable=False),
    sa.Column("station", sa.String(255)),
    sa.Column("path", sa.Text),
)
"""Per audit log, the latest record the store holds: the anchor ``audit verify --store`` uses."""

_COLUMNS = (
    "time", "event", "station", "run", "reader", "as_id", "ei_sn", "ref1", "ref2", "usage",
    "version", "kcv_t", "diversify", "exported", "result", "sw", "message",
)  # fmt: skip
_INTEGERS = ("ref1", "ref2", "version")
_TEXTS = tuple(name for name in _COLUMNS if name not in (*_INTEGERS, "diversify", "exported"))
MIGRATION_LOCK = 0x4B4C
"""The PostgreSQL advisory lock held while the schema is migrated (stations starting at once)."""


class StoreError(KeyloadError):
    """The store cannot be opened or written."""


def store_url(value: str | None, beside: Path | None = None) -> str:
    """``--store`` as given (a URL, or a path for SQLite), else $KEYLOAD_STORE, else the SQLite
    file ``keyload-inventory.sqlite`` beside ``beside`` (the audit log) or here."""
    value = value or os.environ.get(STORE_ENV)
    if not value:
        directory = beside.parent if beside is not None else Path()
        value = str(directory / DEFAULT_STORE_NAME)
    if "://" not in value:
        return f"sqlite:///{Path(value).absolute()}"
    if value.startswith("postgresql://"):
        return "postgresql+psycopg://" + value.removeprefix("postgresql://")
    return value


def describe(url: str) -> str:
    """The URL without a password, for messages."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "<unreadable store URL>"


def _row(record: dict[str, Any], line_hash: str) -> dict[str, Any] | None:
    """The row of one chained record, or None for a line that is not one."""
    if not isinstance(record, dict) or not all(name in record for name in CHAIN_FIELDS):
        return None
    row = {name: record.get(name) for name in _COLUMNS}
    for name in _INTEGERS:
        if not isinstance(row[name], int) or isinstance(row[name], bool):
            row[name] = None
    for name in ("diversify", "exported"):
        row[name] = row[name] if isinstance(row[name], bool) else None
    for name in _COLUMNS:
        if (
            row[name] is not None
            and name not in _INTEGERS
            and name not in ("diversify", "exported")
        ):
            row[name] = str(row[name])
    row["kcv_method"] = row["kcv"] = None
    if record.get("kcv"):
        try:
            row["kcv_method"], row["kcv"] = parse_kcv_text(str(record["kcv"]))
        except ValueError:
            row["kcv"] = str(record["kcv"])
    row.update(log_id=str(record["log"]), seq=int(record["seq"]), hash=line_hash)
    row["time"] = row["time"] or ""
    row["event"] = row["event"] or ""
    return row


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of every chained record of an audit log file (a line that is not one is
    skipped: ``audit verify`` reports it)."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise StoreError(f"{path}: cannot read the audit log: {error.strerror}") from None
    rows = []
    for line in data.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        row = _row(record, line_hash(line))
        if row is not None:
            rows.append(row)
    return rows


@dataclass(frozen=True)
class Answer:
    """A question's answer: column names and rows, for a table, JSON or CSV."""

    headers: tuple[str, ...]
    rows: list[tuple[Any, ...]]


class Store:
    """An open inventory; ``open_store`` makes one and brings its schema up to date."""

    def __init__(self, engine: Engine, url: str) -> None:
        self.engine = engine
        self.url = url

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ feeding

    def _insert(self, table: sa.Table) -> Any:
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        return dialect.insert(table)

    def ingest(self, rows: Sequence[dict[str, Any]], path: Path | None = None) -> int:
        """Store the rows not stored yet (one transaction); returns how many were new to it."""
        if not rows:
            return 0
        with self.engine.begin() as connection:
            known = 0
            statement = self._insert(events).on_conflict_do_nothing()
            for start in range(0, len(rows), 500):
                chunk = list(rows[start : start + 500])
                hashes = [row["hash"] for row in chunk]
                known += connection.execute(
                    sa.select(sa.func.count()).where(events.c.hash.in_(hashes))
                ).scalar_one()
                connection.execute(statement, chunk)
            self._advance_heads(connection, rows, path)
        return len(rows) - known

    def _advance_heads(
        self, connection: Connection, rows: Sequence[dict[str, Any]], path: Path | None
    ) -> None:
        heads: dict[str, dict[str, Any]] = {}
        for row in rows:
            head = heads.get(row["log_id"])
            if head is None or row["seq"] > head["head_seq"]:
                heads[row["log_id"]] = {
                    "log_id": row["log_id"],
                    "head_seq": row["seq"],
                    "head_hash": row["hash"],
                    "station": row["station"],
                    "path": str(path) if path else None,
                }
        statement = self._insert(audit_logs)
        newer = statement.excluded.head_seq > audit_logs.c.head_seq
        statement = statement.on_conflict_do_update(
            index_elements=[audit_logs.c.log_id],
            set_={
                "head_seq": statement.excluded.head_seq,
                "head_hash": statement.excluded.head_hash,
            },
            where=newer,
        )
        connection.execute(statement, list(heads.values()))

    def sync(self, path: Path) -> tuple[int, int]:
        """Feed an audit log file; (chained records in it, records new to the store). Records
        up to the head the store holds of their log are not sent again."""
        heads = self.chain_heads()
        rows = read_rows(path)
        newer = [
            row
            for row in rows
            if row["log_id"] not in heads or row["seq"] > heads[row["log_id"]][0]
        ]
        return len(rows), self.ingest(newer, path.absolute())

    def chain_heads(self) -> dict[str, tuple[int, str]]:
        """{log id: (sequence, hash)} of the latest record the store holds of each log."""
        with self.engine.connect() as connection:
            result = connection.execute(
                sa.select(audit_logs.c.log_id, audit_logs.c.head_seq, audit_logs.c.head_hash)
            )
            return {log_id: (seq, hash_) for log_id, seq, hash_ in result}

    # ------------------------------------------------------------------ questions

    def _holdings(self) -> sa.Subquery:
        """Per unit and slot, the last key record that left a key in it (loaded or found)."""
        ranked = (
            sa.select(
                events,
                sa.func.row_number()
                .over(
                    partition_by=(events.c.ei_sn, events.c.ref2),
                    order_by=(events.c.time.desc(), events.c.id.desc()),
                )
                .label("rank"),
            )
            .where(events.c.event == EVENT_KEY, events.c.result.in_(("loaded", "skipped")))
            .subquery()
        )
        return sa.select(ranked).where(ranked.c.rank == 1).subquery("holdings")

    def _answer(self, statement: sa.Select, headers: Sequence[str]) -> Answer:
        with self.engine.connect() as connection:
            rows = [tuple(row) for row in connection.execute(statement)]
        return Answer(tuple(headers), rows)

    def holding(self, ref2: int, version: int) -> Answer:
        """Units whose slot ``ref2`` holds ``version``."""
        held = self._holdings()
        statement = (
            sa.select(
                held.c.ei_sn,
                held.c.ref2,
                held.c.usage,
                held.c.version,
                held.c.kcv_method + sa.literal(":") + held.c.kcv,
                held.c.kcv_t,
                held.c.time,
                held.c.station,
                held.c.as_id,
                held.c.run,
            )
            .where(held.c.ref2 == ref2, held.c.version == version)
            .order_by(held.c.ei_sn)
        )
        headers = ("sn", "ref2", "usage", "version", "kcv", "kcv_t", "time", "station", "as")
        return self._answer(statement, (*headers, "run"))

    def lacking(self, ref2: int, version: int) -> Answer:
        """Units the inventory knows whose slot ``ref2`` holds no version ``version`` or newer:
        the list a re-keying campaign needs (with what each holds now)."""
        held = self._holdings()
        units = (
            sa.select(events.c.ei_sn)
            .where(events.c.ei_sn.is_not(None), events.c.ei_sn != "")
            .distinct()
            .subquery()
        )
        statement = (
            sa.select(units.c.ei_sn, held.c.version, held.c.time, held.c.station)
            .select_from(
                units.outerjoin(held, sa.and_(held.c.ei_sn == units.c.ei_sn, held.c.ref2 == ref2))
            )
            .where(sa.or_(held.c.version.is_(None), held.c.version < version))
            .order_by(units.c.ei_sn)
        )
        return self._answer(statement, ("sn", "holds version", "since", "station"))

    def duplicate_kcvs(self) -> Answer:
        """KCVs shared by more than one unit key among diversified keys (there must be none)."""
        held = self._holdings()
        statement = (
            sa.select(
                held.c.kcv_method + sa.literal(":") + held.c.kcv,
                sa.func.count(),
                sa.func.min(held.c.ei_sn),
                sa.func.max(held.c.ei_sn),
            )
            .where(held.c.diversify.is_(True), held.c.kcv.is_not(None))
            .group_by(held.c.kcv_method, held.c.kcv)
            .having(sa.func.count() > 1)
            .order_by(sa.func.count().desc())
        )
        return self._answer(statement, ("kcv", "unit keys", "first sn", "last sn"))

    def loads(self, by: str) -> Answer:
        """Key records per station, day or run: loaded, skipped, failed."""
        group = {
            "station": events.c.station,
            "day": sa.func.substr(events.c.time, 1, 10),
            "run": events.c.run,
        }[by]
        counts = [
            sa.func.sum(sa.case((events.c.result == outcome, 1), else_=0))
            for outcome in ("loaded", "skipped", "failed")
        ]
        units = sa.func.count(sa.distinct(events.c.ei_sn))
        statement = (
            sa.select(group, units, *counts)
            .where(events.c.event == EVENT_KEY)
            .group_by(group)
            .order_by(group)
        )
        return self._answer(statement, (by, "units", "loaded", "skipped", "failed"))

    def history(self, serial: str) -> Answer:
        """Everything the inventory holds about one unit, oldest first."""
        statement = (
            sa.select(
                events.c.time,
                events.c.event,
                events.c.station,
                events.c.run,
                events.c.as_id,
                events.c.kcv_t,
                events.c.ref1,
                events.c.ref2,
                events.c.usage,
                events.c.version,
                events.c.kcv_method + sa.literal(":") + events.c.kcv,
                events.c.result,
                events.c.sw,
                events.c.message,
            )
            .where(events.c.ei_sn == serial.upper())
            .order_by(events.c.time, events.c.id)
        )
        headers = ("time", "event", "station", "run", "as", "kcv_t", "ref1", "ref2", "usage")
        return self._answer(statement, (*headers, "version", "kcv", "result", "sw", "message"))


def _upgrade(engine: Engine, url: str) -> None:
    """Bring the schema to the newest migration; one process at a time (a PostgreSQL advisory
    lock, or a lock file beside a SQLite file)."""
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    head = ScriptDirectory.from_config(config).get_current_head()
    with engine.connect() as connection:
        if MigrationContext.configure(connection).get_current_revision() == head:
            return
    with _migration_lock(engine, url), engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(sa.text(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


@contextmanager
def _migration_lock(engine: Engine, url: str) -> Iterator[None]:
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:":
        yield
        return
    with open(f"{database}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def open_store(value: str | None, beside: Path | None = None) -> Store:
    """Open (and create or migrate) the store ``value`` names (see ``store_url``)."""
    url = store_url(value, beside)
    try:
        if url.startswith("sqlite"):
            engine = sa.create_engine(url, connect_args={"timeout": 30})
            _sqlite_pragmas(engine)
        else:
            engine = sa.create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 5})
        _upgrade(engine, url)
    except ImportError as error:
        raise StoreError(
            f"store {describe(url)}: the database driver is missing ({error.name}): install "
            "keyload-host[postgresql]"
        ) from None
    except (sa.exc.SQLAlchemyError, OSError) as error:
        raise StoreError(f"store {describe(url)}: {_reason(error)}") from None
    return Store(engine, url)


def _sqlite_pragmas(engine: Engine) -> None:
    @sa.event.listens_for(engine, "connect")
    def _connect(connection: Any, _record: Any) -> None:
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()


def _reason(error: BaseException) -> str:
    """One line saying why a database operation failed, without a password or a statement."""
    original = getattr(error, "orig", None) or error
    text = str(original).strip().splitlines()
    return text[0] if text else type(original).__name__


class InventoryFeed:
    """Feeds the store with what the audit log has just made durable: it watches an
    ``AuditLog``'s writes (one per record, or one per EI card), so the journal stays the first
    durable write. The store being down costs one warning line; the records wait in memory and
    go with the next card's, and ``inventory sync`` of the file catches up whatever a run could
    not deliver (without duplicates either way)."""

    RETRY_AFTER = 5.0
    """Seconds to wait after a failure before the store is tried again."""

    def __init__(self, journal: AuditLog, store: Store, path: Path) -> None:
        self.store = store
        self.path = path.absolute()
        self.pending: list[dict[str, Any]] = []
        self.down_since: float | None = None
        self._lock = threading.Lock()
        journal.on_written = self.written

    def written(self, lines: Iterable[bytes]) -> None:
        rows = []
        for line in lines:
            try:
                row = _row(json.loads(line), line_hash(line))
            except ValueError:
                row = None
            if row is not None:
                rows.append(row)
        with self._lock:
            self.pending += rows
            self._deliver()

    def _deliver(self, now: bool = False) -> None:
        if not self.pending:
            return
        waited = time.monotonic() - (self.down_since or 0.0)
        if self.down_since is not None and waited < self.RETRY_AFTER and not now:
            return
        try:
            self.store.ingest(self.pending, self.path)
        except sa.exc.SQLAlchemyError as error:
            if self.down_since is None:
                log.warning(
                    "inventory %s unreachable (%s): records stay in the audit log %s and "
                    "reach the inventory when it is back (or: keyload-host inventory sync)",
                    describe(self.store.url),
                    _reason(error),
                    self.path,
                )
            self.down_since = time.monotonic()
            return
        self.pending = []
        self.down_since = None

    def flush(self) -> int:
        """Try once more to deliver what waits; returns how many records are still waiting."""
        with self._lock:
            self._deliver(now=True)
            return len(self.pending)
