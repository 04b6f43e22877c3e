"""Transport key rotation (PROTOCOL.md §9): ``next-transport-key`` puts the next T into an AS in
SETUP, ``rotate-transport`` gives it to the EI cards of the set (a batch, or watch mode) with the
preflight, audit log and inventory of ``personalize``, ``retire-transport`` makes it the AS's T."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

import click

from .. import rotation, workflow
from ..audit import EVENT_SESSION_END, EVENT_SESSION_START, AuditLog, AuditSink, NullAuditLog
from ..cards import AsCard, EiCard
from ..protocol import LifeCycle, kcv_text
from ..secret_sources import SecretKind, SecretSource, load_secret
from ..tables import format_table
from . import options
from .inventory import STORE_HELP, feed_inventory
from .options import READER_HELP, open_reader, reader_option
from .session import Contexts, ei_opener, pin_options, pin_reader, resolve_readers


def _line(outcome: rotation.RotationResult | workflow.CardReport) -> None:
    if isinstance(outcome, workflow.CardReport):
        click.echo(f"{outcome.serial or outcome.reader}: not served ({outcome.problem})")
        return
    version = "" if outcome.version is None else f" version {outcome.version:04X}"
    kcv = f" KCV(T) {outcome.kcv}" if outcome.kcv else ""
    reason = f" ({outcome.reason})" if outcome.reason else ""
    click.echo(f"{outcome.serial or outcome.reader}{version}{kcv}: {outcome.outcome.value}{reason}")


def _summary(results: Sequence[rotation.RotationResult]) -> None:
    rows = [
        [
            result.serial or "-",
            result.reader,
            "-" if result.version is None else f"{result.version:04X}",
            result.kcv or "-",
            result.outcome.value,
        ]
        for result in results
    ]
    if rows:
        click.echo(format_table(["sn", "reader", "t version", "kcv(t)", "result"], rows))
    counts = Counter(result.outcome for result in results)
    click.echo(", ".join(f"{counts[outcome]} {outcome.value}" for outcome in rotation.Outcome))


@click.command("rotate-transport")
@click.option(
    "--as-reader",
    "as_readers",
    multiple=True,
    required=True,
    help="Reader holding an AS with the next transport key; repeat for a pool. " + READER_HELP,
)
@click.option(
    "--ei-reader",
    "ei_readers",
    multiple=True,
    required=True,
    help="Reader holding an EI; repeat for several. " + READER_HELP,
)
@click.option("--watch", is_flag=True, help="Keep rotating EI cards as they are inserted.")
@click.option(
    "--audit",
    "audit_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Append one JSON line per event to this file (KCVs, serials, versions; no secrets).",
)
@click.option(
    "--apdu-timeout",
    type=click.FloatRange(min=0.1),
    default=workflow.APDU_TIMEOUT,
    show_default=True,
    help="Seconds a reader may take to answer one command.",
)
@click.option("--store", metavar="URL", help=STORE_HELP + " 'none': no inventory.")
@pin_options
def rotate_transport(
    as_readers: tuple[str, ...],
    ei_readers: tuple[str, ...],
    watch: bool,
    audit_path: Path | None,
    apdu_timeout: float,
    store: str | None,
    pin_env: str | None,
    pin_file: Path | None,
) -> None:
    """Give the AS's next transport key to the EI cards of its set.

    PROTOCOL.md §9. First every card is read and checked: the AS holds a next transport key;
    each EI is OPERATIONAL and holds the AS's transport key (same KCV and version). An EI that
    holds the next key already is skipped; one of another set, BLOCKED or in SETUP refuses the
    batch, and nothing is written. Then the PIN is asked once and each EI gets GET CHALLENGE,
    EXPORT TRANSPORT KEY (AS), IMPORT TRANSPORT KEY (EI): no key crosses in clear. The EI keeps
    its application keys. Each card is reported with the KCV and version of its new transport
    key; exits non-zero if any card failed. When every EI is done: retire-transport.
    """
    results: list[rotation.RotationResult] = []
    with ExitStack() as stack:
        read_pin = pin_reader(pin_env, pin_file, stack)
        audit: AuditSink = (
            stack.enter_context(AuditLog(audit_path)) if audit_path else NullAuditLog()
        )
        audit = feed_inventory(stack, audit, audit_path, store)
        pcsc = stack.enter_context(options.pcsc())
        as_names, ei_names = resolve_readers(pcsc, as_readers, ei_readers)
        contexts = Contexts()
        stack.callback(contexts.close)
        as_cards = [AsCard(contexts.connect(name, reset=True)) for name in as_names]
        audit.record(
            EVENT_SESSION_START,
            reader=", ".join(as_names),
            message=f"transport key rotation of {', '.join(ei_names)}",
        )
        ended = False
        try:
            if watch:
                click.echo(f"Watching {len(ei_names)} EI reader(s); Ctrl-C ends.", err=True)
                results = rotation.run_watch(
                    as_cards,
                    audit,
                    read_pin,
                    ei_opener(contexts),
                    pcsc.watch(ei_names),
                    lambda: False,
                    apdu_timeout=apdu_timeout,
                    on_card=_line,
                )
            else:
                ei_cards = [EiCard(contexts.connect(name, reset=False)) for name in ei_names]
                results = rotation.run_batch(
                    as_cards, ei_cards, audit, read_pin, apdu_timeout=apdu_timeout, on_card=_line
                )
            ended = True
        except KeyboardInterrupt:
            click.echo("Stopped.", err=True)
            ended = True
        finally:
            audit.record(
                EVENT_SESSION_END,
                reader=", ".join(as_names),
                result="ok" if ended and not rotation.failed(results) else "failed",
            )
    _summary(results)
    if rotation.failed(results):
        sys.exit(1)


@click.command("next-transport-key")
@reader_option
@click.option(
    "--key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The next transport key, hex, in a chmod-600 file.",
)
@click.option("--key-env", metavar="VAR", help="The next transport key, hex, in this variable.")
@click.option(
    "--version",
    "version",
    required=True,
    callback=lambda _c, _p, v: int(v, 16),
    help="Its version in hex, above the AS's transport key's (which is 0001 after setup).",
)
@click.option("--yes", is_flag=True, help="LOCK the AS afterwards without asking.")
def next_transport_key(
    reader: str, key_file: Path | None, key_env: str | None, version: int, yes: bool
) -> None:
    """Put the next transport key into an AS still in SETUP.

    For a rotation campaign (PROTOCOL.md §9). Only in SETUP (the secure room where T is): an
    AS in the field never takes a transport key from whoever holds its PIN. Set the AS up with
    `setup as` (answer no to LOCK), then run this; the AS is then locked (asked unless --yes).
    Shows only check values.
    """
    if bool(key_file) == bool(key_env):
        raise click.UsageError("give --key-file or --key-env")
    source = SecretSource(file=key_file) if key_file else SecretSource(env=key_env)
    with (
        load_secret(source, SecretKind.KEY, "next transport key") as key,
        open_reader(reader) as transport,
    ):
        card = AsCard(transport)
        info = card.select()
        if info.life_cycle != LifeCycle.SETUP:
            raise click.ClickException(
                f"the AS in '{card.reader}' is {info.life_cycle.name}: a next transport key goes "
                "in only in SETUP (set up a new AS)"
            )
        card.put_next_transport_key(version, key.reveal())
        after = card.get_info()
        if after.next_transport_kcv != bytes.fromhex(key.kcv()[-6:]):
            raise click.ClickException("the AS reports another KCV for the next transport key")
        click.echo(
            f"next transport key {kcv_text(after.next_transport_kcv)} version "
            f"{after.next_transport_version:04X} (T {kcv_text(after.transport_kcv)} version "
            f"{after.transport_version or 0:04X})"
        )
        if yes or click.confirm(f"LOCK the AS in '{card.reader}' now?", default=False):
            card.lock()
            click.echo("Locked: the AS is OPERATIONAL.")


@click.command("retire-transport")
@click.option("--as-reader", required=True, help="Reader holding the AS. " + READER_HELP)
@click.option(
    "--audit", "audit_path", type=click.Path(dir_okay=False, path_type=Path), help="Audit log."
)
@pin_options
def retire_transport(
    as_reader: str, audit_path: Path | None, pin_env: str | None, pin_file: Path | None
) -> None:
    """Make the AS's next transport key its transport key.

    After a rotation campaign: the old transport key is cleared, and EI cards not rotated by then
    can no longer be served by this AS."""
    with ExitStack() as stack:
        read_pin = pin_reader(pin_env, pin_file, stack)
        audit: AuditSink = (
            stack.enter_context(AuditLog(audit_path)) if audit_path else NullAuditLog()
        )
        transport = stack.enter_context(open_reader(as_reader))
        after = rotation.retire(AsCard(transport), read_pin, audit)
    click.echo(
        f"retired: the AS's transport key is {kcv_text(after.transport_kcv)} "
        f"version {after.transport_version or 0:04X}"
    )
