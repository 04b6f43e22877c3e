"""No secret in any output: the whole setup and personalization, through the real CLI in its own
process with `-v`, against the station. stdout, stderr (with the verbose log and every error
message) and the audit log are searched for every secret, in hex of either case and in base64:
T, each application key TA, each per-unit key TA_unit, T1 of each EI, and K_enc and K_mac of
every export actually made, plus the PIN.

To know K_enc and K_mac the test must know the challenges: the CLI runs under a spy that records
every APDU and answer to a side file (the host never logs command data). The same record proves
that during personalization no key crosses the wire in clear: only VERIFY carries the PIN.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from integration_support import leaked, write_secret_file
from keyload_host import crypto
from keyload_host.protocol import CLA_ISO, Ins
from keyload_station import supervisor as station
from station_support import StationUp

CompletedRun = subprocess.CompletedProcess[str]
ROLES = ("AS", "EI", "EI")
AS_READER, *EI_READERS = (station.reader_name(index) for index in range(len(ROLES)))
WIRE_LOG_ENV = "KEYLOAD_TEST_WIRE_LOG"
PIN_ENV = "KEYLOAD_TEST_PIN"
T_ENV = "KEYLOAD_TEST_T"
SERIALS = [bytes.fromhex("4B4C00000000A5A1"), bytes.fromhex("4B4C00000000A5A20000000000000002")]
KEYS = {  # ref1: (usage, length, diversify, ref2)
    0x03: ("auth", 16, False, 0x01),
    0x10: ("mac", 24, True, 0x05),
    0x20: ("enc", 32, False, 0x0F),
}

SPY = f"""
import os, sys
from keyload_host import cli, transport

log = open(os.environ[{WIRE_LOG_ENV!r}], "a")
real = transport.PcscTransport.transmit

def transmit(self, apdu):
    response = real(self, apdu)
    log.write(bytes(apdu).hex() + " " + bytes(response).hex() + "\\n")
    log.flush()
    return response

