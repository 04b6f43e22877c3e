"""The ``audit`` commands: ``audit verify`` checks audit logs' hash chains and cross-checks them
with the AS's export counters, an EI at hand and the chain heads an inventory kept."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from .. import audit_chain
from ..audit import as_identity
from ..cards import AsCard, EiCard
from ..inventory import open_store
from . import options
from .options import READER_HELP


def _chain_line(report: audit_chain.ChainReport) -> str:
    logs = ", ".join(f"log {head.log} to record {head.seq}" for head in report.heads.values())
    state = "chain intact" if not report.problems else f"{len(report.problems)} problem(s)"
    return f"{report.path}: {report.lines} line(s), {logs or 'no chained record'}: {state}"


def _as_check(reader: str, records: list[dict[str, Any]]) -> list[str]:
    with options.pcsc() as pcsc, pcsc.connect(reader) as transport:
        card = AsCard(transport)
        info = card.select()
        keys = card.list_keys()
    as_id = as_identity(info, keys)
    problems = audit_chain.check_exports(records, as_id, keys)
    counted = sum(key.count for key in keys if key.loaded)
    click.echo(
        f"AS {as_id} in reader '{transport.reader}': {counted} export(s) counted by the card, "
        + ("the same as the logs record" if not problems else "the logs disagree")
    )
    return problems


def _ei_check(reader: str, records: list[dict[str, Any]]) -> list[str]:
    with options.pcsc() as pcsc, pcsc.connect(reader, reset=False) as transport:
        card = EiCard(transport)
        info = card.select()
        slots = card.list_keys()
    problems = audit_chain.check_card(records, info, slots)
    serial = info.serial.hex().upper() or "-"
    click.echo(
        f"EI {serial} in reader '{transport.reader}': "
        + ("its slots are what the logs say" if not problems else "its slots disagree")
    )
    return problems


@click.group()
def audit() -> None:
    """Check audit logs against their chain and the cards.

    `audit verify` checks the hash chain of audit logs and cross-checks them with the AS export
    counters, EI cards at hand and the chain heads an inventory kept.
    """


@audit.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--as-reader",
    help="Compare the exports the logs record with the counters of the AS in this reader "
    "(give every log of that AS). " + READER_HELP,
)
@click.option(
    "--ei-reader",
    "ei_readers",
    multiple=True,
    help="Compare the slots of the EI in this reader with the logs; repeat for several. "
    + READER_HELP,
)
@click.option(
    "--store",
    metavar="URL",
    help="Compare with the chain heads this inventory holds (sqlite:///path or "
    "postgresql://...): finds a tail cut off or a log rewritten up to the last sync.",
)
def verify(
    files: tuple[Path, ...], as_reader: str | None, ei_readers: tuple[str, ...], store: str | None
) -> None:
    """Verify audit logs' hash chains and cross-check them.

    Every record must carry the hash of the line before it, its log's id and the next sequence
    number; any edited, deleted, inserted or reordered record is reported
    with its line. A tail cut off or a whole log rewritten leaves a valid chain: --store (the
    heads an inventory saw) and --as-reader (the AS's own export counters) find those. Exits 1
    on any problem."""
    problems: list[str] = []
    records: list[dict[str, Any]] = []
    reports = []
    for path in files:
        report = audit_chain.verify_chain(path)
        reports.append(report)
        records += report.records
        click.echo(_chain_line(report))
        problems += [str(problem) for problem in report.problems]
    if store:
        problems += _store_check(store, reports)
    if as_reader:
        problems += _as_check(as_reader, records)
    for reader in ei_readers:
        problems += _ei_check(reader, records)
    for problem in problems:
        click.echo(f"problem: {problem}")
    if problems:
        click.echo(f"not verified: {len(problems)} problem(s)")
        sys.exit(1)
    click.echo("verified")


def _store_check(store: str, reports: list[audit_chain.ChainReport]) -> list[str]:
    problems = []
    with open_store(store) as opened:
        heads = opened.chain_heads()
    for report in reports:
        problems += [str(problem) for problem in audit_chain.compare_heads(report, heads)]
        for log in audit_chain.unknown_logs(report, heads):
            click.echo(f"{report.path}: log {log} is not in the inventory (inventory sync)")
    return problems
