"""The personalization workflow: check everything first, then load keys AS -> EI, three APDUs per
key, every EI card in a thread of its own while the AS cards (a pool of one or more) serve one
command at a time each; in a batch or serving cards as they arrive (watch mode). No user
interface, no PC/SC: cards come through their transports and EI cards through callables."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import NoReturn, Protocol, TypeVar

from .apdu import CardError
from .audit import (
    EVENT_CARD_FAILED,
    EVENT_KEY,
    EVENT_PREFLIGHT_REFUSED,
    AuditSink,
    as_identity,
)
from .cards import AsCard, EiCard
from .config import USAGE_SHORT, Load, check_loads
from .errors import KeyloadError
from .protocol import (
    KCV_LENGTH,
    SW,
    Info,
    KeyBlockHeader,
    KeyEntry,
    LifeCycle,
    ProtocolError,
    block_sas,
    ins_name,
    kcv_text,
)
from .secret_sources import Secret
from .transport import Transport, TransportError

WAIT_TIMEOUT = 0.25
"""Seconds watch mode waits for a reader to change before it asks whether to stop (and Python
sees a Ctrl-C): a card is noticed as soon as PC/SC sees it, whatever this is."""

BUSY_LOOK_INTERVAL = 0.02
"""Seconds between two looks at the readers while cards are being served: a card inserted into an
idle reader meanwhile is served within this, and a card finished wakes the look at once."""

APDU_TIMEOUT = 30.0
"""Seconds one command may take before its reader counts as stalled: that card is reported failed
(an AS: it leaves the pool) and the other readers go on. Real cards answer in well under a
second; a reader that hangs does not answer at all."""

STOPPED_BY_OPERATOR = "stopped by the operator"

_R = TypeVar("_R")


class Outcome(StrEnum):
    LOADED = "loaded"
    SKIPPED = "skipped"
    FAILED = "failed"


@dataclass(frozen=True)
class LoadResult:
    """What happened to one key on one EI card."""

    reader: str
    serial: str
    """The EI serial in hex ("" when the card could not be read)."""
    load: Load
    outcome: Outcome
    version: int | None = None
    kcv: str = ""
    reason: str = ""
    sw: int | None = None


class PreflightError(KeyloadError):
    """The batch cannot run; the message has one line per problem and no card was changed."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


class CardRefused(KeyloadError):
    """A gate turned an EI card away (not on the expected list, enrolment failed): the card is
    reported with this message and gets no GET CHALLENGE, EXPORT KEY or IMPORT KEY."""

    def __init__(self, message: str, serial: str = "") -> None:
        super().__init__(message)
        self.serial = serial
        """The serial the card is reported under (hex, "" when it has none)."""


class AsUnavailableError(KeyloadError):
    """The AS stopped answering as it should (removed, reset): no key can be loaded any more."""

    def __init__(self, message: str, results: Sequence[LoadResult] = ()) -> None:
        super().__init__(message)
        self.results = list(results)


@dataclass(frozen=True)
class EiState:
    """An EI as read before loading: INFO and its slots by reference."""

    reader: str
    info: Info
    slots: Mapping[int, KeyEntry]

    @property
    def serial(self) -> str:
        return self.info.serial.hex().upper()

    @property
    def name(self) -> str:
        serial = f" {self.serial}" if self.serial else ""
        return f"the EI{serial} in reader '{self.reader}'"


@dataclass(frozen=True)
class CardPlan:
    """For one EI: the loads to run and the ones already done (same version in the slot)."""

    ei: EiState
    to_load: tuple[Load, ...]
    to_skip: tuple[Load, ...]


@dataclass
class AsSession:
    """An AS once selected and PIN-verified, with its keys; export counts are kept up to date
    locally so that the export budget stays right across cards without reading the AS again."""

    card: AsCard
    info: Info
    keys: dict[int, KeyEntry] = field(default_factory=dict)

    def count_export(self, ref1: int) -> None:
        entry = self.keys[ref1]
        self.keys[ref1] = replace(entry, count=entry.count + 1)

    def exports_left(self, ref1: int) -> int | None:
        """How often key ``ref1`` may still be exported by this AS (None: unlimited)."""
        return self.keys[ref1].exports_left


