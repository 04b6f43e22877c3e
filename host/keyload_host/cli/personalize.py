"""The ``personalize`` command: resolve the readers, read the PIN, open the AS session and run
``workflow`` over the EI cards (a batch with a progress bar, or watch mode), writing the audit log
and a summary; exit code 1 when any key failed."""

from __future__ import annotations

import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

import click

from .. import workflow
from ..audit import EVENT_SESSION_END, EVENT_SESSION_START, AuditLog, AuditSink, NullAuditLog
from ..cards import AsCard, EiCard
from ..config import Load, check_loads, load_job
from ..secret_sources import Secret, SecretKind, SecretSource, load_secret
from ..tables import format_table
from ..transport import Pcsc, PcscTransport
from . import options, progress, units
from .inventory import STORE_HELP, feed_inventory
from .options import READER_HELP, parse_loads

PIN_LABEL = "AS operator PIN"
CLOSE_TIMEOUT = 2.0
"""Seconds closing one connection or context may take when the session ends."""


def _pin_source(pin_env: str | None, pin_file: Path | None) -> SecretSource:
    if pin_env and pin_file:
        raise click.UsageError("give --pin-env or --pin-file, not both")
    if pin_env:
        return SecretSource(env=pin_env)
    if pin_file:
        return SecretSource(file=pin_file)
    return SecretSource(prompt=True)


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


class _Contexts:
    """One PC/SC context per reader: the readers are served at the same time, each from a thread
    of its own, and pcsc-lite runs one call at a time per context. Closing gives each connection
    and context a few seconds: a reader that stalled may never answer the command still pending,
    and the session must end all the same (the process lets go of what is left)."""

    def __init__(self) -> None:
        self._contexts: dict[str, Pcsc] = {}
        self._connections: list[PcscTransport] = []
        self._lock = threading.Lock()

    def __call__(self, reader: str) -> Pcsc:
        with self._lock:
            if reader not in self._contexts:
                self._contexts[reader] = options.pcsc()
            return self._contexts[reader]

    def connect(self, reader: str, *, reset: bool) -> PcscTransport:
        """A connection for the whole session, closed with the contexts (an AS is reset then, so
        that its verified PIN does not outlive the session; an EI is not, see ``PcscTransport``)."""
        transport = self(reader).connect(reader, reset=reset)
        with self._lock:
            self._connections.append(transport)
        return transport

    def close(self) -> None:
        with self._lock:
            closers = [t.disconnect for t in self._connections]
            closers += [context.close for context in self._contexts.values()]
        for close in closers:
            thread = threading.Thread(target=close, daemon=True)
            thread.start()
            thread.join(CLOSE_TIMEOUT)


def _connect_ei(pcsc: Pcsc, reader: str) -> PcscTransport:
    """An EI connection for loading: closed without a reset (see ``PcscTransport``)."""
    return pcsc.connect(reader, reset=False)


def _ei_opener(contexts: _Contexts) -> workflow.EiOpener:
    @contextmanager
    def open_ei(reader: str) -> Iterator[EiCard]:
        with _connect_ei(contexts(reader), reader) as transport:
            yield EiCard(transport)

    return open_ei


def _resolve_readers(
    pcsc: Pcsc, as_readers: Sequence[str], ei_readers: Sequence[str]
) -> tuple[list[str], list[str]]:
    as_names = [pcsc.find_reader(pattern) for pattern in as_readers]
    ei_names = [pcsc.find_reader(pattern) for pattern in ei_readers]
    names = as_names + ei_names
    for name in names:
        if names.count(name) > 1:
            raise click.UsageError(f"reader '{name}' is given twice (AS and EI readers differ)")
    return as_names, ei_names


def _run(
    pcsc: Pcsc,
    contexts: _Contexts,
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
                _ei_opener(contexts),
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
@click.option("--pin-env", metavar="VAR", help="Read the AS operator PIN from this variable.")
@click.option(
    "--pin-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Read the AS operator PIN from this file (must be chmod 600).",
)
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
    pin_source = _pin_source(pin_env, pin_file)
    # A PIN file or variable is checked before any card is touched; only a prompt waits for the
    # cards to be checked, so that nobody types the PIN for a batch that cannot run.
    early_pin = None if pin_source.prompt else load_secret(pin_source, SecretKind.PIN, PIN_LABEL)

    def read_pin() -> Secret:
        if early_pin is not None:
            return early_pin
        return load_secret(pin_source, SecretKind.PIN, PIN_LABEL)

    results: list[workflow.LoadResult] = []
    reconciliation = None
    with ExitStack() as stack:
        if early_pin is not None:
            stack.callback(early_pin.wipe)
        run_units = units.Units.read(stack, expect, ei_template, serial_range)
        run_units.loads = loads
        audit: AuditSink = (
            stack.enter_context(AuditLog(audit_path)) if audit_path else NullAuditLog()
        )
        audit = feed_inventory(stack, audit, audit_path, store)  # inventory: after the journal
        gates = run_units.gates(stack, audit, audit_path, store)
        pcsc = stack.enter_context(options.pcsc())
        as_names, ei_names = _resolve_readers(pcsc, as_readers, ei_readers)
        contexts = _Contexts()
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
