"""`keyload-host doctor` over the fake PC/SC layer: each situation a new station meets, the exit
code, the one-line fix, and a next command that really runs."""

from __future__ import annotations

import shlex
from dataclasses import replace

import pytest
from click.testing import CliRunner, Result
from conftest import FakePcsc
from fakes import OTHER_T16, PIN, AppKey, FakeApplet, Slot, make_as, make_ei
from keyload_host import cli, crypto
from keyload_host.cli import options
from keyload_host.protocol import AID_AS, AID_EI, LifeCycle, Role, Usage, kcv_text
from keyload_host.transport import PcscUnavailableError, ReaderBusyError

AS_READER = "Identiv uTrust 3700 F [CCID Interface] (55041514307422) 00 00"
EI_READER_1 = "Identiv uTrust 3700 F [CCID Interface] (55041514307433) 00 00"
EI_READER_2 = "ACS ACR1252 1S CL Reader [ACR1252 Dual Reader SAM] 00 01"
SN1 = bytes.fromhex("4B4C000000000001")
SN2 = bytes.fromhex("4B4C000000000002")
TA03 = bytes(range(16))
TA10 = bytes(range(0x40, 0x50))
PIN_ENV = "KEYLOAD_DOCTOR_TEST_PIN"


def doctor() -> Result:
    return CliRunner().invoke(cli.main, ["doctor"])


def operational_as(**changes: object) -> FakeApplet:
    return replace(
        make_as(
            k03=AppKey(TA03, Usage.AUTHENTICATE, 1),
            k10=AppKey(TA10, Usage.MAC, 2, diversify=True),
        ),
        **changes,
    )


def operational_ei(serial: bytes, **changes: object) -> FakeApplet:
    return replace(
        make_ei(serial, s01=Slot(16, Usage.AUTHENTICATE), s05=Slot(16, Usage.MAC)), **changes
    )


def ready_station() -> dict[str, FakeApplet | None]:
    return {AS_READER: operational_as(), EI_READER_1: operational_ei(SN1), EI_READER_2: None}


def problem_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("problem: ")]


def fix_lines(output: str) -> list[str]:
    return [line.strip() for line in output.splitlines() if line.startswith("  fix: ")]


def assert_not_ready(result: Result, problem: str, fix: str) -> None:
    assert result.exit_code == 1, result.output
    assert any(problem in line for line in problem_lines(result.output)), result.output
    assert any(fix in line for line in fix_lines(result.output)), result.output
    assert len(fix_lines(result.output)) == len(problem_lines(result.output)), "one fix each"


def next_command(output: str) -> list[str]:
    """The command after "ready; next:", split as the shell would."""
    (line,) = [line for line in output.splitlines() if line.startswith("ready; next: ")]
    return shlex.split(line.removeprefix("ready; next: "))


# ------------------------------------------------------------------------------ pcscd and readers


def test_pcscd_down(monkeypatch: pytest.MonkeyPatch) -> None:
    def down() -> None:
        raise PcscUnavailableError("pcscd is not running: Service not available (0x8010001D)")

    monkeypatch.setattr(options, "Pcsc", down)
    result = doctor()
    assert result.output.startswith("pcscd: does not answer\n")
    assert_not_ready(result, "pcscd is not running", "systemctl start pcscd")


def test_no_reader(fake_readers) -> None:
    fake_readers({})
    assert_not_ready(doctor(), "no smart card reader is attached", "libccid")


def test_readers_without_cards(fake_readers) -> None:
    fake_readers({AS_READER: None, EI_READER_1: None})
    result = doctor()
    assert_not_ready(result, "no card in any reader", "insert the AS (master card)")
    assert shlex.quote(AS_READER) in result.output


def test_a_card_without_keyload_applet(fake_readers) -> None:
    class ForeignCard(FakeApplet):
        aid = bytes.fromhex("A000000003000000")

    fake_readers({AS_READER: ForeignCard(Role.AS)})
    result = doctor()
    assert_not_ready(result, "holds no keyload applet", "--install build/cap/keyload.cap --applet")
    (fix,) = fix_lines(result.output)
    assert AID_AS.hex().upper() in fix and AID_EI.hex().upper() in fix
    assert f"gp -r {shlex.quote(AS_READER)}" in fix


def test_a_reader_held_by_another_program(fake_readers, monkeypatch: pytest.MonkeyPatch) -> None:
    pcsc: FakePcsc = fake_readers(ready_station())
    connect = pcsc.connect

    def busy_ei(pattern: str):
        if pattern == EI_READER_1:
            raise ReaderBusyError(
                f"the card in reader '{EI_READER_1}' is in use by another program"
            )
        return connect(pattern)

    monkeypatch.setattr(pcsc, "connect", busy_ei)
    assert_not_ready(doctor(), "is in use by another program", "close the program holding it")


# ------------------------------------------------------------------------------ cards


def test_blank_cards_are_set_up_next(fake_readers) -> None:
    fake_readers(
        {
            AS_READER: FakeApplet(Role.AS, LifeCycle.SETUP, transport_key=None, pin=None),
            EI_READER_1: FakeApplet(Role.EI, LifeCycle.SETUP, transport_key=None, pin=None),
        }
    )
    result = doctor()
    assert result.exit_code == 0, result.output
    assert next_command(result.output)[:6] == [
        "keyload-host",
        "setup",
        "as",
        "--reader",
        AS_READER,
        "--config",
    ]
    assert "SETUP" in result.output and "not set" in result.output