class AsPool:
    """The AS cards of a session, shared by the EI threads: each AS runs one command at a time,
    an export goes to an idle AS that may still export the key, and an AS that stops answering
    leaves the pool while the others go on (the run ends when none is left)."""

    def __init__(self, sessions: Sequence[AsSession], audit: AuditSink) -> None:
        self.sessions = list(sessions)
        self._idle = list(sessions)
        self._lost: dict[str, str] = {}
        self._audit = audit
        self._changed = threading.Condition()

    @property
    def first(self) -> AsSession:
        """The AS whose INFO and keys stand for the pool (all hold the same set)."""
        return self.sessions[0]

    def readers(self) -> list[str]:
        return [session.card.reader for session in self.sessions]

    def export(
        self, ref1: int, ref2: int, challenge: bytes, serial: bytes, transport_version: int = 0
    ) -> bytes:
        """EXPORT KEY on an idle AS that may still export ``ref1`` (under the transport key of
        ``transport_version``, PROTOCOL.md §9; 0: the AS's T), with the failover of ``run``.
        CardError: the AS refused this key."""

        def export_on(session: AsSession) -> bytes:
            block = session.card.export_key(ref1, ref2, challenge, serial, transport_version)
            session.count_export(ref1)
            return block

        return self.run(export_on, ref1)

    def run(self, action: Callable[[AsSession], _R], ref1: int | None = None) -> _R:
        """``action`` on an idle AS (one that may still export ``ref1``, when given); an AS that
        fails on the way (gone, PIN no longer verified) leaves the pool and the next one is asked
        the same, with the same challenge, which the EI has not spent yet. CardError: the AS
        refused."""
        while True:
            session = self._take(ref1)
            try:
                result = action(session)
            except CardError as error:
                if error.sw != SW.SECURITY_STATUS_NOT_SATISFIED:
                    self._give_back(session)
                    raise
                self.lose(session, f"the AS no longer has the PIN verified ({error})")
                continue
            except (ProtocolError, TransportError) as error:
                self.lose(session, str(error))
                continue
            self._give_back(session)
            return result

    def lose(self, session: AsSession, message: str) -> None:
        """Take an AS out of the pool for good (recorded in the audit log)."""
        with self._changed:
            if session.card.reader in self._lost:
                return
            self._lost[session.card.reader] = message
            if session in self._idle:
                self._idle.remove(session)
            self._changed.notify_all()
        self._audit.record(EVENT_CARD_FAILED, reader=session.card.reader, message=message)

    def _alive(self) -> list[AsSession]:
        return [s for s in self.sessions if s.card.reader not in self._lost]

    def _take(self, ref1: int | None) -> AsSession:
        with self._changed:
            while True:
                alive = self._alive()
                if not alive:
                    raise AsUnavailableError("; ".join(self._lost.values()))
                # An AS that may still export the key; when none may, any AS answers the refusal.
                able = [s for s in alive if ref1 is None or s.exports_left(ref1) != 0] or alive
                for session in self._idle:
                    if session in able:
                        self._idle.remove(session)
                        return session
                self._changed.wait()

    def _give_back(self, session: AsSession) -> None:
        with self._changed:
            if session.card.reader not in self._lost:
                self._idle.append(session)
            self._changed.notify_all()


def _refs(refs: Iterable[int]) -> str:
    return ", ".join(f"{ref:02X}" for ref in refs) or "none"


def _kcv(value: bytes) -> str:
    return kcv_text(value)


def read_as(card: AsCard) -> tuple[Info, dict[int, KeyEntry]]:
    """SELECT the AS and LIST its KEYS."""
    info = card.select()
    return info, {entry.ref: entry for entry in card.list_keys()}


def read_ei(card: EiCard) -> EiState:
    """SELECT the EI and LIST its slots."""
    info = card.select()
    return EiState(card.reader, info, {entry.ref: entry for entry in card.list_keys()})


def check_as(
    reader: str, info: Info, keys: Mapping[int, KeyEntry], loads: Sequence[Load]
) -> list[str]:
    """Problems of the AS for this batch, one sentence each."""
    problems = list(check_loads(loads))
    where = f"the AS in reader '{reader}'"
    if info.life_cycle != LifeCycle.OPERATIONAL:
        problems.append(
            f"{where} is in {info.life_cycle.name}, not OPERATIONAL: "
            "set it up and lock it first (keyload-host setup as)"
        )
    elif info.tries_remaining == 0:
        problems.append(f"{where} has its operator PIN blocked")
    for ref1 in sorted({load.ref1 for load in loads}):
        key = keys.get(ref1)
        if key is None or not key.loaded:
            problems.append(f"{where} holds no key {ref1:02X} (it holds: {_refs(keys)})")
        elif key.key_length > info.transport_key_length:
            problems.append(
                f"AS key {ref1:02X} is {key.key_length} bytes, longer than the "
                f"{info.transport_key_length}-byte transport key: it is never exported"
            )
    return problems


def _slot_problem(key: KeyEntry, slot: KeyEntry | None, ei: EiState, load: Load) -> str | None:
    where = f"slot {load.ref2:02X} of {ei.name}"
    if slot is None:
        return f"{ei.name} has no slot {load.ref2:02X} (slots: {_refs(ei.slots)})"
    if not slot.accepts_import:
        return f"{where} does not accept imported keys"
    if slot.key_length != key.key_length:
        return (
            f"{where} takes {slot.key_length}-byte keys, "
            f"AS key {load.ref1:02X} is {key.key_length} bytes"
        )
    if slot.usage != key.usage:
        usage = key.usage.name
        return f"{where} takes {slot.usage.name} keys, AS key {load.ref1:02X} is a {usage} key"
    if slot.loaded and slot.version > key.version:
        return (
            f"{where} holds version {slot.version:04X}, newer than version {key.version:04X} "
            f"of AS key {load.ref1:02X}: the EI refuses an older version"
        )
    if _already_loaded(key, slot) is None:
        return (
            f"{where} holds another key (KCV {_kcv(slot.kcv)}) with the same version "
            f"{key.version:04X} as AS key {load.ref1:02X} (KCV {_kcv(key.kcv)})"
        )
    return None


def _already_loaded(key: KeyEntry, slot: KeyEntry) -> bool | None:
    """True when the slot already holds this key version, False when it must be loaded, None when
    it holds another key under the same version (a conflict the EI would refuse).

    A diversified key has another KCV in every EI, so for it the version alone decides.
    """
    if not slot.loaded or slot.version != key.version:
        return False
    if key.diversify or slot.kcv == key.kcv:
        return True
    return None


