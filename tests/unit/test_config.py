"""Setup configs and job files: what is accepted, and one clear line per kind of error."""

from __future__ import annotations

from pathlib import Path

import pytest
from keyload_host.config import (
    ConfigError,
    Load,
    load_as_setup,
    load_ei_setup,
    load_job,
    parse_load,
)
from keyload_host.protocol import EXPORT_LIMIT_UNLIMITED, Usage
from keyload_host.secret_sources import KeyComponent, KeyComponents, SecretSource

AS_CONFIG = """
transport_key = { file = "t.key" }
pin = { prompt = true }

[[keys]]
ref = 0x03
usage = "auth"
version = 1
export_limit = "unlimited"
key = { env = "KEYLOAD_K03" }

[[keys]]
ref = 0x10
usage = "mac"
version = 0x0102
diversify = true
export_limit = 500
key = { file = "keys/k10.key" }
"""

EI_CONFIG = """
transport_key = { env = "KEYLOAD_T" }
serial = "4B4C 0000 0000 0001"
retry_limit = 5

[[slots]]
ref = 0x01
key_length = 16
usage = "auth"

[[slots]]
ref = 0x05
key_length = 24
usage = "mac"
accepts_import = false
"""


def write(tmp_path: Path, text: str, name: str = "setup.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def problems(loader, tmp_path: Path, text: str) -> list[str]:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        loader(path)
    assert str(caught.value).splitlines() == caught.value.problems
    assert all(line.startswith(f"{path}: ") for line in caught.value.problems)
    return caught.value.problems


def test_a_valid_as_config(tmp_path: Path) -> None:
    setup = load_as_setup(write(tmp_path, AS_CONFIG))
    assert setup.transport_key == SecretSource(file=tmp_path / "t.key")
    assert setup.pin == SecretSource(prompt=True)
    first, second = setup.keys
    assert (first.ref, first.usage, first.version, first.diversify) == (
        3,
        Usage.AUTHENTICATE,
        1,
        False,
    )
    assert first.export_limit == EXPORT_LIMIT_UNLIMITED
    assert first.key == SecretSource(env="KEYLOAD_K03")
    assert (second.ref, second.usage, second.version, second.diversify) == (
        0x10,
        Usage.MAC,
        0x102,
        True,
    )
    assert second.export_limit == 500
    assert second.key == SecretSource(file=tmp_path / "keys" / "k10.key")


def test_a_valid_ei_config(tmp_path: Path) -> None:
    setup = load_ei_setup(write(tmp_path, EI_CONFIG))
    assert setup.serial == bytes.fromhex("4B4C000000000001")
    assert setup.retry_limit == 5
    assert [(s.ref, s.key_length, s.usage, s.accepts_import) for s in setup.slots] == [
        (1, 16, Usage.AUTHENTICATE, True),
        (5, 24, Usage.MAC, False),
    ]


def test_missing_fields(tmp_path: Path) -> None:
    found = problems(load_as_setup, tmp_path, '[[keys]]\nref = 1\nusage = "auth"\n')
    assert [line.split(": ")[1] for line in found] == [
        "transport_key",
        "pin",
        "keys[0].version",
        "keys[0].export_limit",
        "keys[0].key",
    ]
    assert all(line.endswith(": missing") for line in found)


def test_a_literal_key_is_refused_with_the_reason(tmp_path: Path) -> None:
    text = AS_CONFIG.replace('{ file = "t.key" }', '"404142434445464748494A4B4C4D4E4F"')
    (line,) = problems(load_as_setup, tmp_path, text)
    assert "transport_key: a secret must not be written in a config file" in line
    assert '{ file = "name.key" }' in line
    assert "404142434445464748494A4B4C4D4E4F" not in line


def test_a_literal_pin_is_refused(tmp_path: Path) -> None:
    (line,) = problems(load_as_setup, tmp_path, AS_CONFIG.replace("{ prompt = true }", "1234"))
    assert "pin: a secret must not be written" in line and "1234" not in line


def test_a_malformed_secret_source(tmp_path: Path) -> None:
    text = AS_CONFIG.replace('{ file = "t.key" }', '{ file = "t.key", env = "X" }')
    (line,) = problems(load_as_setup, tmp_path, text)
    assert "transport_key: must be one of" in line


COMPONENTS_CONFIG = """
serial = "4B4C000000000001"

[transport_key]
kcv = "cmac-aes:1a2b3c"
components = [
  { custodian = "A. Smith", prompt = true, kcv = "cmac-aes:4D5E6F" },
  { custodian = "B. Jones", file = "t-b.key", kcv = "708192" },
  { custodian = "C. Brown", env = "KEYLOAD_T_C", kcv = "cmac-aes:A3B4C5" },
]

[[slots]]
ref = 0x01
key_length = 16
usage = "auth"
"""


def test_a_key_as_components(tmp_path: Path) -> None:
    """Each component names its custodian, its source and its KCV; the bare hex KCV of older
    files is cmac-aes; the key's own KCV is required too."""
    setup = load_ei_setup(write(tmp_path, COMPONENTS_CONFIG))
    assert setup.transport_key == KeyComponents(
        (
            KeyComponent(SecretSource(prompt=True), "A. Smith", bytes.fromhex("4D5E6F")),
            KeyComponent(SecretSource(file=tmp_path / "t-b.key"), "B. Jones", b"\x70\x81\x92"),
            KeyComponent(SecretSource(env="KEYLOAD_T_C"), "C. Brown", bytes.fromhex("A3B4C5")),
        ),
        bytes.fromhex("1A2B3C"),
    )


def test_application_keys_and_the_as_transport_key_as_components(tmp_path: Path) -> None:
    components = (
        '{ components = [ { custodian = "A", prompt = true, kcv = "111111" }, '
        '{ custodian = "B", prompt = true, kcv = "222222" } ], kcv = "333333" }'
    )
    text = AS_CONFIG.replace('{ file = "t.key" }', components).replace(
        '{ env = "KEYLOAD_K03" }', components
    )
    setup = load_as_setup(write(tmp_path, text))
    assert isinstance(setup.transport_key, KeyComponents)
    assert setup.keys[0].key == setup.transport_key
    assert setup.keys[1].key == SecretSource(file=tmp_path / "keys" / "k10.key")


def test_a_pin_is_never_components(tmp_path: Path) -> None:
    text = AS_CONFIG.replace(
        "pin = { prompt = true }",
        'pin = { components = [ { custodian = "A", prompt = true, kcv = "111111" }, '
        '{ custodian = "B", prompt = true, kcv = "222222" } ], kcv = "333333" }',
    )
    (line,) = problems(load_as_setup, tmp_path, text)
    assert "pin: must be one of { file = ... }, { env = ... }, { prompt = true }" in line


COMPONENT_ERRORS = [
    # (id, the line changed, what it becomes, the error line's message)
    ("one component", '  { custodian = "B. Jones"', '  # { custodian = "B. Jones"', None),
    ("four components", '  { custodian = "C. Brown"',
     '  { custodian = "D", prompt = true, kcv = "010203" },\n  { custodian = "C. Brown"',
     "transport_key.components: a key is entered as 2 or 3 components, found 4"),
    ("no custodian", 'custodian = "B. Jones", ', "",
     "transport_key.components[1].custodian: missing"),
    ("blank custodian", 'custodian = "B. Jones"', 'custodian = "  "',
     "transport_key.components[1].custodian: must name the custodian"),
    ("no component kcv", ', kcv = "708192"', "", "transport_key.components[1].kcv: missing"),
    ("no key kcv", 'kcv = "cmac-aes:1a2b3c"\n', "", "transport_key.kcv: missing"),
    ("kcv of another method", '"cmac-aes:1a2b3c"', '"aes-ecb:1a2b3c"',
     'transport_key.kcv: must be a check value such as "cmac-aes:1A2B3C"'),
    ("short kcv", '"708192"', '"7081"',
     "transport_key.components[1].kcv: must be a check value"),
    ("kcv not text", '"708192"', "708192",
     "transport_key.components[1].kcv: must be a check value"),
    ("two sources", 'file = "t-b.key"', 'file = "t-b.key", prompt = true',
     "transport_key.components[1]: must be one of"),
    ("no source", 'file = "t-b.key", ', "", "transport_key.components[1]: must be one of"),
    ("a value written in", 'file = "t-b.key"',
     'file = "t-b.key", value = "404142434445464748494A4B4C4D4E4F"',
     "transport_key.components[1].value: unknown field"),
    ("unknown key field", 'kcv = "cmac-aes:1a2b3c"', 'kcv = "cmac-aes:1a2b3c"\nsplit = "xor"',
     "transport_key.split: unknown field"),
    ("same custodian", 'custodian = "B. Jones"', 'custodian = "a. smith"',
     "transport_key.components: each component must have its own custodian"),
    ("same kcv", '"708192"', '"4D5E6F"',
     "transport_key.components: two components have the same KCV: they are the same value"),
    ("the key's kcv", '"708192"', '"1A2B3C"',
     "transport_key.components: a component has the KCV of the whole key"),
    ("same variable", 'file = "t-b.key"', 'env = "KEYLOAD_T_C"',
     "transport_key.components: two components are read from the same file or variable"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [pytest.param(*change, id=name) for name, *change in COMPONENT_ERRORS],
)
def test_component_errors(tmp_path: Path, old: str, new: str, message: str | None) -> None:
    """One line per problem; split knowledge needs two custodians at least, each with their own
    value (two equal components cancel out; a component with the key's KCV means the others
    XOR to zero), and a KCV for every component and for the key."""
    assert old in COMPONENTS_CONFIG
    text = COMPONENTS_CONFIG.replace(old, new, 1)
    if message is None:  # one component: drop the third too
        text = text.replace('  { custodian = "C. Brown"', '  # { custodian = "C. Brown"')
        message = "transport_key.components: a key is entered as 2 or 3 components, found 1"
    (line,) = problems(load_ei_setup, tmp_path, text)
    assert message in line
    assert "404142434445464748494A4B4C4D4E4F" not in line


CONFIGS = {"AS": (load_as_setup, AS_CONFIG), "EI": (load_ei_setup, EI_CONFIG)}
CONFIG_ERRORS = [
    # (config, id, the line changed, what it becomes, the error line's message)
    ("EI", "serial length", 'serial = "4B4C 0000 0000 0001"', 'serial = "4B4C0000"',
     "serial: must be 8 to 16 bytes, found 4"),
    ("EI", "serial not hex", 'serial = "4B4C 0000 0000 0001"', 'serial = "4B4C00000000000X"',
     "serial: must be a string of hex"),
    ("EI", "key length", "key_length = 24", "key_length = 20",
     "slots[1].key_length: must be 16, 24 or 32"),
    ("EI", "retry limit range", "retry_limit = 5", "retry_limit = 16",
     "retry_limit: 16 (0x10) is out of range 0x1..0xF"),
    ("EI", "ref range", "ref = 0x05", "ref = 0x80",
     "slots[1].ref: 128 (0x80) is out of range 0x1..0x7F"),
    ("EI", "reserved ref 0", "ref = 0x05", "ref = 0", "slots[1].ref: 0 (0x0) is out of range"),
    ("EI", "duplicate ref", "ref = 0x05", "ref = 0x01",
     "slots[1].ref: reference 0x01 is used twice"),
    ("EI", "usage", 'usage = "mac"', 'usage = "sign"',
     "slots[1].usage: must be one of auth, mac, enc"),
    ("EI", "boolean", "accepts_import = false", 'accepts_import = "no"',
     "slots[1].accepts_import: must be true or false"),
    ("EI", "unknown field", "retry_limit = 5", "retry_limit = 5\ncolour = 1",
     "colour: unknown field"),
    ("AS", "version 0", "version = 1", "version = 0",
     "keys[0].version: 0 (0x0) is out of range 0x1..0xFFFF"),
    ("AS", "version too big", "version = 1", "version = 0x10000",
     "keys[0].version: 65536 (0x10000) is out of range"),
    ("AS", "export limit", "export_limit = 500", "export_limit = 65535",
     'keys[1].export_limit: must be "unlimited" or'),
    ("AS", "negative limit", "export_limit = 500", "export_limit = -1",
     'keys[1].export_limit: must be "unlimited" or'),
    ("AS", "duplicate ref", "ref = 0x10", "ref = 0x03",
     "keys[1].ref: reference 0x03 is used twice"),
    ("AS", "type", "version = 1", 'version = "1"',
     "keys[0].version: must be a whole number, found str '1'"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("config", "old", "new", "message"),
    [
        pytest.param(config, *change, id=f"{config} {name}")
        for config, name, *change in CONFIG_ERRORS
    ],
)
def test_config_errors(tmp_path: Path, config: str, old: str, new: str, message: str) -> None:
    loader, text = CONFIGS[config]
    assert old in text
    (line,) = problems(loader, tmp_path, text.replace(old, new, 1))
    assert message in line


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = EI_CONFIG.replace("retry_limit = 5", "retry_limit = 0").replace(
        'usage = "mac"', "usage = 2"
    )
    assert len(problems(load_ei_setup, tmp_path, text)) == 2


def test_at_least_one_and_at_most_sixteen_entries(tmp_path: Path) -> None:
    (line,) = problems(load_ei_setup, tmp_path, EI_CONFIG.split("[[slots]]")[0])
    assert "slots: at least one [[slots]] entry is needed" in line
    slots = "".join(
        f'[[slots]]\nref = {ref}\nkey_length = 16\nusage = "auth"\n' for ref in range(1, 18)
    )
    (line,) = problems(load_ei_setup, tmp_path, EI_CONFIG.split("[[slots]]")[0] + slots)
    assert "17 entries, a card holds at most 16" in line


def test_not_toml(tmp_path: Path) -> None:
    (line,) = problems(load_ei_setup, tmp_path, "serial = \n")
    assert "not valid TOML" in line


def test_an_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_ei_setup(tmp_path / "missing.toml")


@pytest.mark.parametrize(
    ("text", "load"),
    [("03:01", Load(3, 1)), ("0x10:0x05", Load(0x10, 5)), ("7f:7F", Load(0x7F, 0x7F))],
)
def test_parse_load(text: str, load: Load) -> None:
    assert parse_load(text) == load
    assert str(load) == f"{load.ref1:02X}:{load.ref2:02X}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0301", "is not REF1:REF2"),
        ("03:", "not a reference in hex"),
        ("03:GG", "not a reference in hex"),
        ("00:01", "out of range"),
        ("03:80", "out of range"),
        ("103:01", "not a reference in hex"),
    ],
)
def test_parse_load_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_load(text)


def test_a_job_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'loads = ["03:01", "10:05"]\nas_reader = "A"\nei_readers = ["B", "C"]\n',
        "job.toml",
    )
    job = load_job(path)
    assert job.loads == (Load(3, 1), Load(0x10, 5))
    assert (job.as_reader, job.ei_readers) == ("A", ("B", "C"))


def test_a_job_file_with_errors(tmp_path: Path) -> None:
    found = problems(load_job, tmp_path, 'loads = ["03:01", "04:01", "zz"]\nei_readers = "B"\n')
    assert any("loads[2]: 'zz' is not REF1:REF2" in line for line in found)
    assert any("loads: two loads target EI slot 01" in line for line in found)
    assert any("ei_readers: must be a list of reader names" in line for line in found)