def test_a_ready_station_gets_a_personalize_command_that_runs(
    fake_readers, monkeypatch: pytest.MonkeyPatch
) -> None:
    readers = ready_station()
    readers[EI_READER_2] = operational_ei(SN2)
    fake_readers(readers)
    result = doctor()
    assert result.exit_code == 0, result.output
    command = next_command(result.output)
    assert command == [
        "keyload-host",
        "personalize",
        "--as-reader",
        AS_READER,
        "--ei-reader",
        EI_READER_1,
        "--ei-reader",
        EI_READER_2,
        "--load",
        "03:01",
        "--load",
        "10:05",
    ]
    monkeypatch.setenv(PIN_ENV, PIN.decode())
    ran = CliRunner().invoke(cli.main, [*command[1:], "--pin-env", PIN_ENV])
    assert ran.exit_code == 0, ran.output
    ei = readers[EI_READER_2]
    assert ei.slots[5].key == crypto.diversify(TA10, SN2)

    again = doctor()
    assert again.exit_code == 0
    assert "hold every key already" in again.output


def test_the_table_shows_applet_state_serial_kcv_tries_and_protocol(fake_readers) -> None:
    pcsc: FakePcsc = fake_readers(ready_station())
    pcsc.transports[EI_READER_1].protocol = "T=0"
    lines = doctor().output.splitlines()
    assert lines[1].split() == [
        "READER",
        "CARD",
        "PROTOCOL",
        "APPLET",
        "STATE",
        "SN",
        "TRANSPORT",
        "KCV",
        "TRIES",
    ]
    kcv = kcv_text(crypto.kcv(operational_as().transport_key))
    assert lines[2].split()[-7:] == ["yes", "T=1", "AS", "OPERATIONAL", "-", kcv, "3/3"]
    assert lines[3].split()[-7:] == [
        "yes",
        "T=0",
        "EI",
        "OPERATIONAL",
        SN1.hex().upper(),
        kcv,
        "10/10",
    ]
    assert lines[4].split()[-7:] == ["no", "-", "-", "-", "-", "-", "-"]


def test_an_ei_of_another_set(fake_readers) -> None:
    readers = ready_station()
    readers[EI_READER_2] = operational_ei(SN2, transport_key=OTHER_T16)
    fake_readers(readers)
    result = doctor()
    assert_not_ready(result, "belongs to another set", "use an EI of this set")
    (problem,) = problem_lines(result.output)
    assert crypto.kcv(OTHER_T16).hex().upper() in problem and SN2.hex().upper() in problem


def test_a_blocked_ei(fake_readers) -> None:
    readers = ready_station()
    readers[EI_READER_2] = operational_ei(SN2, life_cycle=LifeCycle.BLOCKED, tries=0)
    fake_readers(readers)
    result = doctor()
    assert_not_ready(result, f"the EI {SN2.hex().upper()} in", "set this card aside")
    assert "BLOCKED for good" in result.output


def test_an_as_with_its_pin_blocked(fake_readers) -> None:
    readers = ready_station()
    readers[AS_READER] = operational_as(tries=0)
    fake_readers(readers)
    result = doctor()
    assert_not_ready(result, "operator PIN", "set up a new AS")
    assert len(problem_lines(result.output)) == 1, "nothing else is blamed on a blocked PIN"


def test_pin_tries_spent_are_a_note_not_a_problem(fake_readers) -> None:
    readers = ready_station()
    readers[AS_READER] = operational_as(tries=2)
    fake_readers(readers)
    result = doctor()
    assert result.exit_code == 0, result.output
    assert "note: the AS in" in result.output and "2 of 3 PIN tries left" in result.output


def test_an_export_limit_reached(fake_readers) -> None:
    readers = ready_station()
    spent = AppKey(TA03, Usage.AUTHENTICATE, 1, limit=1, count=1)
    readers[AS_READER] = operational_as(keys={3: spent})
    fake_readers(readers)
    assert_not_ready(doctor(), "AS key 03 may be exported 0 more time(s)", "export limit")


def test_keys_that_fit_no_slot(fake_readers) -> None:
    readers = ready_station()
    readers[EI_READER_1] = make_ei(SN1, s01=Slot(32, Usage.ENCRYPT))
    fake_readers(readers)
    assert_not_ready(doctor(), "no key of the AS fits a slot", "keyload-host info")


def test_only_eis_ask_for_the_as(fake_readers) -> None:
    fake_readers({EI_READER_1: operational_ei(SN1), AS_READER: None})
    result = doctor()
    assert result.exit_code == 0
    assert "ready; next: insert the AS (master card)" in result.output


def test_a_card_still_in_setup_is_left_out_of_the_job_with_a_note(fake_readers) -> None:
    readers = ready_station()
    readers[EI_READER_2] = FakeApplet(Role.EI, LifeCycle.SETUP, transport_key=None, pin=None)
    fake_readers(readers)
    result = doctor()
    assert result.exit_code == 0, result.output
    command = next_command(result.output)
    assert command[:2] == ["keyload-host", "personalize"] and EI_READER_2 not in command
    (note,) = [line for line in result.output.splitlines() if line.startswith("note: ")]
    assert "is in SETUP" in note
    assert f"keyload-host setup ei --reader {shlex.quote(EI_READER_2)}" in note


def test_an_as_alone_asks_for_eis(fake_readers) -> None:
    fake_readers({AS_READER: operational_as(), EI_READER_1: None})
    result = doctor()
    assert result.exit_code == 0
    assert "ready; next: insert EI cards of this set" in result.output