def check_ei(
    as_info: Info, as_keys: Mapping[int, KeyEntry], ei: EiState, loads: Sequence[Load]
) -> list[str]:
    """Problems of one EI for this batch, one sentence each."""
    if ei.info.life_cycle == LifeCycle.BLOCKED:
        return [f"{ei.name} is BLOCKED (import tries exhausted) and can never be loaded"]
    if ei.info.life_cycle != LifeCycle.OPERATIONAL:  # its keys and slots are not final yet
        return [
            f"{ei.name} is in {ei.info.life_cycle.name}, not OPERATIONAL: "
            "set it up and lock it first (keyload-host setup ei)"
        ]
    problems = []
    if transport_version_for(as_info, ei.info) is None:
        problems.append(
            f"{ei.name} belongs to another set: its transport key KCV is "
            f"{_kcv(ei.info.transport_kcv)}, the AS has {_kcv(as_info.transport_kcv)}"
        )
    for load in loads:
        key = as_keys.get(load.ref1)
        problem = key and _slot_problem(key, ei.slots.get(load.ref2), ei, load)
        if problem:
            problems.append(problem)
    return problems


def transport_version_for(as_info: Info, ei_info: Info) -> int | None:
    """EXPORT KEY's P1P2 for this EI (PROTOCOL.md §9): 0 when it holds the AS's T, the next T's
    version when it holds the AS's next T (rotated during a campaign), None when neither (another
    set)."""
    if (ei_info.transport_kcv, ei_info.transport_key_length) == (
        as_info.transport_kcv,
        as_info.transport_key_length,
    ):
        return 0
    if as_info.holds_next_transport_key and (
        ei_info.transport_kcv,
        ei_info.transport_key_length,
        ei_info.transport_version,
    ) == (
        as_info.next_transport_kcv,
        as_info.next_transport_length,
        as_info.next_transport_version,
    ):
        return as_info.next_transport_version
    return None


def split_loads(as_keys: Mapping[int, KeyEntry], ei: EiState, loads: Sequence[Load]) -> CardPlan:
    """Separate the loads an EI still needs from those it already has (re-runs are safe)."""
    done = tuple(
        load
        for load in loads
        if load.ref2 in ei.slots and _already_loaded(as_keys[load.ref1], ei.slots[load.ref2])
    )
    return CardPlan(ei, tuple(load for load in loads if load not in done), done)


def check_export_budget(
    pool_keys: Sequence[Mapping[int, KeyEntry]], plans: Sequence[CardPlan]
) -> list[str]:
    """Problems where the export limits of the AS cards (one or a pool, each with its own
    counts: ``pool_keys``) do not allow the whole batch."""
    needed = Counter(load.ref1 for plan in plans for load in plan.to_load)
    problems = []
    for ref1, count in sorted(needed.items()):
        entries = [keys[ref1] for keys in pool_keys]
        if any(entry.exports_left is None for entry in entries):
            continue
        left = sum(entry.exports_left or 0 for entry in entries)
        if count <= left:
            continue
        if len(entries) == 1:
            limits, done = f"limit {entries[0].limit}", f"done {entries[0].count}"
        else:
            limits = "limits " + "+".join(str(entry.limit) for entry in entries)
            done = "done " + "+".join(str(entry.count) for entry in entries)
        by = "" if len(entries) == 1 else f" by the {len(entries)} AS cards"
        problems.append(
            f"AS key {ref1:02X} may be exported {left} more time(s){by} "
            f"({limits}, {done}), this batch needs {count}"
        )
    return problems


@dataclass(frozen=True)
class AsState:
    """An AS as read before loading: its reader, INFO and keys by reference."""

    reader: str
    info: Info
    keys: Mapping[int, KeyEntry]


class CardGate(Protocol):
    """What an EI card passes between being read (SELECT, LIST KEYS, which spend nothing) and
    being checked and loaded: a manifest of expected units, the enrolment of blank cards."""

    def check(self, pool: Sequence[AsState], loads: Sequence[Load]) -> list[str]:
        """Problems of the session for this gate, before the PIN is asked (one sentence each)."""
        ...

    def admit(self, card: EiCard, ei: EiState) -> EiState:
        """The card as it is to be served (read again if the gate changed it); raises
        CardRefused for a card that must not be served. Called from the card's own thread."""
        ...


def check_gates(
    gates: Sequence[CardGate], pool: Sequence[AsState], loads: Sequence[Load]
) -> list[str]:
    """Problems every gate finds with the session."""
    return [problem for gate in gates for problem in gate.check(pool, loads)]


def admit(gates: Sequence[CardGate], card: EiCard, ei: EiState) -> EiState:
    """``ei`` through every gate in turn (CardRefused: the card is turned away)."""
    for gate in gates:
        ei = gate.admit(card, ei)
    return ei


