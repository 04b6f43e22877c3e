"""Enrolment: a blank EI (in SETUP) inserted during ``personalize`` is set up from an EI template
(transport key, retry limit, slots) with the next unused serial, locked, and then served as any
card, in one pass. Serials come from the manifest or a range and are allocated in the inventory
(table ``serials``, the serial its primary key) in a transaction of their own before SET SERIAL,
so that no serial is ever given twice: not by two cards served at once, nor by two runs or two
stations sharing the inventory. A serial whose card failed before it was locked is kept as
spoiled and never given again."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum

import sqlalchemy as sa

from .audit import AuditSink
from .cards import EiCard
from .config import USAGE_SHORT, EiSetup, Load
from .crypto import kcv
from .errors import KeyloadError
from .inventory import Store, describe, events
from .manifest import EVENT_RECONCILIATION, Manifest, parse_serial
from .protocol import LifeCycle, kcv_text
from .provisioning import setup_ei
from .secret_sources import Secret, SecretKind, SecretSource
from .workflow import AsState, CardRefused, EiState, read_ei

log = logging.getLogger(__name__)

EVENT_SERIAL_ALLOCATED = "serial_allocated"
EVENT_ENROLLED = "enrolled"
EVENT_SERIAL_SPOILED = "serial_spoiled"

serials = sa.Table(
    "serials",
    sa.MetaData(),
    sa.Column("serial", sa.String(64), primary_key=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("time", sa.String(40), nullable=False),
    sa.Column("station", sa.String(255)),
    sa.Column("run", sa.String(64)),
    sa.Column("reader", sa.String(255)),
    sa.Column("message", sa.Text),
)
"""Every serial enrolment gave (migration 0002): unique, so a second INSERT of it fails."""


class SerialState(StrEnum):
    ALLOCATED = "allocated"
    """Taken for a card, not yet locked (a run that died here leaves it so: never reused)."""
    ENROLLED = "enrolled"
    SPOILED = "spoiled"
    """Its card failed before it was locked: the serial is never given again."""


class EnrolmentError(KeyloadError):
    """Enrolment cannot run, or cannot give a serial."""


@dataclass(frozen=True)
class SerialPool:
    """Where serials come from: every serial of a range, or the serials of a manifest, in order."""

    description: str
    first: str
    last: str
    listed: tuple[str, ...] = ()
    """The manifest's serials; empty for a range (then every serial from first to last)."""

    @classmethod
    def of_manifest(cls, manifest: Manifest) -> SerialPool:
        return cls(
            f"the {len(manifest.serials)} serial(s) of {manifest.path.name}",
            min(manifest.serials),
            max(manifest.serials),
            manifest.serials,
        )

    @classmethod
    def of_range(cls, text: str) -> SerialPool:
        """``FIRST-LAST`` in hex, both of the same length (e.g. 4B4C000000000001-4B4C0000000003E8);
        ValueError with a readable message."""
        first, separator, last = text.partition("-")
        if not separator:
            raise ValueError(f"'{text}' is not FIRST-LAST (serials in hex)")
        first, last = parse_serial(first), parse_serial(last)
        if len(first) != len(last):
            raise ValueError(f"'{text}': both ends of a serial range have the same length")
        if int(first, 16) > int(last, 16):
            raise ValueError(f"'{text}': the range ends before it begins")
        return cls(f"the range {first}-{last}", first, last)

    def candidates(self) -> Iterator[str]:
        if self.listed:
            yield from self.listed
            return
        width = len(self.first)
        for number in range(int(self.first, 16), int(self.last, 16) + 1):
            yield f"{number:0{width}X}"

    def _within(self, column: sa.ColumnElement) -> sa.ColumnElement[bool]:
        within = sa.and_(column >= self.first, column <= self.last)
        if not self.listed:
            within = sa.and_(within, sa.func.length(column) == len(self.first))
        return within


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _reason(error: BaseException) -> str:
    original = getattr(error, "orig", None) or error
    lines = str(original).strip().splitlines()
    return lines[0] if lines else type(original).__name__


class SerialAllocator:
    """Gives the next serial of a pool that the inventory has never given nor seen on a unit.
    Each serial is taken by one INSERT in a transaction of its own; when another thread, run or
    station took it first, the unique key refuses the INSERT and the next serial is tried."""

    def __init__(self, store: Store, pool: SerialPool, station: str = "", run: str = "") -> None:
        self.store = store
        self.pool = pool
        self.station = station or None
        self.run = run or None

    def _taken(self) -> set[str]:
        """Serials of the pool given already, or already on a unit the inventory knows (a card
        set up by hand with ``setup ei``, once it was personalized)."""
        with self.store.engine.connect() as connection:
            given = connection.execute(
                sa.select(serials.c.serial).where(self.pool._within(serials.c.serial))
            ).scalars()
            taken = set(given)
            on_a_card = sa.and_(  # a reconciliation names expected units, not cards seen
                self.pool._within(events.c.ei_sn), events.c.event != EVENT_RECONCILIATION
            )
            known = connection.execute(
                sa.select(events.c.ei_sn).where(on_a_card).distinct()
            ).scalars()
            return taken | set(known)

    def allocate(self, reader: str) -> str:
        """Take the next free serial for the card in ``reader`` (committed before returning)."""
        try:
            taken = self._taken()
            for candidate in self.pool.candidates():
                if candidate in taken:
                    continue
                try:
                    with self.store.engine.begin() as connection:
                        connection.execute(
                            serials.insert().values(
                                serial=candidate,
                                state=SerialState.ALLOCATED.value,
                                time=_now(),
                                station=self.station,
                                run=self.run,
                                reader=reader,
                            )
                        )
                except sa.exc.IntegrityError:  # another card, run or station took it first
                    continue
                return candidate
        except sa.exc.SQLAlchemyError as error:
            raise EnrolmentError(
                f"the inventory {describe(self.store.url)} cannot give a serial ({_reason(error)})"
            ) from None
        raise EnrolmentError(f"every serial of {self.pool.description} has been given")

    def mark(self, serial: str, state: SerialState, message: str | None = None) -> None:
        """Record what became of a serial; a failure costs a warning (an ALLOCATED serial is
        never given again either)."""
        try:
            with self.store.engine.begin() as connection:
                connection.execute(
                    serials.update()
                    .where(serials.c.serial == serial)
                    .values(state=state.value, time=_now(), message=message)
                )
        except sa.exc.SQLAlchemyError as error:
            log.warning("serial %s: cannot record it as %s (%s)", serial, state, _reason(error))

    def states(self) -> dict[str, str]:
        """{serial: state} of every serial of the pool given so far."""
        with self.store.engine.connect() as connection:
            rows = connection.execute(
                sa.select(serials.c.serial, serials.c.state).where(
                    self.pool._within(serials.c.serial)
                )
            )
            return {serial: state for serial, state in rows}


