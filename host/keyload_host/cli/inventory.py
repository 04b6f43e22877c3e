"""The ``inventory`` commands: feed audit logs to the inventory (``sync``) and ask it questions
(``holding``, ``lacking``, ``duplicates``, ``loads``, ``unit``), as a table for people or as
JSON or CSV for scripts."""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import click

from ..audit import AuditLog, AuditSink
from ..inventory import STORE_ENV, Answer, InventoryFeed, Store, StoreError, open_store
from ..tables import format_table
from .options import parse_ref

STORE_HELP = (
    "The inventory: sqlite:///path (or a path) or postgresql://user@host/db. Default: "
    f"${STORE_ENV}, else keyload-inventory.sqlite in the current directory (for sync: beside "
    "the first audit log)."
)

store_option = click.option("--store", "store", metavar="URL", help=STORE_HELP)


def _format_option(function: Callable[..., None]) -> Callable[..., None]:
    function = click.option("--csv", "as_csv", is_flag=True, help="Print CSV for scripts.")(
        function
    )
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")(function)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _show(answer: Answer, as_json: bool, as_csv: bool, hex_columns: tuple[str, ...] = ()) -> None:
    """JSON and CSV give the values as stored (numbers as numbers); the table gives references
    and versions in hex, as the cards and the other commands show them."""
    if as_json:
        click.echo(json.dumps([dict(zip(answer.headers, row, strict=True)) for row in answer.rows]))
        return
    if as_csv:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(answer.headers)
        writer.writerows(["" if value is None else value for value in row] for row in answer.rows)
        click.echo(buffer.getvalue(), nl=False)
        return
    if not answer.rows:
        click.echo("none")
        return

    def cell(header: str, value: object) -> str:
        if header in hex_columns and isinstance(value, int) and not isinstance(value, bool):
            return f"{value:02X}" if header.startswith("ref") else f"{value:04X}"
        return _cell(value)

    rows = [
        [cell(h, value) for h, value in zip(answer.headers, row, strict=True)]
        for row in answer.rows
    ]
    click.echo(format_table(answer.headers, rows))
    click.echo(f"{len(rows)} row(s)")


def _open(store: str | None) -> Store:
    return open_store(store)


def _parse_version(_ctx: click.Context, _param: click.Parameter, value: str) -> int:
    try:
        version = int(value, 16)
    except ValueError:
        raise click.BadParameter(f"'{value}' is not a version in hex (e.g. 0002)") from None
    if not 0 <= version <= 0xFFFF:
        raise click.BadParameter(f"version {value} is out of range 0000-FFFF")
    return version


@click.group()
def inventory() -> None:
    """Ask the inventory of loaded units, fed from the audit logs.

    Every personalize run with --audit feeds the inventory as it goes; `sync` feeds audit logs
    afterwards (after the database was unreachable, or logs of other stations), never twice.
    """


@inventory.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@store_option
def sync(files: tuple[Path, ...], store: str | None) -> None:
    """Feed audit logs to the inventory, each record once.

    Records the inventory holds already are not added again, so syncing a log twice, or after
    personalize fed part of it, adds only what is missing.
    """
    with open_store(store, beside=files[0]) as opened:
        for path in files:
            total, new = opened.sync(path)
            click.echo(f"{path}: {total} record(s), {new} new to the inventory")


@inventory.command()
@click.argument("ref", callback=parse_ref)
@click.argument("version", callback=_parse_version)
@store_option
@_format_option
def holding(ref: int, version: int, store: str | None, as_json: bool, as_csv: bool) -> None:
    """Units whose slot REF holds key version VERSION.

    REF and VERSION in hex, e.g. `holding 05 0002`: the slot, the version, its KCV, when, which
    station, AS and run.
    """
    with _open(store) as opened:
        _show(opened.holding(ref, version), as_json, as_csv, ("ref2", "version"))


@inventory.command()
@click.argument("ref", callback=parse_ref)
@click.argument("version", callback=_parse_version)
@store_option
@_format_option
def lacking(ref: int, version: int, store: str | None, as_json: bool, as_csv: bool) -> None:
    """Units that lack version VERSION in slot REF.

    Every unit the inventory knows whose slot REF holds no version VERSION or newer, with what
    it holds: the list a re-keying campaign needs.
    """
    with _open(store) as opened:
        _show(opened.lacking(ref, version), as_json, as_csv, ("holds version",))


@inventory.command()
@store_option
@_format_option
def duplicates(store: str | None, as_json: bool, as_csv: bool) -> None:
    """KCVs shared by diversified unit keys (must be none).

    Lists every KCV that two unit keys of diversified keys share; exits 1 if there is any.
    """
    with _open(store) as opened:
        answer = opened.duplicate_kcvs()
    _show(answer, as_json, as_csv)
    if answer.rows:
        sys.exit(1)


@inventory.command()
@click.option(
    "--by",
    type=click.Choice(["station", "day", "run"]),
    default="day",
    show_default=True,
    help="Count per station, per day (UTC) or per run.",
)
@store_option
@_format_option
def loads(by: str, store: str | None, as_json: bool, as_csv: bool) -> None:
    """Key loads per station, day or run.

    Per group: units seen, keys loaded, skipped and failed.
    """
    with _open(store) as opened:
        _show(opened.loads(by), as_json, as_csv)


@inventory.command()
@click.argument("serial")
@store_option
@_format_option
def unit(serial: str, store: str | None, as_json: bool, as_csv: bool) -> None:
    """The history of one unit.

    Every record about the EI with this serial (hex): loads, skips, failures, refusals.
    """
    with _open(store) as opened:
        _show(opened.history(serial), as_json, as_csv, ("ref1", "ref2", "version"))


def feed_inventory(
    stack: ExitStack, journal: AuditSink, audit_path: Path | None, store: str | None
) -> AuditSink:
    """``personalize``'s hook: the audit log, then the inventory (``--store``, default beside the
    audit log; ``none``: no inventory). A store that cannot be opened costs one warning: the audit
    log has every record, and ``inventory sync`` feeds them later."""
    if not isinstance(journal, AuditLog) or audit_path is None or (store or "") == "none":
        return journal
    try:
        opened = stack.enter_context(open_store(store, beside=audit_path))
    except StoreError as error:
        click.echo(f"warning: {error}; the audit log keeps every record: {SYNC_HINT}", err=True)
        return journal
    feed = InventoryFeed(journal, opened, audit_path)  # watches the journal's writes

    def last_try() -> None:
        waiting = feed.flush()
        if waiting:
            click.echo(
                f"warning: {waiting} record(s) did not reach the inventory: {SYNC_HINT}", err=True
            )

    stack.callback(last_try)
    return journal


SYNC_HINT = "keyload-host inventory sync AUDIT_LOG feeds them when it is reachable"