def check_as_pool(pool: Sequence[AsState], loads: Sequence[Load]) -> list[str]:
    """Problems of the AS cards of a session, one sentence each: each AS on its own, and, for a
    pool of several, that they hold the same set (transport key, and each key to load)."""
    problems = check_as(pool[0].reader, pool[0].info, pool[0].keys, loads)
    first = pool[0]
    for other in pool[1:]:
        problems += check_as(other.reader, other.info, other.keys, [])
        where = f"the AS in reader '{other.reader}'"
        if (other.info.transport_kcv, other.info.transport_key_length) != (
            first.info.transport_kcv,
            first.info.transport_key_length,
        ):
            problems.append(f"{where} has another transport key than the AS in '{first.reader}'")
        for ref1 in sorted({load.ref1 for load in loads}):
            mine, theirs = other.keys.get(ref1), first.keys.get(ref1)
            same = ("key_length", "usage", "version", "flags", "kcv")
            if mine and theirs and any(getattr(mine, a) != getattr(theirs, a) for a in same):
                problems.append(
                    f"{where} holds another key {ref1:02X} than the AS in '{first.reader}' "
                    "(length, usage, version, diversification or KCV differ)"
                )
            elif theirs and not mine:
                problems.append(f"{where} holds no key {ref1:02X}")
    return problems


def plan(pool: Sequence[AsState], eis: Sequence[EiState], loads: Sequence[Load]) -> list[CardPlan]:
    """Check the whole batch before any card is changed; raise PreflightError listing every
    problem, or return what each EI needs."""
    return plan_eis(pool, eis, loads, check_as_pool(pool, loads))


def plan_eis(
    pool: Sequence[AsState],
    eis: Sequence[EiState],
    loads: Sequence[Load],
    as_problems: Sequence[str] = (),
) -> list[CardPlan]:
    """``plan`` for EI cards against AS cards checked already (``as_problems``: what their check
    found, listed first), as watch mode checks each card against its session's AS cards."""
    first = pool[0]
    problems = list(as_problems)
    for ei in eis:
        problems += check_ei(first.info, first.keys, ei, loads)
    if problems:
        raise PreflightError(problems)
    plans = [split_loads(first.keys, ei, loads) for ei in eis]
    problems = check_export_budget([state.keys for state in pool], plans)
    if problems:
        raise PreflightError(problems)
    return plans


def open_session(card: AsCard, state: AsState, pin: Secret) -> AsSession:
    """VERIFY the operator PIN on an AS that ``read_as`` has just selected (the PIN stays
    verified until the applet is deselected), and keep its state for the run."""
    card.verify_pin(pin.reveal())
    return AsSession(card, state.info, dict(state.keys))


class Stop:
    """Why the cards still being served must stop after their current command: the operator
    (Ctrl-C) or a lost AS. Shared by every EI thread of a run."""

    def __init__(self) -> None:
        self._reason = ""
        self._lock = threading.Lock()

    def set(self, reason: str) -> None:
        with self._lock:
            self._reason = self._reason or reason

    @property
    def reason(self) -> str:
        return self._reason


class Watchdog:
    """When each reader's command in flight began, so that a stalled reader (no answer within
    ``APDU_TIMEOUT``) is noticed by the thread that looks after the others."""

    def __init__(self) -> None:
        self._since: dict[str, tuple[float, str]] = {}
        self._lock = threading.Lock()

    def watch(self, transport: Transport) -> Transport:
        """``transport`` with each command timed under its reader's name."""
        return _WatchedTransport(transport, self)

    def begin(self, reader: str, what: str) -> None:
        with self._lock:
            self._since[reader] = (time.monotonic(), what)

    def end(self, reader: str) -> None:
        with self._lock:
            self._since.pop(reader, None)

    def stalled(self, limit: float) -> dict[str, str]:
        """Per reader whose command has run longer than ``limit`` seconds: what it was."""
        now = time.monotonic()
        with self._lock:
            return {r: what for r, (since, what) in self._since.items() if now - since > limit}


class _WatchedTransport:
    """A transport whose commands the watchdog times (a Transport itself)."""

    def __init__(self, inner: Transport, watchdog: Watchdog) -> None:
        self.inner = inner
        self.reader = inner.reader
        self.stats = inner.stats
        self._watchdog = watchdog

    def transmit(self, apdu: bytes) -> bytes:
        self._watchdog.begin(self.reader, ins_name(apdu[1]) if len(apdu) > 1 else "APDU")
        try:
            return self.inner.transmit(apdu)
        finally:
            self._watchdog.end(self.reader)


