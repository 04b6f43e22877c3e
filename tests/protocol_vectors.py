"""The test vectors of PROTOCOL.md §6, read from the document itself, so that the tests follow the
contract rather than a copy of it: the reference crypto (``tests/unit/test_crypto.py``) value by
value, the AS applet on the station (``tests/station/test_integration.py``) APDU by APDU."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from keyload_host.protocol import Usage

PROTOCOL_DOC = Path(__file__).resolve().parents[1] / "docs" / "PROTOCOL.md"


@dataclass(frozen=True)
class ProtocolVector:
    """One §6 vector: its inputs, intermediate values and APDUs."""

    name: str
    transport_key: bytes
    transport_kcv: bytes
    app_key: bytes
    app_key_kcv: bytes
    serial: bytes
    challenge: bytes
    ref1: int
    ref2: int
    usage: Usage
    version: int
    diversify: bool
    t1: bytes
    k_enc: bytes
    k_mac: bytes
    unit_key: bytes | None
    """TA_unit, for a diversified key only."""
    unit_key_kcv: bytes | None
    header: bytes
    enc_key: bytes
    sas: bytes
    cas: bytes
    export_apdu: bytes
    export_response: bytes
    """Response data followed by the status word, as the card sends it."""
    import_apdu: bytes


_SECTION = re.compile(r"^## 6\. .*?(?=^## )", re.MULTILINE | re.DOTALL)
_VECTOR_HEADING = re.compile(r"^### (V\d+):.*$", re.MULTILINE)
_HEX = "[0-9A-F]+"
_VALUE = r"^\s+{name}\s+=\s+(?P<hex>{hex})(?:\s+\(KCV (?P<kcv>{hex})\))?\s*$"
_PARAMETERS = re.compile(
    r"REF1=(?P<ref1>[0-9A-F]{2}) REF2=(?P<ref2>[0-9A-F]{2}) usage=(?P<usage>[0-9A-F]{2}) "
    r"version=(?P<version>[0-9A-F]{4}) diversify=(?P<diversify>True|False)"
)
_APDU = r"^\s+{name}\s*(?:-> \w+)?\s*:\s*(?P<hex>{hex})\s*$"


def _matches(pattern: re.Pattern[str], body: str) -> list[re.Match[str]]:
    return list(pattern.finditer(body))


def _one(pattern: re.Pattern[str], body: str, vector: str, what: str) -> re.Match[str]:
    found = _matches(pattern, body)
    if len(found) != 1:
        raise ValueError(f"{PROTOCOL_DOC}: vector {vector} has {len(found)} lines for {what}")
    return found[0]


def _value_pattern(name: str) -> re.Pattern[str]:
    return re.compile(_VALUE.format(name=re.escape(name), hex=_HEX), re.MULTILINE)


def _value(body: str, vector: str, name: str) -> re.Match[str]:
    return _one(_value_pattern(name), body, vector, name)


def _apdu(body: str, vector: str, name: str) -> bytes:
    pattern = re.compile(_APDU.format(name=re.escape(name), hex=_HEX), re.MULTILINE)
    return bytes.fromhex(_one(pattern, body, vector, name)["hex"])


def _hex(match: re.Match[str], group: str = "hex") -> bytes:
    return bytes.fromhex(match[group] or "")


def _vector_bodies(
    path: Path, section: re.Pattern[str], heading: re.Pattern[str], number: str
) -> list[tuple[str, str]]:
    """Each vector of a section of ``path`` as (name, body); ``heading`` captures the name."""
    found = section.search(path.read_text())
    if found is None:
        raise ValueError(f"{path} has no section {number}")
    parts = heading.split(found.group())
    return list(zip(parts[1::2], parts[2::2], strict=True))


def _session(body: str, vector: str, enc_key: str, export: str, import_: str) -> dict[str, bytes]:
    """What every vector shows of one EXPORT/IMPORT session, by field name: T1, K_enc, K_mac,
    the header, the encrypted key (value ``enc_key``), SAS, CAS, and the ``export`` and
    ``import_`` APDU lines with the AS response."""
    return {
        "t1": _hex(_value(body, vector, "T1")),
        "k_enc": _hex(_value(body, vector, "K_enc")),
        "k_mac": _hex(_value(body, vector, "K_mac")),
        "header": _hex(_value(body, vector, "header")),
        "enc_key": _hex(_value(body, vector, enc_key)),
        "sas": _hex(_value(body, vector, "SAS")),
        "cas": _hex(_value(body, vector, "CAS")),
        "export_apdu": _apdu(body, vector, export),
        "export_response": _apdu(body, vector, "AS response"),
        "import_apdu": _apdu(body, vector, import_),
    }


def protocol_vectors(path: Path = PROTOCOL_DOC) -> list[ProtocolVector]:
    """Every vector of §6 of the project's PROTOCOL.md."""
    vectors = []
    for name, body in _vector_bodies(path, _SECTION, _VECTOR_HEADING, "6"):
        parameters = _one(_PARAMETERS, body, name, "REF1/REF2/usage/version/diversify")
        transport_key, app_key = _value(body, name, "T"), _value(body, name, "TA")
        unit_keys = _matches(_value_pattern("TA_unit"), body)
        if len(unit_keys) > 1:
            raise ValueError(f"{path}: vector {name} has {len(unit_keys)} lines for TA_unit")
        vectors.append(
            ProtocolVector(
                name=name,
                transport_key=_hex(transport_key),
                transport_kcv=_hex(transport_key, "kcv"),
                app_key=_hex(app_key),
                app_key_kcv=_hex(app_key, "kcv"),
                serial=_hex(_value(body, name, "SN")),
                challenge=_hex(_value(body, name, "R")),
                ref1=int(parameters["ref1"], 16),
                ref2=int(parameters["ref2"], 16),
                usage=Usage(int(parameters["usage"], 16)),
                version=int(parameters["version"], 16),
                diversify=parameters["diversify"] == "True",
                unit_key=_hex(unit_keys[0]) if unit_keys else None,
                unit_key_kcv=_hex(unit_keys[0], "kcv") if unit_keys else None,
                **_session(body, name, "encTA", "EXPORT KEY", "IMPORT KEY"),
            )
        )
    return vectors


