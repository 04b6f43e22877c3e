"""The ``personalize`` command: resolve the readers, read the PIN, open the AS session and run
``workflow`` over the EI cards (a batch with a progress bar, or watch mode), writing the audit log
and a summary; exit code 1 when any key failed."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path

import click

from .. import workflow
from ..audit import EVENT_SESSION_END, EVENT_SESSION_START, AuditLog, AuditSink, NullAuditLog
from ..cards import AsCard, EiCard
from ..config import Load, check_loads, load_job
from ..secret_sources import Secret
from ..tables import format_table
from ..transport import Pcsc
from . import options, progress, units
from .inventory import STORE_HELP, feed_inventory
from .options import READER_HELP, parse_loads
from .session import (
    Contexts,
    ei_opener,
    pin_options,
    pin_reader,
    resolve_readers,
)


def _summary(results: Sequence[workflow.LoadResult]) -> None:
    rows = [
        [
            result.serial or "-",
            f"{result.load.ref1:02X}",
            f"{result.load.ref2:02X}",
            "-" if result.version is None else f"{result.version:04X}",
            result.kcv or "-",
            result.outcome.value,
        ]
        for result in results
    ]
    if rows:
        click.echo(format_table(["sn", "ref1", "ref2", "version", "kcv", "result"], rows))
    for result in results:
        if result.outcome == workflow.Outcome.FAILED:
            click.echo(f"{result.serial or result.reader} {result.load}: {result.reason}", err=True)
    counts = Counter(result.outcome for result in results)
    click.echo(", ".join(f"{counts[outcome]} {outcome.value}" for outcome in workflow.Outcome))


def _result_line(result: workflow.LoadResult) -> None:
    version = "" if result.version is None else f" v{result.version:04X}"
    kcv = f" KCV {result.kcv}" if result.kcv else ""
    line = f"{result.serial or result.reader} {result.load}{version}{kcv}: {result.outcome.value}"
    click.echo(line + (f" ({result.reason})" if result.reason else ""))


def _run(
    pcsc: Pcsc,
    contexts: Contexts,
    as_cards: Sequence[AsCard],
    ei_names: Sequence[str],
    loads: Sequence[Load],
    audit: AuditSink,
    read_pin: Callable[[], Secret],
    watch: bool,
    apdu_timeout: float,
    collected: list[workflow.LoadResult],
    run_units: units.Units,
    gates: Sequence[workflow.CardGate] = (),
) -> None:
    def collect(report: workflow.CardReport) -> None:
        collected.extend(report.results)
        run_units.on_card(report)

    if watch:
        click.echo(
            f"Watching {len(ei_names)} EI reader(s): insert cards; Ctrl-C ends the session.",
            err=True,
        )
        display = progress.Progress(ei_names)

        def on_card(report: workflow.CardReport) -> None:
            collect(report)
            if report.problem:  # one line for a card that could not be served, not one per key
                click.echo(progress.card_line(report))
            display.on_card(report)

        def on_result(result: workflow.LoadResult) -> None:
            _result_line(result)
            display.on_result(result)

        try:
            workflow.run_watch(
                as_cards,
                loads,
                audit,
                read_pin,
                ei_opener(contexts),
                pcsc.watch(ei_names),
                run_units.all_loaded,
                apdu_timeout=apdu_timeout,
                on_result=on_result,
                on_card=on_card,
                gates=gates,
            )
        finally:
            display.finish()
        return
    with ExitStack() as stack:
        ei_cards = [EiCard(contexts.connect(name, reset=False)) for name in ei_names]
        displays: list[progress.Progress] = []

        def on_plan(plans: Sequence[workflow.CardPlan]) -> None:
            displays.append(progress.Progress(ei_names, cards_expected=len(plans)))
            stack.callback(displays[0].finish)

        def on_result(result: workflow.LoadResult) -> None:
            displays[0].on_result(result)

        def on_card(report: workflow.CardReport) -> None:
            collect(report)
            displays[0].on_card(report)

        workflow.run_batch(
            as_cards,
            ei_cards,
            loads,
            audit,
            read_pin,
            apdu_timeout=apdu_timeout,
            on_plan=on_plan,
            on_result=on_result,
            on_card=on_card,
            gates=gates,
        )


@click.command()
@click.option(
    "--as-reader",
    "as_readers",
    multiple=True,
    help="Reader holding the AS (master card); repeat for a pool of AS cards holding the same "
    "keys and PIN, which then export at the same time. " + READER_HELP,
)
@click.option(
    "--ei-reader",
    "ei_readers",
    multiple=True,
    help="Reader holding an EI; repeat for several. " + READER_HELP,
)
@click.option(
    "--load",
    "loads",
    multiple=True,
    callback=parse_loads,
    help="REF1:REF2 in hex: load AS key REF1 into EI slot REF2 (e.g. 03:01); repeat for several.",
)
@click.option(
    "--job",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help='TOML job file: loads = ["03:01", ...], optionally as_reader = "..." and '
    'ei_readers = ["...", ...]; options given on the command line take precedence.',
)
@click.option(
    "--watch",
    is_flag=True,
    help="Keep serving EI cards as they are inserted into the EI readers, until Ctrl-C.",
)
@click.option(
    "--audit",
    "audit_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Append one JSON line per event to this file (KCVs, serials, references; no secrets).",
)
@click.option(
    "--apdu-timeout",
    type=click.FloatRange(min=0.1),
    default=workflow.APDU_TIMEOUT,
    show_default=True,
    help="Seconds a reader may take to answer one command; after that its card is reported "
    "failed (an AS leaves the pool) and the other readers go on.",
)
@click.option("--store", metavar="URL", help=STORE_HELP + " 'none': no inventory.")
@click.option(
    "--expect", type=click.Path(exists=True, dir_okay=False, path_type=Path), help=units.EXPECT_HELP
)
@click.option(
    "--ei-template",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help=units.TEMPLATE_HELP,
)
@click.option("--serial-range", metavar="FIRST-LAST", help=units.RANGE_HELP)
@pin_options
def personalize(
    as_readers: tuple[str, ...],
    ei_readers: tuple[str, ...],
    loads: list[Load],
    job: Path | None,
    watch: bool,
    audit_path: Path | None,
    apdu_timeout: float,
    store: str | None,
    expect: Path | None,
    ei_template: Path | None,
    serial_range: str | None,
    pin_env: str | None,
    pin_file: Path | None,
) -> None:
    """Load keys from the AS into EI cards.

    First every card is read and checked (same transport key set, OPERATIONAL, slots exist and
    match, export limits allow the batch); nothing is written if anything is wrong. Then the AS
    PIN is asked once (hidden) unless --pin-env or --pin-file is given. Every EI reader is served
    at the same time; each AS runs one command at a time. Per key three commands follow, none
    carrying a key in clear: GET CHALLENGE (EI), EXPORT KEY (AS), IMPORT KEY (EI).
    Keys already in a slot with the same version are skipped, so re-running is safe. A key is
    reported loaded with the version and KCV the EI checked before answering. Exits 1 if any
    key failed, 3 if an expected unit (--expect) is not loaded.
    """
    if job is not None:
        job_file = load_job(job)
        loads = loads or list(job_file.loads)
        as_readers = as_readers or ((job_file.as_reader,) if job_file.as_reader else ())
        ei_readers = ei_readers or job_file.ei_readers
        expect = expect or job_file.expect
        ei_template = ei_template or job_file.ei_template
        serial_range = serial_range or job_file.serial_range
    if not as_readers or not ei_readers or not loads:
        raise click.UsageError(
            "give --as-reader, at least one --ei-reader and one --load (or a --job file)"
        )
    problems = check_loads(loads)
    if problems:
        raise click.UsageError("; ".join(problems))
    results: list[workflow.LoadResult] = []
    reconciliation = None
    with ExitStack() as stack:
        read_pin = pin_reader(pin_env, pin_file, stack)
        run_units = units.Units.read(stack, expect, ei_template, serial_range)
        run_units.loads = loads
        audit: AuditSink = (
            stack.enter_context(AuditLog(audit_path)) if audit_path else NullAuditLog()
        )
        audit = feed_inventory(stack, audit, audit_path, store)  # inventory: after the journal
        gates = run_units.gates(stack, audit, audit_path, store)
        pcsc = stack.enter_context(options.pcsc())
        as_names, ei_names = resolve_readers(pcsc, as_readers, ei_readers)
        contexts = Contexts()
        stack.callback(contexts.close)
        as_cards = [AsCard(contexts.connect(name, reset=True)) for name in as_names]
        audit.record(
            EVENT_SESSION_START,
            reader=", ".join(as_names),
            message=f"loads {' '.join(map(str, loads))} into {', '.join(ei_names)}",
        )
        ended = False  # the session ran to its end, or Ctrl-C ended watch mode
        try:
            _run(
                pcsc,
                contexts,
                as_cards,
                ei_names,
                loads,
                audit,
                read_pin,
                watch,
                apdu_timeout,
                results,
                run_units,
                gates,
            )
            ended = True
        except KeyboardInterrupt:
            click.echo("Stopped.", err=True)
            ended = True
        except workflow.AsUnavailableError as error:
            _summary(error.results)
            reconciliation = run_units.record(audit)
            if reconciliation:
                units.show(reconciliation)
            raise
        finally:
            if ended:
                reconciliation = run_units.record(audit)
            ok = ended and not workflow.failed(results) and units.exit_code(reconciliation) == 0
            audit.record(
                EVENT_SESSION_END, reader=", ".join(as_names), result="ok" if ok else "failed"
            )
    _summary(results)
    if reconciliation:
        units.show(reconciliation)
    if reconciliation and not reconciliation.complete:
        sys.exit(units.exit_code(reconciliation))
    if workflow.failed(results):
        sys.exit(1)
