"""`keyload-host doctor`: is this station ready to personalize, and what is the next command? Looks
at pcscd, every reader and card read-only and gives each problem its fix."""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Protocol

from .cards import identify
from .config import Load
from .errors import KeyloadError
from .protocol import AID_AS, AID_EI, Info, KeyEntry, LifeCycle, Role, kcv_text
from .tables import format_table
from .transport import NoCardError, PcscUnavailableError, ReaderBusyError, ReaderStatus
from .workflow import EiState, check_as, check_ei, check_export_budget, split_loads

DOCTOR = "keyload-host doctor"
BUSY = "in use by another program"
REAL_CARDS_DOC = "docs/REAL-CARDS.md"
FIX_PCSCD = (
    "start it: `sudo systemctl start pcscd.socket` (Debian and Ubuntu; elsewhere `sudo pcscd`), "
    f"then run `{DOCTOR}` again"
)
FIX_NO_READER = (
    "plug in a PC/SC (CCID) reader; if `lsusb` lists it but this does not, install the Debian "
    "package libccid and restart pcscd"
)
FIX_NO_CARD = f"insert the AS (master card) and the EI cards, then run `{DOCTOR}` again"
FIX_BUSY = (
    "close the program holding it (another keyload-host, gp, a browser or PKCS#11 middleware), "
    f"then run `{DOCTOR}` again"
)
FIX_UNREADABLE = (
    "take the card out and insert it again, contacts first; a card that still does not answer "
    "is faulty or not a smart card"
)
FIX_BLOCKED_EI = (
    "set this card aside: it can never receive a key; to reuse the card, delete and reinstall "
    f"the EI applet with gp and set it up again ({REAL_CARDS_DOC} §9)"
)
FIX_PIN_BLOCKED = (
    f"this AS can export nothing any more: set up a new AS with the same keys ({REAL_CARDS_DOC} §9)"
)
FIX_OTHER_SET = (
    "use an EI of this set, or the AS of the EI's set: an EI takes keys only from an AS with "
    "the same transport key"
)
FIX_NOTHING_FITS = (
    "compare `keyload-host info` of the AS and of the EI: a key goes into a slot that accepts "
    "imports with the same usage and key length"
)
FIX_EXPORT_LIMIT = (
    "the AS refuses further exports of that key: personalize fewer EIs, or set up a new AS "
    "with a higher export limit"
)


def quoted(reader: str) -> str:
    """A reader name as the shell takes it back."""
    return shlex.quote(reader)


def _install_fix(reader: str) -> str:
    gp = f"gp -r {quoted(reader)} --install build/cap/keyload.cap --applet"
    return (
        f"if the card is blank, install an applet: `{gp} {AID_AS.hex().upper()}` for an AS, "
        f"`{gp} {AID_EI.hex().upper()}` for an EI ({REAL_CARDS_DOC} §5); "
        "otherwise insert a keyload card"
    )


class Connection(Protocol):
    """What the doctor needs of an open card connection."""

    reader: str
    protocol: str

    def transmit(self, apdu: bytes) -> bytes: ...


class Readers(Protocol):
    """What the doctor needs of a PC/SC context (``transport.Pcsc``)."""

    def readers(self) -> list[ReaderStatus]: ...

    def connect(self, pattern: str) -> AbstractContextManager[Connection]: ...


# ------------------------------------------------------------------------------ what was seen


@dataclass(frozen=True)
class ReaderReport:
    """One reader as the doctor found it: a card or not, and what the card holds."""

    name: str
    card_present: bool
    protocol: str = "-"
    """The protocol pcscd negotiated with the card, "T=0" or "T=1"."""
    info: Info | None = None
    entries: tuple[KeyEntry, ...] = ()
    unreadable: str | None = None
    """Why the card could not be read, when it could not."""

    @property
    def role(self) -> Role | None:
        return self.info.role if self.info else None

    def is_card(self, role: Role, life_cycle: LifeCycle) -> bool:
        return self.info is not None and (self.info.role, self.info.life_cycle) == (
            role,
            life_cycle,
        )

    @property
    def label(self) -> str:
        """The card as named in messages: role, serial and reader."""
        role = self.role.name if self.role else "card"
        serial = f" {self.info.serial.hex().upper()}" if self.info and self.info.serial else ""
        return f"the {role}{serial} in {quoted(self.name)}"


@dataclass(frozen=True)
class Problem:
    """Something that stops the job, and what to do about it in one line."""

    text: str
    fix: str


@dataclass(frozen=True)
class Diagnosis:
    pcscd_answers: bool
    readers: tuple[ReaderReport, ...]
    problems: tuple[Problem, ...]
    notes: tuple[str, ...]
    next_step: str

    @property
    def ok(self) -> bool:
        return not self.problems


# ------------------------------------------------------------------------------ looking


