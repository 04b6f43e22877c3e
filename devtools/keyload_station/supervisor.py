"""Supervise the simulated station (jCardSim cards behind vpcd readers in pcscd): start it and
pcscd, record what was started in ``.station/``, and turn its control commands into functions that
return once PC/SC shows the result (read through ``transport.Pcsc``). See docs/DESIGN.md."""

from __future__ import annotations

import json
import math
import os
import select
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from keyload_host.errors import KeyloadError
from keyload_host.transport import Pcsc, PcscUnavailableError, TransportError

from . import timing as timing_profiles

ROLES = ("AS", "EI", "EMPTY")
EMPTY = "EMPTY"
CARD_ROLES = tuple(role for role in ROLES if role != EMPTY)
PROTOCOLS = ("T0", "T1")
PROTOCOL_SEPARATOR = ":"
TIMING_SEPARATOR = "@"
PULL_MOMENTS = ("before", "after")

STATE_DIR_ENV = "KEYLOAD_STATION_DIR"
READER_NAME_PREFIX = "keyload station"
READERS_PER_ENTRY = 2
VPCD_DRIVER_NAME = "libifdvpcd.so"
PCSCD_PID_FILE = Path("/run/pcscd/pcscd.pid")
PCSCD_DEFAULT_CONF_DIR = "/etc/reader.conf.d"
VPCD_DRIVER_DIRS = ("/usr/lib/pcsc/drivers/serial", "/usr/lib/pcsc/drivers", "/usr/local/lib/pcsc")
CONTROL_HOST = "127.0.0.1"
DEFAULT_BASE_PORT = 35963
PORT_SEARCH_SPAN = 200
STATION_MAIN_CLASS = "keyload.station.Station"
STATION_READY_LINE = b"READY"

# How long a single card event may take to reach PC/SC applications: the station's own wait for
# vpcd is 10 s (ControlProtocol.CONNECT_WAIT_MS), pcscd polls vpcd readers every 0.4 s.
CARD_EVENT_TIMEOUT = 15.0
CONTROL_TIMEOUT = CARD_EVENT_TIMEOUT + 5.0
QUIT_GRACE = 5.0
TERM_GRACE = 5.0
POLL_INTERVAL = 0.02
PORT_BLOCK_ATTEMPTS = 3
PORT_TAKEN_LOG_LINE = "Address already in use"
"""What pcscd's log says when vpcd cannot listen on its port."""
CARD_WAIT_SLICE = 0.5
"""Seconds of one PC/SC wait for a card event before looking again (a mute card changes no
state)."""
LOG_TAIL_LINES = 5


class StationError(KeyloadError):
    """The station could not do what was asked; the message says what to do about it."""


class _PortTakenError(StationError):
    """vpcd could not listen on a port of the block chosen for it (pcscd's log says so)."""


@dataclass(frozen=True)
class ReaderSlot:
    """One reader of the station as the station reports it.

    ``state`` is ``connected`` (vpcd has the card), ``waiting`` (a card is in but vpcd has not
    taken it) or ``removed`` (no card); ``role`` is ``EMPTY`` for a reader without a card;
    ``apdus`` counts the APDUs the reader received since the station started; ``timing`` names
    the reader's timing profile ("" when it answers as fast as jCardSim computes).
    """

    name: str
    port: int
    role: str
    state: str
    apdus: int
    timing: str = ""


@dataclass(frozen=True)
class StationStatus:
    """Whether the station answers, its readers, and whether it owns the pcscd it uses."""

    running: bool
    readers: list[ReaderSlot]
    pcscd_started_by_us: bool


@dataclass(frozen=True)
class _Run:
    """What ``up`` started, saved in state.json so that any later process can drive or stop it."""

    station_pid: int
    pcscd_pid: int | None
    pcscd_started_by_us: bool
    control_port: int
    base_port: int
    roles: list[str]
    readers: list[str]

    def port_of(self, reader: str) -> int:
        """The vpcd port of a reader given by its exact name."""
        if reader not in self.readers:
            known = ", ".join(f"'{name}'" for name in self.readers)
            raise StationError(f"the station has no reader named '{reader}'; its readers: {known}")
        return self.base_port + self.readers.index(reader)

    def reader_of(self, port: int) -> str:
        return self.readers[port - self.base_port]


