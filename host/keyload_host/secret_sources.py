"""Reading secrets (transport key, application keys, PIN) from owner-only files, environment
variables or hidden prompts, and holding them in wipeable ``Secret`` objects that print no value;
a key may also be entered as components held by different custodians (split knowledge), each
checked by its own KCV and combined by XOR."""

from __future__ import annotations

import hmac
import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TypeVar

import click

from .crypto import kcv
from .errors import KeyloadError
from .protocol import KCV_LENGTH, KEY_LENGTHS, PIN_MAX, PIN_MIN, kcv_text

_GROUP_OTHER_ACCESS = stat.S_IRGRP | stat.S_IWGRP | stat.S_IROTH | stat.S_IWOTH
_WHITESPACE = frozenset(b" \t\r\n\f\v")
_HEX_VALUES = {ord(digit): int(digit, 16) for digit in "0123456789abcdefABCDEF"}
_MAX_SECRET_FILE = 4096
"""A key or PIN file is a few bytes; anything larger is the wrong file."""


class SecretKind(Enum):
    KEY = "key"
    PIN = "PIN"


class SecretSourceError(KeyloadError):
    """A secret could not be read, or is not well formed."""


class Secret:
    """Key or PIN bytes that never show in a repr, a log line or a pickle.

    ``reveal()`` hands out the inner bytearray (not a copy) for the one place that sends it to a
    card; ``wipe()`` zeroes it, and so does leaving a ``with`` block.
    """

    __slots__ = ("_value", "kind")

    def __init__(self, value: bytes | bytearray, kind: SecretKind) -> None:
        self._value = bytearray(value)
        self.kind = kind

    def reveal(self) -> bytearray:
        return self._value

    def __len__(self) -> int:
        return len(self._value)

    @property
    def kcv(self) -> str:
        """The key's check value with its method (``cmac-aes:6F2F9B``); a PIN has none (it
        would let a PIN be brute-forced)."""
        if self.kind is not SecretKind.KEY:
            raise TypeError("only a key has a check value")
        return kcv_text(kcv(self._value))

    def wipe(self) -> None:
        self._value[:] = bytes(len(self._value))

    def __enter__(self) -> Secret:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.wipe()

    def __repr__(self) -> str:
        if self.kind is SecretKind.KEY and len(self._value) in KEY_LENGTHS:
            return f"<secret key, KCV {self.kcv}>"
        return "<secret>"

    __str__ = __repr__

    def __reduce__(self) -> object:
        raise TypeError("a Secret cannot be pickled or copied")


@dataclass(frozen=True)
class SecretSource:
    """Where to read a secret from: exactly one of a file, an environment variable or a prompt."""

    file: Path | None = None
    env: str | None = None
    prompt: bool = False

    def __post_init__(self) -> None:
        if (self.file is not None) + (self.env is not None) + self.prompt != 1:
            raise ValueError("a secret source is exactly one of file, env or prompt")

    def describe(self) -> str:
        if self.file is not None:
            return f"file {self.file}"
        if self.env is not None:
            return f"environment variable {self.env}"
        return "prompt"


MIN_COMPONENTS = 2
MAX_COMPONENTS = 3
"""A key is entered as 2 or 3 components. Two give split knowledge (PCI PIN 8-2); with XOR every
component is needed, so each further custodian is one more person whose absence or lost
component makes the key unrecoverable, for no further secrecy."""


@dataclass(frozen=True)
class KeyComponent:
    """One full-length component of a key, held by ``custodian``: where to read it and its
    expected check value (the 3 bytes of ``kcv_text``)."""

    source: SecretSource
    custodian: str
    kcv: bytes


@dataclass(frozen=True)
class KeyComponents:
    """A key entered as components (XOR of all of them, all of the key's length), each checked by
    its own KCV, the combined key by ``kcv``."""

    components: tuple[KeyComponent, ...]
    kcv: bytes

    def __post_init__(self) -> None:
        if not MIN_COMPONENTS <= len(self.components) <= MAX_COMPONENTS:
            raise ValueError(f"a key has {MIN_COMPONENTS} to {MAX_COMPONENTS} components")

    def label(self, index: int, key_label: str) -> str:
        """How the operator and the custodian see component ``index`` (0-based) of a key."""
        component = self.components[index]
        return (
            f"Component {index + 1} of {len(self.components)} of the {key_label}, "
            f"for {component.custodian}"
        )


KeySource = SecretSource | KeyComponents
"""Where a key comes from: one source, or components."""


def check_kcv(secret: Secret, expected: bytes, what: str) -> str:
    """The KCV of ``secret`` as text, after comparing it (constant time) with ``expected``;
    raises SecretSourceError naming both KCVs (never the key) when they differ."""
    found = kcv(secret.reveal())
    if len(expected) != KCV_LENGTH or not hmac.compare_digest(found, expected):
        raise SecretSourceError(
            f"{what}: KCV {kcv_text(found)}, expected {kcv_text(expected)}: "
            "not the right value; nothing was written to the card"
        )
    return kcv_text(found)


