"""The personalization workflow: check everything first, then load keys AS -> EI card by card, three
APDUs per key, in a batch or serving cards as they arrive (watch mode). No user interface, no
PC/SC: cards come through their transports and EI cards through callables."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import NoReturn, Protocol

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
    kcv_text,
)
from .secret_sources import Secret
from .transport import TransportError

WAIT_TIMEOUT = 0.25
"""Seconds watch mode waits for a reader to change before it asks whether to stop (and Python
sees a Ctrl-C): a card is noticed as soon as PC/SC sees it, whatever this is."""


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
    """The AS once selected and PIN-verified, with its keys; export counts are kept up to date
    locally so that the export budget stays right across cards without reading the AS again."""

    card: AsCard
    info: Info
    keys: dict[int, KeyEntry] = field(default_factory=dict)

    def count_export(self, ref1: int) -> None:
        entry = self.keys[ref1]
        self.keys[ref1] = replace(entry, count=entry.count + 1)


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
    if (ei.info.transport_kcv, ei.info.transport_key_length) != (
        as_info.transport_kcv,
        as_info.transport_key_length,
    ):
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


def split_loads(as_keys: Mapping[int, KeyEntry], ei: EiState, loads: Sequence[Load]) -> CardPlan:
    """Separate the loads an EI still needs from those it already has (re-runs are safe)."""
    done = tuple(
        load
        for load in loads
        if load.ref2 in ei.slots and _already_loaded(as_keys[load.ref1], ei.slots[load.ref2])
    )
    return CardPlan(ei, tuple(load for load in loads if load not in done), done)


def check_export_budget(as_keys: Mapping[int, KeyEntry], plans: Sequence[CardPlan]) -> list[str]:
    """Problems where the AS export limits do not allow the whole batch."""
    needed = Counter(load.ref1 for plan in plans for load in plan.to_load)
    problems = []
    for ref1, count in sorted(needed.items()):
        key = as_keys[ref1]
        if key.exports_left is not None and count > key.exports_left:
            problems.append(
                f"AS key {ref1:02X} may be exported {key.exports_left} more time(s) "
                f"(limit {key.limit}, done {key.count}), this batch needs {count}"
            )
    return problems


def plan(
    as_reader: str,
    as_info: Info,
    as_keys: Mapping[int, KeyEntry],
    eis: Sequence[EiState],
    loads: Sequence[Load],
) -> list[CardPlan]:
    """Check the whole batch before any card is changed; raise PreflightError listing every
    problem, or return what each EI needs."""
    return plan_eis(as_info, as_keys, eis, loads, check_as(as_reader, as_info, as_keys, loads))


def plan_eis(
    as_info: Info,
    as_keys: Mapping[int, KeyEntry],
    eis: Sequence[EiState],
    loads: Sequence[Load],
    as_problems: Sequence[str] = (),
) -> list[CardPlan]:
    """``plan`` for EI cards against an AS checked already (``as_problems``: what its check
    found, listed first), as watch mode checks each card against its session's AS."""
    problems = list(as_problems)
    for ei in eis:
        problems += check_ei(as_info, as_keys, ei, loads)
    if problems:
        raise PreflightError(problems)
    plans = [split_loads(as_keys, ei, loads) for ei in eis]
    problems = check_export_budget(as_keys, plans)
    if problems:
        raise PreflightError(problems)
    return plans


def open_session(card: AsCard, info: Info, keys: Mapping[int, KeyEntry], pin: Secret) -> AsSession:
    """VERIFY the operator PIN on an AS that ``read_as`` has just selected (the PIN stays
    verified until the applet is deselected), and keep its state for the run."""
    card.verify_pin(pin.reveal())
    return AsSession(card, info, dict(keys))


