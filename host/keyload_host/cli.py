"""keyload-host: the command line. A thin layer: parse options, call the modules, print results.

Expected failures (``KeyloadError`` and the station's ``StationError``) end as plain lines on
stderr and exit code 1; only a bug shows a traceback. No option ever takes a secret: keys and PINs
come from files, environment variables or hidden prompts.
"""

from __future__ import annotations

import json
import logging
import shlex
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import click

from . import workflow
from .audit import EVENT_SESSION_END, EVENT_SESSION_START, AuditLog, AuditSink, NullAuditLog
from .cards import AsCard, Card, EiCard, identify
from .config import USAGE_SHORT, Load, check_loads, load_as_setup, load_ei_setup, load_job
from .config import parse_load as parse_load_text
from .config import parse_ref as parse_ref_text
from .doctor import diagnose
from .doctor import render as render_diagnosis
from .errors import KeyloadError
from .protocol import AUTH_DATA_MAX, AUTH_DATA_MIN, EXPORT_LIMIT_UNLIMITED, Info, KeyEntry, Role
from .provisioning import SetupReport, setup_as, setup_ei
from .secrets import Secret, SecretKind, SecretSource, load_secret
from .tables import format_table
from .transport import Pcsc, PcscTransport, Transport

READER_HELP = (
    "Reader: its exact name (as `keyload-host readers` prints it, quotes included), or a pattern "
    "that matches exactly one reader: * for any characters, ? for one, brackets literal."
)
PASTE_HINT = (
    "Give a reader to --reader as shown (quotes included), or a pattern with * and ? that matches "
    "only it, e.g. '*uTrust*00 00'."
)