class _CardRun:
    """Loading one EI: the three APDUs per key. Errors of the EI end only this card; losing every
    AS ends the whole run (AsUnavailableError); a stop ends the card after its current key."""

    def __init__(
        self,
        pool: AsPool,
        ei_card: EiCard,
        card_plan: CardPlan,
        audit: AuditSink,
        on_result: Callable[[LoadResult], None] | None,
        stop: Stop,
    ) -> None:
        self.pool = pool
        self.ei_card = ei_card
        self.ei = card_plan.ei
        self.plan = card_plan
        self.audit = audit
        self.on_result = on_result
        self.stop = stop
        self.results: list[LoadResult] = []
        self.stop_reason = ""
        # audit: which AS, and which loads it counted an export for (the export cross-check); the
        # AS cards of a pool hold the same set, so they share one identity
        self.as_id = as_identity(pool.first.info, pool.first.keys.values())
        self.exported: set[Load] = set()
        # the EI's transport key: the AS's T, or its next T for an EI rotated during a campaign
        self.transport_version = transport_version_for(pool.first.info, self.ei.info) or 0

    def report(self, result: LoadResult) -> None:
        self.results.append(result)
        self.audit.record(
            EVENT_KEY,
            reader=result.reader,
            ei_sn=result.serial,
            ref1=result.load.ref1,
            ref2=result.load.ref2,
            version=result.version,
            kcv=result.kcv or None,
            result=result.outcome.value,
            sw=None if result.sw is None else f"{result.sw:04X}",
            message=result.reason or None,
            usage=USAGE_SHORT[self.pool.first.keys[result.load.ref1].usage],
            kcv_t=_kcv(self.ei.info.transport_kcv),
            as_id=self.as_id,
            exported=result.load in self.exported,
            diversify=self.pool.first.keys[result.load.ref1].diversify,
        )
        if self.on_result:
            self.on_result(result)

    def fail(self, load: Load, reason: str, sw: int | None = None) -> None:
        version = self.pool.first.keys[load.ref1].version
        self.report(
            LoadResult(
                self.ei.reader, self.ei.serial, load, Outcome.FAILED, version, reason=reason, sw=sw
            )
        )

    def run(self) -> list[LoadResult]:
        for load in self.plan.to_skip:
            slot = self.ei.slots[load.ref2]
            self.report(
                LoadResult(
                    self.ei.reader,
                    self.ei.serial,
                    load,
                    Outcome.SKIPPED,
                    slot.version,
                    _kcv(slot.kcv),
                    "the slot already holds this key version",
                )
            )
        for load in self.plan.to_load:
            reason = self.stop_reason or self.stop.reason
            if reason:
                self.fail(load, f"not attempted: {reason}")
            else:
                self.load_one(load)
        return self.results

    def load_one(self, load: Load) -> None:
        try:
            challenge = self.ei_card.get_challenge()
        except (CardError, ProtocolError, TransportError) as error:
            self.ei_failed(load, error)
            return
        try:
            block = self.pool.export(
                load.ref1, load.ref2, challenge, self.ei.info.serial, self.transport_version
            )
        except CardError as error:  # this key refused (e.g. its export limit): only this key
            self.fail(load, str(error), error.sw)
            return
        except AsUnavailableError as error:
            self.stop.set(f"no AS left ({error})")
            error.results = list(self.results)
            raise
        self.exported.add(load)
        try:
            self.ei_card.import_key(block)
        except (CardError, ProtocolError, TransportError) as error:
            self.ei_failed(load, error)
            return
        # 9000: the slot now holds this block's key version, whose KCV the EI checked (SAS)
        version = KeyBlockHeader.parse(block).version
        kcv = _kcv(block_sas(block)[:KCV_LENGTH])
        self.report(LoadResult(self.ei.reader, self.ei.serial, load, Outcome.LOADED, version, kcv))

    def ei_failed(self, load: Load, error: Exception) -> None:
        sw = error.sw if isinstance(error, CardError) else None
        self.fail(load, str(error), sw)
        if isinstance(error, CardError) and error.counts_as_failed_try:
            self.stop_reason = (
                "an earlier import on this card failed verification "
                "(stopped to spare the card's retry counter)"
            )
        elif isinstance(error, CardError) and error.sw == SW.BLOCKED:
            self.stop_reason = "the EI is BLOCKED"
        elif isinstance(error, TransportError | ProtocolError):
            self.stop_reason = str(error)


def personalize_card(
    pool: AsPool,
    ei_card: EiCard,
    card_plan: CardPlan,
    audit: AuditSink,
    on_result: Callable[[LoadResult], None] | None = None,
    stop: Stop | None = None,
) -> list[LoadResult]:
    """Load one EI as planned; every key ends as loaded, skipped or failed(reason).

    Raises AsUnavailableError (with the results so far) when no AS is left. The card's audit
    records reach the disk together when it is done (one ``fsync`` per card).
    """
    with audit.group():
        return _CardRun(pool, ei_card, card_plan, audit, on_result, stop or Stop()).run()


@dataclass(frozen=True)
class CardReport:
    """What became of one EI card: its key results, or why it could not be served at all (then
    ``problem`` is set and its keys are all failed with that reason)."""

    reader: str
    serial: str
    results: tuple[LoadResult, ...]
    problem: str = ""
    stalled: bool = False
    """The reader stopped answering: its command is still pending, its connection unusable."""


def _card_failed(
    reader: str, serial: str, loads: Sequence[Load], reason: str, audit: AuditSink
) -> CardReport:
    """A card that could not be served: one problem for the card (one audit record, one
    ``on_card`` report, no ``on_result`` per key), and its keys failed with that reason."""
    audit.record(EVENT_CARD_FAILED, reader=reader, ei_sn=serial or None, message=reason)
    results = [LoadResult(reader, serial, load, Outcome.FAILED, reason=reason) for load in loads]
    return CardReport(reader, serial, tuple(results), reason)


def serve_card(
    pool: AsPool,
    ei_card: EiCard,
    loads: Sequence[Load],
    audit: AuditSink,
    on_result: Callable[[LoadResult], None] | None = None,
    stop: Stop | None = None,
    gates: Sequence[CardGate] = (),
) -> CardReport:
    """Read, check and load one EI that arrived on its own (watch mode).

    The checks are those of the batch preflight for an EI, against the AS state of this session
    (the AS cards were checked when the session opened); a card that fails them is reported as
    not served, one problem for the card, and gets no IMPORT KEY. ``gates`` see the card once it
    is read and before anything is spent (``CardGate``).
    """
    try:
        ei = read_ei(ei_card)
    except (CardError, ProtocolError, TransportError) as error:
        return _card_failed(ei_card.reader, "", loads, str(error), audit)
    try:
        ei = admit(gates, ei_card, ei)
    except CardRefused as error:
        return _card_failed(ei.reader, error.serial, loads, str(error), audit)
    except (CardError, ProtocolError, TransportError) as error:
        return _card_failed(ei.reader, ei.serial, loads, str(error), audit)
    states = [AsState(s.card.reader, s.info, s.keys) for s in pool.sessions]
    try:
        (card_plan,) = plan_eis(states, [ei], loads)
    except PreflightError as error:
        return _card_failed(ei.reader, ei.serial, loads, "; ".join(error.problems), audit)
    results = personalize_card(pool, ei_card, card_plan, audit, on_result, stop)
    return CardReport(ei.reader, ei.serial, tuple(results))


