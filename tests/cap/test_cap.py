"""The CAP files that `ant cap` built with Oracle's converter, read back byte by byte.

Checks what a card loader relies on (package and applet AIDs of PROTOCOL.md §4, imports no newer
than the targeted Java Card API) and that the converter refuses a planted visibility defect. Needs
a Java Card kit (JC_HOME); without one these tests skip, unless KEYLOAD_REQUIRE_CAP=1 (CI).
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from keyload_host.protocol import AID_AS, AID_EI, AID_PACKAGE

REPO = Path(__file__).resolve().parents[2]
CAP_DIR = REPO / "build/cap"
TARGETS = ("3.0.5", "3.0.4")
CAP_COMPONENT_HEADER, CAP_COMPONENT_APPLET, CAP_COMPONENT_IMPORT = 1, 3, 4
EXPORT_FILE_MAGIC = 0x00FACADE


@dataclass(frozen=True)
class PackageRef:
    """A package as a CAP or export file names it: AID and major.minor version."""

    aid: bytes
    major: int
    minor: int


def skip_unless_required(message: str) -> None:
    """Skips the test, or fails it when CI requires the CAP (KEYLOAD_REQUIRE_CAP=1)."""
    if os.environ.get("KEYLOAD_REQUIRE_CAP") == "1":
        pytest.fail(message)
    pytest.skip(message)


def require_cap(target: str) -> Path:
    """The CAP `ant cap` built for ``target``."""
    cap = CAP_DIR / target / "keyload.cap"
    if not cap.is_file():
        skip_unless_required(
            f"{cap} was not built: run `ant cap` with JC_HOME set to a Java Card kit"
        )
    return cap


def require_kit() -> None:
    """A Java Card kit (JC_HOME, as build.xml reads it) for the tests that run `ant cap`."""
    kit = os.environ.get("JC_HOME", "")
    if not (kit and Path(kit, "lib/tools.jar").is_file()):
        skip_unless_required("JC_HOME does not name a Java Card kit: these tests run `ant cap`")


def cap_component(cap: Path, tag: int) -> bytes:
    """The body (after tag and size) of the CAP component with ``tag`` (JCVM spec §6.1)."""
    with zipfile.ZipFile(cap) as archive:
        for name in archive.namelist():
            if name.endswith(".cap"):
                data = archive.read(name)
                if data[0] == tag:
                    (size,) = struct.unpack(">H", data[1:3])
                    return data[3 : 3 + size]
    raise AssertionError(f"{cap} has no component with tag {tag}")


def read_package_info(data: bytes, offset: int) -> tuple[PackageRef, int]:
    """package_info {u1 minor, u1 major, u1 AID_length, AID}: the package and the next offset."""
    minor, major, aid_length = data[offset], data[offset + 1], data[offset + 2]
    aid = data[offset + 3 : offset + 3 + aid_length]
    return PackageRef(bytes(aid), major, minor), offset + 3 + aid_length


def cap_package(cap: Path) -> PackageRef:
    """The package a CAP defines, from its Header component (after magic, version and flags)."""
    package, _ = read_package_info(cap_component(cap, CAP_COMPONENT_HEADER), 7)
    return package


def cap_applets(cap: Path) -> list[bytes]:
    """The applet AIDs of a CAP's Applet component."""
    data = cap_component(cap, CAP_COMPONENT_APPLET)
    aids, offset = [], 1
    for _ in range(data[0]):
        length = data[offset]
        aids.append(bytes(data[offset + 1 : offset + 1 + length]))
        offset += 1 + length + 2  # the AID, then the install method's offset
    return aids


def cap_imports(cap: Path) -> list[PackageRef]:
    """The packages a CAP's Import component names."""
    data = cap_component(cap, CAP_COMPONENT_IMPORT)
    imports, offset = [], 1
    for _ in range(data[0]):
        package, offset = read_package_info(data, offset)
        imports.append(package)
    return imports


def export_file_package(path: Path) -> PackageRef:
    """The package an API export file describes (JCVM spec §5.5: its this_package constant)."""
    data = path.read_bytes()
    magic, _minor, _major, count = struct.unpack(">IBBH", data[:8])
    assert magic == EXPORT_FILE_MAGIC, f"{path} is not an export file"
    offset, packages = 8, {}
    for index in range(count):
        tag = data[offset]
        if tag == 1:  # Utf8: u2 length, bytes
            (length,) = struct.unpack(">H", data[offset + 1 : offset + 3])
            offset += 3 + length
        elif tag == 3:  # Integer
            offset += 5
        elif tag == 7:  # Classref
            offset += 3
        elif tag == 13:  # Package: u1 flags, u2 name, then package_info
            packages[index], offset = read_package_info(data, offset + 4)
        else:
            raise AssertionError(f"{path}: unknown constant tag {tag}")
    (this_package,) = struct.unpack(">H", data[offset : offset + 2])
    return packages[this_package]