def combine_components(parts: Sequence[Secret], what: str) -> Secret:
    """XOR the components ``parts`` (all of one length) into a new key ``Secret``; every part is
    wiped whatever happens, so a component lives no longer than the combining."""
    try:
        lengths = {len(part) for part in parts}
        if len(lengths) != 1:
            found = ", ".join(str(len(part)) for part in parts)
            raise SecretSourceError(
                f"{what}: the components are not all of one length ({found} bytes): each "
                "component is as long as the key"
            )
        combined = Secret(bytes(lengths.pop()), SecretKind.KEY)
        value = combined.reveal()
        for part in parts:
            for index, byte in enumerate(part.reveal()):
                value[index] ^= byte
        return combined
    finally:
        for part in parts:
            part.wipe()


_T = TypeVar("_T")


def _wiped_after(raw: bytearray, parse: Callable[[bytearray], _T]) -> _T:
    """Parse a buffer holding a secret, then zero it whatever happened."""
    try:
        return parse(raw)
    finally:
        raw[:] = bytes(len(raw))


def parse_key(raw: bytearray, where: str) -> Secret:
    """A key written in hex; whitespace (spaces, newlines) is ignored."""
    digits = bytearray(byte for byte in raw if byte not in _WHITESPACE)
    try:
        if any(byte not in _HEX_VALUES for byte in digits):
            raise SecretSourceError(f"{where}: a key is written in hex digits only (0-9, A-F)")
        if len(digits) // 2 not in KEY_LENGTHS or len(digits) % 2:
            raise SecretSourceError(
                f"{where}: a key must be 16, 24 or 32 bytes (32, 48 or 64 hex digits), "
                f"found {len(digits)} hex digits"
            )
        value = bytearray(
            _HEX_VALUES[digits[i]] << 4 | _HEX_VALUES[digits[i + 1]]
            for i in range(0, len(digits), 2)
        )
        secret = Secret(value, SecretKind.KEY)
        value[:] = bytes(len(value))
        return secret
    finally:
        digits[:] = bytes(len(digits))


def parse_pin(raw: bytearray, where: str) -> Secret:
    """A PIN written as text; a final line break is not part of it."""
    while raw and raw[-1] in b"\r\n":
        raw.pop()
    if not PIN_MIN <= len(raw) <= PIN_MAX:
        raise SecretSourceError(f"{where}: a PIN must be {PIN_MIN} to {PIN_MAX} bytes")
    return Secret(raw, SecretKind.PIN)


def _parser(kind: SecretKind) -> Callable[[bytearray, str], Secret]:
    return parse_key if kind is SecretKind.KEY else parse_pin


def read_secret_file(path: Path, kind: SecretKind) -> Secret:
    """Read a key (hex) or PIN (text) file that only its owner can read and write.

    The permission check is made on the opened file, so the file cannot be swapped in between.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as error:
        raise SecretSourceError(
            f"{path}: cannot open the {kind.value} file: {error.strerror}"
        ) from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise SecretSourceError(f"{path}: a {kind.value} file must be a regular file")
        if mode & _GROUP_OTHER_ACCESS:
            raise SecretSourceError(
                f"{path}: refusing a {kind.value} file that group or others can read or write; "
                f"run: chmod 600 {path}"
            )
        raw = bytearray(os.read(fd, _MAX_SECRET_FILE + 1))
    finally:
        os.close(fd)
    if len(raw) > _MAX_SECRET_FILE:
        raw[:] = bytes(len(raw))
        raise SecretSourceError(f"{path}: too large for a {kind.value} file")
    return _wiped_after(raw, lambda buffer: _parser(kind)(buffer, str(path)))


def read_secret_env(name: str, kind: SecretKind) -> Secret:
    value = os.environ.get(name)
    if value is None:
        raise SecretSourceError(f"the environment variable {name} is not set")
    raw = bytearray(value.encode())
    return _wiped_after(raw, lambda buffer: _parser(kind)(buffer, f"environment variable {name}"))


def prompt_hidden(label: str, confirm: bool) -> str:
    """Ask on the terminal without echo (click.prompt with hide_input)."""
    return click.prompt(label, hide_input=True, confirmation_prompt=confirm)


def read_secret_prompt(
    label: str,
    kind: SecretKind,
    *,
    confirm: bool = False,
    prompt: Callable[[str, bool], str] = prompt_hidden,
) -> Secret:
    text = label + (" (hex)" if kind is SecretKind.KEY else "")
    raw = bytearray(prompt(text, confirm).encode())
    return _wiped_after(raw, lambda buffer: _parser(kind)(buffer, label))


def load_secret(
    source: SecretSource,
    kind: SecretKind,
    label: str,
    *,
    confirm: bool = False,
    prompt: Callable[[str, bool], str] = prompt_hidden,
) -> Secret:
    """Read the secret ``label`` (e.g. "transport key") from ``source``.

    ``confirm`` asks twice at a prompt: for a value being set on a card, not one being checked.
    """
    if source.file is not None:
        return read_secret_file(source.file, kind)
    if source.env is not None:
        return read_secret_env(source.env, kind)
    return read_secret_prompt(label, kind, confirm=confirm, prompt=prompt)