def diagnose(open_pcsc: Callable[[], AbstractContextManager[Readers]]) -> Diagnosis:
    """Look at pcscd, every reader and every card; never raises for what it finds."""
    try:
        with open_pcsc() as pcsc:
            reports = tuple(_read(pcsc, status) for status in pcsc.readers())
    except PcscUnavailableError as error:
        problem = Problem(str(error), FIX_PCSCD)
        return Diagnosis(False, (), (problem,), (), FIX_PCSCD)
    except KeyloadError as error:
        problem = Problem(f"PC/SC failed: {error}", FIX_PCSCD)
        return Diagnosis(True, (), (problem,), (), FIX_PCSCD)
    return _assess(reports)


def _read(pcsc: Readers, status: ReaderStatus) -> ReaderReport:
    if not status.card_present:
        return ReaderReport(status.name, False)
    if status.exclusive:
        return ReaderReport(status.name, True, unreadable=BUSY)
    try:
        with pcsc.connect(status.name) as connection:
            found = identify(connection)
            if found is None:
                return ReaderReport(status.name, True, connection.protocol)
            card, info = found
            return ReaderReport(
                status.name, True, connection.protocol, info, tuple(card.list_keys())
            )
    except NoCardError:
        return ReaderReport(status.name, False)
    except ReaderBusyError:
        return ReaderReport(status.name, True, unreadable=BUSY)
    except KeyloadError as error:
        return ReaderReport(status.name, True, unreadable=str(error))


# ------------------------------------------------------------------------------ judging


@dataclass
class _Findings:
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _assess(reports: Sequence[ReaderReport]) -> Diagnosis:
    findings = _Findings()
    if not reports:
        findings.problems.append(Problem("no smart card reader is attached", FIX_NO_READER))
    elif not any(report.card_present for report in reports):
        findings.problems.append(Problem("no card in any reader", FIX_NO_CARD))
    for report in reports:
        _check_card(report, findings)
    next_step = _next_step(reports, findings)
    if findings.problems:
        next_step = findings.problems[0].fix
    return Diagnosis(
        True, tuple(reports), tuple(findings.problems), tuple(findings.notes), next_step
    )


def _check_card(report: ReaderReport, findings: _Findings) -> None:
    where = quoted(report.name)
    if report.unreadable == BUSY:
        findings.problems.append(Problem(f"reader {where} is {BUSY}", FIX_BUSY))
    elif report.unreadable:
        text = f"the card in {where} does not answer: {report.unreadable}"
        findings.problems.append(Problem(text, FIX_UNREADABLE))
    elif report.card_present and report.info is None:
        text = f"the card in {where} holds no keyload applet"
        findings.problems.append(Problem(text, _install_fix(report.name)))
    if report.info is None:
        return
    info = report.info
    if info.life_cycle == LifeCycle.BLOCKED:
        text = f"{report.label} is BLOCKED for good: its import tries are spent"
        findings.problems.append(Problem(text, FIX_BLOCKED_EI))
    elif info.life_cycle == LifeCycle.OPERATIONAL and info.tries_remaining < info.try_limit:
        if info.role == Role.AS and info.tries_remaining == 0:
            text = f"the operator PIN of {report.label} is blocked"
            findings.problems.append(Problem(text, FIX_PIN_BLOCKED))
        elif info.role == Role.AS:
            findings.notes.append(
                f"{report.label} has {info.tries_remaining} of {info.try_limit} PIN tries left: "
                "every wrong PIN spends one, none left blocks it for good"
            )
        else:
            findings.notes.append(
                f"{report.label} has {info.tries_remaining} of {info.try_limit} import tries "
                "left: imports failed on it (a key block of another set, or altered)"
            )


def _setup_command(report: ReaderReport) -> str:
    assert report.info is not None
    role = report.info.role.name.lower()
    return (
        f"keyload-host setup {role} --reader {quoted(report.name)} --config {role}.toml "
        f"(in the secure room; `keyload-host setup {role} --help` shows the config)"
    )


def _next_step(reports: Sequence[ReaderReport], findings: _Findings) -> str:
    """The command to run next when nothing stands in the way: personalize when an AS and EIs
    of its set are ready (cards still in SETUP get a note), else set up, else insert cards."""
    in_setup = [
        report for report in reports if report.info and report.info.life_cycle == LifeCycle.SETUP
    ]
    masters = [
        report
        for report in reports
        if report.is_card(Role.AS, LifeCycle.OPERATIONAL) and report.info.tries_remaining
    ]
    if len(masters) > 1:
        findings.notes.append(
            f"{len(masters)} AS cards are in: personalize uses the one given with --as-reader"
        )
    personalize = _personalize_command(masters[0], reports, findings) if masters else None
    if personalize is not None:
        findings.notes += [
            f"{report.label} is in SETUP, not part of this job: {_setup_command(report)}"
            for report in in_setup
        ]
        return personalize
    if in_setup:
        return _setup_command(in_setup[0])
    if masters:
        return f"insert EI cards of this set into the other readers, then run `{DOCTOR}` again"
    return f"insert the AS (master card) into a free reader, then run `{DOCTOR}` again"