EiOpener = Callable[[str], AbstractContextManager[EiCard]]
"""Open the card in a reader for the time of a ``with`` block. Readers are served at the same
time, each from a thread of its own: an opener should give each reader its own PC/SC context."""


class CardWatch(Protocol):
    """The EI readers as watch mode follows them (``transport.ReaderWatch``)."""

    def cards(self) -> Mapping[str, int | None]:
        """Per reader, in order: a number that changes whenever another card is inserted (the
        reader's card event count), or None when the reader is empty."""
        ...

    def wait(self, timeout: float) -> None:
        """Return when a reader changes, or after ``timeout`` seconds."""
        ...


class _Service:
    """The EI cards being served, one thread each, and what became of them in the order they
    were started. A card whose reader stalls is reported failed at once and left to its thread;
    a lost AS pool or a stop ends the others after their current key."""

    def __init__(
        self,
        pool: AsPool,
        audit: AuditSink,
        on_result: Callable[[LoadResult], None] | None,
        on_card: Callable[[CardReport], None] | None,
        apdu_timeout: float,
        watchdog: Watchdog,
    ) -> None:
        self.pool = pool
        self.audit = audit
        self.on_result = on_result
        self.on_card = on_card
        self.apdu_timeout = apdu_timeout
        self.stop = Stop()
        self.watchdog = watchdog
        self.as_lost: AsUnavailableError | None = None
        self.failure: Exception | None = None
        """What ended a card in an unforeseen way (e.g. the audit log could not be written): the
        other cards stop after their current key and the run raises it."""
        self._reports: list[CardReport | None] = []
        self._threads: dict[str, threading.Thread] = {}
        self._given_up: set[str] = set()
        self._done = threading.Condition()

    def busy(self) -> bool:
        with self._done:
            return any(reader not in self._given_up for reader in self._threads)

    def busy_readers(self) -> set[str]:
        with self._done:
            return set(self._threads)

    def start(self, reader: str, work: Callable[[Stop], CardReport]) -> None:
        """Serve one card in its own thread; ``work`` does it and returns its report."""
        with self._done:
            index = len(self._reports)
            self._reports.append(None)
        thread = threading.Thread(
            target=self._serve, args=(reader, index, work), name=f"ei {reader}", daemon=True
        )
        with self._done:
            self._threads[reader] = thread
        thread.start()

    def _serve(self, reader: str, index: int, work: Callable[[Stop], CardReport]) -> None:
        try:
            report = work(self.stop)
        except AsUnavailableError as error:
            report = CardReport(reader, "", tuple(error.results), str(error))
            with self._done:
                self.as_lost = self.as_lost or error
        except TransportError as error:
            report = CardReport(reader, "", (), str(error))
        except Exception as error:  # a thread must always report, or join() would wait forever
            report = CardReport(reader, "", (), f"the run failed: {error}")
            self.stop.set(f"the run failed ({error})")
            with self._done:
                self.failure = self.failure or error
        with self._done:
            given_up = reader in self._given_up
            if not given_up:
                self._reports[index] = report
            if self._threads.get(reader) is threading.current_thread():
                del self._threads[reader]
                self._given_up.discard(reader)
            self._done.notify_all()
        if self.on_card and not given_up:
            self.on_card(report)

    def wait(self, timeout: float) -> None:
        """Until a card is done or ``timeout`` seconds; gives up on stalled readers meanwhile."""
        with self._done:
            self._done.wait(timeout)
        self._check_stalls()

    def join(self) -> None:
        """Until every card is done, giving up on readers that stall."""
        while self.busy():
            self.wait(BUSY_LOOK_INTERVAL * 10)

    def join_or_stop(self) -> None:
        """``join``; on Ctrl-C, every card stops after its current step, is waited for, and the
        interrupt goes on up."""
        try:
            self.join()
        except KeyboardInterrupt:
            self.stop.set(STOPPED_BY_OPERATOR)
            self.join()
            raise

    def _check_stalls(self) -> None:
        for reader, what in self.watchdog.stalled(self.apdu_timeout).items():
            message = (
                f"reader '{reader}' stalled: no answer to {what} within {self.apdu_timeout:g} s"
            )
            session = next((s for s in self.pool.sessions if s.card.reader == reader), None)
            if session is not None:
                self.pool.lose(session, message)
                self.watchdog.end(reader)
                continue
            with self._done:
                if reader not in self._threads or reader in self._given_up:
                    continue
                self._given_up.add(reader)
                report = CardReport(reader, "", (), message, stalled=True)
                self._reports.append(report)
                self._done.notify_all()
            self.audit.record(EVENT_CARD_FAILED, reader=reader, message=message)
            if self.on_card:
                self.on_card(report)

    def results(self) -> list[LoadResult]:
        """Every key result, card after card in the order the cards were started."""
        with self._done:
            return [r for report in self._reports if report for r in report.results]


