"""The command line: help texts, plain one-line errors, and the commands over fake readers."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import click
import keyload_station
import pytest
from click.testing import CliRunner
from fakes import OTHER_T16, PIN, T16, AppKey, FakeApplet, Slot, make_as, make_ei
from keyload_host import crypto
from keyload_host.cli import main
from keyload_host.protocol import SW, LifeCycle, Role, Usage, kcv_text
from keyload_host.secret_sources import KeyComponents

TA03 = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
SN1 = bytes.fromhex("4B4C000000000001")
SN2 = bytes.fromhex("4B4C000000000002")


def run(*args: str, input: str | None = None, env: dict | None = None):
    return CliRunner().invoke(main, list(args), input=input, env=env, catch_exceptions=False)


def all_commands(group: click.Group = main, path: tuple[str, ...] = ()):
    yield path, group
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from all_commands(command, (*path, name))
        else:
            yield (*path, name), command


COMMANDS = list(all_commands())


@pytest.mark.parametrize(
    ("path", "command"), COMMANDS, ids=[" ".join(p) or "main" for p, _ in COMMANDS]
)
def test_every_command_and_option_has_help(path: tuple[str, ...], command: click.Command) -> None:
    result = run(*path, "--help")
    assert result.exit_code == 0
    assert command.help and len(command.help) > 40
    assert not command.get_short_help_str(limit=60).endswith("..."), "first sentence too long"
    for param in command.params:
        if isinstance(param, click.Option) and param.name not in ("help", "version"):
            assert param.help, f"{param.name} of {' '.join(path)} has no help"


def test_main_help_lists_the_commands() -> None:
    output = run("--help").output
    for name in ("readers", "info", "setup", "personalize", "authenticate", "sim"):
        assert f"  {name}" in output


def test_no_option_takes_a_secret() -> None:
    for _path, command in COMMANDS:
        for param in command.params:
            assert not {"key", "pin", "transport-key"} & {o.lstrip("-") for o in param.opts}


# ------------------------------------------------------------------------------ errors


def test_a_missing_reader_is_one_line_and_exit_1(fake_readers) -> None:
    fake_readers({"reader A": None})
    result = run("info", "--reader", "reader B")
    assert result.exit_code == 1
    assert result.output == "Error: no reader matches 'reader B'; readers present: 'reader A'\n"


def test_pcscd_down_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from keyload_host.cli import options
    from keyload_host.transport import PcscUnavailableError

    def down() -> None:
        raise PcscUnavailableError("pcscd is not running: Service not available")

    monkeypatch.setattr(options, "Pcsc", down)
    result = run("readers")
    assert (result.exit_code, result.output) == (
        1,
        "Error: pcscd is not running: Service not available\n",
    )


def test_a_bad_load_is_a_usage_error() -> None:
    result = run("personalize", "--as-reader", "A", "--ei-reader", "B", "--load", "3-1")
    assert result.exit_code == 2
    assert "'3-1' is not REF1:REF2" in result.output


def test_personalize_needs_readers_and_loads() -> None:
    result = run("personalize", "--load", "03:01")
    assert result.exit_code == 2 and "give --as-reader" in result.output


# ------------------------------------------------------------------------------ cards


def station() -> dict[str, FakeApplet | None]:
    return {
        "AS reader": make_as(k03=AppKey(TA03, Usage.AUTHENTICATE, 1)),
        "EI reader 1": make_ei(SN1, s01=Slot(16, Usage.AUTHENTICATE)),
        "EI reader 2": make_ei(SN2, s01=Slot(16, Usage.AUTHENTICATE)),
        "empty reader": None,
    }


def test_readers(fake_readers) -> None:
    readers = station()
    readers["EI reader 2"] = FakeApplet(Role.EI, LifeCycle.SETUP, transport_key=None, pin=None)
    fake_readers(readers)
    lines = run("readers").output.splitlines()
    assert lines[0].split() == ["READER", "CARD", "APPLET", "STATE", "SN", "TRANSPORT", "KCV"]
    assert lines[1].split()[-5:] == ["yes", "AS", "OPERATIONAL", "-", kcv_text(crypto.kcv(T16))]
    assert lines[2].split()[-5:] == [
        "yes",
        "EI",
        "OPERATIONAL",
        SN1.hex().upper(),
        "cmac-aes:6F2F9B",
    ]
    assert lines[3].split()[-6:] == ["yes", "EI", "SETUP", "-", "not", "set"]
    assert lines[4].split()[-5:] == ["no", "-", "-", "-", "-"]


def test_info_json(fake_readers) -> None:
    fake_readers(station())
    document = json.loads(run("info", "--reader", "AS*", "--json").output)
    assert document["info"]["role"] == "AS"
    assert document["keys"] == [
        {
            "ref": 3,
            "loaded": True,
            "key_length": 16,
            "usage": "auth",
            "version": 1,
            "kcv": kcv_text(crypto.kcv(TA03)),
            "diversify": False,
            "exports": 0,
            "limit": "unlimited",
        }
    ]


def test_info_table(fake_readers) -> None:
    fake_readers(station())
    output = run("info", "--reader", "EI reader 1").output
    assert "serial: 4B4C000000000001" in output
    assert output.splitlines()[-1].split() == ["01", "empty", "16", "auth", "-", "yes", "-"]


def secret_file(path: Path, content: str) -> str:
    path.write_text(content)
    path.chmod(0o600)
    return path.name


def test_setup_as_and_lock(fake_readers, tmp_path: Path) -> None:
    blank = FakeApplet(Role.AS, LifeCycle.SETUP, transport_key=None, pin=None)
    fake_readers({"AS reader": blank})
    secret_file(tmp_path / "t.key", T16.hex())
    secret_file(tmp_path / "pin", "2468\n")
    secret_file(tmp_path / "k03.key", TA03.hex())
    config = tmp_path / "as.toml"
    config.write_text(
        'transport_key = { file = "t.key" }\npin = { file = "pin" }\n'
        '[[keys]]\nref = 0x03\nusage = "auth"\nversion = 1\nexport_limit = 100\n'
        'key = { file = "k03.key" }\n'
    )
    result = run("setup", "as", "--reader", "AS reader", "--config", str(config), "--yes")
    assert result.exit_code == 0, result.output
    assert "transport key KCV: cmac-aes:6F2F9B" in result.output
    assert kcv_text(crypto.kcv(TA03)) in result.output
    assert (
        T16.hex().upper() not in result.output.upper() and TA03.hex() not in result.output.lower()
    )
    assert blank.life_cycle == LifeCycle.OPERATIONAL
    assert (blank.transport_key, blank.pin, blank.keys[3].key, blank.keys[3].limit) == (
        T16,
        b"2468",
        TA03,
        100,
    )


def test_setup_ei_asks_before_lock(fake_readers, tmp_path: Path, monkeypatch) -> None:
    blank = FakeApplet(Role.EI, LifeCycle.SETUP, transport_key=None, pin=None)
    fake_readers({"EI reader": blank})
    config = tmp_path / "ei.toml"
    config.write_text(
        'transport_key = { env = "TEST_T" }\nserial = "4B4C000000000009"\nretry_limit = 7\n'
        '[[slots]]\nref = 1\nkey_length = 16\nusage = "auth"\n'
    )
    result = run(
        "setup",
        "ei",
        "--reader",
        "EI reader",
        "--config",
        str(config),
        input="n\n",
        env={"TEST_T": T16.hex()},
    )
    assert result.exit_code == 0, result.output
    assert "Not locked" in result.output
    assert blank.life_cycle == LifeCycle.SETUP
    assert (blank.serial, blank.try_limit, blank.slots[1].key_length) == (
        bytes.fromhex("4B4C000000000009"),
        7,
        16,
    )


def test_setup_refuses_a_locked_card(fake_readers, tmp_path: Path) -> None:
    fake_readers(station())
    config = tmp_path / "ei.toml"
    config.write_text(
        'transport_key = { prompt = true }\nserial = "4B4C000000000009"\n'
        '[[slots]]\nref = 1\nkey_length = 16\nusage = "auth"\n'
    )
    result = run("setup", "ei", "--reader", "EI reader 1", "--config", str(config))
    assert result.exit_code == 1
    assert "is OPERATIONAL: setup is only possible in SETUP" in result.output


PERSONALIZE = (
    "personalize",
    "--as-reader",
    "AS reader",
    "--ei-reader",
    "EI reader 1",
    "--ei-reader",
    "EI reader 2",
    "--load",
    "03:01",
)
"""``personalize`` of key 03 into slot 01 from the AS reader to EI readers 1 and 2."""


def personalize(*extra: str, input: str | None = None, env: dict | None = None):
    return run(*PERSONALIZE, *extra, input=input, env=env)


def test_personalize_asks_the_pin_once_hidden(fake_readers) -> None:
    readers = station()
    fake_readers(readers)
    result = personalize(input="1234\n")
    assert result.exit_code == 0, result.output
    assert result.output.count("AS operator PIN") == 1
    assert "1234" not in result.output
    summary = [line.split() for line in result.output.splitlines() if line.startswith("4B4C")]
    assert summary == [
        [sn.hex().upper(), "03", "01", "0001", kcv_text(crypto.kcv(TA03)), "loaded"]
        for sn in (SN1, SN2)
    ]
    assert "2 loaded, 0 skipped, 0 failed" in result.output
    assert readers["EI reader 1"].slots[1].key == TA03


def test_personalize_resets_the_as_when_it_closes_and_not_the_ei_cards(fake_readers) -> None:
    """The reset ends the AS's verified PIN; an EI holds no session worth a reset."""
    pcsc = fake_readers(station())
    result = personalize("--pin-env", "PIN", env={"PIN": "1234"})
    assert result.exit_code == 0, result.output
    assert pcsc.resets == {"AS reader": True, "EI reader 1": False, "EI reader 2": False}