def _personalize_command(
    master: ReaderReport, reports: Sequence[ReaderReport], findings: _Findings
) -> str | None:
    """The personalize command for the master and the EIs of its set; None without such EIs.
    EIs of another set are problems."""
    assert master.info is not None
    as_keys = {entry.ref: entry for entry in master.entries}
    same_set = []
    for report in reports:
        if not report.is_card(Role.EI, LifeCycle.OPERATIONAL):
            continue
        ei = _ei_state(report)
        other_set = check_ei(master.info, as_keys, ei, [])
        if other_set:
            findings.problems.append(Problem(other_set[0], FIX_OTHER_SET))
        else:
            same_set.append(ei)
    if not same_set:
        return None
    return _personalize_step(master, as_keys, same_set, findings)


def _ei_state(report: ReaderReport) -> EiState:
    assert report.info is not None
    return EiState(report.name, report.info, {entry.ref: entry for entry in report.entries})


def _personalize_step(
    master: ReaderReport,
    as_keys: dict[int, KeyEntry],
    eis: Sequence[EiState],
    findings: _Findings,
) -> str:
    assert master.info is not None
    loads = _fitting_loads(master, as_keys, eis)
    command = f"keyload-host personalize --as-reader {quoted(master.name)}"
    command += "".join(f" --ei-reader {quoted(ei.reader)}" for ei in eis)
    if not loads:
        findings.problems.append(
            Problem("no key of the AS fits a slot of the EI cards", FIX_NOTHING_FITS)
        )
        return f"{command} --load REF1:REF2"
    command += "".join(f" --load {load}" for load in loads)
    plans = [split_loads(as_keys, ei, loads) for ei in eis]
    findings.problems += [
        Problem(text, FIX_EXPORT_LIMIT) for text in check_export_budget([as_keys], plans)
    ]
    if not any(plan.to_load for plan in plans):
        findings.notes.append(
            "these EI cards hold every key already: swap in the next ones (with --watch, "
            "personalize serves cards as they are inserted)"
        )
    return command


def _fitting_loads(
    master: ReaderReport, as_keys: dict[int, KeyEntry], eis: Sequence[EiState]
) -> list[Load]:
    """Loads that every EI here accepts, where each AS key fits exactly one slot and each slot
    exactly one key: a suggestion only, for the operator to check against the job sheet."""
    assert master.info is not None
    fits = [
        Load(ref1, ref2)
        for ref1 in sorted(as_keys)
        for ref2 in sorted(eis[0].slots)
        if not check_as(master.name, master.info, as_keys, [Load(ref1, ref2)])
        and all(not check_ei(master.info, as_keys, ei, [Load(ref1, ref2)]) for ei in eis)
    ]
    return [
        load
        for load in fits
        if sum(other.ref1 == load.ref1 for other in fits) == 1
        and sum(other.ref2 == load.ref2 for other in fits) == 1
    ]


# ------------------------------------------------------------------------------ telling


def _row(report: ReaderReport) -> list[str]:
    name = quoted(report.name)
    if not report.card_present:
        return [name, "no", "-", "-", "-", "-", "-", "-"]
    if report.unreadable:
        return [name, "yes", report.protocol, "?", "-", "-", "-", "-"]
    info = report.info
    if info is None:
        return [name, "yes", report.protocol, "none", "-", "-", "-", "-"]
    return [
        name,
        "yes",
        report.protocol,
        info.role.name,
        info.life_cycle.name,
        info.serial.hex().upper() or "-",
        kcv_text(info.transport_kcv) if info.transport_key_set else "not set",
        f"{info.tries_remaining}/{info.try_limit}",
    ]


HEADERS = ["reader", "card", "protocol", "applet", "state", "sn", "transport kcv", "tries"]


def render(diagnosis: Diagnosis) -> str:
    """The report: pcscd, the table of readers, problems with fixes, notes, the next step."""
    lines = [f"pcscd: {'answers' if diagnosis.pcscd_answers else 'does not answer'}"]
    if diagnosis.readers:
        lines.append(format_table(HEADERS, [_row(report) for report in diagnosis.readers]))
    for problem in diagnosis.problems:
        lines += [f"problem: {problem.text}", f"  fix: {problem.fix}"]
    lines += [f"note: {note}" for note in diagnosis.notes]
    if diagnosis.ok:
        lines.append(f"ready; next: {diagnosis.next_step}")
    else:
        count = len(diagnosis.problems)
        lines.append(
            f"not ready: {count} problem{'s' if count > 1 else ''}; start with the first fix"
        )
    return "\n".join(lines)
