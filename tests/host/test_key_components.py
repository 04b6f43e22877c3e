"""Keys entered as components (split knowledge, dual control): the ceremony as the custodians see
it through `setup as|ei`, every check before the first command that writes, no component or
combined key in any output, log or error, and every buffer zeroed as soon as it has served."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

import pytest
from click.testing import CliRunner
from fakes import FakeApplet, FakeTransport
from keyload_host import crypto, provisioning
from keyload_host.cards import AsCard, EiCard
from keyload_host.cli import main
from keyload_host.config import AppKeyConfig, AsSetup, EiSetup, SlotConfig
from keyload_host.protocol import EXPORT_LIMIT_UNLIMITED, Ins, LifeCycle, Role, Usage, kcv_text
from keyload_host.secret_sources import (
    KeyComponent,
    KeyComponents,
    Secret,
    SecretKind,
    SecretSource,
    SecretSourceError,
)
from station.integration_support import leaked

PIN_TEXT = "2468"


def xor(*parts: bytes) -> bytes:
    result = bytearray(len(parts[0]))
    for part in parts:
        for index, byte in enumerate(part):
            result[index] ^= byte
    return bytes(result)


def kcv_of(value: bytes) -> str:
    return kcv_text(crypto.kcv(value))


def owner_only(path: Path, text: str) -> str:
    path.write_text(text)
    path.chmod(0o600)
    return path.name


class Ceremony:
    """An AS config whose transport key is two prompted components (A. Smith, B. Jones) and
    whose key 03 is three components: a file (C. Brown), a variable (D. White), a prompt
    (E. Green); the values are drawn at random, the secrets named for the leak search."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.t_parts = [secrets.token_bytes(32) for _ in range(2)]
        self.k_parts = [secrets.token_bytes(16) for _ in range(3)]
        self.transport_key = xor(*self.t_parts)
        self.key03 = xor(*self.k_parts)
        owner_only(directory / "pin", PIN_TEXT + "\n")
        owner_only(directory / "k03-c.key", self.k_parts[0].hex())
        self.env = {"KEYLOAD_K03_D": self.k_parts[1].hex().upper()}
        self.kcvs = {
            "t": kcv_of(self.transport_key),
            "t1": kcv_of(self.t_parts[0]),
            "t2": kcv_of(self.t_parts[1]),
            "k": kcv_of(self.key03),
            **{f"k{n + 1}": kcv_of(part) for n, part in enumerate(self.k_parts)},
        }

    def config(self, **wrong: str) -> Path:
        kcvs = {**self.kcvs, **wrong}
        path = self.directory / "as.toml"
        path.write_text(
            'pin = { file = "pin" }\n'
            "[transport_key]\n"
            f'kcv = "{kcvs["t"]}"\n'
            "components = [\n"
            f'  {{ custodian = "A. Smith", prompt = true, kcv = "{kcvs["t1"]}" }},\n'
            f'  {{ custodian = "B. Jones", prompt = true, kcv = "{kcvs["t2"]}" }},\n'
            "]\n"
            "[[keys]]\n"
            'ref = 0x03\nusage = "auth"\nversion = 1\nexport_limit = "unlimited"\n'
            "[keys.key]\n"
            f'kcv = "{kcvs["k"].removeprefix("cmac-aes:")}"\n'  # the bare form of older files
            "components = [\n"
            f'  {{ custodian = "C. Brown", file = "k03-c.key", kcv = "{kcvs["k1"]}" }},\n'
            f'  {{ custodian = "D. White", env = "KEYLOAD_K03_D", kcv = "{kcvs["k2"]}" }},\n'
            f'  {{ custodian = "E. Green", prompt = true, kcv = "{kcvs["k3"]}" }},\n'
            "]\n"
        )
        return path

    def typed(self) -> str:
        """What the custodians type, in the order they are asked: A. Smith, B. Jones, E. Green."""
        return "".join(f"{part.hex()}\n" for part in (*self.t_parts, self.k_parts[2]))

    def secrets(self) -> dict[str, bytes]:
        return {
            "T": self.transport_key,
            **{f"T component {n + 1}": part for n, part in enumerate(self.t_parts)},
            "TA 03": self.key03,
            **{f"TA 03 component {n + 1}": part for n, part in enumerate(self.k_parts)},
            "PIN": PIN_TEXT.encode(),
        }


@pytest.fixture
def ceremony(tmp_path: Path) -> Ceremony:
    return Ceremony(tmp_path)


