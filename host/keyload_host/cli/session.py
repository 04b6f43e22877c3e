"""What the commands that serve many readers share (``personalize``, ``rotate-transport``): one
PC/SC context per reader, the EI connections and opener, the readers resolved from the command
line, and where the AS operator PIN comes from."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

import click

from .. import workflow
from ..cards import EiCard
from ..secret_sources import Secret, SecretKind, SecretSource, load_secret
from ..transport import Pcsc, PcscTransport
from . import options

PIN_LABEL = "AS operator PIN"
CLOSE_TIMEOUT = 2.0
"""Seconds closing one connection or context may take when the session ends."""


def pin_source(pin_env: str | None, pin_file: Path | None) -> SecretSource:
    if pin_env and pin_file:
        raise click.UsageError("give --pin-env or --pin-file, not both")
    if pin_env:
        return SecretSource(env=pin_env)
    if pin_file:
        return SecretSource(file=pin_file)
    return SecretSource(prompt=True)


_PIN_OPTIONS = (
    click.option("--pin-env", metavar="VAR", help="Read the AS operator PIN from this variable."),
    click.option(
        "--pin-file",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Read the AS operator PIN from this file (must be chmod 600).",
    ),
)


def pin_options(function):  # type: ignore[no-untyped-def]
    """The ``--pin-env`` and ``--pin-file`` options of a command (see ``pin_reader``)."""
    for option in reversed(_PIN_OPTIONS):
        function = option(function)
    return function


def pin_reader(
    pin_env: str | None, pin_file: Path | None, stack: ExitStack
) -> Callable[[], Secret]:
    """The PIN source, read early when it is a file or a variable, so that it is checked before
    any card is touched (and wiped when ``stack`` closes); only a prompt waits for the cards to
    be checked, so that nobody types the PIN for a batch that cannot run."""
    source = pin_source(pin_env, pin_file)
    early = None if source.prompt else load_secret(source, SecretKind.PIN, PIN_LABEL)
    if early is not None:
        stack.callback(early.wipe)

    def read_pin() -> Secret:
        return early if early is not None else load_secret(source, SecretKind.PIN, PIN_LABEL)

    return read_pin


class Contexts:
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


def connect_ei(pcsc: Pcsc, reader: str) -> PcscTransport:
    """An EI connection for loading: closed without a reset (see ``PcscTransport``)."""
    return pcsc.connect(reader, reset=False)


def ei_opener(contexts: Contexts) -> workflow.EiOpener:
    @contextmanager
    def open_ei(reader: str) -> Iterator[EiCard]:
        with connect_ei(contexts(reader), reader) as transport:
            yield EiCard(transport)

    return open_ei


def resolve_readers(
    pcsc: Pcsc, as_readers: Sequence[str], ei_readers: Sequence[str]
) -> tuple[list[str], list[str]]:
    as_names = [pcsc.find_reader(pattern) for pattern in as_readers]
    ei_names = [pcsc.find_reader(pattern) for pattern in ei_readers]
    names = as_names + ei_names
    for name in names:
        if names.count(name) > 1:
            raise click.UsageError(f"reader '{name}' is given twice (AS and EI readers differ)")
    return as_names, ei_names