Service = _Service
"""The EI cards being served, one thread each (``_Service``): public for the other card jobs
built on this workflow's pool and watchdog (``rotation``)."""


def watch(
    pool: AsPool,
    loads: Sequence[Load],
    audit: AuditSink,
    open_ei: EiOpener,
    readers: CardWatch,
    should_stop: Callable[[], bool],
    *,
    wait_timeout: float = WAIT_TIMEOUT,
    apdu_timeout: float = APDU_TIMEOUT,
    watchdog: Watchdog | None = None,
    on_result: Callable[[LoadResult], None] | None = None,
    on_card: Callable[[CardReport], None] | None = None,
    gates: Sequence[CardGate] = (),
) -> list[LoadResult]:
    """Serve EI cards as they are inserted, every reader at once, until ``should_stop()`` is
    true (asked whenever no card is being served) or Ctrl-C (KeyboardInterrupt: the cards being
    served stop after their current key, are reported, and the interrupt goes on up).

    Each card is served once: a card left in its reader is loaded once, a card put back in (or
    swapped in, however fast) is a new card to the reader, checked again and skipped if done.
    """
    service = _Service(pool, audit, on_result, on_card, apdu_timeout, watchdog or Watchdog())
    try:
        serve_inserted(
            service,
            readers,
            should_stop,
            wait_timeout,
            lambda reader: _watch_work(service, open_ei, reader, loads, gates),
            lambda: service.failure or service.as_lost,
        )
    except AsUnavailableError as error:
        error.results = service.results()
        raise
    return service.results()


def serve_inserted(
    service: _Service,
    readers: CardWatch,
    should_stop: Callable[[], bool],
    wait_timeout: float,
    work: Callable[[str], Callable[[Stop], CardReport]],
    ended: Callable[[], Exception | None],
) -> None:
    """The watch loop: serve ``work(reader)`` for each card inserted into a reader (once per
    card: one left in its reader is served once), until ``should_stop()`` (asked whenever no
    card is being served). When ``ended()`` names an error, the cards being served finish and
    what ``ended()`` then names is raised; Ctrl-C stops every card after its current step, waits
    for them, and goes on up."""
    served: dict[str, int] = {}
    try:
        while True:
            if not service.busy() and should_stop():
                break
            busy = service.busy_readers()
            started = False
            for reader, card in readers.cards().items():
                if card is None or served.get(reader) == card or reader in busy:
                    continue
                served[reader] = card
                service.start(reader, work(reader))
                started = True
            if ended():
                service.join()
                raise ended()  # type: ignore[misc]
            if service.busy():
                service.wait(BUSY_LOOK_INTERVAL)
            elif not started:  # nothing to serve: sleep until a reader changes
                readers.wait(wait_timeout)
    except KeyboardInterrupt:
        service.stop.set(STOPPED_BY_OPERATOR)
        service.join()
        raise


def _watch_work(
    service: _Service,
    open_ei: EiOpener,
    reader: str,
    loads: Sequence[Load],
    gates: Sequence[CardGate] = (),
) -> Callable[[Stop], CardReport]:
    def work(stop: Stop) -> CardReport:
        try:
            with open_ei(reader) as ei_card:
                watched = EiCard(service.watchdog.watch(ei_card.transport))
                return serve_card(
                    service.pool, watched, loads, service.audit, service.on_result, stop, gates
                )
        except TransportError as error:
            return _card_failed(reader, "", loads, str(error), service.audit)

    return work


def failed(results: Iterable[LoadResult]) -> bool:
    """True when any key failed: the CLI exits non-zero then."""
    return any(result.outcome == Outcome.FAILED for result in results)


def refuse(audit: AuditSink, reader: str, error: PreflightError) -> NoReturn:
    """Record each problem of ``error`` (``preflight_refused``, with the AS reader), raise it."""
    for problem in error.problems:
        audit.record(EVENT_PREFLIGHT_REFUSED, reader=reader, message=problem)
    raise error


def _as_cards(as_card: AsCard | Sequence[AsCard]) -> list[AsCard]:
    return [as_card] if isinstance(as_card, AsCard) else list(as_card)


def read_as_states(cards: Sequence[AsCard]) -> list[AsState]:
    """SELECT and read every AS of a pool (``read_as``), in the order given."""
    return [AsState(card.reader, *read_as(card)) for card in cards]


def open_pool(
    cards: Sequence[AsCard],
    states: Sequence[AsState],
    read_pin: Callable[[], Secret],
    audit: AuditSink,
    watchdog: Watchdog | None = None,
) -> AsPool:
    """VERIFY the PIN on every AS of the pool (the AS cards of one pool share their PIN)."""
    with read_pin() as pin:
        sessions = [
            open_session(card, state, pin) for card, state in zip(cards, states, strict=True)
        ]
    if watchdog:
        for session in sessions:
            session.card = AsCard(watchdog.watch(session.card.transport))
    return AsPool(sessions, audit)


def pool_without_pin(
    cards: Sequence[AsCard], states: Sequence[AsState], audit: AuditSink
) -> AsPool:
    """The pool of AS cards as read, no PIN verified: for a run with nothing to export."""
    return AsPool(
        [AsSession(c, s.info, dict(s.keys)) for c, s in zip(cards, states, strict=True)], audit
    )