def test_personalize_with_a_job_file_and_audit(fake_readers, tmp_path: Path) -> None:
    fake_readers(station())
    job = tmp_path / "job.toml"
    job.write_text('loads = ["03:01"]\nas_reader = "AS reader"\nei_readers = ["EI reader 1"]\n')
    audit = tmp_path / "audit.jsonl"
    result = run(
        "personalize",
        "--job",
        str(job),
        "--audit",
        str(audit),
        "--pin-env",
        "PIN",
        env={"PIN": PIN.decode()},
    )
    assert result.exit_code == 0, result.output
    events = [json.loads(line)["event"] for line in audit.read_text().splitlines()]
    assert events == ["log_start", "session_start", "key", "session_end"]
    assert PIN.decode() not in audit.read_text()


def test_personalize_exits_1_when_a_card_fails(fake_readers) -> None:
    readers = station()
    readers["EI reader 2"].import_answer = SW.SECURITY_STATUS_NOT_SATISFIED
    fake_readers(readers)
    result = personalize("--pin-env", "PIN", env={"PIN": "1234"})
    assert result.exit_code == 1
    assert "1 loaded, 0 skipped, 1 failed" in result.output
    assert "4B4C000000000002 03:01: " in result.output
    assert "check value (SAS) did not match" in result.output


