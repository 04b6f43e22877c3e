"""The benchmark's card set: one AS with three keys and a stream of fresh EI cards with one slot
per key, set up through ``keyload_station.cardset`` with secrets drawn at random per run."""

from __future__ import annotations

from keyload_host.protocol import Usage
from keyload_station.cardset import AppKey

SERIAL_PREFIX = b"KB"
"""EI serials are "KB" and a six-byte card number: 8 bytes, the shortest a serial may be."""
SERIAL_NUMBER_LENGTH = 6

KEYS = (
    AppKey(0x03, 0x01, Usage.AUTHENTICATE, 16, 0x0001, diversify=False),
    AppKey(0x10, 0x05, Usage.MAC, 24, 0x0102, diversify=True),
    AppKey(0x7F, 0x0F, Usage.ENCRYPT, 32, 0xFFFF, diversify=False),
)
"""Three keys, one of each length and usage, one diversified per EI: the demo's set."""
LOADS = tuple(key.load for key in KEYS)
SLOTS = tuple(key.slot for key in KEYS)


def serial_number(card_number: int) -> bytes:
    return SERIAL_PREFIX + card_number.to_bytes(SERIAL_NUMBER_LENGTH)
