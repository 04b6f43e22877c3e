"""The manifest of expected units and the serial ranges of enrolment, as an operator writes them:
CSV or TOML, every problem at once, serials as the cards spell them."""

from __future__ import annotations

from pathlib import Path

import pytest
from keyload_host.config import ConfigError, load_ei_template, load_job
from keyload_host.enrolment import SerialPool
from keyload_host.manifest import load_manifest, parse_serial


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_a_csv_manifest_names_its_serial_column(tmp_path: Path) -> None:
    path = write(
        tmp_path / "units.csv",
        "terminal,Serial,site\nT1,4b4c000000000002,Lyon\n\n,0x4B4C000000000001 ,Metz\n",
    )
    manifest = load_manifest(path)
    assert manifest.serials == ("4B4C000000000002", "4B4C000000000001")
    assert "4B4C000000000001" in manifest
    assert "4B4C000000000003" not in manifest
    assert "" not in manifest


def test_a_toml_manifest_lists_serials(tmp_path: Path) -> None:
    path = write(tmp_path / "units.toml", 'serials = ["4B4C000000000001", "4b4c000000000002"]\n')
    assert load_manifest(path).serials == ("4B4C000000000001", "4B4C000000000002")


@pytest.mark.parametrize(
    ("name", "text", "problems"),
    [
        (
            "units.csv",
            "serial\n4B4C000000000001\nxyz\n4B4C\n4b4c000000000001\n",
            [
                "line 3: 'xyz' is not a serial in hex",
                "line 4: '4B4C' is 2 bytes, a serial is 8 to 16",
                "line 5: serial 4B4C000000000001 is listed twice (line 2)",
            ],
        ),
        ("units.csv", "sn,site\n4B4C0001,Lyon\n", ["line 1: no 'serial' column in the header"]),
        ("units.csv", "serial\n\n", ["lists no serial"]),
        ("units.csv", "", ["empty: a header with a 'serial' column is needed"]),
        (
            "units.toml",
            'serial = ["4B4C0001"]\n',
            ["serial: unknown field (expected: serials)", "serials: must be a list"],
        ),
        (
            "units.toml",
            "serials = [1, '4B4C000000000001']\n",
            ["serials[0]: must be a string of hex"],
        ),
        ("units.toml", "serials = [", ["not valid TOML"]),
    ],
)
def test_a_bad_manifest_is_refused_with_every_problem(
    tmp_path: Path, name: str, text: str, problems: list[str]
) -> None:
    path = write(tmp_path / name, text)
    with pytest.raises(ConfigError) as caught:
        load_manifest(path)
    assert len(caught.value.problems) == len(problems)
    for line, problem in zip(caught.value.problems, problems, strict=True):
        assert line.startswith(f"{path}: ")
        assert problem in line


def test_serials_are_upper_case_hex_of_a_card_length() -> None:
    assert parse_serial(" 4b 4c 00 00 00 00 00 01 ") == "4B4C000000000001"
    with pytest.raises(ValueError, match="is 33 bytes"):
        parse_serial("00" * 33)


def test_a_serial_range_gives_every_serial_in_order() -> None:
    pool = SerialPool.of_range("4B4C0000000000FE-4B4C000000000101")
    assert list(pool.candidates()) == [
        "4B4C0000000000FE",
        "4B4C0000000000FF",
        "4B4C000000000100",
        "4B4C000000000101",
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("4B4C0002", "is not FIRST-LAST"),
        ("4B4C000000000002-4B4C000000000001", "ends before it begins"),
        ("4B4C000000000001-4B4C00000000000002", "same length"),
        ("4B4C000000000001-zz", "not a serial in hex"),
    ],
)
def test_a_bad_serial_range_is_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SerialPool.of_range(text)


def test_an_ei_template_is_a_setup_config_without_serial(tmp_path: Path) -> None:
    path = write(
        tmp_path / "ei-template.toml",
        'transport_key = { file = "t.key" }\nretry_limit = 5\n'
        '[[slots]]\nref = 0x01\nkey_length = 16\nusage = "auth"\n',
    )
    template = load_ei_template(path)
    assert (template.serial, template.retry_limit, len(template.slots)) == (b"", 5, 1)
    assert template.transport_key.file == tmp_path / "t.key"
    write(path, 'transport_key = { file = "t.key" }\nserial = "4B4C0001"\n')
    with pytest.raises(ConfigError) as caught:
        load_ei_template(path)
    assert any("serial: unknown field" in problem for problem in caught.value.problems)
    assert any("at least one [[slots]]" in problem for problem in caught.value.problems)


def test_a_job_file_names_the_manifest_and_the_template(tmp_path: Path) -> None:
    path = write(
        tmp_path / "job.toml",
        'loads = ["03:01"]\nexpect = "units.csv"\nei_template = "ei.toml"\n'
        'serial_range = "4B4C0001-4B4C0009"\n',
    )
    job = load_job(path)
    assert (job.expect, job.ei_template) == (tmp_path / "units.csv", tmp_path / "ei.toml")
    assert job.serial_range == "4B4C0001-4B4C0009"
    write(path, 'loads = ["03:01"]\nexpect = 3\n')
    with pytest.raises(ConfigError, match="expect: must be a file name"):
        load_job(path)
