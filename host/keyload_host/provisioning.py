"""Pre-personalization: write a validated setup config into a card in SETUP, then read it back and
compare every check value (LOCK, which follows, is irreversible)."""

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
from .secret_sources import Secret, SecretKind, SecretSource

SecretLoader = Callable[[SecretSource, SecretKind, str, bool], Secret]
"""Read a secret: (source, kind, label, confirm at a prompt)."""


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


def _check_transport(card: Card, transport_key: Secret) -> Info:
    info = card.get_info()
    expected = kcv(transport_key.reveal())
    if not hmac.compare_digest(info.transport_kcv, expected):
        raise SetupError(
            f"read-back: the card reports transport KCV {kcv_text(info.transport_kcv)}, "
            f"expected {transport_key.kcv}"
        )
    return info


def _extra_refs(entries: Sequence[KeyEntry], configured: set[int], what: str) -> list[str]:
    return [
        f"the card also holds {what} {entry.ref:02X}, which is not in the config"
        for entry in entries
        if entry.ref not in configured
    ]


def _app_key_problem(entry: KeyEntry | None, config: AppKeyConfig, key: Secret) -> str | None:
    if entry is None:
        return f"read-back: key {config.ref:02X} is missing"
    expected = (len(key), config.usage, config.version, config.diversify, config.export_limit)
    found = (entry.key_length, entry.usage, entry.version, entry.diversify, entry.limit)
    if found != expected or not hmac.compare_digest(entry.kcv, kcv(key.reveal())):
        return (
            f"read-back: key {config.ref:02X} differs from the config "
            f"(KCV {kcv_text(entry.kcv)}, expected {key.kcv})"
        )
    return None


SecretRequest = tuple[SecretSource, SecretKind, str]
"""A secret a setup needs: where it is, what kind, and its label."""


def read_secrets_around_state_check(
    card: Card, requests: Sequence[SecretRequest], load: SecretLoader
) -> list[Secret]:
    """Read the secrets of ``requests`` (in their order) and check the card is in SETUP: files and
    environment variables first, so that a bad one stops the setup before any command reaches
    the card; prompts last, so that nobody types a key for a card that is locked already."""
    read: dict[int, Secret] = {}
    try:
        for prompted in (False, True):
            if prompted:
                require_setup_state(card)
            for index, (source, kind, label) in enumerate(requests):
                if source.prompt == prompted:
                    read[index] = load(source, kind, label, True)
    except BaseException:
        for secret in read.values():
            secret.wipe()
        raise
    return [read[index] for index in range(len(requests))]


def setup_as(card: AsCard, setup: AsSetup, load: SecretLoader) -> SetupReport:
    """Write transport key, PIN and application keys into an AS in SETUP, and read them back."""
    requests: list[SecretRequest] = [
        (setup.transport_key, SecretKind.KEY, "transport key"),
        (setup.pin, SecretKind.PIN, "AS operator PIN"),
        *(
            (config.key, SecretKind.KEY, f"application key {config.ref:02X}")
            for config in setup.keys
        ),
    ]
    secrets = read_secrets_around_state_check(card, requests, load)
    transport_key, pin, *keys = secrets
    try:
        warnings = [
            f"key {config.ref:02X} is longer than the transport key: the AS will never export it"
            for config, key in zip(setup.keys, keys, strict=True)
            if len(key) > len(transport_key)
        ]
        card.set_transport_key(transport_key.reveal())
        card.set_pin(pin.reveal())
        for config, key in zip(setup.keys, keys, strict=True):
            card.put_app_key(
                config.ref,
                config.usage,
                config.version,
                config.diversify,
                config.export_limit,
                key.reveal(),
            )
        _check_transport(card, transport_key)
        entries = card.list_keys()
        by_ref = {entry.ref: entry for entry in entries}
        problems = [
            problem
            for config, key in zip(setup.keys, keys, strict=True)
            if (problem := _app_key_problem(by_ref.get(config.ref), config, key))
        ]
        if problems:
            raise SetupError("\n".join(problems))
        warnings += _extra_refs(entries, {config.ref for config in setup.keys}, "key")
        rows = [
            (
                f"{config.ref:02X}",
                USAGE_SHORT[config.usage],
                f"{len(key)}",
                f"{config.version:04X}",
                "yes" if config.diversify else "no",
                _limit_text(config.export_limit),
                key.kcv,
            )
            for config, key in zip(setup.keys, keys, strict=True)
        ]
        return SetupReport(
            [("transport key KCV", transport_key.kcv), ("PIN tries", str(PIN_TRY_LIMIT))],
            ("ref1", "usage", "bytes", "version", "diversify", "export limit", "kcv"),
            rows,
            warnings,
        )
    finally:
        for secret in secrets:
            secret.wipe()


def setup_ei(card: EiCard, setup: EiSetup, load: SecretLoader) -> SetupReport:
    """Write transport key, serial, retry limit and slots into an EI in SETUP; read them back."""
    request = (setup.transport_key, SecretKind.KEY, "transport key")
    (transport_key,) = read_secrets_around_state_check(card, [request], load)
    with transport_key:
        warnings = [
            f"slot {slot.ref:02X} takes {slot.key_length}-byte keys, longer than the transport "
            "key: the AS will never export a key for it"
            for slot in setup.slots
            if slot.key_length > len(transport_key)
        ]
        card.set_transport_key(transport_key.reveal())
        card.set_serial(setup.serial)
        card.set_retry_limit(setup.retry_limit)
        for slot in setup.slots:
            card.define_slot(slot.ref, slot.key_length, slot.usage, slot.accepts_import)
        info = _check_transport(card, transport_key)
        transport_kcv = transport_key.kcv
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