class Enrolment:
    """The ``CardGate`` that enrols blank EI cards: a card in SETUP gets the next serial, is set
    up from the template through ``provisioning`` (read back) and LOCKed, then served. Holds the
    template's transport key, read once before any card; ``wipe`` (or the end of a ``with``
    block) zeroes it."""

    def __init__(
        self,
        template: EiSetup,
        template_name: str,
        transport_key: Secret,
        allocator: SerialAllocator,
        audit: AuditSink,
    ) -> None:
        self.template = template
        self.template_name = template_name
        self.transport_key = transport_key
        self.allocator = allocator
        self.audit = audit

    def wipe(self) -> None:
        self.transport_key.wipe()

    def __enter__(self) -> Enrolment:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.wipe()

    def check(self, pool: Sequence[AsState], loads: Sequence[Load]) -> list[str]:
        """The template against the AS: the same transport key, and a slot for every load that
        takes its key; else every blank card would be locked useless."""
        first = pool[0]
        where = f"the EI template {self.template_name}"
        problems = []
        mine = kcv(self.transport_key.reveal())
        if len(self.transport_key) != first.info.transport_key_length or not hmac.compare_digest(
            mine, first.info.transport_kcv
        ):
            problems.append(
                f"{where} has another transport key (KCV {kcv_text(mine)}) than the AS in "
                f"reader '{first.reader}' (KCV {kcv_text(first.info.transport_kcv)})"
            )
        slots = {slot.ref: slot for slot in self.template.slots}
        for load in loads:
            key, slot = first.keys.get(load.ref1), slots.get(load.ref2)
            if key is None:
                continue  # the AS check says so
            if slot is None:
                problems.append(f"{where} has no slot {load.ref2:02X} for load {load}")
            elif not slot.accepts_import:
                problems.append(f"{where}: slot {load.ref2:02X} does not accept imported keys")
            elif (slot.key_length, slot.usage) != (key.key_length, key.usage):
                problems.append(
                    f"{where}: slot {load.ref2:02X} takes {slot.key_length}-byte "
                    f"{USAGE_SHORT[slot.usage]} keys, AS key {load.ref1:02X} is a "
                    f"{key.key_length}-byte {USAGE_SHORT[key.usage]} key"
                )
        return problems

    def _load(self, _source: SecretSource, kind: SecretKind, _label: str, _confirm: bool) -> Secret:
        """provisioning's secret loader: a copy of the transport key (provisioning wipes it)."""
        return Secret(self.transport_key.reveal(), kind)

    def admit(self, card: EiCard, ei: EiState) -> EiState:
        if ei.info.life_cycle != LifeCycle.SETUP:
            return ei
        where = f"the blank EI in reader '{ei.reader}'"
        try:
            serial = self.allocator.allocate(ei.reader)
        except EnrolmentError as error:
            raise CardRefused(f"{where} is left blank: {error}") from None
        self.audit.record(
            EVENT_SERIAL_ALLOCATED,
            reader=ei.reader,
            ei_sn=serial,
            message=f"from {self.allocator.pool.description}",
        )
        setup = replace(self.template, serial=bytes.fromhex(serial))
        try:
            report = setup_ei(card, setup, self._load)
            card.lock()
        except BaseException as error:
            message = f"enrolment failed before LOCK completed: {error}"
            self.allocator.mark(serial, SerialState.SPOILED, message)
            self.audit.record(EVENT_SERIAL_SPOILED, reader=ei.reader, ei_sn=serial, message=message)
            if isinstance(error, KeyloadError):
                raise CardRefused(
                    f"{where} could not be enrolled as {serial} ({error}); serial {serial} is "
                    "spoiled and never given again",
                    serial,
                ) from None
            raise
        self.allocator.mark(serial, SerialState.ENROLLED)
        self.audit.record(
            EVENT_ENROLLED,
            reader=ei.reader,
            ei_sn=serial,
            kcv_t=kcv_text(kcv(self.transport_key.reveal())),
            result="ok",
            message=(
                f"set up from {self.template_name} ({len(report.rows)} slot(s), retry limit "
                f"{self.template.retry_limit}) and locked"
            ),
        )
        return read_ei(card)