def api_packages(target: str) -> dict[bytes, PackageRef]:
    """The Java Card API packages of ``target``, from the export files `ant cap` unpacked."""
    folder = CAP_DIR / f"api_export_files_{target}"
    packages = [export_file_package(path) for path in sorted(folder.rglob("*.exp"))]
    assert packages, f"no export files under {folder}"
    return {package.aid: package for package in packages}


@pytest.mark.parametrize("target", TARGETS)
def test_cap_defines_the_keyload_package_version_1_0(target: str) -> None:
    assert cap_package(require_cap(target)) == PackageRef(AID_PACKAGE, 1, 0)


@pytest.mark.parametrize("target", TARGETS)
def test_cap_holds_the_as_and_the_ei_applet_under_their_protocol_aids(target: str) -> None:
    assert sorted(cap_applets(require_cap(target))) == sorted([AID_AS, AID_EI])


def imports_newer_than_api(cap: Path, target: str) -> list[str]:
    """What ``cap`` imports that the Java Card ``target`` API does not offer at that version."""
    api, problems = api_packages(target), []
    for package in cap_imports(cap):
        offered = api.get(package.aid)
        if offered is None:
            problems.append(f"{package.aid.hex()} is not in the {target} API")
        elif package.major != offered.major or package.minor > offered.minor:
            problems.append(
                f"{package.aid.hex()} v{package.major}.{package.minor} "
                f"(the {target} API has v{offered.major}.{offered.minor})"
            )
    return problems


@pytest.mark.parametrize("target", TARGETS)
def test_cap_imports_no_api_package_newer_than_its_target(target: str) -> None:
    assert imports_newer_than_api(require_cap(target), target) == []


def test_import_check_finds_the_3_0_5_cap_too_new_for_a_3_0_4_card() -> None:
    require_cap("3.0.4")  # the 3.0.4 export files come with it
    assert imports_newer_than_api(require_cap("3.0.5"), "3.0.4")


def applets_with(tmp_path: Path, **classes: str) -> Path:
    """A copy of applets/src with the given classes (name to source) added to keyload.applet."""
    sources = tmp_path / "src"
    shutil.copytree(REPO / "applets/src", sources)
    for name, source in classes.items():
        (sources / "keyload/applet" / f"{name}.java").write_text(source)
    return sources


def run_ant(*arguments: str) -> subprocess.CompletedProcess[str]:
    """``ant`` in the repository with ``arguments``; stdout and stderr together in ``stdout``."""
    return subprocess.run(
        ["ant", *arguments],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
    )


def test_ant_cap_fails_on_a_package_private_superclass_with_public_methods(
    tmp_path: Path,
) -> None:
    """The defect that kept the applets from converting before the real converter ran here."""
    require_kit()
    sources = applets_with(
        tmp_path,
        PlantedBase="package keyload.applet;\n"
        "abstract class PlantedBase extends javacard.framework.Applet {\n"
        "    public void helper() {\n    }\n}\n",
        Planted="package keyload.applet;\n"
        "public final class Planted extends PlantedBase {\n"
        "    public void process(javacard.framework.APDU apdu) {\n        helper();\n    }\n}\n",
    )
    result = run_ant("cap", f"-Dapplets.src={sources}", f"-Dcap.dir={tmp_path / 'cap'}")
    assert result.returncode != 0
    assert "package-visible super class keyload.applet.PlantedBase" in result.stdout


def test_converter_accepts_int_arithmetic_a_card_computes_otherwise_and_the_lint_refuses_it(
    tmp_path: Path,
) -> None:
    """Why applets/tools keeps its one rule: the real tools let this through, the lint does not.
    For a = b = 0x4000 the JVM (jCardSim) returns 10922, a card's 16-bit arithmetic -10922."""
    require_kit()
    sources = applets_with(
        tmp_path,
        Planted="package keyload.applet;\n"
        "final class Planted {\n"
        "    static short masked(short a, short b) {\n"
        "        return (short) (((a + b) & -1) / 3);\n    }\n}\n",
    )
    converted = run_ant("cap", f"-Dapplets.src={sources}", f"-Dcap.dir={tmp_path / 'cap'}")
    assert converted.returncode == 0, converted.stdout
    assert "Java Card 3.0.4: " in converted.stdout  # both targets converted and verified
    linted = run_ant(
        "lint-applets", f"-Dapplets.src={sources}", f"-Dapplets.classes={tmp_path / 'classes'}"
    )
    assert linted.returncode != 0
    assert "Planted.masked(SS)S line 4: int result of IAND reaches IDIV" in linted.stdout
