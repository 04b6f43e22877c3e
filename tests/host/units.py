"""Many EI units personalized through the real workflow over fake cards (``serve_card``, as watch
mode serves a card), for the inventory's tests: an AS with a key shared by every unit (03 -> slot
01) and a key diversified per unit (10 -> slot 05), one fresh EI per serial."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from fakes import AppKey, FakeApplet, FakeTransport, Slot, make_as, make_ei
from keyload_host.audit import AuditSink, NullAuditLog
from keyload_host.cards import AsCard, EiCard
from keyload_host.config import Load
from keyload_host.protocol import Usage
from keyload_host.secret_sources import Secret, SecretKind
from keyload_host.workflow import AsPool, AsState, LoadResult, open_session, read_as, serve_card

TA03 = bytes(range(16))
TA10 = bytes(range(0x20, 0x30))
LOADS = (Load(0x03, 0x01), Load(0x10, 0x05))
PIN = b"1234"


def serial(number: int, prefix: int = 0x4B4C) -> bytes:
    return prefix.to_bytes(2) + number.to_bytes(6)


def as_pool(mac_version: int = 1) -> AsPool:
    """An AS opened as ``personalize`` opens it (SELECT, LIST KEYS, VERIFY), as a pool of one."""
    applet = make_as(
        k03=AppKey(TA03, Usage.AUTHENTICATE, 1),
        k10=AppKey(TA10, Usage.MAC, mac_version, diversify=True),
    )
    card = AsCard(FakeTransport("AS reader", applet))
    state = AsState(card.reader, *read_as(card))
    return AsPool([open_session(card, state, Secret(PIN, SecretKind.PIN))], NullAuditLog())


def personalize(
    pool: AsPool,
    serials: Iterable[bytes],
    audit: AuditSink,
    loads: Sequence[Load] = LOADS,
    reader: str = "EI reader 1",
    cards: dict[bytes, FakeApplet] | None = None,
) -> list[LoadResult]:
    """Serve the EI of each serial in turn through the workflow: from ``cards`` (where it is
    kept for a later run) or a fresh one."""
    results: list[LoadResult] = []
    cards = {} if cards is None else cards
    for sn in serials:
        applet = cards.setdefault(
            sn, make_ei(sn, s01=Slot(16, Usage.AUTHENTICATE), s05=Slot(16, Usage.MAC))
        )
        results += serve_card(pool, EiCard(FakeTransport(reader, applet)), loads, audit).results
    return results
