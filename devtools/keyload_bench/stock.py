"""jCardSim's stock vpcd bridge, ``com.licel.jcardsim.remote.VSmartCard``, started with the same
keyload applet and install parameters as the station, for the round-trip comparison (how it is
driven: docs/DESIGN.md, Benchmark)."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from keyload_station import supervisor as station
from smartcard import scard

from .raw import BenchError, RawCard, raw_cards, select_command

STOCK_BRIDGE_CLASS = "com.licel.jcardsim.remote.VSmartCard"
CLA_JCARDSIM_INSTALL = 0x80
INS_JCARDSIM_INSTALL = 0xB8
START_TIMEOUT = 30.0
"""The bridge sleeps 3 s after connecting; the JVM and pcscd's next poll add about a second."""
STOP_TIMEOUT = 5.0
POLL_SECONDS = 0.05


def install_command(aid: bytes) -> bytes:
    """The stock bridge's create-applet APDU with GlobalPlatform-style install parameters."""
    parameters = bytes([len(aid)]) + aid + b"\x00\x00"
    return bytes([CLA_JCARDSIM_INSTALL, INS_JCARDSIM_INSTALL, 0, 0, len(parameters)]) + parameters


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _properties(vpcd_port: int, applet_class: str, aid: bytes) -> str:
    return "\n".join(
        [
            "com.licel.jcardsim.vsmartcard.host=127.0.0.1",
            f"com.licel.jcardsim.vsmartcard.port={vpcd_port}",
            f"com.licel.jcardsim.vsmartcard.reloader.port={_free_port()}",
            f"com.licel.jcardsim.card.applet.0.AID={aid.hex().upper()}",
            f"com.licel.jcardsim.card.applet.0.Class={applet_class}",
            "",
        ]
    )


def _await_card(reader: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Waits until PC/SC shows the stock bridge's card in ``reader``."""
    hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if hresult != scard.SCARD_S_SUCCESS:
        raise BenchError(f"no PC/SC context: {scard.SCardGetErrorMessage(hresult).strip()}")
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise BenchError(f"the stock bridge exited ({process.returncode}); see {log}")
            hresult, states = scard.SCardGetStatusChange(
                context, int(POLL_SECONDS * 1000), [(reader, scard.SCARD_STATE_UNAWARE)]
            )
            if hresult == scard.SCARD_S_SUCCESS and states[0][1] & scard.SCARD_STATE_PRESENT:
                return
            time.sleep(POLL_SECONDS)
        raise BenchError(f"the stock bridge's card did not appear in '{reader}'; see {log}")
    finally:
        scard.SCardReleaseContext(context)


@contextmanager
def stock_bridge_card(
    reader: str, vpcd_port: int, applet_class: str, aid: bytes, workdir: Path
) -> Iterator[RawCard]:
    """Run the stock bridge on ``vpcd_port`` (a reader the station leaves empty), install the
    applet there, and yield the card connected with the applet selected; stop it afterwards."""
    config = workdir / "jcardsim-vsmartcard.properties"
    config.write_text(_properties(vpcd_port, applet_class, aid))
    log = workdir / "jcardsim-vsmartcard.log"
    classpath = station.station_classpath(time.monotonic() + START_TIMEOUT)
    with log.open("wb") as output:
        process = subprocess.Popen(
            ["java", "-cp", classpath, STOCK_BRIDGE_CLASS, str(config)],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _await_card(reader, process, log)
        with raw_cards([reader]) as cards:
            card = cards[reader]
            card.command(install_command(aid))
            card.command(select_command(aid))
            yield card
    finally:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
