"""Transport key rotation (PROTOCOL.md §9): check every card first, then give each EI of the set
the AS's next transport key, three APDUs per card (GET CHALLENGE, EXPORT TRANSPORT KEY, IMPORT
TRANSPORT KEY) and a GET INFO that shows the new T; every EI card in a thread of its own, the AS
cards as ``workflow``'s pool; in a batch or as cards arrive (watch mode); then RETIRE on the AS.
No user interface, no PC/SC: cards come through their transports and EI cards through callables.

One audit group per card: a ``transport_key`` record (the EI's serial, its new KCV(T) and version,
or why it failed), which the inventory stores with the others."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from .apdu import CardError
from .audit import EVENT_CARD_FAILED, AuditSink, as_identity
from .cards import AsCard, EiCard
from .protocol import Info, LifeCycle, ProtocolError, kcv_text
from .secret_sources import Secret
from .transport import TransportError
from .workflow import (
    APDU_TIMEOUT,
    WAIT_TIMEOUT,
    AsPool,
    AsSession,
    AsState,
    AsUnavailableError,
    CardReport,
    CardWatch,
    EiOpener,
    PreflightError,
    Service,
    Stop,
    Watchdog,
    open_checked_pool,
    open_pool,
    pool_without_pin,
    read_as_states,
    refuse,
    serve_inserted,
)

EVENT_TRANSPORT_KEY = "transport_key"
"""The audit record of one EI's rotation: ``kcv_t`` and ``version`` are its T after it."""


class Outcome(StrEnum):
    ROTATED = "rotated"
    SKIPPED = "skipped"
    FAILED = "failed"


@dataclass(frozen=True)
class RotationResult:
    """What became of one EI: rotated (or skipped: it held the next T already), with the KCV and
    version of the T it holds now, or failed with the reason."""

    reader: str
    serial: str
    outcome: Outcome
    version: int | None = None
    kcv: str = ""
    reason: str = ""
    sw: int | None = None


def _name(reader: str, info: Info | None) -> str:
    serial = f" {info.serial.hex().upper()}" if info and info.serial else ""
    return f"the EI{serial} in reader '{reader}'"


def holds_next(as_info: Info, ei_info: Info) -> bool:
    """The EI holds the AS's next T (rotated already)."""
    return as_info.holds_next_transport_key and (
        ei_info.transport_kcv,
        ei_info.transport_key_length,
        ei_info.transport_version,
    ) == (
        as_info.next_transport_kcv,
        as_info.next_transport_length,
        as_info.next_transport_version,
    )


def check_as_pool(pool: Sequence[AsState]) -> list[str]:
    """Problems of the AS cards for a campaign: OPERATIONAL, PIN not blocked, a next T held, and
    in a pool of several the same T and next T."""
    problems = []
    first = pool[0].info
    for state in pool:
        where, info = f"the AS in reader '{state.reader}'", state.info
        if info.life_cycle != LifeCycle.OPERATIONAL:
            problems.append(f"{where} is in {info.life_cycle.name}, not OPERATIONAL")
        elif info.tries_remaining == 0:
            problems.append(f"{where} has its operator PIN blocked")
        if info.transport_version is None:
            problems.append(f"{where} does not know transport key rotation (no T version in INFO)")
        elif not info.holds_next_transport_key:
            problems.append(
                f"{where} holds no next transport key: put one in while it is in SETUP "
                "(keyload-host next-transport-key), or the campaign is over (retired)"
            )
        same = ("transport_kcv", "transport_key_length", "transport_version")
        same += ("next_transport_kcv", "next_transport_length", "next_transport_version")
        if any(getattr(info, a) != getattr(first, a) for a in same):
            problems.append(f"{where} holds other transport keys than the AS in '{pool[0].reader}'")
    return problems


def check_ei(as_info: Info, reader: str, info: Info) -> tuple[str | None, bool]:
    """(problem, rotated already) for one EI: BLOCKED, SETUP, a card without the extension or of
    another set is a problem; one that holds the AS's next T is rotated already (skipped)."""
    name = _name(reader, info)
    if info.life_cycle == LifeCycle.BLOCKED:
        return f"{name} is BLOCKED (import tries exhausted) and can never be rotated", False
    if info.life_cycle != LifeCycle.OPERATIONAL:
        return f"{name} is in {info.life_cycle.name}, not OPERATIONAL", False
    if info.transport_version is None:
        return f"{name} does not know transport key rotation (no T version in INFO)", False
    if holds_next(as_info, info):
        return None, True
    if (info.transport_kcv, info.transport_key_length, info.transport_version) != (
        as_info.transport_kcv,
        as_info.transport_key_length,
        as_info.transport_version,
    ):
        return (
            f"{name} belongs to another set: its transport key is {kcv_text(info.transport_kcv)}"
            f" version {info.transport_version:04X}, the AS has "
            f"{kcv_text(as_info.transport_kcv)} version {as_info.transport_version or 0:04X} "
            f"and next {kcv_text(as_info.next_transport_kcv)} version "
            f"{as_info.next_transport_version:04X}",
            False,
        )
    return None, False


