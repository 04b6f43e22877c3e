"""What the command groups share: the ``--reader`` help, option callbacks that parse references,
loads and challenges, hex formatting, and the PC/SC context every command opens.

``Pcsc`` is looked up here at call time, so tests replace it in one place.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import click

from ..config import Load
from ..config import parse_load as parse_load_text
from ..config import parse_ref as parse_ref_text
from ..protocol import AUTH_DATA_MAX, AUTH_DATA_MIN
from ..transport import Pcsc, PcscTransport

READER_HELP = (
    "Reader: its exact name (as `keyload-host readers` prints it, quotes included), or a pattern "
    "that matches exactly one reader: * for any characters, ? for one, brackets literal."
)
PASTE_HINT = (
    "Give a reader to --reader as shown (quotes included), or a pattern with * and ? that matches "
    "only it, e.g. '*uTrust*00 00'."
)

reader_option = click.option("--reader", required=True, help=READER_HELP)
"""``--reader NAME``: the one reader a command works on."""


def hex_text(value: bytes) -> str:
    """Upper-case hex, or "-" for nothing."""
    return value.hex().upper() or "-"


def parse_ref(_ctx: click.Context, _param: click.Parameter, value: str | None) -> int | None:
    """Option callback: a key or slot reference in hex."""
    if value is None:
        return None
    try:
        return parse_ref_text(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


def parse_loads(_ctx: click.Context, _param: click.Parameter, values: Sequence[str]) -> list[Load]:
    """Option callback: REF1:REF2 loads."""
    try:
        return [parse_load_text(value) for value in values]
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


def parse_challenge(_ctx: click.Context, _param: click.Parameter, value: str) -> bytes:
    """Option callback: an INTERNAL AUTHENTICATE challenge in hex, of an allowed length."""
    try:
        data = bytes.fromhex(value)
    except ValueError:
        raise click.BadParameter("must be hex digits") from None
    if not AUTH_DATA_MIN <= len(data) <= AUTH_DATA_MAX:
        raise click.BadParameter(f"must be {AUTH_DATA_MIN} to {AUTH_DATA_MAX} bytes")
    return data


def pcsc() -> Pcsc:
    """A new PC/SC context (through this module's ``Pcsc``, which tests replace)."""
    return Pcsc()


@contextmanager
def open_reader(reader: str) -> Iterator[PcscTransport]:
    """The card in the one reader matching ``reader``, for the time of a ``with`` block."""
    with pcsc() as context, context.connect(reader) as transport:
        yield transport
