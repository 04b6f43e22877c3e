"""Transport key rotation over the fake applets (PROTOCOL.md §9): the CLI's batch, what it sends,
skipped and refused cards, personalize of a rotated card during the campaign, retire."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from fakes import OTHER_T16, T16, AppKey, Slot, make_as, make_ei
from keyload_host import crypto
from keyload_host.cli import main
from keyload_host.protocol import LifeCycle, Usage, kcv_text

T_NEXT = bytes(range(0x80, 0xA0))
TA03 = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
SN1, SN2, SN3 = (bytes.fromhex(f"4B4C00000000000{n}") for n in (1, 2, 3))
PIN_ENV = {"KEYLOAD_TEST_PIN": "1234"}


def _as():
    applet = make_as(k03=AppKey(TA03, Usage.AUTHENTICATE, 1))
    applet.next_transport_key, applet.next_transport_version = T_NEXT, 2
    return applet


def _ei(serial: bytes):
    return make_ei(serial, s01=Slot(16, Usage.AUTHENTICATE))


def _invoke(*args: str):
    return CliRunner().invoke(main, list(args), env=PIN_ENV, catch_exceptions=False)


def _rotate(*readers: str, audit: Path | None = None):
    args = ["rotate-transport", "--as-reader", "AS", "--pin-env", "KEYLOAD_TEST_PIN"]
    args += [arg for reader in readers for arg in ("--ei-reader", reader)]
    args += ["--store", "none"] + (["--audit", str(audit)] if audit else [])
    return _invoke(*args)


def test_a_batch_rotates_every_ei_and_skips_the_rotated(fake_readers, tmp_path: Path) -> None:
    as_applet, eis = _as(), [_ei(SN1), _ei(SN2), _ei(SN3)]
    eis[2].transport_key, eis[2].transport_version = T_NEXT, 2
    pcsc = fake_readers({"AS": as_applet, "EI 1": eis[0], "EI 2": eis[1], "EI 3": eis[2]})
    audit = tmp_path / "audit.jsonl"
    result = _rotate("EI 1", "EI 2", "EI 3", audit=audit)
    assert result.exit_code == 0, result.output
    assert "2 rotated, 1 skipped, 0 failed" in result.output
    for ei in eis:
        assert (ei.transport_key, ei.transport_version) == (T_NEXT, 2)
    sent = pcsc.transports["EI 1"].instructions()
    assert sent[-3:] == ["GET_CHALLENGE", "IMPORT_TRANSPORT_KEY", "GET_INFO"]
    assert "IMPORT_TRANSPORT_KEY" not in pcsc.transports["EI 3"].instructions()
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    rotated = [r for r in records if r["event"] == "transport_key"]
    assert {(r["ei_sn"], r["result"], r["kcv_t"], r["version"]) for r in rotated} == {
        (sn.hex().upper(), outcome, kcv_text(crypto.kcv(T_NEXT)), 2)
        for sn, outcome in ((SN1, "rotated"), (SN2, "rotated"), (SN3, "skipped"))
    }
    text = audit.read_text() + result.output
    for secret in (T16, T_NEXT, TA03):
        assert secret.hex().upper() not in text.upper()


def test_a_card_of_another_set_blocked_or_in_setup_refuses_the_batch(fake_readers) -> None:
    other, blocked, setup = _ei(SN1), _ei(SN2), _ei(SN3)
    other.transport_key = OTHER_T16
    blocked.life_cycle = LifeCycle.BLOCKED
    setup.life_cycle = LifeCycle.SETUP
    good = _ei(bytes.fromhex("4B4C000000000004"))
    pcsc = fake_readers({"AS": _as(), "A": other, "B": blocked, "C": setup, "D": good})
    result = _rotate("A", "B", "C", "D")
    assert result.exit_code == 1
    assert "belongs to another set" in result.output
    assert "BLOCKED" in result.output and "SETUP" in result.output
    for reader in ("A", "B", "C", "D"):
        assert not {"GET_CHALLENGE", "IMPORT_TRANSPORT_KEY"} & set(
            pcsc.transports[reader].instructions()
        )
    assert good.transport_key == T16


def test_an_as_without_a_next_key_refuses(fake_readers) -> None:
    as_applet = _as()
    as_applet.next_transport_key = None
    fake_readers({"AS": as_applet, "EI": _ei(SN1)})
    result = _rotate("EI")
    assert result.exit_code == 1 and "holds no next transport key" in result.output


def test_a_rotated_card_is_personalized_under_the_next_key_then_retire(fake_readers) -> None:
    as_applet, rotated, left = _as(), _ei(SN1), _ei(SN2)
    pcsc = fake_readers({"AS": as_applet, "EI 1": rotated, "EI 2": left})
    assert _rotate("EI 1").exit_code == 0
    args = ["personalize", "--as-reader", "AS", "--load", "03:01", "--pin-env", "KEYLOAD_TEST_PIN"]
    result = _invoke(*args, "--ei-reader", "EI 1", "--ei-reader", "EI 2", "--store", "none")
    assert result.exit_code == 0, result.output
    assert rotated.slots[1].key == TA03 and left.slots[1].key == TA03
    exports = [a for a in pcsc.transports["AS"].sent if a[1] == 0x4A]
    assert sorted(a[2:4].hex() for a in exports) == ["0000", "0002"]
    result = _invoke("retire-transport", "--as-reader", "AS", "--pin-env", "KEYLOAD_TEST_PIN")
    assert result.exit_code == 0, result.output
    assert (as_applet.transport_key, as_applet.next_transport_key) == (T_NEXT, None)
    assert kcv_text(crypto.kcv(T_NEXT)) in result.output


def test_an_unforeseen_error_in_a_card_thread_ends_the_rotation_instead_of_hanging_it() -> None:
    """As for personalize: the audit log failing in one card's thread ends the run with it."""
    from fakes import FakeTransport
    from keyload_host.audit import AuditError, NullAuditLog
    from keyload_host.cards import AsCard, EiCard
    from keyload_host.rotation import run_batch
    from keyload_host.secret_sources import Secret, SecretKind

    class FailingAudit(NullAuditLog):
        def record(self, event: str, **fields: object) -> dict[str, object]:
            if event == "transport_key":
                raise AuditError("audit.jsonl: cannot write the audit log: No space left on device")
            return super().record(event, **fields)

    eis = [EiCard(FakeTransport(f"EI {n}", _ei(sn))) for n, sn in enumerate((SN1, SN2), 1)]
    with pytest.raises(AuditError, match="No space left"):
        run_batch(
            [AsCard(FakeTransport("AS", _as()))],
            eis,
            FailingAudit(),
            lambda: Secret(b"1234", SecretKind.PIN),
        )
