"""The manifest of expected units: the EI serials a run may serve (a CSV file with a ``serial``
column, or a TOML file with ``serials = [...]``). A card whose serial is not on it is refused once
read (SELECT and LIST KEYS spend nothing), before GET CHALLENGE, EXPORT KEY or IMPORT KEY; at the
end of the run the reconciliation accounts for every expected unit: loaded, failed (why) or not
seen, and lists the cards that were refused or could not be identified."""

from __future__ import annotations

import csv
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from .audit import AuditSink
from .cards import EiCard
from .config import ConfigError, Load
from .protocol import SERIAL_MAX, SERIAL_MIN
from .workflow import AsState, CardRefused, CardReport, EiState, Outcome

EVENT_RECONCILIATION = "reconciliation"
"""One audit record per expected unit (``ei_sn``, ``result`` loaded/failed/not seen, ``message``
the reason), one per card refused or not identified, and one for the run (``result`` complete or
incomplete, ``message`` the counts)."""

EXIT_INCOMPLETE = 3
"""personalize's exit status when an expected unit is not loaded (failed or not seen); 1 stays
"a key failed" (or any other error), 0 means every expected unit holds every key of the run."""

SERIAL_COLUMN = "serial"


def parse_serial(text: str) -> str:
    """An EI serial in hex (``4B4C000000000001``, blanks and a 0x allowed), as the cards and the
    audit log spell it: upper-case hex. ValueError with a readable message."""
    digits = text.strip().replace(" ", "")
    digits = digits[2:] if digits.lower().startswith("0x") else digits
    try:
        serial = bytes.fromhex(digits)
    except ValueError:
        raise ValueError(f"'{text.strip()}' is not a serial in hex") from None
    if not SERIAL_MIN <= len(serial) <= SERIAL_MAX:
        raise ValueError(
            f"'{text.strip()}' is {len(serial)} bytes, a serial is {SERIAL_MIN} to {SERIAL_MAX}"
        )
    return serial.hex().upper()


@dataclass(frozen=True)
class Manifest:
    """The expected units of a run, in the order of their file, each once."""

    path: Path
    serials: tuple[str, ...]

    def __contains__(self, serial: object) -> bool:
        return serial in self._set

    @property
    def _set(self) -> frozenset[str]:
        return frozenset(self.serials)


def _serials_of_csv(path: Path, problems: list[str]) -> list[tuple[str, str]]:
    """(where, text) of every serial of a CSV file with a header naming a ``serial`` column."""
    try:
        with path.open(newline="") as file:
            rows = list(csv.reader(file))
    except OSError as error:
        raise ConfigError([f"{path}: cannot read: {error.strerror}"]) from None
    except (csv.Error, UnicodeDecodeError) as error:
        raise ConfigError([f"{path}: not a CSV file: {error}"]) from None
    if not rows:
        raise ConfigError([f"{path}: empty: a header with a '{SERIAL_COLUMN}' column is needed"])
    header = [name.strip().lower() for name in rows[0]]
    if SERIAL_COLUMN not in header:
        problems.append(f"{path}: line 1: no '{SERIAL_COLUMN}' column in the header")
        return []
    column = header.index(SERIAL_COLUMN)
    found = []
    for number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        text = row[column] if column < len(row) else ""
        found.append((f"line {number}", text))
    return found


def _serials_of_toml(path: Path, problems: list[str]) -> list[tuple[str, str]]:
    try:
        with path.open("rb") as file:
            document = tomllib.load(file)
    except OSError as error:
        raise ConfigError([f"{path}: cannot read: {error.strerror}"]) from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError([f"{path}: not valid TOML: {error}"]) from None
    for key in document:
        if key != "serials":
            problems.append(f"{path}: {key}: unknown field (expected: serials)")
    values = document.get("serials")
    if not isinstance(values, list):
        problems.append(f'{path}: serials: must be a list of serials in hex, e.g. ["4B4C0001"]')
        return []
    found = []
    for index, value in enumerate(values):
        if not isinstance(value, str):
            problems.append(f"{path}: serials[{index}]: must be a string of hex digits")
            continue
        found.append((f"serials[{index}]", value))
    return found


def load_manifest(path: Path) -> Manifest:
    """Read and validate a manifest (``.toml``: ``serials = [...]``; anything else: CSV with a
    header naming a ``serial`` column); every problem at once, one line each."""
    problems: list[str] = []
    if path.suffix.lower() == ".toml":
        found = _serials_of_toml(path, problems)
    else:
        found = _serials_of_csv(path, problems)
    serials: dict[str, str] = {}
    for where, text in found:
        try:
            serial = parse_serial(text)
        except ValueError as error:
            problems.append(f"{path}: {where}: {error}")
            continue
        if serial in serials:
            problems.append(f"{path}: {where}: serial {serial} is listed twice ({serials[serial]})")
            continue
        serials[serial] = where
    if not serials and not problems:
        problems.append(f"{path}: lists no serial")
    if problems:
        raise ConfigError(problems)
    return Manifest(path, tuple(serials))