def test_personalize_preflight_refusal_is_plain_lines(fake_readers) -> None:
    readers = station()
    readers["EI reader 2"].transport_key = OTHER_T16
    readers["EI reader 1"].slots = {}
    fake_readers(readers)
    result = personalize("--pin-env", "PIN", env={"PIN": "1234"})
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "Error: the EI 4B4C000000000001 in reader 'EI reader 1' has no slot 01 (slots: none)",
        "the EI 4B4C000000000002 in reader 'EI reader 2' belongs to another set: its transport key "
        f"KCV is {kcv_text(crypto.kcv(OTHER_T16))}, the AS has cmac-aes:6F2F9B",
    ]


def test_personalize_refuses_the_same_reader_twice(fake_readers) -> None:
    fake_readers(station())
    result = run(
        "personalize",
        "--as-reader",
        "AS reader",
        "--ei-reader",
        "AS*",
        "--load",
        "03:01",
        "--pin-env",
        "PIN",
        env={"PIN": "1234"},
    )
    assert result.exit_code == 2 and "given twice" in result.output


def test_authenticate(fake_readers) -> None:
    readers = station()
    readers["EI reader 1"].slots[1].key = TA03
    fake_readers(readers)
    result = run(
        "authenticate", "--reader", "EI reader 1", "--ref", "01", "--challenge", "00112233"
    )
    assert result.output.strip() == crypto.aes_cmac(TA03, bytes.fromhex("00112233")).hex().upper()


