"""keyload-host: the command line. ``main`` is the click group; each command group is a module of
this package, and installed developer tools (``sim``, ``bench``) add theirs through the
``keyload_host.commands`` entry points. Expected failures (``KeyloadError``) end as one line on
stderr and exit code 1; no option ever takes a secret."""

from __future__ import annotations

import logging
import sys
from importlib.metadata import entry_points
from typing import Any

import click

from ..errors import KeyloadError
from .audit import audit
from .cards import authenticate, info, readers
from .doctor import doctor
from .inventory import inventory
from .personalize import personalize
from .rotate import next_transport_key, retire_transport, rotate_transport
from .setup import setup

COMMANDS_ENTRY_POINTS = "keyload_host.commands"
"""Entry point group through which other distributions add command groups to ``main``."""


class KeyloadGroup(click.Group):
    """Turns expected errors into one plain message and exit code 1, for every subcommand."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyloadError as error:
            raise click.ClickException(str(error)) from None


@click.group(cls=KeyloadGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="Log every command sent to a card (name, reader, status word; never data) to stderr.",
)
@click.version_option(package_name="keyload-host")
def main(verbose: bool) -> None:
    """Load keys from a master card (AS) into EI security modules.

    Typical flow: `readers` to see what is connected, `setup as` and `setup ei` to prepare new
    cards from a TOML config, `personalize` to load keys from the AS into EI cards, `info` to
    look at one card. Keys and PINs are never given on the command line: they come from files
    (chmod 600), environment variables or hidden prompts, and only their check values (KCV)
    are ever shown.
    """
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(name)s: %(message)s",
        stream=sys.stderr,
    )


for _command in (readers, info, doctor, setup, personalize, authenticate, audit, inventory):
    main.add_command(_command)
for _command in (next_transport_key, rotate_transport, retire_transport):
    main.add_command(_command)
for _entry_point in entry_points(group=COMMANDS_ENTRY_POINTS):
    main.add_command(_entry_point.load(), _entry_point.name)