class KeyloadGroup(click.Group):
    """Turns expected errors into one plain message and exit code 1, for every subcommand."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyloadError as error:
            raise click.ClickException(str(error)) from None


def _hex(value: bytes) -> str:
    return value.hex().upper() or "-"


def _ref(_ctx: click.Context, _param: click.Parameter, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return parse_ref_text(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


def _loads(_ctx: click.Context, _param: click.Parameter, values: Sequence[str]) -> list[Load]:
    try:
        return [parse_load_text(value) for value in values]
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


def _challenge(_ctx: click.Context, _param: click.Parameter, value: str) -> bytes:
    try:
        data = bytes.fromhex(value)
    except ValueError:
        raise click.BadParameter("must be hex digits") from None
    if not AUTH_DATA_MIN <= len(data) <= AUTH_DATA_MAX:
        raise click.BadParameter(f"must be {AUTH_DATA_MIN} to {AUTH_DATA_MAX} bytes")
    return data


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


# ------------------------------------------------------------------------------ cards


@contextmanager
def _open(reader: str) -> Iterator[PcscTransport]:
    """The card in the one reader matching ``reader``, for the time of a ``with`` block."""
    with Pcsc() as pcsc, pcsc.connect(reader) as transport:
        yield transport


def _applet_row(transport: Transport) -> list[str]:
    found = identify(transport)
    if found is None:
        return ["none", "-", "-", "-"]
    card, info = found
    return [
        card.ROLE.name,
        info.life_cycle.name,
        _hex(info.serial),
        _hex(info.transport_kcv) if info.transport_key_set else "not set",
    ]


@main.command()
def readers() -> None:
    """List the readers and the keyload card in each.

    For every reader: card present, which keyload applet answers (AS, EI or none), its life
    cycle, serial and transport key check value. A card that cannot be read (e.g. held by
    another program) says why.
    """
    rows = []
    with Pcsc() as pcsc:
        for status in pcsc.readers():
            name = shlex.quote(status.name)
            if not status.card_present:
                rows.append([name, "no", "-", "-", "-", "-"])
                continue
            try:
                with pcsc.connect(status.name) as transport:
                    rows.append([name, "yes", *_applet_row(transport)])
            except KeyloadError as error:
                rows.append([name, "yes", f"unreadable: {error}", "-", "-", "-"])
    if not rows:
        click.echo("No reader found. Is pcscd running, with a reader (or the station) attached?")
        return
    click.echo(format_table(["reader", "card", "applet", "state", "sn", "transport kcv"], rows))
    click.echo(PASTE_HINT)


def _info_dict(info: Info) -> dict[str, Any]:
    return {
        "protocol_version": info.protocol_version,
        "role": info.role.name,
        "life_cycle": info.life_cycle.name,
        "transport_key_length": info.transport_key_length,
        "transport_kcv": info.transport_kcv.hex().upper(),
        "tries_remaining": info.tries_remaining,
        "try_limit": info.try_limit,
        "key_count": info.key_count,
        "serial": info.serial.hex().upper(),
    }


def _entry_dict(entry: KeyEntry, role: Role) -> dict[str, Any]:
    common = {
        "ref": entry.ref,
        "loaded": entry.loaded,
        "key_length": entry.key_length,
        "usage": USAGE_SHORT[entry.usage],
        "version": entry.version,
        "kcv": entry.kcv.hex().upper(),
    }
    if role == Role.AS:
        limit = "unlimited" if entry.limit == EXPORT_LIMIT_UNLIMITED else entry.limit
        return {**common, "diversify": entry.diversify, "exports": entry.count, "limit": limit}
    return {**common, "accepts_import": entry.accepts_import}


def _entry_row(entry: dict[str, Any], role: Role) -> list[str]:
    row = [
        f"{entry['ref']:02X}",
        "loaded" if entry["loaded"] else "empty",
        str(entry["key_length"]),
        entry["usage"],
        f"{entry['version']:04X}" if entry["loaded"] else "-",
    ]
    if role == Role.AS:
        exports = f"{entry['exports']}/{entry['limit']}"
        return [*row, "yes" if entry["diversify"] else "no", entry["kcv"], exports]
    kcv = entry["kcv"] if entry["loaded"] else "-"
    return [*row, "yes" if entry["accepts_import"] else "no", kcv]


_ENTRY_HEADERS = {
    Role.AS: ["ref1", "state", "bytes", "usage", "version", "diversify", "kcv", "exports/limit"],
    Role.EI: ["ref2", "state", "bytes", "usage", "version", "import", "kcv"],
}


@main.command()
@click.option("--reader", required=True, help=READER_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
def info(reader: str, as_json: bool) -> None:
    """Show one card: its INFO and its keys or slots.

    Shows the INFO of the AS or EI in the reader and LIST KEYS: references, usages, versions,
    KCVs and export counts; never a key.
    """
    with _open(reader) as transport:
        found = identify(transport)
        if found is None:
            raise KeyloadError(f"the card in reader '{transport.reader}' holds no keyload applet")
        card, card_info = found
        entries = [_entry_dict(entry, card.ROLE) for entry in card.list_keys()]
    document = {"reader": transport.reader, "info": _info_dict(card_info), "keys": entries}
    if as_json:
        click.echo(json.dumps(document, indent=2))
        return
    for label, value in document["info"].items():
        click.echo(f"{label.replace('_', ' ')}: {value if value != '' else '-'}")
    click.echo()
    rows = [_entry_row(entry, card.ROLE) for entry in entries]
    click.echo(format_table(_ENTRY_HEADERS[card.ROLE], rows) if rows else "no keys or slots")


@main.command()
def doctor() -> None:
    """Check pcscd, readers and cards; say what to run next.

    Read-only: lists every reader with its card, the applet it carries (AS, EI or none), its life
    cycle, serial, transport key KCV and tries left. Each problem comes with its fix in one line,
    then the next command to run. Exits 1 when something is wrong.
    """
    diagnosis = diagnose(Pcsc)
    click.echo(render_diagnosis(diagnosis))
    if not diagnosis.ok:
        sys.exit(1)


# ------------------------------------------------------------------------------ setup


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


@main.group()
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
    return click.option("--reader", required=True, help=READER_HELP)(function)


@setup.command("as")
@_setup_options
def setup_as_command(reader: str, config_path: Path, yes: bool) -> None:
    """Set up an AS from a TOML config, then LOCK it.

    Writes the transport key, the operator PIN and the application keys.

    Example config (references in hex; usage auth, mac or enc; key files hold hex and must be
    chmod 600; a secret may also be { env = "VAR" } or { prompt = true }):

    \b
        transport_key = { file = "t.key" }
        pin = { prompt = true }
        [[keys]]
        ref = 0x03
        usage = "auth"
        version = 1
        diversify = false
        export_limit = "unlimited"   # or a number of exports
        key = { file = "k03.key" }
    """
    config = load_as_setup(config_path)
    with _open(reader) as transport:
        card = AsCard(transport)
        _show_report(setup_as(card, config, _secret_loader))
        _lock(card, yes)


@setup.command("ei")
@_setup_options
def setup_ei_command(reader: str, config_path: Path, yes: bool) -> None:
    """Set up an EI from a TOML config, then LOCK it.

    Writes the transport key, the serial, the retry limit and the slots.

    Example config (references in hex; usage auth, mac or enc; the retry limit is 1 to 15,
    default 10):

    \b
        transport_key = { env = "KEYLOAD_T" }
        serial = "4B4C000000000001"
        retry_limit = 10
        [[slots]]
        ref = 0x01
        key_length = 16
        usage = "auth"
        accepts_import = true
    """
    config = load_ei_setup(config_path)
    with _open(reader) as transport:
        card = EiCard(transport)
        _show_report(setup_ei(card, config, _secret_loader))
        _lock(card, yes)


# ------------------------------------------------------------------------------ personalize


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


@main.command()
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
    callback=_loads,
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
        pcsc = stack.enter_context(Pcsc())
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


# ------------------------------------------------------------------------------ authenticate


@main.command()
@click.option("--reader", required=True, help="Reader holding the EI. " + READER_HELP)
@click.option("--ref", required=True, callback=_ref, help="Slot REF2 in hex (e.g. 01).")
@click.option(
    "--challenge",
    required=True,
    callback=_challenge,
    help="1 to 64 bytes in hex, e.g. 00112233.",
)
def authenticate(reader: str, ref: int, challenge: bytes) -> None:
    """Prove that an EI slot holds the expected key.

    Sends INTERNAL AUTHENTICATE and prints AES-CMAC(key in slot REF, CHALLENGE); compare it
    with the value computed by whoever knows the key.
    """
    with _open(reader) as transport:
        card = EiCard(transport)
        card.select()
        click.echo(card.internal_authenticate(ref, challenge).hex().upper())


# ------------------------------------------------------------------------------ sim


@contextmanager
def _station() -> Iterator[Any]:
    """Import the station lazily (it pulls in process management) and map its errors."""
    from . import station

    try:
        yield station
    except station.StationError as error:
        raise click.ClickException(str(error)) from None


def _show_station(status: Any) -> None:
    running = "running" if status.running else "stopped"
    pcscd = " (pcscd started by the station)" if status.pcscd_started_by_us else ""
    click.echo(f"station {running}{pcscd}")
    rows = [
        [slot.name, slot.port, slot.role or "-", slot.state, slot.apdus] for slot in status.readers
    ]
    if rows:
        click.echo(format_table(["reader", "port", "role", "state", "apdus"], rows))


ROLE_CHOICE = click.Choice(["AS", "EI"], case_sensitive=False)


@main.group()
def sim() -> None:
    """Run the simulated station (jCardSim cards in pcscd).

    jCardSim cards run behind virtual vpcd readers in pcscd.

    For development and tests without real cards: `sim up` starts readers with AS and EI cards,
    then every other command works on them as on real readers. READER in the commands below
    names a station reader as `sim status` lists it.
    """


@sim.command()
@click.option(
    "--as",
    "as_count",
    type=click.IntRange(0),
    default=1,
    show_default=True,
    help="Number of readers with an AS card.",
)
@click.option(
    "--ei",
    "ei_count",
    type=click.IntRange(0),
    default=1,
    show_default=True,
    help="Number of readers with an EI card.",
)
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
def up(
    as_count: int, ei_count: int, control_port: int, base_port: int | None, timeout: float, t0: bool
) -> None:
    """Start the station with AS and EI readers.

    Starts pcscd too if it is not running; the AS readers come first, then the EI readers.
    """
    roles = ["AS"] * as_count + ["EI"] * ei_count
    with _station() as station:
        if t0:
            roles = [f"{role}{station.PROTOCOL_SEPARATOR}T0" for role in roles]
        _show_station(
            station.up(roles, control_port=control_port, base_port=base_port, timeout=timeout)
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


# ------------------------------------------------------------------------------ bench


@main.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Directory for performance.json and performance.png (the plot needs matplotlib).",
)
@click.option("--quick", is_flag=True, help="A smoke run of a few cards: seconds, not minutes.")
@click.option(
    "--audit-dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Where personalize writes its audit log (default: /dev/shm, so that the disk's fsync "
    "latency stays out of the figures; give a disk directory to include it).",
)
def bench(out: Path, quick: bool, audit_dir: Path | None) -> None:
    """Benchmark personalize on the simulated station.

    Starts its own station (stop any running one first) and measures APDU round trips (against
    jCardSim's stock bridge), APDUs per card and per key, cards per second for 1 to 500 EI
    cards with the time split into host, audit log, PC/SC stack and card, the host overhead
    against a minimal pyscard loop, and throughput against the number of EI readers. Prints a
    table and writes the figures; docs/PERFORMANCE.md explains them. The full run takes about a
    quarter of an hour, mostly the station swapping 750 cards.
    """
    from . import bench as benchmark
    from . import bench_report

    options = benchmark.choose_options(quick=quick, audit_dir=audit_dir)
    report = benchmark.run(options, progress=lambda message: click.echo(f"== {message}", err=True))
    click.echo(bench_report.format_report(report))
    json_path, png_path = bench_report.write(report, out)
    click.echo(f"wrote {json_path}" + (f" and {png_path}" if png_path else ""))
    if png_path is None:
        click.echo("no plot: matplotlib is missing (pip install -e '.[bench]')", err=True)