class _CardRun:
    """Rotating one EI; errors of the EI end only this card, losing every AS ends the run."""

    def __init__(
        self,
        pool: AsPool,
        ei_card: EiCard,
        audit: AuditSink,
        on_result: Callable[[RotationResult], None] | None,
    ) -> None:
        self.pool, self.ei_card, self.audit, self.on_result = pool, ei_card, audit, on_result
        first = pool.first
        self.as_info = first.info
        self.as_id = as_identity(first.info, first.keys.values())

    def report(self, result: RotationResult) -> RotationResult:
        self.audit.record(
            EVENT_TRANSPORT_KEY,
            reader=result.reader,
            ei_sn=result.serial or None,
            version=result.version,
            kcv_t=result.kcv or None,
            result=result.outcome.value,
            sw=None if result.sw is None else f"{result.sw:04X}",
            message=result.reason or None,
            as_id=self.as_id,
        )
        if self.on_result:
            self.on_result(result)
        return result

    def failed(self, serial: str, reason: str, sw: int | None = None) -> RotationResult:
        result = RotationResult(self.ei_card.reader, serial, Outcome.FAILED, reason=reason, sw=sw)
        return self.report(result)

    def run(self, info: Info, stop: Stop) -> RotationResult:
        reader, serial = self.ei_card.reader, info.serial.hex().upper()
        if holds_next(self.as_info, info):
            return self.report(
                RotationResult(
                    reader,
                    serial,
                    Outcome.SKIPPED,
                    info.transport_version,
                    kcv_text(info.transport_kcv),
                    "the EI holds the next transport key already",
                )
            )
        if stop.reason:
            return self.failed(serial, f"not attempted: {stop.reason}")
        try:
            challenge = self.ei_card.get_challenge()
        except (CardError, ProtocolError, TransportError) as error:
            return self.failed(serial, str(error), getattr(error, "sw", None))

        def export_on(session: AsSession) -> bytes:
            return session.card.export_transport_key(challenge, info.serial)

        try:
            block = self.pool.run(export_on)
        except CardError as error:
            return self.failed(serial, str(error), error.sw)
        except AsUnavailableError as error:
            stop.set(f"no AS left ({error})")
            raise
        try:
            self.ei_card.import_transport_key(block)
            after = self.ei_card.get_info()
        except (CardError, ProtocolError, TransportError) as error:
            return self.failed(serial, str(error), getattr(error, "sw", None))
        if not holds_next(self.as_info, after):
            return self.failed(serial, "the EI answered 9000 but does not report the next T")
        return self.report(
            RotationResult(
                reader,
                serial,
                Outcome.ROTATED,
                after.transport_version,
                kcv_text(after.transport_kcv),
            )
        )


def _card_failed(reader: str, info: Info | None, reason: str, audit: AuditSink) -> CardReport:
    serial = info.serial.hex().upper() if info else ""
    audit.record(EVENT_CARD_FAILED, reader=reader, ei_sn=serial or None, message=reason)
    return CardReport(reader, serial, (), reason)


def rotate_card(
    pool: AsPool,
    ei_card: EiCard,
    audit: AuditSink,
    on_result: Callable[[RotationResult], None] | None = None,
    stop: Stop | None = None,
    info: Info | None = None,
) -> RotationResult | CardReport:
    """Read (unless ``info`` is given), check and rotate one EI, in one audit group: its result,
    or a ``CardReport`` with the problem when it cannot be served (one ``card_failed`` record)."""
    with audit.group():
        try:
            info = info or ei_card.select()
        except (CardError, ProtocolError, TransportError) as error:
            return _card_failed(ei_card.reader, None, str(error), audit)
        problem, _ = check_ei(pool.first.info, ei_card.reader, info)
        if problem:
            return _card_failed(ei_card.reader, info, problem, audit)
        return _CardRun(pool, ei_card, audit, on_result).run(info, stop or Stop())


_Served = RotationResult | CardReport
"""One card's outcome: its rotation, or why it could not be served."""


class _Results:
    """The results of the cards served, in the order they finished, and the cards that could not
    be served (their problem)."""

    def __init__(self, on_card: Callable[[RotationResult | CardReport], None] | None) -> None:
        self.results: list[RotationResult] = []
        self.problems: list[CardReport] = []
        self.on_card = on_card

    def work(
        self, serve: Callable[[Stop], RotationResult | CardReport]
    ) -> Callable[[Stop], CardReport]:
        def run(stop: Stop) -> CardReport:
            outcome = serve(stop)
            if isinstance(outcome, CardReport):
                self.problems.append(outcome)
                report = outcome
            else:
                self.results.append(outcome)
                report = CardReport(outcome.reader, outcome.serial, ())
            if self.on_card:
                self.on_card(outcome)
            return report

        return run