class _CardRun:
    """Loading one EI: the three APDUs per key. Errors of the EI end only this card; errors of
    the AS end the whole run (AsUnavailableError)."""

    def __init__(
        self,
        session: AsSession,
        ei_card: EiCard,
        card_plan: CardPlan,
        audit: AuditSink,
        on_result: Callable[[LoadResult], None] | None,
    ) -> None:
        self.session = session
        self.ei_card = ei_card
        self.ei = card_plan.ei
        self.plan = card_plan
        self.audit = audit
        self.on_result = on_result
        self.results: list[LoadResult] = []
        self.stop_reason = ""
        # audit: which AS, and which loads it counted an export for (the export cross-check)
        self.as_id = as_identity(session.info, session.keys.values())
        self.exported: set[Load] = set()

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
            usage=USAGE_SHORT[self.session.keys[result.load.ref1].usage],
            kcv_t=_kcv(self.ei.info.transport_kcv),
            as_id=self.as_id,
            exported=result.load in self.exported,
            diversify=self.session.keys[result.load.ref1].diversify,
        )
        if self.on_result:
            self.on_result(result)

    def fail(self, load: Load, reason: str, sw: int | None = None) -> None:
        version = self.session.keys[load.ref1].version
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
            if self.stop_reason:
                self.fail(load, f"not attempted: {self.stop_reason}")
            else:
                self.load_one(load)
        return self.results

    def load_one(self, load: Load) -> None:
        try:
            challenge = self.ei_card.get_challenge()
        except (CardError, ProtocolError, TransportError) as error:
            self.ei_failed(load, error)
            return
        block = self.export(load, challenge)
        if block is None:
            return
        try:
            self.ei_card.import_key(block)
        except (CardError, ProtocolError, TransportError) as error:
            self.ei_failed(load, error)
            return
        # 9000: the slot now holds this block's key version, whose KCV the EI checked (SAS)
        version = KeyBlockHeader.parse(block).version
        kcv = _kcv(block_sas(block)[:KCV_LENGTH])
        self.report(LoadResult(self.ei.reader, self.ei.serial, load, Outcome.LOADED, version, kcv))

    def export(self, load: Load, challenge: bytes) -> bytes | None:
        """EXPORT KEY; a refusal of this one key (e.g. its export limit) fails only this key."""
        try:
            block = self.session.card.export_key(
                load.ref1, load.ref2, challenge, self.ei.info.serial
            )
        except CardError as error:
            if error.sw == SW.SECURITY_STATUS_NOT_SATISFIED:
                self.as_lost(f"the AS no longer has the PIN verified ({error})")
            self.fail(load, str(error), error.sw)
            return None
        except (ProtocolError, TransportError) as error:
            self.as_lost(str(error))
        self.session.count_export(load.ref1)
        self.exported.add(load)
        return block

    def as_lost(self, message: str) -> NoReturn:
        self.audit.record(EVENT_CARD_FAILED, reader=self.session.card.reader, message=message)
        raise AsUnavailableError(message, self.results)

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
    session: AsSession,
    ei_card: EiCard,
    card_plan: CardPlan,
    audit: AuditSink,
    on_result: Callable[[LoadResult], None] | None = None,
) -> list[LoadResult]:
    """Load one EI as planned; every key ends as loaded, skipped or failed(reason).

    Raises AsUnavailableError (with the results so far) when the AS is lost. The card's audit
    records reach the disk together when it is done (one ``fsync`` per card).
    """
    with audit.group():
        return _CardRun(session, ei_card, card_plan, audit, on_result).run()


def _card_failed(
    reader: str,
    serial: str,
    loads: Sequence[Load],
    reason: str,
    audit: AuditSink,
    on_result: Callable[[LoadResult], None] | None,
) -> list[LoadResult]:
    """Every load of a card that could not be started, reported as failed."""
    audit.record(EVENT_CARD_FAILED, reader=reader, ei_sn=serial or None, message=reason)
    results = [LoadResult(reader, serial, load, Outcome.FAILED, reason=reason) for load in loads]
    if on_result:
        for result in results:
            on_result(result)
    return results


def serve_card(
    session: AsSession,
    ei_card: EiCard,
    loads: Sequence[Load],
    audit: AuditSink,
    on_result: Callable[[LoadResult], None] | None = None,
) -> list[LoadResult]:
    """Read, check and load one EI that arrived on its own (watch mode).

    The checks are those of the batch preflight for an EI, against the AS state of this session
    (the AS itself was checked when the session opened); a card that fails them is reported as
    failed and gets no IMPORT KEY.
    """
    try:
        ei = read_ei(ei_card)
    except (CardError, ProtocolError, TransportError) as error:
        return _card_failed(ei_card.reader, "", loads, str(error), audit, on_result)
    try:
        (card_plan,) = plan_eis(session.info, session.keys, [ei], loads)
    except PreflightError as error:
        reason = "; ".join(error.problems)
        return _card_failed(ei.reader, ei.serial, loads, reason, audit, on_result)
    return personalize_card(session, ei_card, card_plan, audit, on_result)


EiOpener = Callable[[str], AbstractContextManager[EiCard]]
"""Open the card in a reader for the time of a ``with`` block."""


