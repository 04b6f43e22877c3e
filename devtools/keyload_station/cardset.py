"""``AppKey``: one application key of an AS and the EI slot it goes to, the one type the station
tests and the benchmark describe their key sets with (the operator's is ``config.AppKeyConfig``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from keyload_host.config import Load
from keyload_host.protocol import EXPORT_LIMIT_UNLIMITED, Usage

NO_SLOT = 0x00
"""``ref2`` of a key that names no slot (REF 0x00 is reserved, PROTOCOL.md)."""


@dataclass(frozen=True)
class AppKey:
    """An application key of the AS (``ref1``, usage, length, version, diversification, export
    limit) and the EI slot ``ref2`` it is loaded into; ``key`` holds the value when it is fixed
    (known test secrets), else it is drawn at run time and kept apart."""

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
