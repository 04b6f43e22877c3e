"""The ``setup as`` and ``setup ei`` commands: write a new card from a TOML config through
``provisioning``, show what was written (check values only), then LOCK it once confirmed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from ..cards import AsCard, Card, EiCard
from ..config import load_as_setup, load_ei_setup
from ..provisioning import SetupReport, setup_as, setup_ei
from ..secret_sources import Secret, SecretKind, SecretSource, load_secret
from ..tables import format_table
from .options import open_reader, reader_option


def _secret_loader(source: SecretSource, kind: SecretKind, label: str, confirm: bool) -> Secret:
    return load_secret(source, kind, label, confirm=confirm)


def _show_report(report: SetupReport) -> None:
    for label, value in report.summary:
        click.echo(f"{label}: {value}")
    click.echo(format_table(report.headers, report.rows))
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)


def _lock(card: Card, yes: bool) -> None:
    question = (
        f"LOCK the {card.ROLE.name} in reader '{card.reader}' now? It becomes OPERATIONAL and "
        "can never be set up again"
    )
    if not yes and not click.confirm(question, default=False):
        click.echo(f"Not locked: the {card.ROLE.name} stays in SETUP.")
        return
    card.lock()
    click.echo(f"Locked: the {card.ROLE.name} is OPERATIONAL.")


@click.group()
def setup() -> None:
    """Prepare a new card from a TOML config and LOCK it.

    Writes the transport key and (AS) the PIN and application keys, or (EI) the serial, retry
    limit and slots; reads everything back and compares check values; shows only KCVs; asks
    before LOCK, which cannot be undone.
    """


def _setup_options(function: Callable[..., None]) -> Callable[..., None]:
    function = click.option(
        "--yes", is_flag=True, help="LOCK without asking (for scripts); LOCK cannot be undone."
    )(function)
    function = click.option(
        "--config",
        "config_path",
        required=True,
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="The TOML setup config (example above); it says where secrets are, never holds them.",
    )(function)
    return reader_option(function)


@setup.command("as")
@_setup_options
def setup_as_command(reader: str, config_path: Path, yes: bool) -> None:
    """Set up an AS from a TOML config, then LOCK it.

    Writes the transport key, the operator PIN and the application keys.

    Example config (references in hex; usage auth, mac or enc; key files hold hex and must be
    chmod 600; a secret may also be { env = "VAR" } or { prompt = true }). Any key may be
    entered as 2 or 3 components (XOR), each with its custodian and its KCV, and the whole
    key's KCV: each custodian types their own at a hidden prompt naming them, its KCV is shown
    once it is entered, and a wrong KCV stops the setup before anything is written:

    \b
        pin = { prompt = true }
        [transport_key]
        kcv = "cmac-aes:1A2B3C"
        components = [
          { custodian = "A. Smith", prompt = true, kcv = "cmac-aes:4D5E6F" },
          { custodian = "B. Jones", prompt = true, kcv = "cmac-aes:708192" },
        ]
        [[keys]]
        ref = 0x03
        usage = "auth"
        version = 1
        diversify = false
        export_limit = "unlimited"   # or a number of exports
        key = { file = "k03.key" }
    """
    config = load_as_setup(config_path)
    with open_reader(reader) as transport:
        card = AsCard(transport)
        _show_report(setup_as(card, config, _secret_loader, click.echo))
        _lock(card, yes)


@setup.command("ei")
@_setup_options
def setup_ei_command(reader: str, config_path: Path, yes: bool) -> None:
    """Set up an EI from a TOML config, then LOCK it.

    Writes the transport key, the serial, the retry limit and the slots.

    Example config (references in hex; usage auth, mac or enc; the retry limit is 1 to 15,
    default 10). The transport key is entered here as two components, as in setup as --help (a
    component, like any secret, may also come from a chmod 600 file or a variable); it may as
    well be one secret: transport_key = { file = "t.key" }, { env = "KEYLOAD_T" } or
    { prompt = true }:

    \b
        serial = "4B4C000000000001"
        retry_limit = 10
        [transport_key]
        kcv = "cmac-aes:1A2B3C"
        components = [
          { custodian = "A. Smith", prompt = true, kcv = "cmac-aes:4D5E6F" },
          { custodian = "B. Jones", env = "KEYLOAD_T_B", kcv = "cmac-aes:708192" },
        ]
        [[slots]]
        ref = 0x01
        key_length = 16
        usage = "auth"
        accepts_import = true
    """
    config = load_ei_setup(config_path)
    with open_reader(reader) as transport:
        card = EiCard(transport)
        _show_report(setup_ei(card, config, _secret_loader, click.echo))
        _lock(card, yes)
