"""Secrets: read only from owner-only files, variables or prompts; never shown."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path

import pytest
from keyload_host.crypto import kcv
from keyload_host.secret_sources import (
    KeyComponent,
    KeyComponents,
    Secret,
    SecretKind,
    SecretSource,
    SecretSourceError,
    check_kcv,
    combine_components,
    load_secret,
    read_secret_file,
)

T_HEX = "404142434445464748494A4B4C4D4E4F"
T_KCV = "cmac-aes:6F2F9B"


def write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o602, 0o644, 0o666])
def test_a_file_open_to_group_or_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = write(tmp_path / "t.key", T_HEX, mode)
    with pytest.raises(SecretSourceError) as caught:
        read_secret_file(path, SecretKind.KEY)
    assert f"chmod 600 {path}" in str(caught.value)
    assert T_HEX not in str(caught.value)


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_an_owner_only_file_is_read(tmp_path: Path, mode: int) -> None:
    path = write(tmp_path / "t.key", "4041 4243 4445 4647\n4849 4A4B 4C4D 4E4F\n", mode)
    secret = read_secret_file(path, SecretKind.KEY)
    assert secret.reveal() == bytes.fromhex(T_HEX)
    assert secret.kcv == T_KCV


def test_a_symlink_is_refused(tmp_path: Path) -> None:
    target = write(tmp_path / "t.key", T_HEX)
    link = tmp_path / "link.key"
    link.symlink_to(target)
    with pytest.raises(SecretSourceError, match="cannot open"):
        read_secret_file(link, SecretKind.KEY)


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SecretSourceError, match="cannot open the key file"):
        read_secret_file(tmp_path / "none.key", SecretKind.KEY)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("4041GG", "hex digits only"),
        ("40414243", "found 8 hex digits"),
        (T_HEX + "4", "found 33 hex digits"),
        (T_HEX * 3, "found 96 hex digits"),
    ],
)
def test_malformed_keys(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path / "bad.key", text)
    with pytest.raises(SecretSourceError, match=message) as caught:
        read_secret_file(path, SecretKind.KEY)
    assert str(path) in str(caught.value)


def test_pin_file_drops_the_final_line_break(tmp_path: Path) -> None:
    path = write(tmp_path / "pin", "123456\n")
    assert read_secret_file(path, SecretKind.PIN).reveal() == b"123456"


@pytest.mark.parametrize("pin", ["123", "1" * 17])
def test_pin_length(tmp_path: Path, pin: str) -> None:
    with pytest.raises(SecretSourceError, match="4 to 16 bytes"):
        read_secret_file(write(tmp_path / "pin", pin), SecretKind.PIN)


def test_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEYLOAD_TEST_T", T_HEX)
    secret = load_secret(SecretSource(env="KEYLOAD_TEST_T"), SecretKind.KEY, "transport key")
    assert secret.kcv == T_KCV


def test_a_missing_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KEYLOAD_TEST_T", raising=False)
    with pytest.raises(SecretSourceError, match="KEYLOAD_TEST_T is not set"):
        load_secret(SecretSource(env="KEYLOAD_TEST_T"), SecretKind.KEY, "transport key")


def test_from_a_prompt() -> None:
    asked = []

    def prompt(label: str, confirm: bool) -> str:
        asked.append((label, confirm))
        return "2468"

    secret = load_secret(
        SecretSource(prompt=True), SecretKind.PIN, "AS operator PIN", confirm=True, prompt=prompt
    )
    assert secret.reveal() == b"2468"
    assert asked == [("AS operator PIN", True)]


def test_a_source_is_exactly_one_thing(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        SecretSource(file=tmp_path / "x", env="X")
    with pytest.raises(ValueError):
        SecretSource()


def test_a_key_shows_only_its_kcv() -> None:
    secret = Secret(bytes.fromhex(T_HEX), SecretKind.KEY)
    for text in (repr(secret), str(secret), f"{secret}", f"{secret!r}", repr([secret])):
        assert T_HEX not in text.upper()
        assert T_KCV in text


def test_a_pin_shows_nothing() -> None:
    secret = Secret(b"1234567890123456", SecretKind.PIN)
    assert repr(secret) == str(secret) == "<secret>"
    with pytest.raises(TypeError):
        _ = secret.kcv


def test_wipe_zeroes_the_bytes() -> None:
    with Secret(bytes.fromhex(T_HEX), SecretKind.KEY) as secret:
        inner = secret.reveal()
    assert inner == bytes(16)


def test_a_secret_cannot_be_pickled_or_copied() -> None:
    secret = Secret(b"1234", SecretKind.PIN)
    with pytest.raises(TypeError):
        pickle.dumps(secret)
    with pytest.raises(TypeError):
        copy.copy(secret)


# ------------------------------------------------------------------------------ components

C1_HEX = "0123456789ABCDEF0123456789ABCDEF"
C2_HEX = "FEDCBA9876543210FEDCBA9876543210"
C3_HEX = "00112233445566778899AABBCCDDEEFF"


def key(hex_text: str) -> Secret:
    return Secret(bytes.fromhex(hex_text), SecretKind.KEY)


def test_components_combine_by_xor_and_are_wiped() -> None:
    parts = [key(C1_HEX), key(C2_HEX), key(C3_HEX)]
    buffers = [part.reveal() for part in parts]
    combined = combine_components(parts, "transport key")
    expected = bytes(
        a ^ b ^ c
        for a, b, c in zip(*(bytes.fromhex(h) for h in (C1_HEX, C2_HEX, C3_HEX)), strict=True)
    )
    assert combined.reveal() == expected
    assert combined.kind is SecretKind.KEY
    assert buffers == [bytearray(16)] * 3


def test_no_single_component_is_the_key_and_any_key_fits_one_component() -> None:
    """Split knowledge with XOR: whatever one custodian enters, the other components can make
    any key of that length, so one custodian's input says nothing of the key."""
    mine = bytes.fromhex(C1_HEX)
    for wanted in (bytes(16), bytes.fromhex(C3_HEX), bytes(range(16))):
        other = bytes(a ^ b for a, b in zip(mine, wanted, strict=True))
        combined = combine_components([key(mine.hex()), key(other.hex())], "key")
        assert combined.reveal() == wanted


