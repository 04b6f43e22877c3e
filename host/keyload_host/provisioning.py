"""Pre-personalization: write a validated setup config into a card in SETUP, then read it back and
compare every check value (LOCK, which follows, is irreversible). Every secret is read, and every
key entered as components is checked and combined, before the first command that writes; each
secret is wiped as soon as the command that carries it has been sent."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .cards import AsCard, Card, EiCard
from .config import USAGE_SHORT, AppKeyConfig, AsSetup, EiSetup
from .crypto import kcv
from .errors import KeyloadError
from .protocol import (
    EXPORT_LIMIT_UNLIMITED,
    PIN_TRY_LIMIT,
    Info,
    KeyEntry,
    LifeCycle,
    kcv_text,
)
from .secret_sources import (
    KeyComponents,
    KeySource,
    Secret,
    SecretKind,
    SecretSource,
    check_kcv,
    combine_components,
)

SecretLoader = Callable[[SecretSource, SecretKind, str, bool], Secret]
"""Read a secret: (source, kind, label, confirm at a prompt)."""
Show = Callable[[str], None]
"""Tell the operator something during entry (a component's KCV once it is entered)."""


def _show_nothing(_line: str) -> None:
    """The default ``Show``: say nothing."""


class SetupError(KeyloadError):
    """The card cannot be set up, or does not hold what was written."""


@dataclass(frozen=True)
class SetupReport:
    """What was written, as the operator may see it: references, usages, versions and KCVs."""

    summary: list[tuple[str, str]]
    """(label, value) lines such as ("transport key KCV", "cmac-aes:6F2F9B")."""
    headers: tuple[str, ...]
    rows: list[tuple[str, ...]]
    warnings: list[str]


def require_setup_state(card: Card) -> Info:
    """SELECT the applet and refuse to go on unless it is still in SETUP."""
    info = card.select()
    if info.life_cycle != LifeCycle.SETUP:
        raise SetupError(
            f"the {card.ROLE.name} in reader '{card.reader}' is {info.life_cycle.name}: setup is "
            "only possible in SETUP, and LOCK cannot be undone"
        )
    return info


def _hex(value: bytes) -> str:
    return value.hex().upper()


def _limit_text(limit: int) -> str:
    return "unlimited" if limit == EXPORT_LIMIT_UNLIMITED else str(limit)


@dataclass(frozen=True)
class _Written:
    """What the read-back needs of a key once the key itself is wiped: its length and KCV."""

    length: int
    kcv: bytes

    @classmethod
    def of(cls, key: Secret) -> _Written:
        return cls(len(key), kcv(key.reveal()))

    @property
    def kcv_text(self) -> str:
        return kcv_text(self.kcv)


def _check_transport(card: Card, transport_key: _Written) -> Info:
    info = card.get_info()
    if not hmac.compare_digest(info.transport_kcv, transport_key.kcv):
        raise SetupError(
            f"read-back: the card reports transport KCV {kcv_text(info.transport_kcv)}, "
            f"expected {transport_key.kcv_text}"
        )
    return info


def _extra_refs(entries: Sequence[KeyEntry], configured: set[int], what: str) -> list[str]:
    return [
        f"the card also holds {what} {entry.ref:02X}, which is not in the config"
        for entry in entries
        if entry.ref not in configured
    ]


def _app_key_problem(entry: KeyEntry | None, config: AppKeyConfig, key: _Written) -> str | None:
    if entry is None:
        return f"read-back: key {config.ref:02X} is missing"
    expected = (key.length, config.usage, config.version, config.diversify, config.export_limit)
    found = (entry.key_length, entry.usage, entry.version, entry.diversify, entry.limit)
    if found != expected or not hmac.compare_digest(entry.kcv, key.kcv):
        return (
            f"read-back: key {config.ref:02X} differs from the config "
            f"(KCV {kcv_text(entry.kcv)}, expected {key.kcv_text})"
        )
    return None


SecretRequest = tuple[KeySource, SecretKind, str]
"""A secret a setup needs: where it is (a key possibly as components), what kind, its label."""


@dataclass(frozen=True)
class _Entry:
    """One secret to read: a whole secret, or (``key`` set) component ``component`` of ``key``,
    the key ``key_label`` of request ``request``."""

    request: int
    source: SecretSource
    kind: SecretKind
    label: str
    key: KeyComponents | None = None
    component: int = 0
    key_label: str = ""


def _entries(requests: Sequence[SecretRequest]) -> list[_Entry]:
    entries = []
    for index, (source, kind, label) in enumerate(requests):
        if isinstance(source, KeyComponents):
            entries += [
                _Entry(index, part.source, kind, source.label(number, label), source, number, label)
                for number, part in enumerate(source.components)
            ]
        else:
            entries.append(_Entry(index, source, kind, label))
    return entries


def read_secrets_around_state_check(
    card: Card,
    requests: Sequence[SecretRequest],
    load: SecretLoader,
    show: Show = _show_nothing,
) -> list[Secret]:
    """Read the secrets of ``requests`` (in their order) and check the card is in SETUP: files and
    environment variables first, so that a bad one stops the setup before any command reaches
    the card; prompts last, so that nobody types a key for a card that is locked already.

    A key given as components is read component by component, in the same order (a component
    in a file before the state check, a prompted one after it, the custodian named in the
    prompt); each component is checked against its KCV as soon as it is read, and its KCV shown;
    once all are read they are combined (XOR) and wiped, and the key checked against its KCV.
    Nothing here writes to the card: a wrong component or key stops the setup before any write.
    A value set on the card is asked twice at a prompt, a component once (its KCV checks it)."""
    entries = _entries(requests)
    read: dict[int, Secret] = {}
    parts: dict[int, dict[int, Secret]] = {}
    try:
        for prompted in (False, True):
            if prompted:
                require_setup_state(card)
            for entry in entries:
                if entry.source.prompt != prompted:
                    continue
                if entry.key is None:
                    read[entry.request] = load(entry.source, entry.kind, entry.label, True)
                else:
                    _read_component(entry, entry.key, parts, read, load, show)
    except BaseException:
        for secret in [*read.values(), *(p for got in parts.values() for p in got.values())]:
            secret.wipe()
        raise
    return [read[index] for index in range(len(requests))]


def _read_component(
    entry: _Entry,
    source: KeyComponents,
    parts: dict[int, dict[int, Secret]],
    read: dict[int, Secret],
    load: SecretLoader,
    show: Show,
) -> None:
    """Read one component of ``source``, check its KCV, show it; once all the key's components
    are in ``parts``, combine them into ``read`` and check the key's KCV."""
    got = parts.setdefault(entry.request, {})
    got[entry.component] = load(entry.source, entry.kind, entry.label, False)
    expected = source.components[entry.component].kcv
    show(f"{entry.label}: KCV {check_kcv(got[entry.component], expected, entry.label)}, correct")
    if len(got) < len(source.components):
        return
    ordered = [got[number] for number in range(len(source.components))]
    del parts[entry.request]
    what = f"the {entry.key_label} combined from {len(ordered)} components"
    key = combine_components(ordered, what)
    try:
        show(f"{what[0].upper()}{what[1:]}: KCV {check_kcv(key, source.kcv, what)}, correct")
    except BaseException:
        key.wipe()
        raise
    read[entry.request] = key


def setup_as(
    card: AsCard, setup: AsSetup, load: SecretLoader, show: Show = _show_nothing
) -> SetupReport:
    """Write transport key, PIN and application keys into an AS in SETUP, and read them back.

    Each secret is wiped once its command has been sent; the read-back compares lengths and
    KCVs taken before."""
    requests: list[SecretRequest] = [
        (setup.transport_key, SecretKind.KEY, "transport key"),
        (setup.pin, SecretKind.PIN, "AS operator PIN"),
        *(
            (config.key, SecretKind.KEY, f"application key {config.ref:02X}")
            for config in setup.keys
        ),
    ]
    secrets = read_secrets_around_state_check(card, requests, load, show)
    transport_key, pin, *keys = secrets
    try:
        written_t = _Written.of(transport_key)
        written = [_Written.of(key) for key in keys]
        warnings = [
            f"key {config.ref:02X} is longer than the transport key: the AS will never export it"
            for config, key in zip(setup.keys, written, strict=True)
            if key.length > written_t.length
        ]
        card.set_transport_key(transport_key.reveal())
        transport_key.wipe()
        card.set_pin(pin.reveal())
        pin.wipe()
        for config, key in zip(setup.keys, keys, strict=True):
            card.put_app_key(
                config.ref,
                config.usage,
                config.version,
                config.diversify,
                config.export_limit,
                key.reveal(),
            )
            key.wipe()
    finally:
        for secret in secrets:
            secret.wipe()
    _check_transport(card, written_t)
    entries = card.list_keys()
    by_ref = {entry.ref: entry for entry in entries}
    problems = [
        problem
        for config, key in zip(setup.keys, written, strict=True)
        if (problem := _app_key_problem(by_ref.get(config.ref), config, key))
    ]
    if problems:
        raise SetupError("\n".join(problems))
    warnings += _extra_refs(entries, {config.ref for config in setup.keys}, "key")
    rows = [
        (
            f"{config.ref:02X}",
            USAGE_SHORT[config.usage],
            f"{key.length}",
            f"{config.version:04X}",
            "yes" if config.diversify else "no",
            _limit_text(config.export_limit),
            key.kcv_text,
        )
        for config, key in zip(setup.keys, written, strict=True)
    ]
    return SetupReport(
        [("transport key KCV", written_t.kcv_text), ("PIN tries", str(PIN_TRY_LIMIT))],
        ("ref1", "usage", "bytes", "version", "diversify", "export limit", "kcv"),
        rows,
        warnings,
    )


def setup_ei(
    card: EiCard, setup: EiSetup, load: SecretLoader, show: Show = _show_nothing
) -> SetupReport:
    """Write transport key, serial, retry limit and slots into an EI in SETUP; read them back.

    The transport key is wiped once SET TRANSPORT KEY has been sent."""
    request = (setup.transport_key, SecretKind.KEY, "transport key")
    (transport_key,) = read_secrets_around_state_check(card, [request], load, show)
    with transport_key:
        written_t = _Written.of(transport_key)
        card.set_transport_key(transport_key.reveal())
    warnings = [
        f"slot {slot.ref:02X} takes {slot.key_length}-byte keys, longer than the transport "
        "key: the AS will never export a key for it"
        for slot in setup.slots
        if slot.key_length > written_t.length
    ]
    card.set_serial(setup.serial)
    card.set_retry_limit(setup.retry_limit)
    for slot in setup.slots:
        card.define_slot(slot.ref, slot.key_length, slot.usage, slot.accepts_import)
    info = _check_transport(card, written_t)
    transport_kcv = written_t.kcv_text
    if (info.serial, info.try_limit) != (setup.serial, setup.retry_limit):
        raise SetupError(
            f"read-back: the card reports serial {_hex(info.serial)} and retry limit "
            f"{info.try_limit}, expected {_hex(setup.serial)} and {setup.retry_limit}"
        )
    entries = card.list_keys()
    by_ref = {entry.ref: entry for entry in entries}
    for slot in setup.slots:
        entry = by_ref.get(slot.ref)
        found = entry and (entry.key_length, entry.usage, entry.accepts_import)
        if found != (slot.key_length, slot.usage, slot.accepts_import):
            raise SetupError(f"read-back: slot {slot.ref:02X} differs from the config")
    warnings += _extra_refs(entries, {slot.ref for slot in setup.slots}, "slot")
    rows = [
        (
            f"{slot.ref:02X}",
            USAGE_SHORT[slot.usage],
            f"{slot.key_length}",
            "yes" if slot.accepts_import else "no",
        )
        for slot in setup.slots
    ]
    summary = [
        ("transport key KCV", transport_kcv),
        ("serial", _hex(setup.serial)),
        ("retry limit", str(setup.retry_limit)),
    ]
    return SetupReport(summary, ("ref2", "usage", "bytes", "accepts import"), rows, warnings)
