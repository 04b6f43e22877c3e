"""The card sets of the station tests and the benchmark: ``AppKey``, an application key of the AS
and the EI slot it goes to (the operator's is ``config.AppKeyConfig``); ``SetSecrets``, a set's
transport key, PIN and key values held in memory; ``set_up_as`` and ``set_up_ei``, the one way
both set up a card: through ``keyload_host.provisioning``, as ``keyload-host setup`` does."""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from keyload_host import provisioning
from keyload_host.cards import AsCard, EiCard
from keyload_host.config import AppKeyConfig, AsSetup, EiSetup, Load, SlotConfig
from keyload_host.protocol import EXPORT_LIMIT_UNLIMITED, RETRY_LIMIT_DEFAULT, Info, Usage
from keyload_host.secret_sources import Secret, SecretKind, SecretSource

NO_SLOT = 0x00
"""``ref2`` of a key that names no slot (REF 0x00 is reserved, PROTOCOL.md)."""
TRANSPORT_KEY_LENGTH = 32
PIN_LENGTH = 8


@dataclass(frozen=True)
class AppKey:
    """An application key of the AS (``ref1``, usage, length, version, diversification, export
    limit) and the EI slot ``ref2`` it is loaded into; ``key`` holds the value when it is fixed
    (known test secrets), else it is drawn at run time and kept apart (``SetSecrets``)."""

    ref1: int
    ref2: int
    usage: Usage
    length: int
    version: int = 1
    diversify: bool = False
    export_limit: int = EXPORT_LIMIT_UNLIMITED
    key: bytes = field(default=b"", repr=False)

    @classmethod
    def holding(
        cls,
        ref1: int,
        usage: Usage,
        key: bytes,
        version: int = 1,
        *,
        diversify: bool = False,
        export_limit: int = EXPORT_LIMIT_UNLIMITED,
        ref2: int = NO_SLOT,
    ) -> AppKey:
        """A key with a fixed value (its length is the value's)."""
        return cls(ref1, ref2, usage, len(key), version, diversify, export_limit, key)

    @property
    def load(self) -> Load:
        """AS key ``ref1`` into EI slot ``ref2``; its ``str`` is personalize's ``--load``."""
        return Load(self.ref1, self.ref2)

    @property
    def slot(self) -> SlotConfig:
        """The EI slot ``ref2`` made for this key: its length and usage, accepting import."""
        return SlotConfig(self.ref2, self.length, self.usage, accepts_import=True)

    @property
    def source(self) -> SecretSource:
        """Where provisioning finds the value (a name, not a variable)."""
        return _key_source(self.ref1)


_TRANSPORT_KEY = SecretSource(env="transport-key")
_PIN = SecretSource(env="pin")


def _key_source(ref1: int) -> SecretSource:
    return SecretSource(env=f"key-{ref1:02X}")


class SetSecrets:
    """A card set's transport key and AS operator PIN, and the values of its application keys
    that are drawn at run time, held in memory; ``load`` serves them to provisioning (as a
    ``provisioning.SecretLoader``), ``pin`` to the workflow, and ``wipe`` (or leaving a ``with``
    block) zeroes them. The sources it answers name its entries, not environment variables."""

    def __init__(
        self, transport_key: bytes, pin: bytes, drawn: Mapping[int, bytes] | None = None
    ) -> None:
        self._values = {
            _TRANSPORT_KEY: Secret(transport_key, SecretKind.KEY),
            _PIN: Secret(pin, SecretKind.PIN),
            **{
                _key_source(ref1): Secret(value, SecretKind.KEY)
                for ref1, value in (drawn or {}).items()
            },
        }

    @classmethod
    def drawn(cls, keys: Iterable[AppKey] = ()) -> SetSecrets:
        """A random transport key and PIN, and a random value for each key without one."""
        return cls(
            secrets.token_bytes(TRANSPORT_KEY_LENGTH),
            secrets.token_hex(PIN_LENGTH // 2).encode(),
            {key.ref1: secrets.token_bytes(key.length) for key in keys if not key.key},
        )

    def load(self, source: SecretSource, kind: SecretKind, _label: str, _confirm: bool) -> Secret:
        """A copy of the secret (the caller wipes it)."""
        secret = self._values.get(source)
        if secret is None or secret.kind is not kind:
            raise ValueError(f"this card set has no {kind.value} under {source.describe()}")
        return Secret(secret.reveal(), kind)

    def pin(self) -> Secret:
        """The operator PIN, as the workflow asks for it."""
        return self.load(_PIN, SecretKind.PIN, "AS operator PIN", False)

    def wipe(self) -> None:
        for secret in self._values.values():
            secret.wipe()

    def __enter__(self) -> SetSecrets:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.wipe()


def set_up_as(
    card: AsCard, keys: Sequence[AppKey], values: SetSecrets, *, lock: bool = True
) -> Info:
    """Write ``values``' transport key and PIN and ``keys`` into the blank AS through
    provisioning (which reads them back), LOCK it unless told otherwise, and SELECT it again.
    A key's value is its own (``AppKey.holding``) or else drawn in ``values``."""
    fixed = {key.source: key.key for key in keys if key.key}

    def load(source: SecretSource, kind: SecretKind, label: str, confirm: bool) -> Secret:
        if source in fixed:
            return Secret(fixed[source], kind)
        return values.load(source, kind, label, confirm)

    configs = tuple(
        AppKeyConfig(key.ref1, key.usage, key.version, key.diversify, key.export_limit, key.source)
        for key in keys
    )
    provisioning.setup_as(card, AsSetup(_TRANSPORT_KEY, _PIN, configs), load)
    if lock:
        card.lock()
    return card.select()


def set_up_ei(
    card: EiCard,
    serial: bytes,
    slots: Sequence[SlotConfig],
    values: SetSecrets,
    *,
    retry_limit: int = RETRY_LIMIT_DEFAULT,
    lock: bool = True,
) -> Info:
    """Write ``values``' transport key, ``serial``, ``retry_limit`` and ``slots`` into the blank
    EI through provisioning (which reads them back), LOCK it unless told otherwise, and SELECT
    it again."""
    provisioning.setup_ei(
        card, EiSetup(_TRANSPORT_KEY, serial, retry_limit, tuple(slots)), values.load
    )
    if lock:
        card.lock()
    return card.select()
