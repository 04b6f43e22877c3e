"""The benchmark's cards: one AS with three keys and a stream of fresh EI cards, set up and locked
through the host's provisioning code with secrets drawn at random per run and never written."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager

from keyload_host.cards import AsCard, EiCard
from keyload_host.config import AppKeyConfig, AsSetup, EiSetup, SlotConfig
from keyload_host.protocol import EXPORT_LIMIT_UNLIMITED, RETRY_LIMIT_DEFAULT, Usage
from keyload_host.provisioning import setup_as, setup_ei
from keyload_host.secret_sources import Secret, SecretKind, SecretSource
from keyload_host.transport import Pcsc
from keyload_station.cardset import AppKey

TRANSPORT_KEY_LENGTH = 32
PIN_LENGTH = 8
SERIAL_PREFIX = b"KB"
"""EI serials are "KB" and a six-byte card number: 8 bytes, the shortest a serial may be."""
SERIAL_NUMBER_LENGTH = 6


def _source(key: AppKey) -> SecretSource:
    """Where the benchmark's loader finds the key's value (a name, not a variable)."""
    return SecretSource(env=f"key-{key.ref1:02X}")


KEYS = (
    AppKey(0x03, 0x01, Usage.AUTHENTICATE, 16, 0x0001, diversify=False),
    AppKey(0x10, 0x05, Usage.MAC, 24, 0x0102, diversify=True),
    AppKey(0x7F, 0x0F, Usage.ENCRYPT, 32, 0xFFFF, diversify=False),
)
"""Three keys, one of each length and usage, one diversified per EI: the demo's set."""
LOADS = tuple(key.load for key in KEYS)

_TRANSPORT_KEY = SecretSource(env="transport-key")
_PIN = SecretSource(env="pin")


class BenchSecrets:
    """The run's random transport key, PIN and application keys, by (pseudo) source.

    The sources name entries of this object, not environment variables: ``load`` is the only way
    the provisioning code reads them.
    """

    def __init__(self) -> None:
        self._values = {
            _TRANSPORT_KEY: Secret(secrets.token_bytes(TRANSPORT_KEY_LENGTH), SecretKind.KEY),
            _PIN: Secret(secrets.token_hex(PIN_LENGTH // 2).encode(), SecretKind.PIN),
            **{
                _source(key): Secret(secrets.token_bytes(key.length), SecretKind.KEY)
                for key in KEYS
            },
        }

    def load(self, source: SecretSource, kind: SecretKind, _label: str, _confirm: bool) -> Secret:
        """A copy of the secret (the caller wipes it), as ``provisioning.SecretLoader``."""
        secret = self._values[source]
        if secret.kind is not kind:
            raise ValueError(f"the benchmark has no {kind.value} under {source.describe()}")
        return Secret(secret.reveal(), kind)

    def pin(self) -> Secret:
        """The operator PIN, as the workflow asks for it."""
        return self.load(_PIN, SecretKind.PIN, "AS operator PIN", False)

    def wipe(self) -> None:
        for secret in self._values.values():
            secret.wipe()


AS_SETUP = AsSetup(
    _TRANSPORT_KEY,
    _PIN,
    tuple(
        AppKeyConfig(
            key.ref1, key.usage, key.version, key.diversify, EXPORT_LIMIT_UNLIMITED, _source(key)
        )
        for key in KEYS
    ),
)


def ei_setup(serial: bytes) -> EiSetup:
    """An EI of the benchmark's set with one slot per key."""
    slots = tuple(SlotConfig(key.ref2, key.length, key.usage, True) for key in KEYS)
    return EiSetup(_TRANSPORT_KEY, serial, RETRY_LIMIT_DEFAULT, slots)


def serial_number(card_number: int) -> bytes:
    return SERIAL_PREFIX + card_number.to_bytes(SERIAL_NUMBER_LENGTH)


@contextmanager
def benchmark_secrets() -> Iterator[BenchSecrets]:
    values = BenchSecrets()
    try:
        yield values
    finally:
        values.wipe()


def set_up_as(pcsc: Pcsc, reader: str, values: BenchSecrets) -> None:
    """Write the benchmark's keys into the blank AS in ``reader`` and LOCK it."""
    with pcsc.connect(reader) as transport:
        card = AsCard(transport)
        setup_as(card, AS_SETUP, values.load)
        card.lock()


def set_up_ei(pcsc: Pcsc, reader: str, serial: bytes, values: BenchSecrets) -> None:
    """Write the benchmark's set into the blank EI in ``reader`` and LOCK it."""
    with pcsc.connect(reader) as transport:
        card = EiCard(transport)
        setup_ei(card, ei_setup(serial), values.load)
        card.lock()
