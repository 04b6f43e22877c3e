"""The inventory's tests on a PostgreSQL server (the ``postgres`` and ``database`` fixtures of
tests/conftest.py): every test below this folder is marked ``postgres``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "host"))  # the fake cards and the units helper


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.resolve().is_relative_to(HERE):
            item.add_marker(pytest.mark.postgres)