# ------------------------------------------------------------------------------ public API


def reader_name(index: int) -> str:
    """The PC/SC name of the station's reader number ``index`` (0-based)."""
    entry, slot = divmod(index, READERS_PER_ENTRY)
    return f"{READER_NAME_PREFIX} {entry} 00 {slot:02d}"


def up(
    roles: Sequence[str] = ("AS", "EI"),
    *,
    control_port: int = 35990,
    base_port: int | None = None,
    timeout: float = 60.0,
    timing: str | None = None,
) -> StationStatus:
    """Start the station with one reader per role and return its status once usable.

    A role may name the protocol of the reader's cards, ``"EI:T0"``: they then answer as T=0 cards
    do (ATR offering T=0 only, 61xx and GET RESPONSE, 6Cxx), also the cards inserted later; the
    default is T=1. It may also name a timing profile (``timing.load``: a shipped name or a TOML
    path), ``"EI@jcop4"`` or ``"AS:T0@jcop3"``: the reader then answers each APDU no sooner than
    that model of a real card says; ``timing`` is the profile of the readers that name none
    (default: none, as fast as jCardSim computes).

    Builds the station (``ant station-classpath``), starts pcscd with the station's readers if
    no pcscd runs, starts the station and waits until every card is visible through PC/SC, all
    within ``timeout`` seconds. A station already up with the same roles and ports is left as
    it is; one up with others is an error (run ``down`` first).

    ``base_port`` is the first vpcd port. By default the station takes the first block of free
    ports from 35963 (Debian's vpcd default) when it starts pcscd itself: vpcd does not reuse a
    port that a recent connection still holds in TIME_WAIT, so a pcscd stopped less than a minute
    ago would otherwise keep the next one from listening. With a pcscd already running, the
    default is 35963.
    """
    wanted = _checked_roles(roles, timing)
    deadline = time.monotonic() + timeout
    previous = _load_run()
    if previous is not None:
        if _station_answers(previous):
            if (previous.roles, previous.control_port) == (wanted, control_port) and (
                base_port in (None, previous.base_port)
            ):
                return status()
            raise StationError(
                f"the station is already up with readers {previous.roles} on ports "
                f"{previous.base_port}.. (control {previous.control_port}); "
                "run `keyload-host sim down` first"
            )
        down()  # a run that died: clean up what it left behind
    classpath = station_classpath(deadline)
    readers = [reader_name(i) for i in range(len(wanted))]
    pcscd_pid, base_port = _ensure_pcscd(readers, base_port, deadline)
    station = None
    try:
        station = _start_station(classpath, wanted, control_port, base_port)
        _save_run(
            _Run(
                station_pid=station.pid,
                pcscd_pid=pcscd_pid,
                pcscd_started_by_us=pcscd_pid is not None,
                control_port=control_port,
                base_port=base_port,
                roles=wanted,
                readers=readers,
            )
        )
        _await_ready(station, deadline, timeout)
        expected = {
            name: _card_role(role) != EMPTY for name, role in zip(readers, wanted, strict=True)
        }
        _await_cards(expected, deadline, _not_seen_hint(pcscd_pid))
    except BaseException:
        if station is not None:
            down()
        elif pcscd_pid is not None:
            _terminate(pcscd_pid, "pcscd")
        raise
    return status()


def down() -> None:
    """Stop the station: QUIT, then terminate if needed; stop pcscd only if ``up`` started it.

    Does nothing when no station was started from this state directory.
    """
    run = _load_run()
    if run is None:
        return
    with suppress(StationError):  # not answering: terminated below
        control(run.control_port, "QUIT", timeout=QUIT_GRACE)
    _terminate(run.station_pid, STATION_MAIN_CLASS, grace=QUIT_GRACE)
    if run.pcscd_started_by_us and run.pcscd_pid is not None:
        _terminate(run.pcscd_pid, "pcscd")
    _state_file().unlink(missing_ok=True)


