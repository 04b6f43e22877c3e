"""The card commands: ``readers`` (every reader and its card), ``info`` (one card's INFO and LIST
KEYS, as tables or JSON) and ``authenticate`` (INTERNAL AUTHENTICATE on an EI slot)."""

from __future__ import annotations

import json
import shlex
from typing import Any

import click

from ..cards import EiCard, identify
from ..config import USAGE_SHORT
from ..errors import KeyloadError
from ..protocol import EXPORT_LIMIT_UNLIMITED, Info, KeyEntry, Role, kcv_text
from ..tables import format_table
from ..transport import Transport
from . import options
from .options import READER_HELP, hex_text, open_reader, parse_challenge, parse_ref, reader_option


def _applet_row(transport: Transport) -> list[str]:
    found = identify(transport)
    if found is None:
        return ["none", "-", "-", "-"]
    card, info = found
    return [
        card.ROLE.name,
        info.life_cycle.name,
        hex_text(info.serial),
        kcv_text(info.transport_kcv) if info.transport_key_set else "not set",
    ]


@click.command()
def readers() -> None:
    """List the readers and the keyload card in each.

    For every reader: card present, which keyload applet answers (AS, EI or none), its life
    cycle, serial and transport key check value. A card that cannot be read (e.g. held by
    another program) says why.
    """
    rows = []
    with options.pcsc() as pcsc:
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
    click.echo(options.PASTE_HINT)


def _info_dict(info: Info) -> dict[str, Any]:
    return {
        "protocol_version": info.protocol_version,
        "role": info.role.name,
        "life_cycle": info.life_cycle.name,
        "transport_key_length": info.transport_key_length,
        "transport_kcv": kcv_text(info.transport_kcv),
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
        "kcv": kcv_text(entry.kcv),
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


@click.command()
@reader_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
def info(reader: str, as_json: bool) -> None:
    """Show one card: its INFO and its keys or slots.

    Shows the INFO of the AS or EI in the reader and LIST KEYS: references, usages, versions,
    KCVs and export counts; never a key.
    """
    with open_reader(reader) as transport:
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


@click.command()
@click.option("--reader", required=True, help="Reader holding the EI. " + READER_HELP)
@click.option("--ref", required=True, callback=parse_ref, help="Slot REF2 in hex (e.g. 01).")
@click.option(
    "--challenge",
    required=True,
    callback=parse_challenge,
    help="1 to 64 bytes in hex, e.g. 00112233.",
)
def authenticate(reader: str, ref: int, challenge: bytes) -> None:
    """Prove that an EI slot holds the expected key.

    Sends INTERNAL AUTHENTICATE and prints AES-CMAC(key in slot REF, CHALLENGE); compare it
    with the value computed by whoever knows the key.
    """
    with open_reader(reader) as transport:
        card = EiCard(transport)
        card.select()
        click.echo(card.internal_authenticate(ref, challenge).hex().upper())