def test_components_of_different_lengths_stop_and_are_wiped() -> None:
    parts = [key(C1_HEX), key(C2_HEX + "0011223344556677")]
    buffers = [part.reveal() for part in parts]
    with pytest.raises(SecretSourceError) as caught:
        combine_components(parts, "the transport key combined from 2 components")
    message = str(caught.value)
    assert "not all of one length (16, 24 bytes)" in message
    assert C1_HEX not in message.upper() and C2_HEX not in message.upper()
    assert all(not any(buffer) for buffer in buffers)


def test_a_kcv_is_checked_and_a_wrong_one_names_both_kcvs_only() -> None:
    secret = key(T_HEX)
    assert check_kcv(secret, bytes.fromhex("6F2F9B"), "transport key") == T_KCV
    with pytest.raises(SecretSourceError) as caught:
        check_kcv(secret, bytes.fromhex("6F2F9C"), "Component 1 of 2 of the key, for A. Smith")
    assert str(caught.value) == (
        "Component 1 of 2 of the key, for A. Smith: KCV cmac-aes:6F2F9B, expected "
        "cmac-aes:6F2F9C: not the right value; nothing was written to the card"
    )
    assert secret.reveal() == bytes.fromhex(T_HEX)  # the caller wipes it


def test_a_kcv_check_compares_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    import hmac

    from keyload_host import secret_sources

    calls = []
    real = hmac.compare_digest

    def compare(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(secret_sources.hmac, "compare_digest", compare)
    check_kcv(key(T_HEX), kcv(bytes.fromhex(T_HEX)), "key")
    assert calls == [(kcv(bytes.fromhex(T_HEX)), kcv(bytes.fromhex(T_HEX)))]


def test_components_are_labelled_with_their_custodian() -> None:
    components = KeyComponents(
        (
            KeyComponent(SecretSource(prompt=True), "A. Smith", bytes(3)),
            KeyComponent(SecretSource(env="B"), "B. Jones", b"\x01\x02\x03"),
        ),
        b"\x04\x05\x06",
    )
    assert components.label(1, "transport key") == (
        "Component 2 of 2 of the transport key, for B. Jones"
    )
    with pytest.raises(ValueError):
        KeyComponents(components.components[:1], b"\x04\x05\x06")