def status() -> StationStatus:
    """The station's readers as it reports them; ``running`` is False when it does not answer."""
    run = _load_run()
    if run is None:
        return StationStatus(running=False, readers=[], pcscd_started_by_us=False)
    try:
        lines = control(run.control_port, "STATUS")
    except StationError:
        return StationStatus(running=False, readers=[], pcscd_started_by_us=run.pcscd_started_by_us)
    slots = []
    for line in lines:
        port, role, state, apdus = line.split()
        reader = run.reader_of(int(port))
        profile = run.roles[run.readers.index(reader)].partition(TIMING_SEPARATOR)[2]
        slots.append(ReaderSlot(reader, int(port), role, state, int(apdus), profile))
    return StationStatus(running=True, readers=slots, pcscd_started_by_us=run.pcscd_started_by_us)


def insert(reader: str, role: str) -> None:
    """Put a fresh blank card (applet installed, SETUP state) of ``role`` into an empty reader.

    Returns once PC/SC applications see the card.
    """
    _card_event(reader, f"INSERT {{port}} {_checked_card_role(role)}", present=True)


def remove(reader: str) -> None:
    """Take the card out of a reader; it keeps its persistent state for ``reinsert``.

    Returns once PC/SC applications see the reader empty.
    """
    _card_event(reader, "REMOVE {port}", present=False)


def reinsert(reader: str) -> None:
    """Put the card last removed from (or pulled out of) a reader back: persistent state kept,
    transient state cleared, as after any power loss. Returns once PC/SC sees the card."""
    _card_event(reader, "REINSERT {port}", present=True)


def swap(reader: str, role: str | None = None) -> None:
    """Replace the card in a reader by a fresh blank one (default: of the same role).

    Applications see the old card leave and the new one arrive: the card is removed, PC/SC is
    waited for to show the reader empty, and only then is the new card inserted. (The station's
    own SWAP command inserts at once, and pcscd, which looks at vpcd readers every 0.4 s, may
    then never see the reader empty: no card event, so watch mode could take the new card for
    the old one.) Returns once the new card is visible through PC/SC.
    """
    run = _require_run()
    current = next(slot.role for slot in status().readers if slot.port == run.port_of(reader))
    if role is None and current == EMPTY:
        raise StationError(f"reader '{reader}' is empty: say which role to insert")
    new_role = _checked_card_role(role or current)
    if current != EMPTY:
        remove(reader)
    insert(reader, new_role)


def pull(reader: str, nth_apdu: int, when: str = "before") -> None:
    """Arm a card pull: the card leaves the reader at the ``nth_apdu``-th APDU from now (1 is
    the next one), ``before`` the applet sees it or ``after`` it processed it; either way the
    host gets no response. ``reinsert`` puts the card back."""
    if when not in PULL_MOMENTS:
        raise StationError(f"a pull happens 'before' or 'after' the APDU, not '{when}'")
    if nth_apdu < 1:
        raise StationError(f"the APDU number of a pull counts from 1, got {nth_apdu}")
    run = _require_run()
    control(run.control_port, f"PULL {run.port_of(reader)} {nth_apdu} {when}")


def stall(reader: str, nth_apdu: int) -> None:
    """Arm a stall: the card stays in the reader but never answers the ``nth_apdu``-th APDU from
    now (the applet never sees it), as a hung reader; ``remove`` ends it."""
    if nth_apdu < 1:
        raise StationError(f"the APDU number of a stall counts from 1, got {nth_apdu}")
    run = _require_run()
    control(run.control_port, f"STALL {run.port_of(reader)} {nth_apdu}")


def card_seconds(readers: Sequence[str]) -> float:
    """Seconds the cards of ``readers`` have spent on APDUs since the station started: jCardSim's
    time, or the timing model's where a reader follows one (the control command TIMES)."""
    run = _require_run()
    ports = {run.port_of(reader) for reader in readers}
    lines = control(run.control_port, "TIMES")
    nanos = sum(int(line.split()[2]) for line in lines if int(line.split()[0]) in ports)
    return nanos / 1e9


def set_timing(reader: str, profile: str | None) -> None:
    """Make ``reader`` follow another of the station's timing profiles from its next APDU on
    (one that a reader of ``up`` named), or none (None: as fast as jCardSim computes), e.g. to
    set a card up at full speed before it is timed."""
    run = _require_run()
    control(
        run.control_port, f"TIMING {run.port_of(reader)} {profile or timing_profiles.NO_TIMING}"
    )