class ManifestGate:
    """The ``CardGate`` of a manifest: a card whose serial is not expected is refused as soon as
    it is read. A card without a serial (blank, unreadable) passes on to the checks that say
    what is wrong with it, or to the enrolment that gives it one of the expected serials."""

    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest

    def check(self, _pool: Sequence[AsState], _loads: Sequence[Load]) -> list[str]:
        return []

    def admit(self, _card: EiCard, ei: EiState) -> EiState:
        if ei.serial and ei.serial not in self.manifest:
            raise CardRefused(
                f"{ei.name} is not on the list of expected units ({self.manifest.path.name}): "
                "refused, nothing spent",
                ei.serial,
            )
        return ei


class UnitStatus(StrEnum):
    LOADED = "loaded"
    FAILED = "failed"
    NOT_SEEN = "not seen"
    REFUSED = "refused"
    """A card that is not on the list (or could not be identified) and was turned away."""


@dataclass(frozen=True)
class UnitRow:
    serial: str
    """"" for a card that could not be identified."""
    status: UnitStatus
    detail: str = ""
    reader: str = ""


@dataclass(frozen=True)
class Reconciliation:
    """Every expected unit once (in the manifest's order), then the cards served that were not
    expected: refused, or not identified (no serial could be read)."""

    units: tuple[UnitRow, ...]
    others: tuple[UnitRow, ...]

    @property
    def complete(self) -> bool:
        """Every expected unit holds every key of the run (loaded now or found loaded)."""
        return all(row.status == UnitStatus.LOADED for row in self.units)

    def count(self, status: UnitStatus) -> int:
        return sum(row.status == status for row in self.units)

    def summary(self) -> str:
        counts = ", ".join(
            f"{self.count(status)} {status.value}"
            for status in (UnitStatus.LOADED, UnitStatus.FAILED, UnitStatus.NOT_SEEN)
        )
        verdict = "complete" if self.complete else "INCOMPLETE"
        others = f"; {len(self.others)} other card(s) refused" if self.others else ""
        return f"{len(self.units)} expected unit(s): {counts}{others}: {verdict}"


def reconcile(
    manifest: Manifest, loads: Sequence[Load], reports: Iterable[CardReport]
) -> Reconciliation:
    """What became of each expected unit over the cards served (in the order they ended): loaded
    when every load of the run was loaded or found loaded, over one insertion or several; failed
    with the last reason it failed; not seen. A card served twice counts once."""
    done: dict[str, set[Load]] = {}
    reasons: dict[str, str] = {}
    readers: dict[str, str] = {}
    others: list[UnitRow] = []
    for report in reports:
        serial = report.serial
        if serial not in manifest:
            reason = report.problem or "; ".join(
                r.reason for r in report.results if r.outcome == Outcome.FAILED
            )
            others.append(UnitRow(serial, UnitStatus.REFUSED, reason, report.reader))
            continue
        readers[serial] = report.reader
        held = done.setdefault(serial, set())
        held |= {r.load for r in report.results if r.outcome in (Outcome.LOADED, Outcome.SKIPPED)}
        failures = [r.reason for r in report.results if r.outcome == Outcome.FAILED]
        if report.problem or failures:
            reasons[serial] = report.problem or failures[0]
    units = []
    for serial in manifest.serials:
        if serial not in done:
            units.append(UnitRow(serial, UnitStatus.NOT_SEEN))
        elif done[serial] >= set(loads):
            units.append(UnitRow(serial, UnitStatus.LOADED, reader=readers[serial]))
        else:
            reason = reasons.get(serial, "not every key was loaded")
            units.append(UnitRow(serial, UnitStatus.FAILED, reason, readers[serial]))
    return Reconciliation(tuple(units), tuple(others))


def record(audit: AuditSink, reconciliation: Reconciliation, manifest: Manifest) -> None:
    """The reconciliation into the audit log (and so the inventory), in one write: a record per
    expected unit, per other card refused, and one for the run."""
    with audit.group():
        for row in (*reconciliation.units, *reconciliation.others):
            audit.record(
                EVENT_RECONCILIATION,
                reader=row.reader or None,
                ei_sn=row.serial or None,
                result=row.status.value,
                message=row.detail or None,
            )
        audit.record(
            EVENT_RECONCILIATION,
            result="complete" if reconciliation.complete else "incomplete",
            message=f"{manifest.path.name}: {reconciliation.summary()}",
        )