def _join(service: Service) -> None:
    """Until every card is done; then what ended a card in an unforeseen way, or the lost pool."""
    service.join_or_stop()
    if service.failure or service.as_lost:
        raise service.failure or service.as_lost  # type: ignore[misc]


def run_batch(
    as_cards: Sequence[AsCard],
    ei_cards: Sequence[EiCard],
    audit: AuditSink,
    read_pin: Callable[[], Secret],
    *,
    apdu_timeout: float = APDU_TIMEOUT,
    on_card: Callable[[RotationResult | CardReport], None] | None = None,
) -> list[RotationResult]:
    """Rotate the EI cards present now: read and check every card (nothing is written, and no
    PIN asked, when anything is wrong or nothing is left to rotate), then rotate every card at
    once, each in a thread of its own. Cards that hold the next T already are skipped."""
    states = read_as_states(as_cards)
    infos = [card.select() for card in ei_cards]
    problems = check_as_pool(states)
    checked = [check_ei(states[0].info, c.reader, i) for c, i in zip(ei_cards, infos, strict=True)]
    problems += [problem for problem, _ in checked if problem]
    if problems:
        refuse(audit, as_cards[0].reader, PreflightError(problems))
    watchdog = Watchdog()
    if all(rotated for _, rotated in checked):
        pool = pool_without_pin(as_cards, states, audit)
    else:
        pool = open_pool(as_cards, states, read_pin, audit, watchdog)
    collected = _Results(on_card)
    service = Service(pool, audit, None, None, apdu_timeout, watchdog)
    for ei_card, info in zip(ei_cards, infos, strict=True):
        watched = EiCard(watchdog.watch(ei_card.transport))

        def serve(
            stop: Stop, card: EiCard = watched, info: Info = info
        ) -> RotationResult | CardReport:
            return rotate_card(pool, card, audit, None, stop, info)

        service.start(ei_card.reader, collected.work(serve))
    _join(service)
    return collected.results + [_as_result(report) for report in collected.problems]


def _as_result(report: CardReport) -> RotationResult:
    return RotationResult(report.reader, report.serial, Outcome.FAILED, reason=report.problem)


def run_watch(
    as_cards: Sequence[AsCard],
    audit: AuditSink,
    read_pin: Callable[[], Secret],
    open_ei: EiOpener,
    readers: CardWatch,
    should_stop: Callable[[], bool],
    *,
    wait_timeout: float = WAIT_TIMEOUT,
    apdu_timeout: float = APDU_TIMEOUT,
    on_card: Callable[[RotationResult | CardReport], None] | None = None,
) -> list[RotationResult]:
    """Check the AS cards, ask for the PIN, then rotate EI cards as they are inserted, every
    reader at once, until ``should_stop()`` (asked when no card is being served) or Ctrl-C. A
    card left in its reader is served once; one put back in is checked again (and skipped)."""
    pool, watchdog = open_checked_pool(as_cards, check_as_pool, read_pin, audit)
    collected = _Results(on_card)
    service = Service(pool, audit, None, None, apdu_timeout, watchdog)

    def work(reader: str) -> Callable[[Stop], RotationResult | CardReport]:
        def serve(stop: Stop) -> RotationResult | CardReport:
            try:
                with open_ei(reader) as ei_card:
                    return rotate_card(
                        pool, EiCard(watchdog.watch(ei_card.transport)), audit, None, stop
                    )
            except TransportError as error:
                return _card_failed(reader, None, str(error), audit)

        return serve

    serve_inserted(
        service,
        readers,
        should_stop,
        wait_timeout,
        lambda reader: collected.work(work(reader)),
        lambda: service.failure or service.as_lost,
    )
    return collected.results + [_as_result(report) for report in collected.problems]


def retire(as_card: AsCard, read_pin: Callable[[], Secret], audit: AuditSink) -> Info:
    """RETIRE TRANSPORT KEY on one AS: its next T becomes T. Returns its INFO after."""
    info = as_card.select()
    if not info.holds_next_transport_key:
        refuse(
            audit, as_card.reader, PreflightError([f"the AS in '{as_card.reader}' holds no next T"])
        )
    with read_pin() as pin:
        as_card.verify_pin(pin.reveal())
    as_card.retire_transport_key(info.next_transport_version)
    after = as_card.get_info()
    audit.record(
        EVENT_TRANSPORT_KEY,
        reader=as_card.reader,
        version=after.transport_version,
        kcv_t=kcv_text(after.transport_kcv),
        result="retired",
        message=f"the AS's T is now {kcv_text(after.transport_kcv)} (the old one is cleared)",
    )
    return after


def failed(results: Sequence[RotationResult]) -> bool:
    return any(result.outcome == Outcome.FAILED for result in results)
