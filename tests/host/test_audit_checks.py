"""``audit verify`` against what cannot be edited, over fake cards: the AS's export counters find a
record deleted under a recomputed chain, and an EI at hand finds a record that lies about it."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from fakes import PIN, AppKey, FakeApplet, Slot, make_as, make_ei
from keyload_host.audit import line_hash
from keyload_host.cli import main
from keyload_host.protocol import Usage

TA03 = bytes(range(16))
TA10 = bytes(range(0x20, 0x30))
SERIALS = [bytes.fromhex(f"4B4C00000000000{n}") for n in (1, 2, 3)]


def cards() -> dict[str, FakeApplet | None]:
    readers: dict[str, FakeApplet | None] = {
        "AS reader": make_as(
            k03=AppKey(TA03, Usage.AUTHENTICATE, 1),
            k10=AppKey(TA10, Usage.MAC, 2, diversify=True),
        )
    }
    for number, serial in enumerate(SERIALS, start=1):
        readers[f"EI reader {number}"] = make_ei(
            serial, s01=Slot(16, Usage.AUTHENTICATE), s05=Slot(16, Usage.MAC)
        )
    return readers


def run(*args: str):
    return CliRunner().invoke(main, list(args), env={"PIN": PIN.decode()})


def personalize(audit: Path) -> None:
    readers = [arg for n in (1, 2, 3) for arg in ("--ei-reader", f"EI reader {n}")]
    result = run(
        "personalize", "--as-reader", "AS reader", *readers, "--load", "03:01", "--load", "10:05",
        "--audit", str(audit), "--pin-env", "PIN",
    )  # fmt: skip
    assert result.exit_code == 0, result.output


def rewrite(path: Path, keep) -> None:
    """Rewrite the log as someone who recomputes the chain would: drop or change records."""
    out: list[bytes] = []
    for line in path.read_bytes().splitlines():
        record = keep(json.loads(line))
        if record is None:
            continue
        record["seq"] = len(out)
        record["prev"] = line_hash(out[-1]) if out else None
        out.append(json.dumps(record, separators=(",", ":")).encode())
    path.write_bytes(b"".join(line + b"\n" for line in out))


def test_the_logs_match_the_as_counters_and_the_cards(fake_readers, tmp_path: Path) -> None:
    fake_readers(cards())
    audit = tmp_path / "audit.jsonl"
    personalize(audit)
    result = run(
        "audit", "verify", str(audit), "--as-reader", "AS reader",
        "--ei-reader", "EI reader 1", "--ei-reader", "EI reader 3",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "6 export(s) counted by the card, the same as the logs record" in result.output
    assert "EI 4B4C000000000001 in reader 'EI reader 1': its slots are what the logs say" in (
        result.output
    )
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    keys = [record for record in records if record["event"] == "key"]
    assert all(record["exported"] is True for record in keys)
    assert {record["kcv_t"] for record in keys} == {"cmac-aes:6F2F9B"}
    assert {record["usage"] for record in keys} == {"auth", "mac"}
    assert len({record["as_id"] for record in keys}) == 1


def test_the_as_counters_find_a_deleted_record_the_chain_cannot(
    fake_readers, tmp_path: Path
) -> None:
    fake_readers(cards())
    audit = tmp_path / "audit.jsonl"
    personalize(audit)
    rewrite(
        audit,
        lambda r: None if r.get("ei_sn") == "4B4C000000000002" and r.get("ref1") == 0x10 else r,
    )
    assert run("audit", "verify", str(audit)).exit_code == 0, "a recomputed chain is valid"
    result = run("audit", "verify", str(audit), "--as-reader", "AS reader")
    assert result.exit_code == 1
    assert (
        "problem: AS key 10: the AS counted 3 export(s), the logs record 2: 1 missing "
        "(a record deleted, or a log of this AS not given)"
    ) in result.output


def test_the_as_counters_find_an_invented_export(fake_readers, tmp_path: Path) -> None:
    fake_readers(cards())
    audit = tmp_path / "audit.jsonl"
    personalize(audit)
    personalize(tmp_path / "second.jsonl")  # nothing left to load: no export
    lines = audit.read_text().splitlines()
    extra = next(json.loads(line) for line in lines if '"event":"key"' in line)

    def keep(record):
        return record

    rewrite(audit, keep)
    with audit.open("a") as file:
        file.write(json.dumps(extra) + "\n")
    rewrite(audit, keep)
    result = run("audit", "verify", str(audit), "--as-reader", "AS reader")
    assert result.exit_code == 1
    assert "AS key 03: the logs record 4 export(s), the AS counted 3" in result.output


def test_a_card_at_hand_finds_a_record_that_lies_about_it(fake_readers, tmp_path: Path) -> None:
    fake_readers(cards())
    audit = tmp_path / "audit.jsonl"
    personalize(audit)

    def lie(record):
        if record.get("ei_sn") == "4B4C000000000001" and record.get("ref2") == 5:
            record["kcv"] = "cmac-aes:000000"
        return record

    rewrite(audit, lie)
    result = run(
        "audit", "verify", str(audit), "--ei-reader", "EI reader 1", "--ei-reader", "EI reader 2"
    )
    assert result.exit_code == 1
    assert "EI 4B4C000000000001 slot 05: the logs say version 0002 cmac-aes:000000" in (
        result.output
    )
    assert "EI 4B4C000000000002 in reader 'EI reader 2': its slots are what the logs say" in (
        result.output
    )
