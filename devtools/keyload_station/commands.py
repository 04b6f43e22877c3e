"""The ``sim`` command group of keyload-host (registered through the ``keyload_host.commands``
entry point): start, inspect and stop the simulated station, and insert, remove, swap or pull its
cards, through ``supervisor``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click
from keyload_host.errors import KeyloadError
from keyload_host.tables import format_table

from . import timing


@contextmanager
def _station() -> Iterator[Any]:
    """Import the station lazily (it pulls in process management) and map its errors."""
    from . import supervisor as station

    try:
        yield station
    except (station.StationError, KeyloadError) as error:
        raise click.ClickException(str(error)) from None


def _show_station(status: Any) -> None:
    running = "running" if status.running else "stopped"
    pcscd = " (pcscd started by the station)" if status.pcscd_started_by_us else ""
    click.echo(f"station {running}{pcscd}")
    rows = [
        [slot.name, slot.port, slot.role or "-", slot.state, slot.apdus, slot.timing or "-"]
        for slot in status.readers
    ]
    if rows:
        click.echo(format_table(["reader", "port", "role", "state", "apdus", "timing"], rows))
    if any(slot.timing for slot in status.readers):
        click.echo("timing: a model of real cards, not a measurement (sim up --help)")


ROLE_CHOICE = click.Choice(["AS", "EI"], case_sensitive=False)


@click.group()
def sim() -> None:
    """Run the simulated station (jCardSim cards in pcscd).

    jCardSim cards run behind virtual vpcd readers in pcscd.

    For development and tests without real cards: `sim up` starts readers with AS and EI cards,
    then every other command works on them as on real readers. READER in the commands below
    names a station reader as `sim status` lists it.
    """


def _reader_count(role: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """``--as N`` or ``--ei N``: how many readers hold a card of ``role``."""
    return click.option(
        f"--{role.lower()}",
        f"{role.lower()}_count",
        type=click.IntRange(0),
        default=1,
        show_default=True,
        help=f"Number of readers with an {role} card.",
    )


@sim.command()
@_reader_count("AS")
@_reader_count("EI")
@click.option(
    "--control-port",
    type=int,
    default=35990,
    show_default=True,
    help="TCP port of the station's control server.",
)
@click.option(
    "--base-port",
    type=int,
    default=None,
    help="First vpcd TCP port; the readers use consecutive ports. Default: the first free block"
    " from 35963 when the station starts pcscd, else 35963.",
)
@click.option(
    "--timeout",
    type=float,
    default=60.0,
    show_default=True,
    help="Seconds to wait for the readers to come up.",
)
@click.option(
    "--t0",
    is_flag=True,
    help="Make T=0 cards (ATR offering T=0 only, 61xx with GET RESPONSE, 6Cxx), like many SAMs.",
)
@click.option(
    "--timing",
    metavar="PROFILE",
    help="Make every reader answer as a real card would, by a timing model: "
    f"{', '.join(timing.builtin_names())}, or the path of a TOML profile like them "
    "(devtools/keyload_station/profiles/). A model, not a measurement.",
)
@click.option("--as-timing", metavar="PROFILE", help="The timing profile of the AS readers.")
@click.option("--ei-timing", metavar="PROFILE", help="The timing profile of the EI readers.")
def up(
    as_count: int,
    ei_count: int,
    control_port: int,
    base_port: int | None,
    timeout: float,
    t0: bool,
    timing: str | None,
    as_timing: str | None,
    ei_timing: str | None,
) -> None:
    """Start the station with AS and EI readers.

    Starts pcscd too if it is not running; the AS readers come first, then the EI readers.
    """
    with _station() as station:
        protocol = f"{station.PROTOCOL_SEPARATOR}T0" if t0 else ""
        roles = []
        for role, count, profile in (("AS", as_count, as_timing), ("EI", ei_count, ei_timing)):
            suffix = f"{station.TIMING_SEPARATOR}{profile}" if profile else ""
            roles += [f"{role}{protocol}{suffix}"] * count
        _show_station(
            station.up(
                roles,
                control_port=control_port,
                base_port=base_port,
                timeout=timeout,
                timing=timing,
            )
        )


@sim.command()
def down() -> None:
    """Stop the station (and pcscd if the station started it)."""
    with _station() as station:
        station.down()
    click.echo("station stopped")


@sim.command()
def status() -> None:
    """Show the station's readers and their cards.

    Per reader: vpcd port, role of the card in it, state and the APDUs it served.
    """
    with _station() as station:
        _show_station(station.status())


@sim.command()
@click.argument("reader")
@click.argument("role", type=ROLE_CHOICE)
def insert(reader: str, role: str) -> None:
    """Insert a fresh card into READER.

    The card is blank (in SETUP) and holds the ROLE applet, AS or EI.
    """
    with _station() as station:
        station.insert(reader, role.upper())


@sim.command()
@click.argument("reader")
def remove(reader: str) -> None:
    """Remove the card from READER (it keeps its persistent state)."""
    with _station() as station:
        station.remove(reader)


@sim.command()
@click.argument("reader")
def reinsert(reader: str) -> None:
    """Put the card last removed from READER back in."""
    with _station() as station:
        station.reinsert(reader)


@sim.command()
@click.argument("reader")
@click.option("--role", type=ROLE_CHOICE, help="Role of the new card (default: the same role).")
def swap(reader: str, role: str | None) -> None:
    """Replace the card in READER by a fresh one.

    As an operator swapping cards: the old card is removed, a blank one of the same role (or
    --role) is inserted.
    """
    with _station() as station:
        station.swap(reader, role.upper() if role else None)


@sim.command()
@click.argument("reader")
@click.argument("nth_apdu", type=click.IntRange(1))
@click.option(
    "--when",
    type=click.Choice(["before", "after"]),
    default="before",
    show_default=True,
    help="before: the card leaves without processing that APDU; after: it processes "
    "it, then leaves without answering.",
)
def pull(reader: str, nth_apdu: int, when: str) -> None:
    """Pull a card out in the middle of a command.

    The card in READER leaves at its NTH_APDU-th APDU from now (1 = the next one).
    """
    with _station() as station:
        station.pull(reader, nth_apdu, when=when)
