"""Helpers for the integration tests: setup configs and secret files as an operator writes them,
the real CLI run with its verbose APDU log next to the station's own APDU counters, and a scan of
outputs for secrets (the §6 vectors are ``tests/protocol_vectors.py``).

Kept apart from test_integration.py so that the test file reads as the scenario it checks.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from keyload_host.cards import Card
from keyload_host.config import USAGE_SHORT
from keyload_host.protocol import EXPORT_LIMIT_UNLIMITED, Info, KeyEntry
from keyload_host.transport import Pcsc
from keyload_station import supervisor as station
from keyload_station.cardset import AppKey

CLI_NAME = "keyload-host"
OWNER_ONLY = 0o600
"""Secret files must be chmod 600: the host refuses any other mode."""

# ------------------------------------------------------------------------------ operator files


def write_secret_file(path: Path, text: str) -> Path:
    """A key (hex) or PIN file that only its owner may read, as the host demands."""
    path.write_text(text + "\n")
    path.chmod(OWNER_ONLY)
    return path


def _toml_secret(path: Path) -> str:
    return f'{{ file = "{path.name}" }}'


def _toml_limit(limit: int) -> str:
    return '"unlimited"' if limit == EXPORT_LIMIT_UNLIMITED else str(limit)


def as_config(
    directory: Path, transport_key_file: Path, pin_file: Path, keys: Mapping[AppKey, Path]
) -> Path:
    """The `setup as` TOML for an AS holding ``keys`` (spec -> key file in ``directory``)."""
    lines = [
        f"transport_key = {_toml_secret(transport_key_file)}",
        f"pin = {_toml_secret(pin_file)}",
    ]
    for spec, key_file in keys.items():
        lines += [
            "[[keys]]",
            f"ref = 0x{spec.ref1:02X}",
            f'usage = "{USAGE_SHORT[spec.usage]}"',
            f"version = 0x{spec.version:04X}",
            f"diversify = {str(spec.diversify).lower()}",
            f"export_limit = {_toml_limit(spec.export_limit)}",
            f"key = {_toml_secret(key_file)}",
        ]
    path = directory / "as.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def ei_config(
    directory: Path, name: str, transport_key_file: Path, serial: bytes, slots: Sequence[AppKey]
) -> Path:
    """The `setup ei` TOML of an EI with one import slot per spec, written as ``name``.toml."""
    lines = [f"transport_key = {_toml_secret(transport_key_file)}", f'serial = "{serial.hex()}"']
    for spec in slots:
        lines += [
            "[[slots]]",
            f"ref = 0x{spec.ref2:02X}",
            f"key_length = {spec.length}",
            f'usage = "{USAGE_SHORT[spec.usage]}"',
            "accepts_import = true",
        ]
    path = directory / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


# ------------------------------------------------------------------------------ cards


@dataclass(frozen=True)
class CardState:
    """INFO and LIST KEYS of a card: everything it stores that the protocol shows."""

    info: Info
    entries: tuple[KeyEntry, ...]

    def by_ref(self) -> dict[int, KeyEntry]:
        return {entry.ref: entry for entry in self.entries}


def read_card(reader: str, card_type: type[Card]) -> CardState:
    """SELECT the applet in ``reader`` and LIST its KEYS, through pyscard and pcscd."""
    with Pcsc() as pcsc, pcsc.connect(reader) as transport:
        card = card_type(transport)
        info = card.select()
        return CardState(info, tuple(card.list_keys()))


def apdu_counters() -> dict[str, int]:
    """The station's count of C-APDUs received, per reader, since it started."""
    return {reader.name: reader.apdus for reader in station.status().readers}


# ------------------------------------------------------------------------------ the real CLI

_VERBOSE_APDU_LINE = re.compile(
    r"^keyload_host\.apdu: (?P<command>[A-Z][A-Z ]*?|INS [0-9A-F]{2}) on '(?P<reader>[^']+)': "
    r"(?P<sw>[0-9A-F]{4}), \d+ bytes$",
    re.MULTILINE,
)


@dataclass(frozen=True)
class CliRun:
    """One `keyload-host -v ...` process: its outcome, the commands its verbose log names per
    reader, and how many APDUs each station reader really received meanwhile."""

    returncode: int
    stdout: str
    stderr: str
    logged: Counter[tuple[str, str]]
    """(reader, command name) -> count, from the ``-v`` log."""
    received: dict[str, int]
    """Reader -> APDUs the station counted during the run."""

    def commands_to(self, reader: str) -> Counter[str]:
        return Counter({command: n for (name, command), n in self.logged.items() if name == reader})

    def logged_per_reader(self) -> dict[str, int]:
        totals = dict.fromkeys(self.received, 0)
        for (reader, _command), count in self.logged.items():
            totals[reader] = totals.get(reader, 0) + count
        return totals


def run_verbose_cli(arguments: Sequence[str], env: Mapping[str, str] | None = None) -> CliRun:
    """Run the installed ``keyload-host -v`` in its own process, as an operator would."""
    executable = shutil.which(CLI_NAME)
    if executable is None:
        raise RuntimeError(f"{CLI_NAME} is not on PATH: run scripts/install")
    before = apdu_counters()
    process = subprocess.run(
        [executable, "-v", *arguments],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )
    after = apdu_counters()
    logged = Counter(
        (match["reader"], match["command"]) for match in _VERBOSE_APDU_LINE.finditer(process.stderr)
    )
    received = {reader: after[reader] - before.get(reader, 0) for reader in after}
    return CliRun(process.returncode, process.stdout, process.stderr, logged, received)


# ------------------------------------------------------------------------------ secrets


def spellings(secret: bytes) -> dict[str, str]:
    """The ways a secret could show up in text: hex in both cases and base64 (both alphabets).
    A PIN is text already, so its raw spelling is included when it decodes."""
    forms = {
        "hex upper": secret.hex().upper(),
        "hex lower": secret.hex(),
        "base64": base64.b64encode(secret).decode(),
        "base64 unpadded": base64.b64encode(secret).decode().rstrip("="),
        "base64url": base64.urlsafe_b64encode(secret).decode().rstrip("="),
    }
    if secret.isascii() and secret.decode().isprintable():
        forms["text"] = secret.decode()
    return forms


def leaked(text: str, secrets: Mapping[str, bytes]) -> list[str]:
    """Which secrets (by name and spelling, never by value) appear in ``text``."""
    return [
        f"{name} ({form})"
        for name, secret in secrets.items()
        for form, spelled in spellings(secret).items()
        if spelled in text
    ]