@dataclass(frozen=True)
class RotationVector:
    """One §9.8 vector: a transport key rotation of one EI."""

    name: str
    transport_key: bytes
    transport_kcv: bytes
    new_transport_key: bytes
    new_transport_kcv: bytes
    serial: bytes
    challenge: bytes
    version: int
    t1: bytes
    k_enc: bytes
    k_mac: bytes
    header: bytes
    enc_key: bytes
    sas: bytes
    cas: bytes
    export_apdu: bytes
    export_response: bytes
    import_apdu: bytes


_ROTATION_SECTION = re.compile(r"^### 9\.8 .*?(?=^## |\Z)", re.MULTILINE | re.DOTALL)
_ROTATION_HEADING = re.compile(r"^### (R\d+):.*$", re.MULTILINE)


def rotation_vectors(path: Path = PROTOCOL_DOC) -> list[RotationVector]:
    """Every vector of §9.8 of the project's PROTOCOL.md."""
    vectors = []
    for name, body in _vector_bodies(path, _ROTATION_SECTION, _ROTATION_HEADING, "9.8"):
        old, new = _value(body, name, "T"), _value(body, name, "T_new")
        vectors.append(
            RotationVector(
                name=name,
                transport_key=_hex(old),
                transport_kcv=_hex(old, "kcv"),
                new_transport_key=_hex(new),
                new_transport_kcv=_hex(new, "kcv"),
                serial=_hex(_value(body, name, "SN")),
                challenge=_hex(_value(body, name, "R")),
                version=int(_value(body, name, "version")["hex"], 16),
                **_session(body, name, "encT", "EXPORT TRANSPORT KEY", "IMPORT TRANSPORT KEY"),
            )
        )
    return vectors