def restart_pcscd(timeout: float = 30.0) -> None:
    """Restart the pcscd that ``up`` started, as a crash or an upgrade of pcscd would; returns
    once every card is visible again. The station treats the lost connections as power losses
    and reconnects on its own: cards keep their persistent state."""
    run = _require_run()
    if not run.pcscd_started_by_us or run.pcscd_pid is None:
        raise StationError(
            "the station did not start the running pcscd; restart it the way it was started"
        )
    deadline = time.monotonic() + timeout
    _terminate(run.pcscd_pid, "pcscd")
    pid = _start_pcscd(run.readers, run.base_port, deadline)
    _save_run(replace(run, pcscd_pid=pid))
    expected = {slot.name: slot.role != EMPTY for slot in status().readers}
    _await_cards(expected, deadline, "the station did not reconnect its cards")


# ------------------------------------------------------------------------------ control port


def control(port: int, command: str, timeout: float = CONTROL_TIMEOUT) -> list[str]:
    """Sends one line of the station's control protocol (jcardsim/README.md) to the station on
    ``port``; returns the lines before OK; ERR becomes a StationError."""
    try:
        with socket.create_connection((CONTROL_HOST, port), timeout=timeout) as connection:
            connection.sendall(command.encode("ascii") + b"\n")
            lines = []
            with connection.makefile("r", encoding="ascii", newline="\n") as replies:
                for raw in replies:
                    line = raw.rstrip("\n")
                    if line == "OK":
                        return lines
                    if line.startswith("ERR "):
                        raise StationError(f"the station refused {command.split()[0]}: {line[4:]}")
                    lines.append(line)
    except ConnectionRefusedError:
        raise StationError(
            f"the station is not running (nothing listens on control port {port}); "
            "start it with `keyload-host sim up`"
        ) from None
    except OSError as error:
        raise StationError(f"talking to the station on port {port} failed: {error}") from None
    raise StationError(f"the station closed the control connection during {command.split()[0]}")


def _card_event(reader: str, command: str, *, present: bool) -> None:
    """Runs a control command on a reader, then waits until PC/SC shows it with(out) a card."""
    run = _require_run()
    control(run.control_port, command.format(port=run.port_of(reader)))
    _await_cards({reader: present}, time.monotonic() + CARD_EVENT_TIMEOUT, "")


def _station_answers(run: _Run) -> bool:
    try:
        control(run.control_port, "STATUS", timeout=QUIT_GRACE)
    except StationError:
        return False
    return True


# ------------------------------------------------------------------------------ PC/SC


def _known_readers(pcsc: Pcsc) -> list[str]:
    """The readers pcscd knows; a failure other than pcscd's absence is the station's error."""
    try:
        return pcsc.reader_names()
    except PcscUnavailableError:
        raise
    except TransportError as error:
        raise StationError(f"listing PC/SC readers failed: {error}") from None


def _pcsc_readers() -> list[str] | None:
    """The readers pcscd knows, or None when no pcscd answers (a fresh context each time: pcscd
    may have restarted since the last one)."""
    try:
        with Pcsc() as pcsc:
            return _known_readers(pcsc)
    except PcscUnavailableError:
        return None


def _cards_present(readers: Sequence[str]) -> dict[str, bool | None]:
    """For each reader: whether a responsive card is in it (None: pcscd does not know it, or
    does not answer), through a fresh context (pcscd may have restarted since the last one)."""
    try:
        with Pcsc() as pcsc:
            return _presence(pcsc, readers)
    except TransportError:  # pcscd gone, or the reader states unreadable: nothing seen
        return dict.fromkeys(readers)


def _presence(pcsc: Pcsc, readers: Sequence[str]) -> dict[str, bool | None]:
    """``_cards_present`` through ``pcsc``; TransportError when pcscd does not answer."""
    found: dict[str, bool | None] = dict.fromkeys(readers)
    asked = [name for name in readers if name in _known_readers(pcsc)]
    for status in pcsc.readers(asked) if asked else []:
        found[status.name] = status.card_present and not status.card_mute
    return found


