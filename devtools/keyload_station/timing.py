"""Card timing profiles for the simulated station: models of real cards and readers (fixed cost per
APDU, cost per byte on the wire, each instruction's own work, power-up), read from TOML files that
name their sources, and passed to the Java station, which applies them before it answers. A
profile is a model, not a measurement: every figure shown from one must say so."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from keyload_host.errors import KeyloadError

PROFILE_SUFFIX = ".toml"
NO_TIMING = "none"
"""The station's name for a reader without a model: it answers as fast as jCardSim computes."""


class TimingError(KeyloadError):
    """A timing profile could not be found or read."""


@dataclass(frozen=True)
class CardTiming:
    """One timing profile (see ``profiles/jcop4.toml`` for what each figure means)."""

    name: str
    description: str
    power_up_ms: float
    apdu_ms: float
    byte_us: float
    commands_ms: dict[int, float] = field(default_factory=dict)

    def station_argument(self) -> str:
        """The station's ``--timing`` value: ``NAME=power_up_ms:X,apdu_ms:X,byte_us:X,INS:X...``."""
        items = [
            f"power_up_ms:{self.power_up_ms:g}",
            f"apdu_ms:{self.apdu_ms:g}",
            f"byte_us:{self.byte_us:g}",
        ]
        items += [f"{ins:02X}:{ms:g}" for ins, ms in sorted(self.commands_ms.items())]
        return f"{self.name}={','.join(items)}"


def builtin_names() -> list[str]:
    """The profiles shipped with the station, by name."""
    folder = resources.files(__package__) / "profiles"
    return sorted(
        entry.name.removesuffix(PROFILE_SUFFIX)
        for entry in folder.iterdir()
        if entry.name.endswith(PROFILE_SUFFIX)
    )


def load(name_or_path: str | Path) -> CardTiming:
    """A shipped profile by name (``jcop4``), or one's own TOML file by path."""
    text = str(name_or_path)
    if text in builtin_names():
        source = resources.files(__package__) / "profiles" / f"{text}{PROFILE_SUFFIX}"
        return parse(source.read_text(), f"profile {text}")
    path = Path(name_or_path)
    if not path.is_file():
        raise TimingError(
            f"no timing profile '{text}': give one of {', '.join(builtin_names())} "
            "or the path of a TOML file like them"
        )
    return parse(path.read_text(), str(path))


def parse(text: str, where: str) -> CardTiming:
    """A profile from its TOML text; ``where`` names it in errors."""
    try:
        data = tomllib.loads(text)
        commands = {
            int(ins, 16): _number(ms, f"commands_ms.{ins}")
            for ins, ms in data.get("commands_ms", {}).items()
        }
        timing = CardTiming(
            name=str(data["name"]),
            description=str(data.get("description", "")),
            power_up_ms=_number(data["power_up_ms"], "power_up_ms"),
            apdu_ms=_number(data["apdu_ms"], "apdu_ms"),
            byte_us=_number(data["byte_us"], "byte_us"),
            commands_ms=commands,
        )
    except (tomllib.TOMLDecodeError, KeyError, ValueError, TypeError) as error:
        raise TimingError(f"{where}: not a timing profile ({error})") from None
    if not timing.name or any(c in timing.name for c in "=,:@ ") or timing.name == NO_TIMING:
        raise TimingError(f"{where}: name must be a plain word other than '{NO_TIMING}'")
    if any(not 0 <= ins <= 0xFF for ins in commands):
        raise TimingError(f"{where}: commands_ms keys are instruction bytes, 00 to FF")
    return timing


def _number(value: object, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1e6:
        raise ValueError(f"{key} must be a number of milliseconds or microseconds, 0 or more")
    return float(value)
