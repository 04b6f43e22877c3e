"""The TOML files an operator writes: setup configs (``setup as|ei``) and job files, validated
before any card is touched, every problem reported at once; secrets only as where to read them
(a key possibly as components, each with its custodian and its expected KCV)."""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import KeyloadError
from .protocol import (
    EXPORT_LIMIT_UNLIMITED,
    KCV_LENGTH,
    KCV_METHOD,
    KEY_LENGTHS,
    MAX_KEYS,
    REF_MAX,
    REF_MIN,
    RETRY_LIMIT_DEFAULT,
    RETRY_LIMIT_MAX,
    RETRY_LIMIT_MIN,
    SERIAL_MAX,
    SERIAL_MIN,
    VERSION_MAX,
    VERSION_MIN,
    Usage,
    parse_kcv_text,
)
from .secret_sources import (
    MAX_COMPONENTS,
    MIN_COMPONENTS,
    KeyComponent,
    KeyComponents,
    KeySource,
    SecretSource,
)

USAGE_NAMES = {"auth": Usage.AUTHENTICATE, "mac": Usage.MAC, "enc": Usage.ENCRYPT}
USAGE_SHORT = {usage: name for name, usage in USAGE_NAMES.items()}
UNLIMITED = "unlimited"
EXPORT_LIMIT_MAX = EXPORT_LIMIT_UNLIMITED - 1
"""The largest finite export limit; 0xFFFF itself means unlimited."""