transport.PcscTransport.transmit = transmit
sys.argv[0] = "keyload-host"
sys.exit(cli.main())
"""
"""Runs the CLI with every exchange appended to the file named by KEYLOAD_TEST_WIRE_LOG."""


@dataclass
class Session:
    directory: Path
    transport_key: bytes = field(repr=False)
    pin: str = field(repr=False)
    app_keys: dict[int, bytes] = field(repr=False)
    outputs: list[str] = field(default_factory=list)
    wire_log: Path = Path()
    audit: Path = Path()
    setup_exchanges: int = 0
    """How many exchanges of the wire log belong to the setup (which carries T, TA and PIN)."""

    def cli(
        self, *arguments: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess:
        process = subprocess.run(
            [sys.executable, "-c", SPY, "-v", *arguments],
            capture_output=True,
            text=True,
            env={**os.environ, WIRE_LOG_ENV: str(self.wire_log), **(env or {})},
            stdin=subprocess.DEVNULL,
            timeout=120,
            check=False,
        )
        self.outputs += [process.stdout, process.stderr]
        return process

    def exchanges(self) -> list[tuple[bytes, bytes]]:
        lines = self.wire_log.read_text().splitlines()
        return [tuple(bytes.fromhex(part) for part in line.split()) for line in lines]

    def secrets(self) -> dict[str, bytes]:
        """Every secret of the session; K_enc and K_mac from the EXPORT KEY commands sent."""
        found = {"T": self.transport_key, "PIN": self.pin.encode()}
        for ref1, key in self.app_keys.items():
            found[f"TA {ref1:02X}"] = key
            for serial in SERIALS:
                found[f"TA {ref1:02X} of {serial.hex()}"] = crypto.diversify(key, serial)
        for serial in SERIALS:
            found[f"T1 of {serial.hex()}"] = crypto.derive_t1(self.transport_key, serial)
        for command, _answer in self.exchanges():
            if command[1] == Ins.EXPORT_KEY and len(command) > 5 + 19:
                data = command[5 : 5 + command[4]]
                ref2, challenge, serial = data[1], data[2:18], data[19:]
                t1 = crypto.derive_t1(self.transport_key, serial)
                keys = crypto.derive_session_keys(t1, challenge, ref2)
                found[f"K_enc {challenge.hex()}"] = keys.k_enc
                found[f"K_mac {challenge.hex()}"] = keys.k_mac
        return found


def _write_configs(session: Session) -> tuple[Path, list[Path]]:
    directory = session.directory
    t_file = write_secret_file(directory / "t.key", session.transport_key.hex())
    pin_file = write_secret_file(directory / "pin", session.pin)
    lines = [
        f'transport_key = {{ file = "{t_file.name}" }}',
        f'pin = {{ file = "{pin_file.name}" }}',
    ]
    for ref1, (usage, _length, diversify, _ref2) in KEYS.items():
        key_file = write_secret_file(
            directory / f"k{ref1:02X}", session.app_keys[ref1].hex().upper()
        )
        lines += ["[[keys]]", f"ref = 0x{ref1:02X}", f'usage = "{usage}"', "version = 7"]
        lines += [f"diversify = {str(diversify).lower()}", 'export_limit = "unlimited"']
        lines += [f'key = {{ file = "{key_file.name}" }}']
    as_config = directory / "as.toml"
    as_config.write_text("\n".join(lines) + "\n")
    ei_configs = []
    for index, serial in enumerate(SERIALS):
        lines = [f'transport_key = {{ env = "{T_ENV}" }}', f'serial = "{serial.hex()}"']
        for usage, length, _diversify, ref2 in KEYS.values():
            lines += ["[[slots]]", f"ref = 0x{ref2:02X}", f"key_length = {length}"]
            lines += [f'usage = "{usage}"']
        ei_configs.append(directory / f"ei{index}.toml")
        ei_configs[-1].write_text("\n".join(lines) + "\n")
    return as_config, ei_configs


@pytest.fixture(scope="module")
def session(station_up: StationUp, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    """Setup of an AS and two EI, two personalizations (the second has nothing left to do), an
    `info` of each card, and a personalization with a wrong PIN."""
    directory = tmp_path_factory.mktemp("secrets")
    session = Session(
        directory=directory,
        transport_key=secrets.token_bytes(32),
        pin=f"pin-{secrets.token_hex(6)}",
        app_keys={ref1: secrets.token_bytes(spec[1]) for ref1, spec in KEYS.items()},
        wire_log=directory / "wire.log",
        audit=directory / "audit.jsonl",
    )
    as_config, ei_configs = _write_configs(session)
    runs = [session.cli("setup", "as", "--reader", AS_READER, "--config", str(as_config), "--yes")]
    setup_env = {T_ENV: session.transport_key.hex()}
    for reader, config in zip(EI_READERS, ei_configs, strict=True):
        runs.append(
            session.cli(
                "setup",
                "ei",
                "--reader",
                reader,
                "--config",
                str(config),
                "--yes",
                env=setup_env,
            )
        )
    session.setup_exchanges = len(session.exchanges())
    personalize = ["personalize", "--as-reader", AS_READER, "--audit", str(session.audit)]
    for reader in EI_READERS:
        personalize += ["--ei-reader", reader]
    for ref1, (_usage, _length, _diversify, ref2) in KEYS.items():
        personalize += ["--load", f"{ref1:02X}:{ref2:02X}"]
    wrong = session.cli(*personalize, "--pin-env", PIN_ENV, env={PIN_ENV: "not-the-pin"})
    assert wrong.returncode == 1 and "wrong PIN" in wrong.stderr, wrong.stderr
    for _ in range(2):
        runs.append(session.cli(*personalize, "--pin-env", PIN_ENV, env={PIN_ENV: session.pin}))
    for reader in (AS_READER, *EI_READERS):
        runs.append(session.cli("info", "--reader", reader, "--json"))
    assert [run.returncode for run in runs] == [0] * len(runs), [run.stderr for run in runs]
    yield session


def test_the_flows_ran_and_exported_every_key_to_every_ei(session: Session) -> None:
    exports = [c for c, _a in session.exchanges() if c[1] == Ins.EXPORT_KEY]
    assert len(exports) == len(KEYS) * len(EI_READERS)
    found = session.secrets()
    assert sum(name.startswith("K_mac") for name in found) == len(exports)


def test_no_secret_in_stdout_stderr_or_error_messages(session: Session) -> None:
    everything = "\n".join(session.outputs)
    assert "EXPORT KEY" in everything  # the verbose log is part of what is searched
    assert leaked(everything, session.secrets()) == []


def test_no_secret_in_the_audit_log(session: Session) -> None:
    text = session.audit.read_text()
    records = [json.loads(line) for line in text.splitlines()]
    assert sum(record["event"] == "key" for record in records) == 2 * len(KEYS) * len(EI_READERS)
    assert leaked(text, session.secrets()) == []


def test_personalization_sends_no_key_in_clear(session: Session) -> None:
    """Only the AS's VERIFY carries a secret (the PIN, §4.1); no key, derived or not, ever."""
    found = session.secrets()
    pin = {"PIN": found.pop("PIN")}
    for command, answer in session.exchanges()[session.setup_exchanges :]:
        wire = (command + answer).hex()
        named = [name for name, value in found.items() if value.hex() in wire]
        assert named == [], f"{command[:4].hex()} carries {named}"
        if command[:2] != bytes([CLA_ISO, Ins.VERIFY]):
            assert pin["PIN"].hex() not in wire