@pytest.fixture
def blank_as(fake_readers) -> tuple[FakeApplet, FakeTransport]:
    blank = FakeApplet(Role.AS, LifeCycle.SETUP, transport_key=None, pin=None)
    pcsc = fake_readers({"AS reader": blank})
    return blank, pcsc.transports["AS reader"]


def setup_as(config: Path, ceremony: Ceremony, input: str, *extra: str):
    return CliRunner().invoke(
        main,
        ["-v", "setup", "as", "--reader", "AS reader", "--config", str(config), *extra],
        input=input,
        env=ceremony.env,
        catch_exceptions=False,
    )


def test_a_key_ceremony_with_components(
    blank_as, ceremony: Ceremony, caplog: pytest.LogCaptureFixture
) -> None:
    """Each prompt names its custodian; each component's KCV is shown once it is entered (the
    file and variable components first, before the card is touched), then the key's; the card
    receives the XOR of the components; no output or log line holds any of them."""
    caplog.set_level(logging.DEBUG)
    card, _transport = blank_as
    result = setup_as(ceremony.config(), ceremony, ceremony.typed(), "--yes")
    assert result.exit_code == 0, result.output
    assert (card.transport_key, card.keys[3].key, card.pin) == (
        ceremony.transport_key,
        ceremony.key03,
        PIN_TEXT.encode(),
    )
    kcvs = ceremony.kcvs
    expected = [
        f"Component 1 of 3 of the application key 03, for C. Brown: KCV {kcvs['k1']}, correct",
        f"Component 2 of 3 of the application key 03, for D. White: KCV {kcvs['k2']}, correct",
        "Component 1 of 2 of the transport key, for A. Smith (hex): ",
        f"Component 1 of 2 of the transport key, for A. Smith: KCV {kcvs['t1']}, correct",
        "Component 2 of 2 of the transport key, for B. Jones (hex): ",
        f"Component 2 of 2 of the transport key, for B. Jones: KCV {kcvs['t2']}, correct",
        f"The transport key combined from 2 components: KCV {kcvs['t']}, correct",
        "Component 3 of 3 of the application key 03, for E. Green (hex): ",
        f"Component 3 of 3 of the application key 03, for E. Green: KCV {kcvs['k3']}, correct",
        f"The application key 03 combined from 3 components: KCV {kcvs['k']}, correct",
        f"transport key KCV: {kcvs['t']}",
    ]
    lines = result.output.splitlines()
    assert lines[: len(expected)] == expected
    assert kcvs["k"] in lines[len(expected) + 2]  # the table row of key 03
    assert leaked(result.output + caplog.text, ceremony.secrets()) == []
    assert "SET TRANSPORT KEY" in caplog.text  # the verbose log was searched too


