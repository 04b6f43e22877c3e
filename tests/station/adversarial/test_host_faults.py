"""Faults around the host, through the real CLI (`keyload-host -v`, its own process), pcscd and
the station: a card pulled mid-batch, pcscd restarted mid-batch, and configuration or job files
that are wrong. The host must say what happened in plain words, exit non-zero, keep the audit
log true to what the cards hold, lose nothing, never load a key twice, and send nothing to any
card when a file is wrong.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from adversarial_support import (
    PIN,
    TEST_SET,
    TRANSPORT_KEY,
    AppKey,
    Bench,
    snapshot,
)
from integration_support import CliRun, run_verbose_cli, write_secret_file
from keyload_host.audit import (
    EVENT_CARD_FAILED,
    EVENT_KEY,
    EVENT_SESSION_END,
    EVENT_SESSION_START,
)
from keyload_host.config import SlotConfig
from keyload_host.protocol import Usage
from keyload_station import supervisor as station
from keyload_station.cardset import set_up_as, set_up_ei
from station_support import StationUp

ROLES = ("AS", "EI", "EI", "EI", "AS", "EI")
AS_READER_INDEX, BLANK_AS, BLANK_EI = 0, 4, 5
EI_INDEXES = (1, 2, 3)
READERS = [station.reader_name(index) for index in range(len(ROLES))]
AS_READER = READERS[AS_READER_INDEX]
EI_READERS = [READERS[index] for index in EI_INDEXES]
MIDDLE_EI = EI_INDEXES[1]

AUTH = AppKey.holding(
    0x03, Usage.AUTHENTICATE, bytes.fromhex("00112233445566778899AABBCCDDEEFF"), 1
)
ENC = AppKey.holding(0x20, Usage.ENCRYPT, bytes(range(0x40, 0x60)), 1)
SLOTS = (
    SlotConfig(0x01, 16, Usage.AUTHENTICATE, accepts_import=True),
    SlotConfig(0x0F, 32, Usage.ENCRYPT, accepts_import=True),
)
LOADS = ("03:01", "20:0F")
SERIALS = {index: bytes.fromhex(f"4B4C00000000D00{index}") for index in EI_INDEXES}

# The EI's APDUs in a batch: SELECT and LIST KEYS while every card is read first, then per key
# GET CHALLENGE and IMPORT KEY, then LIST KEYS to read the loads back.
EI_FIRST_IMPORT = 4
# The AS's: SELECT, LIST KEYS, VERIFY, then one EXPORT KEY per key and EI, card after card.
AS_SECOND_EXPORT_OF_FIRST_EI = 5
AS_FIRST_EXPORT_OF_SECOND_EI = 6


@pytest.fixture(scope="module")
def bench(station_up: StationUp) -> Iterator[Bench]:
    bench = Bench(ROLES)
    try:
        yield bench
    finally:
        bench.close()


@dataclass(frozen=True)
class Batch:
    """Files of a personalization run: the PIN file and the audit log."""

    pin_file: Path
    audit: Path

    def run(self) -> CliRun:
        arguments = ["personalize", "--as-reader", AS_READER, "--audit", str(self.audit)]
        arguments += ["--pin-file", str(self.pin_file)]
        for reader in EI_READERS:
            arguments += ["--ei-reader", reader]
        for load in LOADS:
            arguments += ["--load", load]
        return run_verbose_cli(arguments)

    def records(self) -> list[dict]:
        lines = self.audit.read_text().splitlines()  # the log's own start record left out:
        return [r for r in map(json.loads, lines) if r["event"] != "log_start"]


@pytest.fixture
def batch(bench: Bench, tmp_path: Path) -> Iterator[Batch]:
    """A fresh card set: the AS and three blank EI cards, set up through the host library; the
    connections are closed before the CLI runs, since it opens the cards exclusively."""
    for index in (AS_READER_INDEX, *EI_INDEXES):
        bench.fresh(index)
    set_up_as(bench.as_card(AS_READER_INDEX), (AUTH, ENC), TEST_SET)
    for index in EI_INDEXES:
        set_up_ei(bench.ei_card(index), SERIALS[index], SLOTS, TEST_SET)
    bench.close()
    yield Batch(write_secret_file(tmp_path / "pin", PIN.decode()), tmp_path / "audit.jsonl")
    bench.close()


def key_records(records: Sequence[dict]) -> Counter[tuple[str, str, str]]:
    """(EI serial, REF1:REF2, result) -> number of audit records."""
    return Counter(
        (record["ei_sn"], f"{record['ref1']:02X}:{record['ref2']:02X}", record["result"])
        for record in records
        if record["event"] == EVENT_KEY
    )


def sessions(records: Sequence[dict]) -> list[list[dict]]:
    """The records split into sessions, each from its start to its end."""
    runs: list[list[dict]] = []
    for record in records:
        if record["event"] == EVENT_SESSION_START:
            runs.append([])
        runs[-1].append(record)
    return runs


def serial_hex(index: int) -> str:
    return SERIALS[index].hex().upper()


def loaded_slots(bench: Bench) -> dict[str, set[int]]:
    """Per EI serial, the slots that hold a key now."""
    found = {}
    for index in EI_INDEXES:
        card = bench.ei_card(index)
        card.select()
        entries = snapshot(card.transport).entries()
        found[serial_hex(index)] = {ref for ref, entry in entries.items() if entry.loaded}
    bench.close()
    return found


def export_counts(bench: Bench) -> dict[int, int]:
    card = bench.as_card(AS_READER_INDEX)
    card.select()
    counts = {entry.ref: entry.count for entry in card.list_keys()}
    bench.close()
    return counts


def last_results(records: Sequence[dict]) -> dict[tuple[str, str], str]:
    """(EI serial, REF1:REF2) -> the result of its last audit record."""
    return {
        (record["ei_sn"], f"{record['ref1']:02X}:{record['ref2']:02X}"): record["result"]
        for record in records
        if record["event"] == EVENT_KEY
    }


def assert_no_key_loaded_twice(
    records: Sequence[dict], bench: Bench, exports_lost: int = 0
) -> dict[str, set[int]]:
    """No key recorded as loaded that an EI does not hold, none recorded as loaded twice, and
    the AS exported each key once per EI that holds it, plus ``exports_lost``: blocks the AS
    made and counted (§4.2 step 6) whose answer never reached the host. Returns what the EI
    cards hold."""
    recorded = key_records(records)
    holdings = loaded_slots(bench)
    for (serial, load, result), count in recorded.items():
        if result == "loaded":
            assert count == 1, f"{load} loaded {count} times into {serial}"
            assert int(load.split(":")[1], 16) in holdings[serial], (serial, load)
    counts = export_counts(bench)
    extra = 0
    for key, ref2 in ((AUTH, 0x01), (ENC, 0x0F)):
        holders = sum(ref2 in slots for slots in holdings.values())
        assert counts[key.ref1] >= holders, f"key {key.ref1:02X}: {counts} exports, {holders} held"
        extra += counts[key.ref1] - holders
    assert extra == exports_lost, f"{extra} exports more than keys held"
    return holdings


def assert_audit_says_what_the_cards_hold(
    records: Sequence[dict], bench: Bench, exports_lost: int = 0
) -> None:
    """After a complete run: the last record of every load is loaded or skipped, and the card
    holds the key; plus everything ``assert_no_key_loaded_twice`` checks."""
    holdings = assert_no_key_loaded_twice(records, bench, exports_lost)
    last = last_results(records)
    for serial, slots in holdings.items():
        for load in LOADS:
            assert last[(serial, load)] in ("loaded", "skipped"), (serial, load, last)
            assert int(load.split(":")[1], 16) in slots


# ------------------------------------------------------------------------------ pulled cards


def test_an_ei_pulled_mid_batch_fails_alone_and_a_rerun_completes_it(
    bench: Bench, batch: Batch
) -> None:
    middle = READERS[MIDDLE_EI]
    station.pull(middle, EI_FIRST_IMPORT, "after")  # the import is done, its answer lost
    first = batch.run()
    assert first.returncode == 1, first.stderr
    assert "removed" in first.stderr and serial_hex(MIDDLE_EI) in first.stderr
    assert "Traceback" not in first.stderr
    assert "4 loaded, 0 skipped, 2 failed" in first.stdout
    records = batch.records()
    (only,) = sessions(records)
    assert only[-1]["event"] == EVENT_SESSION_END and only[-1]["result"] == "failed"
    failed = [r for r in only if r["event"] == EVENT_KEY and r["result"] == "failed"]
    assert {r["ei_sn"] for r in failed} == {serial_hex(MIDDLE_EI)}
    assert any("removed" in r["message"] for r in failed)

    station.reinsert(middle)
    assert_no_key_loaded_twice(records, bench)
    second = batch.run()
    assert second.returncode == 0, second.stderr
    rerun = key_records(sessions(batch.records())[1])
    assert rerun[(serial_hex(MIDDLE_EI), LOADS[0], "skipped")] == 1  # the pulled import held
    assert rerun[(serial_hex(MIDDLE_EI), LOADS[1], "loaded")] == 1
    assert sum(n for (_sn, _load, result), n in rerun.items() if result == "loaded") == 1
    assert_audit_says_what_the_cards_hold(batch.records(), bench)


@pytest.mark.parametrize(
    ("nth", "when"),
    [(AS_FIRST_EXPORT_OF_SECOND_EI, "before"), (AS_SECOND_EXPORT_OF_FIRST_EI, "after")],
    ids=["between-cards", "mid-card-after-export"],
)
def test_the_as_pulled_mid_batch_stops_it_clearly_and_loses_nothing(
    bench: Bench, batch: Batch, nth: int, when: str
) -> None:
    station.pull(AS_READER, nth, when)
    first = batch.run()
    assert first.returncode == 1
    assert "removed" in first.stderr and "Traceback" not in first.stderr
    records = batch.records()
    assert [r["event"] for r in records if r["event"] == EVENT_CARD_FAILED] == [EVENT_CARD_FAILED]
    assert records[-1]["event"] == EVENT_SESSION_END and records[-1]["result"] == "failed"
    station.reinsert(AS_READER)
    exports_lost = 1 if when == "after" else 0
    holdings = assert_no_key_loaded_twice(records, bench, exports_lost)
    last = last_results(records)
    for serial, slots in holdings.items():  # what an EI holds, the audit says it loaded
        for load in LOADS:
            if int(load.split(":")[1], 16) in slots:
                assert last.get((serial, load)) == "loaded", (serial, load, last)

    second = batch.run()
    assert second.returncode == 0, second.stderr
    assert_audit_says_what_the_cards_hold(batch.records(), bench, exports_lost)


def _read_until(stream, marker: bytes, timeout: float) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while marker not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"no {marker!r} in {seen!r}"
        if select.select([stream], [], [], left)[0]:
            chunk = os.read(stream.fileno(), 4096)
            assert chunk, f"the CLI ended before {marker!r}: {seen!r}"
            seen += chunk
    return seen


def test_pcscd_restarted_mid_batch_stops_it_clearly_and_changes_nothing(
    bench: Bench, batch: Batch
) -> None:
    """pcscd goes away after the cards were read and checked, while the operator types the PIN."""
    before = loaded_slots(bench)
    arguments = ["personalize", "--as-reader", AS_READER, "--audit", str(batch.audit)]
    for reader in EI_READERS:
        arguments += ["--ei-reader", reader]
    for load in LOADS:
        arguments += ["--load", load]
    process = subprocess.Popen(
        [shutil.which("keyload-host"), *arguments],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # no terminal: the hidden prompt reads stdin
    )
    try:
        _read_until(process.stderr, b"PIN", timeout=30)
        station.restart_pcscd()
        stdout, stderr = process.communicate(PIN + b"\n", timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    stderr_text = stderr.decode()
    assert process.returncode == 1, stderr_text
    assert "Traceback" not in stderr_text
    assert "pcscd" in stderr_text or "reset" in stderr_text or "removed" in stderr_text
    records = batch.records()
    assert records[0]["event"] == EVENT_SESSION_START
    assert records[-1]["event"] == EVENT_SESSION_END and records[-1]["result"] == "failed"
    assert not key_records(records) or all(
        result == "failed" for (_sn, _load, result) in key_records(records)
    )
    assert loaded_slots(bench) == before
    assert stdout is not None


# ------------------------------------------------------------------------------ bad files

GOOD_KEY_HEX = AUTH.key.hex()
OWNER_ONLY, GROUP_READABLE, WORLD_READABLE = 0o600, 0o640, 0o644


def _secret(directory: Path, name: str, text: str, mode: int = OWNER_ONLY) -> str:
    path = write_secret_file(directory / name, text)
    path.chmod(mode)
    return name


def _as_config(
    directory: Path,
    *,
    key_text: str = GOOD_KEY_HEX,
    key_mode: int = OWNER_ONLY,
    t_mode: int = OWNER_ONLY,
    pin: bool = True,
    refs: Sequence[int] = (3,),
    inline_key: bool = False,
) -> list[str]:
    t_file = _secret(directory, "t.key", TRANSPORT_KEY.hex(), t_mode)
    lines = [f'transport_key = {{ file = "{t_file}" }}']
    if pin:
        lines.append(f'pin = {{ file = "{_secret(directory, "pin", PIN.decode())}" }}')
    key = (
        f'"{key_text}"'
        if inline_key
        else f'{{ file = "{_secret(directory, "k.key", key_text, key_mode)}" }}'
    )
    for ref in refs:
        lines += [
            "[[keys]]",
            f"ref = 0x{ref:02X}",
            'usage = "auth"',
            "version = 1",
            'export_limit = "unlimited"',
            f"key = {key}",
        ]
    return lines


def _ei_config(
    directory: Path,
    *,
    serial: str = "4B4C0000000000D9",
    refs: Sequence[int] = (1,),
    key_length: int = 16,
    t_mode: int = OWNER_ONLY,
) -> list[str]:
    t_file = _secret(directory, "t.key", TRANSPORT_KEY.hex(), t_mode)
    lines = [f'transport_key = {{ file = "{t_file}" }}', f'serial = "{serial}"']
    for ref in refs:
        lines += ["[[slots]]", f"ref = 0x{ref:02X}", f"key_length = {key_length}", 'usage = "auth"']
    return lines


BAD_SETUPS = {
    "AS-missing-pin": ("as", lambda d: _as_config(d, pin=False), "pin: missing"),
    "AS-key-of-15-bytes": (
        "as",
        lambda d: _as_config(d, key_text="00" * 15),
        "found 30 hex digits",
    ),
    "AS-key-not-hex": ("as", lambda d: _as_config(d, key_text="zz" * 16), "hex"),
    "AS-duplicate-ref": ("as", lambda d: _as_config(d, refs=(3, 3)), "used twice"),
    "AS-key-file-world-readable": (
        "as",
        lambda d: _as_config(d, key_mode=WORLD_READABLE),
        "chmod 600",
    ),
    "AS-T-file-group-readable": ("as", lambda d: _as_config(d, t_mode=GROUP_READABLE), "chmod 600"),
    "AS-key-written-in-the-config": (
        "as",
        lambda d: _as_config(d, inline_key=True),
        "must not be written",
    ),
    "AS-not-TOML": ("as", lambda d: ["keys = [[["], "not valid TOML"),
    "EI-serial-not-hex": ("ei", lambda d: _ei_config(d, serial="4B4C00000000ZZ01"), "hex"),
    "EI-serial-of-7-bytes": (
        "ei",
        lambda d: _ei_config(d, serial="4B4C0000000001"),
        "8 to 16 bytes",
    ),
    "EI-duplicate-slot": ("ei", lambda d: _ei_config(d, refs=(1, 1)), "used twice"),
    "EI-key-length-20": ("ei", lambda d: _ei_config(d, key_length=20), "16, 24 or 32"),
    "EI-T-file-world-readable": ("ei", lambda d: _ei_config(d, t_mode=WORLD_READABLE), "chmod 600"),
}


def assert_refused_untouched(run: CliRun, expected: str) -> None:
    """Exit code 1, one plain line that says what is wrong, no APDU to any card."""
    lines = run.stderr.strip().splitlines()
    assert run.returncode != 0, run.stdout
    assert len(lines) == 1 and lines[0].startswith("Error: "), run.stderr
    assert expected in lines[0], lines[0]
    assert not any(run.received.values()), f"APDUs sent: {run.received}"


@pytest.mark.parametrize("case", sorted(BAD_SETUPS))
def test_a_bad_setup_config_is_refused_before_any_card(
    bench: Bench, tmp_path: Path, case: str
) -> None:
    role, lines, expected = BAD_SETUPS[case]
    config = tmp_path / "setup.toml"
    config.write_text("\n".join(lines(tmp_path)) + "\n")
    reader = READERS[BLANK_AS if role == "as" else BLANK_EI]
    run = run_verbose_cli(["setup", role, "--reader", reader, "--config", str(config), "--yes"])
    assert_refused_untouched(run, expected)


BAD_JOBS = {
    "two-loads-into-one-slot": ('loads = ["03:01", "20:01"]', "two loads target EI slot 01"),
    "reference-not-hex": ('loads = ["3x:01"]', "not a reference in hex"),
    "reference-00": ('loads = ["00:01"]', "out of range"),
    "no-loads": ("loads = []", "non-empty list"),
    "unknown-field": ('loads = ["03:01"]\npin = "2468"', "unknown field"),
}


@pytest.mark.parametrize("case", sorted(BAD_JOBS))
def test_a_bad_job_file_is_refused_before_any_card(bench: Bench, tmp_path: Path, case: str) -> None:
    text, expected = BAD_JOBS[case]
    job = tmp_path / "job.toml"
    job.write_text(text + "\n")
    arguments = ["personalize", "--as-reader", AS_READER, "--ei-reader", EI_READERS[0]]
    run = run_verbose_cli([*arguments, "--job", str(job), "--pin-file", str(tmp_path / "none")])
    assert_refused_untouched(run, expected)


@pytest.mark.parametrize("mode", [GROUP_READABLE, WORLD_READABLE], ids=["group", "others"])
def test_a_pin_file_readable_by_others_is_refused_before_any_card(
    bench: Bench, tmp_path: Path, mode: int
) -> None:
    pin_file = tmp_path / _secret(tmp_path, "pin", PIN.decode(), mode)
    arguments = ["personalize", "--as-reader", AS_READER, "--ei-reader", EI_READERS[0]]
    run = run_verbose_cli([*arguments, "--load", LOADS[0], "--pin-file", str(pin_file)])
    assert_refused_untouched(run, "chmod 600")