class ConfigError(KeyloadError):
    """A config or job file is not valid; the message has one line per problem."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


@dataclass(frozen=True)
class AppKeyConfig:
    ref: int
    usage: Usage
    version: int
    diversify: bool
    export_limit: int
    """0xFFFF means unlimited, as on the card."""
    key: KeySource


@dataclass(frozen=True)
class AsSetup:
    transport_key: KeySource
    pin: SecretSource
    keys: tuple[AppKeyConfig, ...]


@dataclass(frozen=True)
class SlotConfig:
    ref: int
    key_length: int
    usage: Usage
    accepts_import: bool


@dataclass(frozen=True)
class EiSetup:
    transport_key: KeySource
    serial: bytes
    retry_limit: int
    slots: tuple[SlotConfig, ...]


@dataclass(frozen=True)
class Load:
    """Load the AS key REF1 into the EI slot REF2."""

    ref1: int
    ref2: int

    def __str__(self) -> str:
        return f"{self.ref1:02X}:{self.ref2:02X}"


@dataclass(frozen=True)
class Job:
    loads: tuple[Load, ...]
    as_reader: str | None
    ei_readers: tuple[str, ...]
    expect: Path | None = None
    """The manifest of expected units (``manifest.load_manifest``), relative to the job file."""
    ei_template: Path | None = None
    """The EI template blank cards are enrolled with (``load_ei_template``)."""
    serial_range: str | None = None
    """FIRST-LAST: the serials enrolment gives (else the manifest's)."""


def parse_ref(text: str) -> int:
    """Parse one reference in hex (``01``, ``0x7F``); raises ValueError with a readable message."""
    text = text.strip()
    digits = text[2:] if text.lower().startswith("0x") else text
    if not digits or len(digits) > 2 or any(c not in "0123456789abcdefABCDEF" for c in digits):
        raise ValueError(f"'{text}' is not a reference in hex (01 to 7F)")
    ref = int(digits, 16)
    if not REF_MIN <= ref <= REF_MAX:
        raise ValueError(f"reference {ref:02X} is out of range (01 to 7F)")
    return ref


def parse_load(text: str) -> Load:
    """Parse ``REF1:REF2`` (hex, as in PROTOCOL.md); raises ValueError with a readable message."""
    ref1, separator, ref2 = text.partition(":")
    if not separator:
        raise ValueError(f"'{text}' is not REF1:REF2 (e.g. 03:01)")
    return Load(parse_ref(ref1), parse_ref(ref2))


def check_loads(loads: Sequence[Load]) -> list[str]:
    """Problems of a batch of loads: two loads into one slot cannot both win."""
    seen: set[int] = set()
    problems = []
    for load in loads:
        if load.ref2 in seen:
            problems.append(f"two loads target EI slot {load.ref2:02X}")
        seen.add(load.ref2)
    return problems


_MISSING = object()


class _Checker:
    """Collects validation problems of one file, each as ``FILE: FIELD: what is wrong``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.problems: list[str] = []

    def error(self, where: str, message: str) -> None:
        self.problems.append(f"{self.path}: {where}: {message}")

    def raise_if_any(self) -> None:
        if self.problems:
            raise ConfigError(self.problems)

    def fields(self, table: dict[str, Any], where: str, allowed: Sequence[str]) -> None:
        for key in table:
            if key not in allowed:
                self.error(_join(where, key), f"unknown field (expected: {', '.join(allowed)})")

    def get(self, table: dict[str, Any], key: str, where: str, default: Any = _MISSING) -> Any:
        if key in table:
            return table[key]
        if default is _MISSING:
            self.error(_join(where, key), "missing")
        return default

    def integer(
        self,
        table: dict[str, Any],
        key: str,
        where: str,
        low: int,
        high: int,
        default: Any = _MISSING,
    ) -> int | None:
        value = self.get(table, key, where, default)
        if value is _MISSING:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(_join(where, key), f"must be a whole number, found {_kind(value)}")
            return None
        if not low <= value <= high:
            self.error(
                _join(where, key),
                f"{value} (0x{value:X}) is out of range 0x{low:X}..0x{high:X}",
            )
            return None
        return value

    def boolean(self, table: dict[str, Any], key: str, where: str, default: Any) -> bool | None:
        value = self.get(table, key, where, default)
        if not isinstance(value, bool):
            self.error(_join(where, key), f"must be true or false, found {_kind(value)}")
            return None
        return value

    def usage(self, table: dict[str, Any], where: str) -> Usage | None:
        value = self.get(table, "usage", where)
        if value is _MISSING:
            return None
        if value not in USAGE_NAMES:
            self.error(
                _join(where, "usage"),
                f"must be one of {', '.join(USAGE_NAMES)}, found {value!r}",
            )
            return None
        return USAGE_NAMES[value]

    def secret_source(self, table: dict[str, Any], key: str, where: str) -> SecretSource | None:
        value = self.get(table, key, where)
        if value is _MISSING:
            return None
        return self._source(value, _join(where, key))

    def _source(self, value: Any, location: str) -> SecretSource | None:
        if isinstance(value, str | int):
            self.error(
                location,
                "a secret must not be written in a config file (files get copied and "
                'committed); say where to read it: { file = "name.key" }, { env = "VAR" } '
                "or { prompt = true }",
            )
            return None
        if not isinstance(value, dict) or len(value) != 1:
            self.error(location, "must be one of { file = ... }, { env = ... }, { prompt = true }")
            return None
        ((kind, reference),) = value.items()
        if kind == "file" and isinstance(reference, str) and reference:
            return SecretSource(file=self.path.parent / reference)
        if kind == "env" and isinstance(reference, str) and reference:
            return SecretSource(env=reference)
        if kind == "prompt" and reference is True:
            return SecretSource(prompt=True)
        self.error(location, "must be one of { file = ... }, { env = ... }, { prompt = true }")
        return None

    def key_source(self, table: dict[str, Any], key: str, where: str) -> KeySource | None:
        """A key's source: one file, variable or prompt, or ``{ components = [...], kcv }``."""
        value = self.get(table, key, where)
        if value is _MISSING:
            return None
        location = _join(where, key)
        if isinstance(value, dict) and "components" in value:
            return self._components(value, location)
        return self._source(value, location)

    def kcv(self, table: dict[str, Any], where: str) -> bytes | None:
        """An expected check value, ``"cmac-aes:1A2B3C"`` or bare ``"1A2B3C"`` (cmac-aes)."""
        value = self.get(table, "kcv", where)
        if value is _MISSING:
            return None
        location = _join(where, "kcv")
        try:
            method, digits = parse_kcv_text(value) if isinstance(value, str) else ("", "")
        except ValueError:
            method, digits = "", ""
        if method != KCV_METHOD or len(digits) != 2 * KCV_LENGTH:
            self.error(
                location,
                f'must be a check value such as "{KCV_METHOD}:1A2B3C" (AES-CMAC of a zero '
                f"block, {2 * KCV_LENGTH} hex digits), found {_kind(value)}",
            )
            return None
        return bytes.fromhex(digits)

    def _components(self, value: dict[str, Any], where: str) -> KeyComponents | None:
        self.fields(value, where, ("components", "kcv"))
        combined_kcv = self.kcv(value, where)
        tables = value["components"]
        location = _join(where, "components")
        if not isinstance(tables, list) or not all(isinstance(item, dict) for item in tables):
            self.error(location, "must be a list of { custodian, kcv, and file, env or prompt }")
            return None
        if not MIN_COMPONENTS <= len(tables) <= MAX_COMPONENTS:
            self.error(
                location,
                f"a key is entered as {MIN_COMPONENTS} or {MAX_COMPONENTS} components, found "
                f"{len(tables)}",
            )
            return None
        components = [
            self._component(table, f"{location}[{index}]") for index, table in enumerate(tables)
        ]
        if None in components or combined_kcv is None:
            return None
        self._distinct_components(components, combined_kcv, location)
        return KeyComponents(tuple(components), combined_kcv)

    def _component(self, table: dict[str, Any], where: str) -> KeyComponent | None:
        self.fields(table, where, ("custodian", "kcv", "file", "env", "prompt"))
        custodian = self.get(table, "custodian", where)
        if custodian is not _MISSING and (not isinstance(custodian, str) or not custodian.strip()):
            self.error(_join(where, "custodian"), "must name the custodian of this component")
            custodian = _MISSING
        expected = self.kcv(table, where)
        source_fields = {k: v for k, v in table.items() if k in ("file", "env", "prompt")}
        source = self._source(source_fields, where)
        if custodian is _MISSING or expected is None or source is None:
            return None
        return KeyComponent(source, custodian.strip(), expected)

    def _distinct_components(
        self, components: Sequence[KeyComponent], combined_kcv: bytes, where: str
    ) -> None:
        """Split knowledge needs distinct custodians and distinct values: two equal components
        cancel out, and a component whose KCV is the key's leaves the others XORing to zero."""
        custodians = [component.custodian.casefold() for component in components]
        if len(set(custodians)) != len(custodians):
            self.error(where, "each component must have its own custodian")
        kcvs = [component.kcv for component in components]
        if len(set(kcvs)) != len(kcvs):
            self.error(where, "two components have the same KCV: they are the same value")
        if combined_kcv in kcvs:
            self.error(where, "a component has the KCV of the whole key: the others cancel out")
        sources = [(c.source.file, c.source.env) for c in components if not c.source.prompt]
        if len(set(sources)) != len(sources):
            self.error(where, "two components are read from the same file or variable")

    def table_list(self, document: dict[str, Any], key: str) -> list[dict[str, Any]]:
        """An array of tables (``[[key]]``), at least one and at most MAX_KEYS entries."""
        value = document.get(key, [])
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            self.error(key, f"must be a list of [[{key}]] tables")
            return []
        if not value:
            self.error(key, f"at least one [[{key}]] entry is needed (LOCK requires it)")
        if len(value) > MAX_KEYS:
            self.error(key, f"{len(value)} entries, a card holds at most {MAX_KEYS}")
        return value

    def unique_refs(self, key: str, refs: Sequence[int | None]) -> None:
        seen: set[int] = set()
        for index, ref in enumerate(refs):
            if ref is not None and ref in seen:
                self.error(f"{key}[{index}].ref", f"reference 0x{ref:02X} is used twice")
            if ref is not None:
                seen.add(ref)


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _kind(value: Any) -> str:
    return "nothing" if value is _MISSING else f"{type(value).__name__} {value!r}"


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except OSError as error:
        raise ConfigError([f"{path}: cannot read: {error.strerror}"]) from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError([f"{path}: not valid TOML: {error}"]) from None


def _export_limit(checker: _Checker, table: dict[str, Any], where: str) -> int | None:
    value = checker.get(table, "export_limit", where)
    if value == UNLIMITED:
        return EXPORT_LIMIT_UNLIMITED
    if value is _MISSING:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= EXPORT_LIMIT_MAX:
        checker.error(
            _join(where, "export_limit"),
            f'must be "{UNLIMITED}" or a number 0..{EXPORT_LIMIT_MAX}, found {_kind(value)}',
        )
        return None
    return value


def _app_key(checker: _Checker, table: dict[str, Any], where: str) -> AppKeyConfig | None:
    checker.fields(table, where, ("ref", "usage", "version", "diversify", "export_limit", "key"))
    values = (
        checker.integer(table, "ref", where, REF_MIN, REF_MAX),
        checker.usage(table, where),
        checker.integer(table, "version", where, VERSION_MIN, VERSION_MAX),
        checker.boolean(table, "diversify", where, default=False),
        _export_limit(checker, table, where),
        checker.key_source(table, "key", where),
    )
    return None if None in values else AppKeyConfig(*values)


def load_as_setup(path: Path) -> AsSetup:
    """Read and validate the setup config of an AS."""
    document = _read_toml(path)
    checker = _Checker(path)
    checker.fields(document, "", ("transport_key", "pin", "keys"))
    transport_key = checker.key_source(document, "transport_key", "")
    pin = checker.secret_source(document, "pin", "")
    tables = checker.table_list(document, "keys")
    keys = [_app_key(checker, table, f"keys[{index}]") for index, table in enumerate(tables)]
    checker.unique_refs("keys", [table.get("ref") for table in tables])
    checker.raise_if_any()
    return AsSetup(transport_key, pin, tuple(keys))


def _slot(checker: _Checker, table: dict[str, Any], where: str) -> SlotConfig | None:
    checker.fields(table, where, ("ref", "key_length", "usage", "accepts_import"))
    ref = checker.integer(table, "ref", where, REF_MIN, REF_MAX)
    key_length = checker.get(table, "key_length", where)
    if key_length is not _MISSING and key_length not in KEY_LENGTHS:
        checker.error(_join(where, "key_length"), f"must be 16, 24 or 32, found {key_length!r}")
        key_length = None
    values = (
        ref,
        key_length if key_length is not _MISSING else None,
        checker.usage(table, where),
        checker.boolean(table, "accepts_import", where, default=True),
    )
    return None if None in values else SlotConfig(*values)


def _serial(checker: _Checker, document: dict[str, Any]) -> bytes | None:
    value = checker.get(document, "serial", "")
    if value is _MISSING:
        return None
    try:
        serial = bytes.fromhex(value) if isinstance(value, str) else None
    except ValueError:
        serial = None
    if serial is None:
        checker.error("serial", f"must be a string of hex digits, found {_kind(value)}")
        return None
    if not SERIAL_MIN <= len(serial) <= SERIAL_MAX:
        checker.error("serial", f"must be {SERIAL_MIN} to {SERIAL_MAX} bytes, found {len(serial)}")
        return None
    return serial


def load_ei_setup(path: Path) -> EiSetup:
    """Read and validate the setup config of an EI."""
    document = _read_toml(path)
    checker = _Checker(path)
    checker.fields(document, "", ("transport_key", "serial", "retry_limit", "slots"))
    transport_key = checker.key_source(document, "transport_key", "")
    serial = _serial(checker, document)
    retry_limit = checker.integer(
        document, "retry_limit", "", RETRY_LIMIT_MIN, RETRY_LIMIT_MAX, default=RETRY_LIMIT_DEFAULT
    )
    tables = checker.table_list(document, "slots")
    slots = [_slot(checker, table, f"slots[{index}]") for index, table in enumerate(tables)]
    checker.unique_refs("slots", [table.get("ref") for table in tables])
    checker.raise_if_any()
    return EiSetup(transport_key, serial, retry_limit, tuple(slots))


def load_ei_template(path: Path) -> EiSetup:
    """Read and validate an EI template: a ``setup ei`` config without its serial (enrolment
    gives each blank card the next one); the returned setup's serial is empty."""
    document = _read_toml(path)
    checker = _Checker(path)
    checker.fields(document, "", ("transport_key", "retry_limit", "slots"))
    transport_key = checker.secret_source(document, "transport_key", "")
    retry_limit = checker.integer(
        document, "retry_limit", "", RETRY_LIMIT_MIN, RETRY_LIMIT_MAX, default=RETRY_LIMIT_DEFAULT
    )
    tables = checker.table_list(document, "slots")
    slots = [_slot(checker, table, f"slots[{index}]") for index, table in enumerate(tables)]
    checker.unique_refs("slots", [table.get("ref") for table in tables])
    checker.raise_if_any()
    return EiSetup(transport_key, b"", retry_limit, tuple(slots))


def _job_path(checker: _Checker, document: dict[str, Any], key: str) -> Path | None:
    value = document.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        checker.error(key, "must be a file name")
        return None
    return checker.path.parent / value


def load_job(path: Path) -> Job:
    """Read and validate a personalization job file."""
    document = _read_toml(path)
    checker = _Checker(path)
    checker.fields(
        document,
        "",
        ("loads", "as_reader", "ei_readers", "expect", "ei_template", "serial_range"),
    )
    loads = []
    raw_loads = checker.get(document, "loads", "")
    if raw_loads is not _MISSING:
        if not isinstance(raw_loads, list) or not raw_loads:
            checker.error("loads", 'must be a non-empty list of "REF1:REF2" strings')
            raw_loads = []
        for index, text in enumerate(raw_loads):
            try:
                loads.append(parse_load(str(text)))
            except ValueError as error:
                checker.error(f"loads[{index}]", str(error))
    for problem in check_loads(loads):
        checker.error("loads", problem)
    as_reader = document.get("as_reader")
    if as_reader is not None and not isinstance(as_reader, str):
        checker.error("as_reader", "must be a reader name")
    ei_readers = document.get("ei_readers", [])
    if not isinstance(ei_readers, list) or not all(isinstance(name, str) for name in ei_readers):
        checker.error("ei_readers", "must be a list of reader names")
    expect = _job_path(checker, document, "expect")
    ei_template = _job_path(checker, document, "ei_template")
    serial_range = document.get("serial_range")
    if serial_range is not None and not isinstance(serial_range, str):
        checker.error("serial_range", 'must be "FIRST-LAST" (serials in hex)')
    checker.raise_if_any()
    return Job(tuple(loads), as_reader, tuple(ei_readers), expect, ei_template, serial_range)