def _await_cards(expected: Mapping[str, bool], deadline: float, hint: str) -> None:
    """Waits until PC/SC shows a card in (True) or no card in (False) each reader: blocked in
    PC/SC's own wait on one context while pcscd answers, a fresh context after it did not."""
    while True:
        try:
            with Pcsc() as pcsc:
                while True:
                    seen = _presence(pcsc, list(expected))
                    if _all_as_expected(expected, seen, deadline, hint):
                        return
                    known = [name for name in expected if seen[name] is not None]
                    left = max(0.0, deadline - time.monotonic())
                    if known:
                        pcsc.wait_for_change(pcsc.readers(known), min(left, CARD_WAIT_SLICE))
                    else:
                        time.sleep(POLL_INTERVAL)
        except TransportError:  # pcscd went away meanwhile: look again through a new context
            if _all_as_expected(expected, _cards_present(list(expected)), deadline, hint):
                return
            time.sleep(POLL_INTERVAL)


def _all_as_expected(
    expected: Mapping[str, bool], seen: Mapping[str, bool | None], deadline: float, hint: str
) -> bool:
    """Whether every reader is as expected; a StationError once ``deadline`` has passed."""
    wrong = [name for name, want in expected.items() if seen[name] is not want]
    if not wrong:
        return True
    if time.monotonic() >= deadline:
        described = ", ".join(
            f"'{name}' ({_describe(seen[name])}, expected {_describe(expected[name])})"
            for name in wrong
        )
        advice = " ".join(filter(None, [hint, f"See {_state_dir() / 'station.log'}."]))
        raise StationError(f"PC/SC does not show the expected cards in time: {described}. {advice}")
    return False


def _describe(present: bool | None) -> str:
    return {None: "reader unknown to pcscd", True: "card", False: "no card"}[present]


def _not_seen_hint(pcscd_pid: int | None) -> str:
    if pcscd_pid is not None:
        return ""
    return (
        "The running pcscd was not started by the station: it may serve these reader names on "
        "other vpcd ports, or be stuck; stop it and run `keyload-host sim up` again."
    )


# ------------------------------------------------------------------------------ pcscd


def _ensure_pcscd(
    readers: Sequence[str], base_port: int | None, deadline: float
) -> tuple[int | None, int]:
    """Starts pcscd with the station's readers if none runs. Returns its pid (None when a
    running pcscd already has the readers) and the first vpcd port (see ``up``)."""
    known = _pcsc_readers()
    if known is None:
        if base_port is not None:
            return _start_pcscd(readers, base_port, deadline), base_port
        # The ports are in the kernel's ephemeral range: an outgoing connection can take one
        # between the check and vpcd's bind. Then the next free block is tried.
        start = DEFAULT_BASE_PORT
        for attempt in range(PORT_BLOCK_ATTEMPTS):
            start = _free_port_block(len(readers), start)
            try:
                return _start_pcscd(readers, start, deadline), start
            except _PortTakenError:
                if attempt == PORT_BLOCK_ATTEMPTS - 1:
                    raise
                start += READERS_PER_ENTRY
    missing = [name for name in readers if name not in known]
    if missing:
        raise StationError(
            f"a pcscd not started by the station is running without the station's readers "
            f"({', '.join(missing)}). Stop it (e.g. `systemctl stop pcscd.socket pcscd` or kill "
            f"it) so that `keyload-host sim up` can start its own with the station's readers."
        )
    _check_foreign_vpcd_entries()
    return None, DEFAULT_BASE_PORT if base_port is None else base_port


def _free_port_block(count: int, first: int = DEFAULT_BASE_PORT) -> int:
    """The first port from ``first`` (in steps of one reader.conf entry) such that vpcd can
    listen on it and the ``count - 1`` ports after it: bound here as vpcd binds, without
    SO_REUSEADDR, so a port held in TIME_WAIT counts as taken."""
    last_start = DEFAULT_BASE_PORT + PORT_SEARCH_SPAN - count
    for start in range(first, last_start + 1, READERS_PER_ENTRY):
        if all(_can_listen(port) for port in range(start, start + count)):
            return start
    raise StationError(
        f"no {count} free consecutive TCP ports for vpcd between {DEFAULT_BASE_PORT} and "
        f"{DEFAULT_BASE_PORT + PORT_SEARCH_SPAN - 1}; wait a minute or pass a base port"
    )


def _can_listen(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("", port))
        except OSError:
            return False
    return True


