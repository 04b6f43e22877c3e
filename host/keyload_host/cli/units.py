"""What ``personalize`` adds for the units of a run: ``--expect`` (the manifest: unexpected cards
refused, the reconciliation at the end) and ``--ei-template`` (blank cards enrolled with the next
serial of the manifest or of ``--serial-range``), read before any card is touched."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

import click

from ..audit import AuditLog, AuditSink
from ..config import EiSetup, Load, load_ei_template
from ..enrolment import Enrolment, SerialAllocator, SerialPool
from ..inventory import StoreError, open_store
from ..manifest import (
    EXIT_INCOMPLETE,
    Manifest,
    ManifestGate,
    Reconciliation,
    load_manifest,
    reconcile,
    record,
)
from ..secret_sources import Secret, SecretKind, load_secret
from ..tables import format_table
from ..workflow import CardGate, CardReport

EXPECT_HELP = (
    "The EI serials this run may serve: a CSV file with a 'serial' column (hex) or a TOML file "
    "with serials = [...]. Any other card is refused before anything is spent; at the end (and "
    "on Ctrl-C) every expected unit is listed as loaded, failed or not seen; exit "
    f"{EXIT_INCOMPLETE} when one is not loaded. With --watch the session ends once every unit "
    "is loaded."
)
TEMPLATE_HELP = (
    "Enrol blank EI cards (in SETUP) as they come: set each up from this template (a `setup ei` "
    "config without serial: transport_key, retry_limit, slots) with the next unused serial of "
    "--expect or --serial-range, LOCK it and load it. Needs --audit and an inventory: serials "
    "are allocated there, never twice."
)
RANGE_HELP = "FIRST-LAST in hex: the serials --ei-template gives (instead of the --expect list)."


class Units:
    """The manifest and the enrolment of one run, and the cards it served."""

    def __init__(
        self,
        manifest: Manifest | None,
        template: EiSetup | None,
        template_path: Path | None,
        pool: SerialPool | None,
        transport_key: Secret | None,
    ) -> None:
        self.manifest = manifest
        self.template = template
        self.template_path = template_path
        self.pool = pool
        self.transport_key = transport_key
        self.loads: Sequence[Load] = ()
        self.reports: list[CardReport] = []
        self._lock = threading.Lock()

    @classmethod
    def read(
        cls,
        stack: ExitStack,
        expect: Path | None,
        ei_template: Path | None,
        serial_range: str | None,
    ) -> Units:
        """Read and check the files (and the template's transport key, once) before any card."""
        manifest = load_manifest(expect) if expect else None
        if ei_template is None:
            if serial_range:
                raise click.UsageError("--serial-range gives serials to --ei-template: give both")
            return cls(manifest, None, None, None, None)
        if serial_range and manifest:
            raise click.UsageError(
                "enrolment takes its serials from --expect or from --serial-range, not both"
            )
        if serial_range:
            try:
                pool = SerialPool.of_range(serial_range)
            except ValueError as error:
                raise click.BadParameter(str(error), param_hint="--serial-range") from None
        elif manifest:
            pool = SerialPool.of_manifest(manifest)
        else:
            raise click.UsageError(
                "--ei-template needs the serials to give: --expect or --serial-range"
            )
        template = load_ei_template(ei_template)
        transport_key = load_secret(template.transport_key, SecretKind.KEY, "transport key")
        stack.callback(transport_key.wipe)
        return cls(manifest, template, ei_template, pool, transport_key)

    def gates(
        self, stack: ExitStack, audit: AuditSink, audit_path: Path | None, store: str | None
    ) -> list[CardGate]:
        """The gates of the run: the enrolment first (a blank card gets an expected serial),
        then the manifest."""
        gates: list[CardGate] = []
        if self.template is not None:
            assert self.template_path and self.pool and self.transport_key
            if not isinstance(audit, AuditLog) or audit_path is None or store == "none":
                raise click.UsageError(
                    "--ei-template needs --audit and an inventory (not --store none): every "
                    "enrolment step is recorded, and the inventory makes sure no serial is "
                    "ever given twice"
                )
            try:
                opened = stack.enter_context(open_store(store, beside=audit_path))
            except StoreError as error:
                raise click.ClickException(f"enrolment needs the inventory: {error}") from None
            allocator = SerialAllocator(opened, self.pool, audit.station, audit.run)
            gates.append(
                Enrolment(
                    self.template, self.template_path.name, self.transport_key, allocator, audit
                )
            )
        if self.manifest is not None:
            gates.append(ManifestGate(self.manifest))
        return gates

    def on_card(self, report: CardReport) -> None:
        with self._lock:
            self.reports.append(report)

    def reconciliation(self) -> Reconciliation | None:
        if self.manifest is None:
            return None
        with self._lock:
            reports = list(self.reports)
        return reconcile(self.manifest, self.loads, reports)

    def all_loaded(self) -> bool:
        """With a manifest: every expected unit is loaded (watch mode may end)."""
        reconciliation = self.reconciliation()
        if reconciliation is None or not reconciliation.complete:
            return False
        click.echo("Every expected unit is loaded: the session ends.", err=True)
        return True

    def record(self, audit: AuditSink) -> Reconciliation | None:
        """The reconciliation into the audit log (before the session's end record)."""
        reconciliation = self.reconciliation()
        if reconciliation is not None and self.manifest is not None:
            record(audit, reconciliation, self.manifest)
        return reconciliation


def show(reconciliation: Reconciliation) -> None:
    """The reconciliation as a table: every expected unit, then the other cards refused."""
    rows = [
        [row.serial or "-", row.status.value, row.reader or "-", row.detail or "-"]
        for row in (*reconciliation.units, *reconciliation.others)
    ]
    click.echo("Reconciliation:")
    click.echo(format_table(["sn", "result", "reader", "why"], rows))
    click.echo(reconciliation.summary())


def exit_code(reconciliation: Reconciliation | None) -> int:
    """EXIT_INCOMPLETE when an expected unit is not loaded, else 0."""
    if reconciliation is None or reconciliation.complete:
        return 0
    return EXIT_INCOMPLETE
