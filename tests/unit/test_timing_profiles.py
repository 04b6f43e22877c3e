"""The simulated station's card timing profiles: the shipped ones read and name their sources, a
profile becomes the station's --timing argument, a bad profile is refused with its place."""

from __future__ import annotations

from pathlib import Path

import pytest
from keyload_station import timing
from keyload_station.timing import CardTiming, TimingError

PROFILES = Path(timing.__file__).parent / "profiles"


def test_jcop4_jcop3_and_a_reader_without_pps_are_shipped() -> None:
    assert timing.builtin_names() == ["jcop3", "jcop4", "jcop4-nopps"]


@pytest.mark.parametrize("name", ["jcop3", "jcop4", "jcop4-nopps"])
def test_every_shipped_profile_says_it_is_a_model_and_names_its_sources(name: str) -> None:
    text = (PROFILES / f"{name}.toml").read_text()
    assert "A MODEL, NOT A MEASUREMENT" in text
    assert "JCAlgTest" in text
    profile = timing.load(name)
    assert profile.name == name and "model, not a measurement" in profile.description
    # what a personalization spends its time on has a cost of its own in every profile
    assert {0xA4, 0x84, 0x4A, 0x4C} <= profile.commands_ms.keys()


def test_jcop4_makes_export_and_import_key_cost_what_the_published_figures_say() -> None:
    jcop4 = timing.load("jcop4")

    def round_trip_ms(ins: int, exchanged_bytes: int) -> float:
        return jcop4.apdu_ms + jcop4.byte_us * exchanged_bytes / 1000 + jcop4.commands_ms[ins]

    assert 12 <= jcop4.apdu_ms + jcop4.byte_us * 7 / 1000 <= 16  # a trivial APDU
    assert 40 <= round_trip_ms(0x4A, 100) <= 100  # EXPORT KEY, ~60 ms
    assert 50 <= round_trip_ms(0x4C, 71) <= 120  # IMPORT KEY, ~70 ms


def test_jcop3_is_two_to_two_and_a_half_times_slower_per_card_operation() -> None:
    jcop3, jcop4 = timing.load("jcop3"), timing.load("jcop4")
    for ins, ms in jcop4.commands_ms.items():
        assert 2 * ms <= jcop3.commands_ms[ins] <= 2.5 * ms


def test_profile_becomes_the_stations_timing_argument() -> None:
    profile = CardTiming("mine", "", 40.0, 13.0, 100.0, {0x4A: 37.5, 0x84: 1.0})
    assert profile.station_argument() == ("mine=power_up_ms:40,apdu_ms:13,byte_us:100,4A:37.5,84:1")


def test_own_profile_is_read_from_a_toml_file(tmp_path: Path) -> None:
    path = tmp_path / "mycard.toml"
    path.write_text(
        'name = "mycard"\npower_up_ms = 50\napdu_ms = 20\nbyte_us = 90\n[commands_ms]\n4A = 45\n'
    )
    assert timing.load(path) == CardTiming("mycard", "", 50.0, 20.0, 90.0, {0x4A: 45.0})


@pytest.mark.parametrize(
    "text",
    [
        "name = 'x'\napdu_ms = 1\nbyte_us = 1\n",  # power_up_ms missing
        "name = 'x'\npower_up_ms = -1\napdu_ms = 1\nbyte_us = 1\n",
        "name = 'x'\npower_up_ms = 1\napdu_ms = 'fast'\nbyte_us = 1\n",
        "name = 'a,b'\npower_up_ms = 1\napdu_ms = 1\nbyte_us = 1\n",
        "name = 'none'\npower_up_ms = 1\napdu_ms = 1\nbyte_us = 1\n",
        "name = 'x'\npower_up_ms = 1\napdu_ms = 1\nbyte_us = 1\n[commands_ms]\nSELECT = 3\n",
        "name = 'x'\npower_up_ms = 1\napdu_ms = 1\nbyte_us = 1\n[commands_ms]\n1FF = 3\n",
        "not toml at all = = =",
    ],
)
def test_bad_profile_is_refused_naming_the_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(TimingError, match=r"bad\.toml"):
        timing.load(path)


def test_unknown_profile_lists_the_shipped_ones() -> None:
    with pytest.raises(TimingError, match="jcop3, jcop4, jcop4-nopps"):
        timing.load("jcop9")
