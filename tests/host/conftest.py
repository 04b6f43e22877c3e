"""Shared fixtures: a fake PC/SC context for driving the CLI over fake applets."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fakes import FakeApplet, FakeTransport
from keyload_host.cli import options
from keyload_host.transport import NoCardError, ReaderStatus, match_reader


class FakePcsc:
    """Stands in for ``transport.Pcsc``: readers by name, each holding a fake applet or none."""

    def __init__(self, readers: dict[str, FakeApplet | None]) -> None:
        self.transports = {name: FakeTransport(name, applet) for name, applet in readers.items()}
        self.resets: dict[str, bool] = {}
        """Per reader: whether its last connection resets the card when closed."""

    def __call__(self) -> FakePcsc:
        return self

    def __enter__(self) -> FakePcsc:
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Nothing to release."""

    def close(self) -> None:
        """Nothing to release."""

    def readers(self, names: list[str] | None = None) -> list[ReaderStatus]:
        names = list(self.transports) if names is None else names
        return [
            ReaderStatus(name, self.transports[name].applet is not None, b"\x3b", False)
            for name in names
        ]

    def find_reader(self, pattern: str) -> str:
        return match_reader(pattern, list(self.transports))

    def connect(self, pattern: str, *, reset: bool = True) -> FakeTransport:
        name = self.find_reader(pattern)
        self.resets[name] = reset
        if self.transports[name].applet is None:
            raise NoCardError(f"there is no card in reader '{name}'")
        return self.transports[name]


@pytest.fixture
def fake_readers(monkeypatch: pytest.MonkeyPatch) -> Iterator[callable]:
    """Install a FakePcsc in the CLI: ``fake_readers({"name": applet, ...})``."""

    def install(readers: dict[str, FakeApplet | None]) -> FakePcsc:
        pcsc = FakePcsc(readers)
        monkeypatch.setattr(options, "Pcsc", pcsc)
        return pcsc

    yield install