def test_authenticate_on_an_empty_slot(fake_readers) -> None:
    fake_readers(station())
    result = run("authenticate", "--reader", "EI reader 1", "--ref", "01", "--challenge", "00")
    assert result.exit_code == 1
    assert "(6A88): the slot is undefined or empty (slot 01)" in result.output


# ------------------------------------------------------------------------------ sim


class FakeStation(types.ModuleType):
    class StationError(Exception):
        pass

    PROTOCOL_SEPARATOR = ":"
    TIMING_SEPARATOR = "@"

    def __init__(self) -> None:
        super().__init__("keyload_station.supervisor")
        self.calls: list[tuple] = []
        self.StationError = FakeStation.StationError

    def _status(self):
        slot = types.SimpleNamespace(
            name="keyload station 0 00 00",
            port=35963,
            role="AS",
            state="connected",
            apdus=4,
            timing="",
        )
        return types.SimpleNamespace(running=True, readers=[slot], pcscd_started_by_us=True)

    def up(self, roles, *, control_port, base_port, timeout, timing=None):
        self.calls.append(("up", list(roles), control_port, base_port, timeout, timing))
        return self._status()

    def status(self):
        return self._status()

    def down(self):
        self.calls.append(("down",))

    def insert(self, reader, role):
        self.calls.append(("insert", reader, role))

    def remove(self, reader):
        raise self.StationError(f"no card in {reader}")

    def reinsert(self, reader):
        self.calls.append(("reinsert", reader))

    def swap(self, reader, role=None):
        self.calls.append(("swap", reader, role))

    def pull(self, reader, nth_apdu, when="before"):
        self.calls.append(("pull", reader, nth_apdu, when))


@pytest.fixture
def fake_station(monkeypatch: pytest.MonkeyPatch) -> FakeStation:
    station = FakeStation()
    monkeypatch.setitem(sys.modules, "keyload_station.supervisor", station)
    monkeypatch.setattr(keyload_station, "supervisor", station, raising=False)
    return station


def test_sim_commands_call_the_station(fake_station: FakeStation) -> None:
    output = run("sim", "up", "--as", "1", "--ei", "2").output
    assert "station running (pcscd started by the station)" in output
    assert "keyload station 0 00 00  35963  AS" in output
    run("sim", "insert", "R", "ei")
    run("sim", "swap", "R")
    run("sim", "pull", "R", "3", "--when", "after")
    run("sim", "reinsert", "R")
    run("sim", "down")
    assert fake_station.calls == [
        ("up", ["AS", "EI", "EI"], 35990, None, 60.0, None),
        ("insert", "R", "EI"),
        ("swap", "R", None),
        ("pull", "R", 3, "after"),
        ("reinsert", "R"),
        ("down",),
    ]


def test_sim_up_gives_each_role_its_timing_profile(fake_station: FakeStation) -> None:
    run("sim", "up", "--as", "1", "--ei", "2", "--t0", "--ei-timing", "jcop3", "--timing", "jcop4")
    assert fake_station.calls == [
        ("up", ["AS:T0", "EI:T0@jcop3", "EI:T0@jcop3"], 35990, None, 60.0, "jcop4")
    ]


def test_sim_errors_are_one_line(fake_station: FakeStation) -> None:
    result = run("sim", "remove", "R")
    assert (result.exit_code, result.output) == (1, "Error: no card in R\n")


@pytest.mark.parametrize(
    ("command", "loader"),
    [("as", "load_as_setup"), ("ei", "load_ei_setup")],
)
def test_the_config_examples_in_the_help_are_valid(
    tmp_path: Path, command: str, loader: str
) -> None:
    from keyload_host import config

    help_text = main.commands["setup"].commands[command].help
    example = help_text.split("\b\n", 1)[1]
    path = tmp_path / "example.toml"
    path.write_text("\n".join(line.strip() for line in example.splitlines()))
    setup = getattr(config, loader)(path)
    assert isinstance(setup.transport_key, KeyComponents)  # the key ceremony's form is shown