def test_a_ceremony_for_an_ei(fake_readers, tmp_path: Path) -> None:
    blank = FakeApplet(Role.EI, LifeCycle.SETUP, transport_key=None, pin=None)
    fake_readers({"EI reader": blank})
    parts = [secrets.token_bytes(16), secrets.token_bytes(16)]
    owner_only(tmp_path / "t-b.key", parts[1].hex())
    config = tmp_path / "ei.toml"
    config.write_text(
        'serial = "4B4C000000000009"\n'
        f'transport_key = {{ kcv = "{kcv_of(xor(*parts))}", components = [ '
        f'{{ custodian = "A. Smith", prompt = true, kcv = "{kcv_of(parts[0])}" }}, '
        f'{{ custodian = "B. Jones", file = "t-b.key", kcv = "{kcv_of(parts[1])}" }} ] }}\n'
        '[[slots]]\nref = 1\nkey_length = 16\nusage = "auth"\n'
    )
    result = CliRunner().invoke(
        main,
        ["setup", "ei", "--reader", "EI reader", "--config", str(config), "--yes"],
        input=parts[0].hex() + "\n",
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert blank.transport_key == xor(*parts)
    assert "Component 1 of 2 of the transport key, for A. Smith (hex): " in result.output
    found = {"T": xor(*parts), "component 1": parts[0], "component 2": parts[1]}
    assert leaked(result.output, found) == []


WRITES = {Ins.SET_TRANSPORT_KEY.name, Ins.SET_PIN.name, Ins.PUT_APP_KEY.name, Ins.LOCK.name}


@pytest.mark.parametrize(
    ("wrong", "apdus", "asked"),
    [
        pytest.param("k1", [], 0, id="a component from a file: no APDU at all"),
        pytest.param("k2", [], 0, id="a component from a variable: no APDU at all"),
        pytest.param("t1", ["SELECT"], 1, id="the first prompted component: SELECT only"),
        pytest.param("t2", ["SELECT"], 2, id="the second prompted component: SELECT only"),
        pytest.param("t", ["SELECT"], 2, id="the combined key: SELECT only"),
        pytest.param("k", ["SELECT"], 3, id="the combined application key: SELECT only"),
    ],
)
def test_a_wrong_kcv_stops_before_any_write(
    blank_as, ceremony: Ceremony, caplog, wrong: str, apdus: list[str], asked: int
) -> None:
    """A wrong component (or key) stops the setup in one line naming it and both KCVs, before
    any command that writes; custodians after it are not asked; nothing leaks."""
    caplog.set_level(logging.DEBUG)
    card, transport = blank_as
    result = setup_as(ceremony.config(**{wrong: "cmac-aes:000000"}), ceremony, ceremony.typed())
    assert result.exit_code == 1
    assert transport.instructions() == apdus
    assert card.transport_key is None and card.keys == {} and not WRITES & set(apdus)
    error = result.output.splitlines()[-1]
    assert error.startswith("Error: ")
    assert error.endswith(
        ", expected cmac-aes:000000: not the right value; nothing was written to the card"
    )
    assert result.output.count("(hex): ") == asked
    assert leaked(result.output + caplog.text, ceremony.secrets()) == []


def test_components_of_different_lengths_stop_before_any_write(
    blank_as, ceremony: Ceremony
) -> None:
    card, transport = blank_as
    ceremony.t_parts[1] = secrets.token_bytes(16)
    ceremony.kcvs["t2"] = kcv_of(ceremony.t_parts[1])
    result = setup_as(ceremony.config(), ceremony, ceremony.typed())
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == (
        "Error: the transport key combined from 2 components: the components are not all of "
        "one length (32, 16 bytes): each component is as long as the key"
    )
    assert transport.instructions() == ["SELECT"] and card.transport_key is None
    assert leaked(result.output, ceremony.secrets() | {"short": ceremony.t_parts[1]}) == []


def test_a_locked_card_is_refused_before_any_custodian_types(blank_as, ceremony: Ceremony) -> None:
    card, _transport = blank_as
    card.life_cycle = LifeCycle.OPERATIONAL
    result = setup_as(ceremony.config(), ceremony, ceremony.typed())
    assert result.exit_code == 1 and "is OPERATIONAL" in result.output
    assert "(hex)" not in result.output


# ------------------------------------------------------------------------------ wiping


class Recorder:
    """Serves secrets by label (as the prompts would) and keeps every ``Secret`` it hands out,
    and every combined key provisioning makes, to look at their buffers afterwards."""

    def __init__(self, values: dict[str, bytes], monkeypatch: pytest.MonkeyPatch) -> None:
        self.values = values
        self.handed: dict[str, bytearray] = {}
        self.combined: list[bytearray] = []
        real = provisioning.combine_components

        def combine(parts, what):  # type: ignore[no-untyped-def]
            key = real(parts, what)
            self.combined.append(key.reveal())
            return key

        monkeypatch.setattr(provisioning, "combine_components", combine)

    def load(self, _source: SecretSource, kind: SecretKind, label: str, _confirm: bool) -> Secret:
        secret = Secret(self.values[label], kind)
        self.handed[label] = secret.reveal()
        return secret

    def live(self) -> set[str]:
        """Which buffers still hold anything."""
        live = {label for label, buffer in self.handed.items() if any(buffer)}
        return live | {f"combined {n}" for n, buf in enumerate(self.combined) if any(buf)}


def components(key_label: str, parts: list[bytes], whole: bytes) -> KeyComponents:
    custodians = ["A. Smith", "B. Jones", "C. Brown"]
    return KeyComponents(
        tuple(
            KeyComponent(SecretSource(prompt=True), custodians[n], crypto.kcv(part))
            for n, part in enumerate(parts)
        ),
        crypto.kcv(whole),
    )


def spying(transport: FakeTransport, recorder: Recorder) -> list[tuple[str, set[str]]]:
    """(instruction, live buffers) at every APDU the card receives."""
    seen: list[tuple[str, set[str]]] = []
    real = transport.transmit

    def transmit(apdu: bytes) -> bytes:
        seen.append((Ins(apdu[1]).name, recorder.live()))
        return real(apdu)

    transport.transmit = transmit  # type: ignore[method-assign]
    return seen


def test_components_are_wiped_when_combined_and_each_key_once_its_apdu_is_sent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    t_parts = [secrets.token_bytes(32) for _ in range(2)]
    k_parts = [secrets.token_bytes(24) for _ in range(3)]
    t, k = xor(*t_parts), xor(*k_parts)
    labels = [f"Component {n + 1} of 2 of the transport key" for n in range(2)]
    labels += [f"Component {n + 1} of 3 of the application key 03" for n in range(3)]
    custodians = ["A. Smith", "B. Jones", "A. Smith", "B. Jones", "C. Brown"]
    values = {
        f"{label}, for {who}": part
        for label, who, part in zip(labels, custodians, t_parts + k_parts, strict=True)
    }
    recorder = Recorder({**values, "AS operator PIN": PIN_TEXT.encode()}, monkeypatch)
    applet = FakeApplet(Role.AS, LifeCycle.SETUP, transport_key=None, pin=None)
    transport = FakeTransport("AS reader", applet)
    seen = spying(transport, recorder)
    key03 = AppKeyConfig(
        3, Usage.MAC, 1, False, EXPORT_LIMIT_UNLIMITED, components("key", k_parts, k)
    )
    setup = AsSetup(components("T", t_parts, t), SecretSource(prompt=True), (key03,))
    report = provisioning.setup_as(AsCard(transport), setup, recorder.load)
    assert (applet.transport_key, applet.keys[3].key) == (t, k)
    assert report.summary[0] == ("transport key KCV", kcv_of(t))
    assert [name for name, _live in seen][:5] == [
        "SELECT",
        "SET_TRANSPORT_KEY",
        "SET_PIN",
        "PUT_APP_KEY",
        "GET_INFO",
    ]
    live = dict(seen[1:5])  # what is alive while each command is sent
    assert live["SET_TRANSPORT_KEY"] == {"combined 0", "combined 1", "AS operator PIN"}
    assert live["SET_PIN"] == {"combined 1", "AS operator PIN"}
    assert live["PUT_APP_KEY"] == {"combined 1"}
    assert live["GET_INFO"] == set()  # the read-back works on KCVs taken before
    assert len(recorder.handed) == 6 and recorder.live() == set()


def test_the_ei_transport_key_is_wiped_once_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    parts = [secrets.token_bytes(16) for _ in range(2)]
    values = {
        f"Component {n + 1} of 2 of the transport key, for {who}": part
        for n, (who, part) in enumerate(zip(["A. Smith", "B. Jones"], parts, strict=True))
    }
    recorder = Recorder(values, monkeypatch)
    applet = FakeApplet(Role.EI, LifeCycle.SETUP, transport_key=None, pin=None)
    transport = FakeTransport("EI reader", applet)
    seen = spying(transport, recorder)
    setup = EiSetup(
        components("T", parts, xor(*parts)),
        bytes.fromhex("4B4C000000000009"),
        10,
        (SlotConfig(1, 16, Usage.AUTHENTICATE, True),),
    )
    provisioning.setup_ei(EiCard(transport), setup, recorder.load)
    assert applet.transport_key == xor(*parts)
    assert dict(seen[1:3]) == {"SET_TRANSPORT_KEY": {"combined 0"}, "SET_SERIAL": set()}
    assert recorder.live() == set()


def test_every_buffer_is_wiped_when_a_component_is_wrong(monkeypatch: pytest.MonkeyPatch) -> None:
    parts = [secrets.token_bytes(16) for _ in range(3)]
    labels = [f"Component {n + 1} of 3 of the transport key" for n in range(3)]
    values = {
        f"{label}, for {who}": part
        for label, who, part in zip(
            labels, ["A. Smith", "B. Jones", "C. Brown"], parts, strict=True
        )
    }
    recorder = Recorder(values, monkeypatch)
    transport_key = components("T", parts, xor(*parts))
    wrong = KeyComponent(SecretSource(prompt=True), "C. Brown", bytes(3))
    transport_key = KeyComponents((*transport_key.components[:2], wrong), transport_key.kcv)
    applet = FakeApplet(Role.EI, LifeCycle.SETUP, transport_key=None, pin=None)
    transport = FakeTransport("EI reader", applet)
    setup = EiSetup(transport_key, b"\x4b" * 8, 10, (SlotConfig(1, 16, Usage.AUTHENTICATE, True),))
    with pytest.raises(SecretSourceError, match=r"Component 3 of 3 .* for C\. Brown: KCV"):
        provisioning.setup_ei(EiCard(transport), setup, recorder.load)
    assert len(recorder.handed) == 3 and recorder.live() == set()
    assert transport.instructions() == ["SELECT"]