def _check_foreign_vpcd_entries() -> None:
    """Refuses a running pcscd whose configuration shares one vpcd driver file between several
    reader.conf entries (see ``_driver_for_entry``): the first entries' readers would talk to
    the last entry's ports, and the station would wait for nothing."""
    try:
        pid = int(PCSCD_PID_FILE.read_text().split()[0])
        arguments = (Path(f"/proc/{pid}") / "cmdline").read_bytes().decode().split("\0")
    except (OSError, ValueError, IndexError):
        return  # nothing to inspect: the wait for the cards will tell
    conf = _pcscd_conf_dir(arguments)
    shared = _shared_vpcd_drivers(conf)
    if shared:
        raise StationError(
            f"the running pcscd (pid {pid}, not started by the station) loads {shared[0]} for "
            f"several reader.conf entries in {conf}; vpcd then serves only the last entry's "
            "ports, so the station's cards would never appear. Stop that pcscd and run "
            "`keyload-host sim up` again: it starts a pcscd with one driver copy per entry."
        )


def _pcscd_conf_dir(arguments: Sequence[str]) -> Path:
    """The reader.conf.d directory a pcscd command line uses."""
    conf = Path(PCSCD_DEFAULT_CONF_DIR)
    for index, argument in enumerate(arguments):
        if argument in ("-c", "--config") and index + 1 < len(arguments):
            conf = Path(arguments[index + 1])
        elif argument.startswith("--config="):
            conf = Path(argument.split("=", 1)[1])
    return conf


def _shared_vpcd_drivers(conf: Path) -> list[str]:
    """vpcd driver files that more than one entry of a reader.conf.d directory loads."""
    try:
        entries = [path.read_text(errors="replace") for path in sorted(conf.iterdir())]
    except OSError:
        return []
    drivers = [
        words[1]
        for text in entries
        for words in (line.split() for line in text.splitlines())
        if len(words) == 2 and words[0] == "LIBPATH" and words[1].endswith(VPCD_DRIVER_NAME)
    ]
    return sorted({driver for driver in drivers if drivers.count(driver) > 1})


