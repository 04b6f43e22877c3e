"""The ``doctor`` command: pcscd, readers and cards checked read-only, each problem with its fix
and the next command to run; exit code 1 when something is wrong."""

from __future__ import annotations

import sys

import click

from ..doctor import diagnose, render
from . import options


@click.command()
def doctor() -> None:
    """Check pcscd, readers and cards; say what to run next.

    Read-only: lists every reader with its card, the applet it carries (AS, EI or none), its life
    cycle, serial, transport key KCV and tries left. Each problem comes with its fix in one line,
    then the next command to run. Exits 1 when something is wrong.
    """
    diagnosis = diagnose(options.pcsc)
    click.echo(render(diagnosis))
    if not diagnosis.ok:
        sys.exit(1)
