"""The ``personalize`` command: resolve the readers, read the PIN, open the AS session and run
``workflow`` over the EI cards (a batch with a progress bar, or watch mode), writing the audit log
and a summary; exit code 1 when any key failed."""

from __future__ import annotations

import sys
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
from . import options
from .inventory import STORE_HELP, feed_inventory
from .options import READER_HELP, parse_loads

PIN_LABEL = "AS operator PIN"


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


def _connect_ei(pcsc: Pcsc, reader: str) -> PcscTransport:
    """An EI connection for loading: closed without a reset (see ``PcscTransport``)."""
    return pcsc.connect(reader, reset=False)


def _ei_opener(pcsc: Pcsc) -> workflow.EiOpener:
    @contextmanager
    def open_ei(reader: str) -> Iterator[EiCard]:
        with _connect_ei(pcsc, reader) as transport:
            yield EiCard(transport)

    return open_ei


def _resolve_readers(pcsc: Pcsc, as_reader: str, ei_readers: Sequence[str]) -> list[str]:
    names = [pcsc.find_reader(pattern) for pattern in ei_readers]
    as_name = pcsc.find_reader(as_reader)
    for name in names:
        if name == as_name or names.count(name) > 1:
            raise click.UsageError(f"reader '{name}' is given twice (AS and EI readers differ)")
    return names


def _run(
    pcsc: Pcsc,
    as_card: AsCard,
    ei_names: Sequence[str],
    loads: Sequence[Load],
    audit: AuditSink,
    read_pin: Callable[[], Secret],
    watch: bool,
    collected: list[workflow.LoadResult],
) -> None:
    if watch:
        click.echo(
            f"Watching {len(ei_names)} EI reader(s): insert cards; Ctrl-C ends the session.",
            err=True,
        )

        def on_result(result: workflow.LoadResult) -> None:
            collected.append(result)
            _result_line(result)

        workflow.run_watch(
            as_card,
            loads,
            audit,
            read_pin,
            _ei_opener(pcsc),
            pcsc.watch(ei_names),
            lambda: False,
            on_result=on_result,
        )
        return
    with ExitStack() as stack:
        ei_cards = [EiCard(stack.enter_context(_connect_ei(pcsc, name))) for name in ei_names]
        bars = []

        def on_plan(plans: Sequence[workflow.CardPlan]) -> None:
            total = sum(len(plan.to_load) + len(plan.to_skip) for plan in plans)
            bar = click.progressbar(length=total, label="Loading keys", file=sys.stderr)
            bars.append(stack.enter_context(bar))

        def on_result(result: workflow.LoadResult) -> None:
            collected.append(result)
            bars[0].update(1)

        workflow.run_batch(
            as_card, ei_cards, loads, audit, read_pin, on_plan=on_plan, on_result=on_result
        )


@click.command()
@click.option("--as-reader", help="Reader holding the AS (master card). " + READER_HELP)
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
@click.option("--store", metavar="URL", help=STORE_HELP + " 'none': no inventory.")
@click.option("--pin-env", metavar="VAR", help="Read the AS operator PIN from this variable.")
@click.option(
    "--pin-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Read the AS operator PIN from this file (must be chmod 600).",
)
def personalize(
    as_reader: str | None,
    ei_readers: tuple[str, ...],
    loads: list[Load],
    job: Path | None,
    watch: bool,
    audit_path: Path | None,
    store: str | None,
    pin_env: str | None,
    pin_file: Path | None,
) -> None:
    """Load keys from the AS into EI cards.

    First every card is read and checked (same transport key set, OPERATIONAL, slots exist and
    match, export limits allow the batch); nothing is written if anything is wrong. Then the AS
    PIN is asked once (hidden) unless --pin-env or --pin-file is given. Per key three commands
    follow, none carrying a key in clear: GET CHALLENGE (EI), EXPORT KEY (AS), IMPORT KEY (EI).
    Keys already in a slot with the same version are skipped, so re-running is safe. A key is
    reported loaded with the version and KCV the EI checked before answering. Exits non-zero if
    any key failed.
    """
    if job is not None:
        job_file = load_job(job)
        loads = loads or list(job_file.loads)
        as_reader = as_reader or job_file.as_reader
        ei_readers = ei_readers or job_file.ei_readers
    if not as_reader or not ei_readers or not loads:
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
    with ExitStack() as stack:
        if early_pin is not None:
            stack.callback(early_pin.wipe)
        audit: AuditSink = (
            stack.enter_context(AuditLog(audit_path)) if audit_path else NullAuditLog()
        )
        audit = feed_inventory(stack, audit, audit_path, store)  # inventory: after the journal
        pcsc = stack.enter_context(options.pcsc())
        ei_names = _resolve_readers(pcsc, as_reader, ei_readers)
        as_card = AsCard(stack.enter_context(pcsc.connect(as_reader)))
        audit.record(
            EVENT_SESSION_START,
            reader=as_card.reader,
            message=f"loads {' '.join(map(str, loads))} into {', '.join(ei_names)}",
        )
        ended = False  # the session ran to its end, or Ctrl-C ended watch mode
        try:
            _run(pcsc, as_card, ei_names, loads, audit, read_pin, watch, results)
            ended = True
        except KeyboardInterrupt:
            click.echo("Stopped.", err=True)
            ended = True
        except workflow.AsUnavailableError as error:
            _summary(error.results)
            raise
        finally:
            audit.record(
                EVENT_SESSION_END,
                reader=as_card.reader,
                result="ok" if ended and not workflow.failed(results) else "failed",
            )
    _summary(results)
    if workflow.failed(results):
        sys.exit(1)