def _start_pcscd(readers: Sequence[str], base_port: int, deadline: float) -> int:
    """Writes the station's reader.conf.d and starts pcscd on it; waits until it lists them."""
    pcscd = _tool("pcscd", "the Debian package pcscd")
    _write_reader_conf(len(readers), base_port)
    with (_state_dir() / "pcscd.log").open("wb") as log:
        process = subprocess.Popen(
            [pcscd, "--foreground", "--config", str(_conf_dir())],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    while True:
        if process.poll() is not None:
            raise StationError(
                f"pcscd exited ({process.returncode}) right after starting: "
                f"{_log_tail('pcscd.log')}"
            )
        known = _pcsc_readers()
        if known is not None and all(name in known for name in readers):
            return process.pid
        if PORT_TAKEN_LOG_LINE in _read_log("pcscd.log"):
            _terminate(process.pid, "pcscd")
            raise _PortTakenError(
                f"a vpcd port from {base_port} was taken: {_log_tail('pcscd.log')}"
            )
        if time.monotonic() >= deadline:
            _terminate(process.pid, "pcscd")
            raise StationError(
                f"pcscd did not list the station's readers in time: {_log_tail('pcscd.log')}"
            )
        time.sleep(POLL_INTERVAL)


def _write_reader_conf(reader_count: int, base_port: int) -> None:
    """One vpcd entry per two readers: entry K serves ports base_port + 2K and + 2K + 1."""
    conf = _conf_dir()
    conf.mkdir(parents=True, exist_ok=True)
    for old in conf.iterdir():
        old.unlink()
    for entry in range(math.ceil(reader_count / READERS_PER_ENTRY)):
        port = base_port + READERS_PER_ENTRY * entry
        (conf / f"keyload-station-{entry}").write_text(
            f'FRIENDLYNAME "{READER_NAME_PREFIX} {entry}"\n'
            f"DEVICENAME /dev/null:{port}\n"
            f"LIBPATH {_driver_for_entry(entry)}\n"
            f"CHANNELID {port}\n"
        )


def _driver_for_entry(entry: int) -> Path:
    """The vpcd driver file for reader.conf entry ``entry``.

    vpcd keeps its readers in one static array indexed by slot number (0 and 1), shared by every
    entry that loads the same library: a second entry would silently take over the first one's
    slots, and its ports would never be served. pcscd loads a driver once per path and the
    dynamic loader once per file, so each further entry gets its own copy of the driver.
    """
    driver = _vpcd_driver()
    if entry == 0:
        return driver
    copy = _state_dir() / "drivers" / f"{driver.stem}-{entry}{driver.suffix}"
    if not copy.is_file() or copy.read_bytes() != driver.read_bytes():
        copy.parent.mkdir(exist_ok=True)
        partial = copy.with_suffix(".partial")
        shutil.copyfile(driver, partial)
        partial.replace(copy)
    return copy


def _vpcd_driver() -> Path:
    for directory in VPCD_DRIVER_DIRS:
        found = sorted(Path(directory).rglob(VPCD_DRIVER_NAME)) if Path(directory).is_dir() else []
        if found:
            return found[0]
    raise StationError(
        f"the vpcd driver {VPCD_DRIVER_NAME} is not installed; install the Debian package "
        "vsmartcard-vpcd"
    )


# ------------------------------------------------------------------------------ the Java station


def station_classpath(deadline: float) -> str:
    """Builds the station and its applets with Ant and returns the classpath it runs with."""
    ant = _tool("ant", "the Debian package ant")
    try:
        built = subprocess.run(
            [ant, "-q", "station-classpath"],
            cwd=_repo_root(),
            capture_output=True,
            text=True,
            timeout=max(deadline - time.monotonic(), 1.0),
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise StationError(
            "building the station (ant station-classpath) took longer than the timeout; "
            "run `ant station` once, then try again"
        ) from None
    echoed = [
        line.split("[echo]", 1)[1].strip() for line in built.stdout.splitlines() if "[echo]" in line
    ]
    if built.returncode != 0 or not echoed:
        tail = "\n".join((built.stdout + built.stderr).strip().splitlines()[-LOG_TAIL_LINES:])
        raise StationError(f"building the station failed (ant station-classpath):\n{tail}")
    return echoed[-1]


def _start_station(
    classpath: str, roles: Sequence[str], control_port: int, base_port: int
) -> subprocess.Popen[bytes]:
    java = _tool("java", "a Java 17 runtime (Debian package openjdk-17-jdk-headless)")
    command = [java, "-cp", classpath, STATION_MAIN_CLASS, "--vpcd-host", CONTROL_HOST]
    command += ["--control-port", str(control_port)]
    profiles: dict[str, timing_profiles.CardTiming] = {}
    for index, spec in enumerate(roles):
        card, _, profile = spec.partition(TIMING_SEPARATOR)
        reader = f"{base_port + index}={card}"
        if profile:
            model = timing_profiles.load(profile)
            profiles.setdefault(model.name, model)
            reader += f"{TIMING_SEPARATOR}{model.name}"
        command += ["--reader", reader]
    for model in profiles.values():
        command += ["--timing", model.station_argument()]
    with (_state_dir() / "station.log").open("wb") as log:
        return subprocess.Popen(
            command,
            cwd=_repo_root(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            start_new_session=True,
        )


def _await_ready(station: subprocess.Popen[bytes], deadline: float, timeout: float) -> None:
    """Waits for the station's READY line (every card taken by vpcd)."""
    assert station.stdout is not None
    output = b""
    try:
        while STATION_READY_LINE not in output.splitlines():
            left = deadline - time.monotonic()
            readable = select.select([station.stdout], [], [], max(left, 0))[0] if left > 0 else []
            if not readable:
                raise StationError(
                    f"the station was not ready within {timeout:g} s (vpcd did not take every "
                    f"card): {_log_tail('station.log')}"
                )
            chunk = os.read(station.stdout.fileno(), 4096)
            if not chunk:
                station.wait()
                raise StationError(
                    f"the station exited ({station.returncode}) before it was ready: "
                    f"{_log_tail('station.log')}"
                )
            output += chunk
    finally:
        station.stdout.close()


# ------------------------------------------------------------------------------ processes


def _terminate(pid: int, marker: str, grace: float = 0.0) -> None:
    """Ends a process we started (checked by ``marker`` in its command line, against pid reuse):
    waits ``grace`` seconds for it to exit by itself, then SIGTERM to its process group, then
    SIGKILL."""
    for sig in (None, signal.SIGTERM, signal.SIGKILL):
        if not _is_running(pid, marker):
            return
        if sig is not None:
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                return
        deadline = time.monotonic() + (grace if sig is None else TERM_GRACE)
        while _is_running(pid, marker) and time.monotonic() < deadline:
            time.sleep(POLL_INTERVAL)


def _is_running(pid: int, marker: str) -> bool:
    """Whether pid is alive (not a zombie) and runs a command line containing ``marker``."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False  # our own child, just reaped
    except ChildProcessError:
        pass  # started by another process: only /proc can tell
    proc = Path(f"/proc/{pid}")
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X") and marker in cmdline


def _tool(name: str, package: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found is None:
        raise StationError(f"{name} is not installed; install {package}")
    return found


# ------------------------------------------------------------------------------ state


def _repo_root() -> Path:
    """The source checkout this module belongs to (the station is built from it)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "build.xml").is_file():
        raise StationError(
            f"the station runs from a keyload source checkout, but {root} has no build.xml; "
            "install keyload-devtools in editable mode (pip install -e devtools) from the checkout"
        )
    return root


def _state_dir() -> Path:
    configured = os.environ.get(STATE_DIR_ENV)
    directory = Path(configured) if configured else _repo_root() / ".station"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _conf_dir() -> Path:
    return _state_dir() / "reader.conf.d"


def _state_file() -> Path:
    return _state_dir() / "state.json"


def _save_run(run: _Run) -> None:
    temporary = _state_file().with_suffix(".tmp")
    temporary.write_text(json.dumps(asdict(run), indent=2) + "\n")
    temporary.replace(_state_file())


def _load_run() -> _Run | None:
    try:
        return _Run(**json.loads(_state_file().read_text()))
    except FileNotFoundError:
        return None
    except (ValueError, TypeError) as error:
        raise StationError(
            f"{_state_file()} is damaged ({error}); stop the station's processes "
            "(java keyload.station.Station, and pcscd if the station started it) and delete it"
        ) from None


def _require_run() -> _Run:
    run = _load_run()
    if run is None:
        raise StationError("the station is not up; start it with `keyload-host sim up`")
    return run


def _read_log(log_name: str) -> str:
    """A log of the state directory, "" when there is none yet."""
    try:
        return (_state_dir() / log_name).read_text(errors="replace")
    except FileNotFoundError:
        return ""


def _log_tail(log_name: str) -> str:
    lines = _read_log(log_name).strip().splitlines()
    return " | ".join(lines[-LOG_TAIL_LINES:]) or f"({log_name} is empty or missing)"


def _card_role(spec: str) -> str:
    """The role of a reader spec ``ROLE[:PROTOCOL][@TIMING]``."""
    return spec.partition(TIMING_SEPARATOR)[0].partition(PROTOCOL_SEPARATOR)[0]


def _checked_roles(roles: Sequence[str], default_timing: str | None = None) -> list[str]:
    """The reader specs in the station's form: role and protocol upper case, every timing
    profile found (and named by path where it is not a shipped one)."""
    wanted = []
    for spec in roles:
        card, _, profile = spec.partition(TIMING_SEPARATOR)
        card = card.upper()
        role, _, protocol = card.partition(PROTOCOL_SEPARATOR)
        if role not in ROLES or protocol not in ("", *PROTOCOLS):
            raise StationError(
                f"station roles must be among {', '.join(ROLES)}, optionally with "
                f"{PROTOCOL_SEPARATOR}{' or :'.join(PROTOCOLS)} and {TIMING_SEPARATOR}PROFILE, "
                f"got {list(roles)}"
            )
        profile = profile or default_timing or ""
        if profile:
            timing_profiles.load(profile)  # found and readable, or a TimingError now
        wanted.append(f"{card}{TIMING_SEPARATOR}{profile}" if profile else card)
    if not wanted:
        raise StationError(f"the station needs at least one reader, got {list(roles)}")
    return wanted


def _checked_card_role(role: str) -> str:
    upper = role.upper()
    if upper not in CARD_ROLES:
        raise StationError(
            f"a card's role is one of {', '.join(CARD_ROLES)}, got '{role}' "
            "(to leave a reader empty, use remove)"
        )
    return upper