class CardWatch(Protocol):
    """The EI readers as watch mode follows them (``transport.ReaderWatch``)."""

    def cards(self) -> Mapping[str, int | None]:
        """Per reader, in order: a number that changes whenever another card is inserted (the
        reader's card event count), or None when the reader is empty."""
        ...

    def wait(self, timeout: float) -> None:
        """Return when a reader changes, or after ``timeout`` seconds."""
        ...


def watch(
    session: AsSession,
    loads: Sequence[Load],
    audit: AuditSink,
    open_ei: EiOpener,
    readers: CardWatch,
    should_stop: Callable[[], bool],
    *,
    wait_timeout: float = WAIT_TIMEOUT,
    on_result: Callable[[LoadResult], None] | None = None,
) -> list[LoadResult]:
    """Serve EI cards as they are inserted until ``should_stop()`` is true.

    Each card is served once: a card left in its reader is loaded once, a card put back in (or
    swapped in, however fast) is a new card to the reader, checked again and skipped if done.
    """
    results: list[LoadResult] = []
    served: dict[str, int] = {}
    while not should_stop():
        for reader, card in readers.cards().items():
            if card is None or served.get(reader) == card:
                continue
            served[reader] = card
            try:
                with open_ei(reader) as ei_card:
                    results += serve_card(session, ei_card, loads, audit, on_result)
            except TransportError as error:
                results += _card_failed(reader, "", loads, str(error), audit, on_result)
            except AsUnavailableError as error:
                error.results = results + error.results
                raise
        readers.wait(wait_timeout)
    return results


def failed(results: Iterable[LoadResult]) -> bool:
    """True when any key failed: the CLI exits non-zero then."""
    return any(result.outcome == Outcome.FAILED for result in results)


def _refuse(audit: AuditSink, reader: str, error: PreflightError) -> NoReturn:
    for problem in error.problems:
        audit.record(EVENT_PREFLIGHT_REFUSED, reader=reader, message=problem)
    raise error


def run_batch(
    as_card: AsCard,
    ei_cards: Sequence[EiCard],
    loads: Sequence[Load],
    audit: AuditSink,
    read_pin: Callable[[], Secret],
    *,
    on_plan: Callable[[Sequence[CardPlan]], None] | None = None,
    on_result: Callable[[LoadResult], None] | None = None,
) -> list[LoadResult]:
    """Personalize the EI cards present now: read and check every card, then ask for the PIN
    (so that nobody types it for a batch that cannot run, nor for one with nothing to load),
    show the plan (``on_plan``), then load card by card.

    A failing EI does not stop the others; losing the AS raises AsUnavailableError carrying the
    results so far.
    """
    as_info, as_keys = read_as(as_card)
    eis = [read_ei(card) for card in ei_cards]
    try:
        plans = plan(as_card.reader, as_info, as_keys, eis, loads)
    except PreflightError as error:
        _refuse(audit, as_card.reader, error)
    if any(card_plan.to_load for card_plan in plans):
        with read_pin() as pin:
            session = open_session(as_card, as_info, as_keys, pin)
    else:  # everything is loaded already: no export, so no PIN to ask
        session = AsSession(as_card, as_info, dict(as_keys))
    if on_plan:
        on_plan(plans)
    results: list[LoadResult] = []
    for ei_card, card_plan in zip(ei_cards, plans, strict=True):
        try:
            results += personalize_card(session, ei_card, card_plan, audit, on_result)
        except AsUnavailableError as error:
            error.results = results + error.results
            raise
    return results


def run_watch(
    as_card: AsCard,
    loads: Sequence[Load],
    audit: AuditSink,
    read_pin: Callable[[], Secret],
    open_ei: EiOpener,
    readers: CardWatch,
    should_stop: Callable[[], bool],
    *,
    wait_timeout: float = WAIT_TIMEOUT,
    on_result: Callable[[LoadResult], None] | None = None,
) -> list[LoadResult]:
    """Check the AS, ask for the PIN, then serve EI cards as they come (see ``watch``)."""
    as_info, as_keys = read_as(as_card)
    problems = check_as(as_card.reader, as_info, as_keys, loads)
    if problems:
        _refuse(audit, as_card.reader, PreflightError(problems))
    with read_pin() as pin:
        session = open_session(as_card, as_info, as_keys, pin)
    return watch(
        session,
        loads,
        audit,
        open_ei,
        readers,
        should_stop,
        wait_timeout=wait_timeout,
        on_result=on_result,
    )
