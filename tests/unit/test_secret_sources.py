"""Secrets: read only from owner-only files, variables or prompts; never shown."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path

import pytest
from keyload_host.secret_sources import (
    Secret,
    SecretKind,
    SecretSource,
    SecretSourceError,
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