def open_checked_pool(
    cards: Sequence[AsCard],
    check: Callable[[Sequence[AsState]], list[str]],
    read_pin: Callable[[], Secret],
    audit: AuditSink,
) -> tuple[AsPool, Watchdog]:
    """Read the AS cards, check them (``check`` returns the problems: any refuses the run, see
    ``refuse``), then VERIFY the PIN on each (``open_pool``). Returns the pool and the watchdog
    that watches its cards, for the EI cards' service."""
    states = read_as_states(cards)
    problems = check(states)
    if problems:
        refuse(audit, cards[0].reader, PreflightError(problems))
    watchdog = Watchdog()
    return open_pool(cards, states, read_pin, audit, watchdog), watchdog


def run_batch(
    as_card: AsCard | Sequence[AsCard],
    ei_cards: Sequence[EiCard],
    loads: Sequence[Load],
    audit: AuditSink,
    read_pin: Callable[[], Secret],
    *,
    apdu_timeout: float = APDU_TIMEOUT,
    on_plan: Callable[[Sequence[CardPlan]], None] | None = None,
    on_result: Callable[[LoadResult], None] | None = None,
    on_card: Callable[[CardReport], None] | None = None,
    gates: Sequence[CardGate] = (),
) -> list[LoadResult]:
    """Personalize the EI cards present now: read and check every card, then ask for the PIN
    (so that nobody types it for a batch that cannot run, nor for one with nothing to load),
    show the plan (``on_plan``), then load every card at once, each in a thread of its own
    (an opener-free batch: give each EI card its own PC/SC context).

    A failing EI does not stop the others; losing every AS raises AsUnavailableError carrying
    the results so far; Ctrl-C stops every card after its current key. A card a gate turns
    away is reported (``on_card``) and left out; the others go on.
    """
    cards = _as_cards(as_card)
    states = read_as_states(cards)
    eis = [read_ei(card) for card in ei_cards]
    refused: list[CardReport] = []
    if gates:  # the AS cards and the gates are checked before a gate changes any card
        problems = check_as_pool(states, loads) + check_gates(gates, states, loads)
        if problems:
            refuse(audit, cards[0].reader, PreflightError(problems))
        admitted = []
        for card, ei in zip(ei_cards, eis, strict=True):
            try:
                admitted.append((card, admit(gates, card, ei)))
            except CardRefused as error:
                refused.append(_card_failed(ei.reader, error.serial, loads, str(error), audit))
            except (CardError, ProtocolError, TransportError) as error:
                refused.append(_card_failed(ei.reader, ei.serial, loads, str(error), audit))
        ei_cards = [card for card, _ei in admitted]
        eis = [ei for _card, ei in admitted]
    try:
        plans = plan(states, eis, loads)
    except PreflightError as error:
        refuse(audit, cards[0].reader, error)
    service_watchdog = Watchdog()
    if any(card_plan.to_load for card_plan in plans):
        pool = open_pool(cards, states, read_pin, audit, service_watchdog)
    else:  # everything is loaded already: no export, so no PIN to ask
        pool = pool_without_pin(cards, states, audit)
    if on_plan:
        on_plan(plans)
    if on_card:  # the cards a gate turned away, after the plan as the others' reports
        for report in refused:
            on_card(report)
    service = _Service(pool, audit, on_result, on_card, apdu_timeout, service_watchdog)
    for ei_card, card_plan in zip(ei_cards, plans, strict=True):
        watched = EiCard(service_watchdog.watch(ei_card.transport))

        def work(stop: Stop, card: EiCard = watched, card_plan: CardPlan = card_plan) -> CardReport:
            results = personalize_card(pool, card, card_plan, audit, on_result, stop)
            return CardReport(card.reader, card_plan.ei.serial, tuple(results))

        service.start(ei_card.reader, work)
    service.join_or_stop()
    refused_results = [result for report in refused for result in report.results]
    if service.failure:
        raise service.failure
    if service.as_lost:
        service.as_lost.results = refused_results + service.results()
        raise service.as_lost
    return refused_results + service.results()


def run_watch(
    as_card: AsCard | Sequence[AsCard],
    loads: Sequence[Load],
    audit: AuditSink,
    read_pin: Callable[[], Secret],
    open_ei: EiOpener,
    readers: CardWatch,
    should_stop: Callable[[], bool],
    *,
    wait_timeout: float = WAIT_TIMEOUT,
    apdu_timeout: float = APDU_TIMEOUT,
    on_result: Callable[[LoadResult], None] | None = None,
    on_card: Callable[[CardReport], None] | None = None,
    gates: Sequence[CardGate] = (),
) -> list[LoadResult]:
    """Check the AS cards (and the gates against them), ask for the PIN, then serve EI cards
    as they come (see ``watch``)."""
    pool, watchdog = open_checked_pool(
        _as_cards(as_card),
        lambda states: check_as_pool(states, loads) + check_gates(gates, states, loads),
        read_pin,
        audit,
    )
    return watch(
        pool,
        loads,
        audit,
        open_ei,
        readers,
        should_stop,
        wait_timeout=wait_timeout,
        apdu_timeout=apdu_timeout,
        watchdog=watchdog,
        on_result=on_result,
        on_card=on_card,
        gates=gates,
    )
