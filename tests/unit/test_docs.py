"""The docs against the tree: every test docs/SECURITY.md cites exists, DESIGN.md's map names
every Python module of both distributions and nothing else, and the host's layers only point down
(cli -> glue -> library)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SECURITY = REPO / "docs" / "SECURITY.md"
DESIGN = REPO / "docs" / "DESIGN.md"
PACKAGE_ROOTS = (REPO / "host", REPO / "devtools")
HOST = REPO / "host" / "keyload_host"

_CITATION = re.compile(r"`((?:tests|applets)/[^`\s]+|[\w/]*::\w+|\w+\.java(?:::\w+)?)`")
_DEFINITION = {".py": r"^\s*(?:async )?def {name}\(", ".java": r"\bvoid {name}\("}

LIBRARY = {"errors", "protocol", "crypto", "transport", "apdu", "cards", "tables"}
GLUE = {
    "config",
    "secret_sources",
    "provisioning",
    "workflow",
    "manifest",
    "enrolment",
    "rotation",
    "audit",
    "audit_chain",
    "inventory",
    "migrations",
    "doctor",
}


def security_citations() -> list[tuple[str, Path, str | None]]:
    """(citation as written, file, test name or None) for every test the threat sections of
    SECURITY.md cite; a bare ``::name`` or ``Name.java`` refers to the file, or the folder, cited
    just before it."""
    cited: list[tuple[str, Path, str | None]] = []
    last: Path | None = None
    text = SECURITY.read_text()
    claims = text[text.index("### 1.") : text.index("## Out of scope")]
    for match in _CITATION.finditer(claims):
        text = match.group(1)
        path_text, _, name = text.partition("::")
        if not path_text:
            assert last is not None, f"`{text}` follows no file"
            path = last
        elif "/" not in path_text:
            assert last is not None, f"`{text}` follows no file"
            path = last.parent / path_text
        else:
            path = REPO / path_text
        cited.append((text, path, name or None))
        last = path
    return cited


@pytest.mark.parametrize(
    ("text", "path", "name"),
    [pytest.param(*citation, id=citation[0]) for citation in security_citations()],
)
def test_every_test_security_md_cites_exists(text: str, path: Path, name: str | None) -> None:
    assert path.exists(), f"SECURITY.md cites `{text}`, but {path.relative_to(REPO)} is missing"
    if name is not None:
        pattern = _DEFINITION[path.suffix].format(name=re.escape(name))
        assert re.search(pattern, path.read_text(), re.MULTILINE), (
            f"SECURITY.md cites `{text}`, but {path.relative_to(REPO)} defines no {name}"
        )


def test_security_md_cites_the_suites() -> None:
    assert len(security_citations()) > 30


def _design_map() -> set[str]:
    text = DESIGN.read_text()
    section = text[text.index("## Map") : text.index("\n## ", text.index("## Map") + 1)]
    return set(re.findall(r"`((?:host|devtools)/[\w/]+\.py)`", section))


def test_design_md_opens_with_the_map() -> None:
    headings = re.findall(r"^## (.+)$", DESIGN.read_text(), re.MULTILINE)
    assert headings[0] == "Map"


def test_design_md_map_matches_the_tree() -> None:
    modules = {
        str(path.relative_to(REPO))
        for root in PACKAGE_ROOTS
        for path in root.rglob("*.py")
        if "egg-info" not in str(path)
    }
    named = _design_map()
    assert sorted(modules - named) == [], "modules missing from DESIGN.md's map"
    assert sorted(named - modules) == [], "DESIGN.md's map names modules that do not exist"


def _imported_modules(path: Path) -> set[str]:
    """The keyload_host modules a module of the package imports (relative imports resolved)."""
    package = path.parent.relative_to(HOST.parent).parts
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = list(package[: len(package) - node.level + 1]) if node.level else []
            parts = base + (node.module.split(".") if node.module else [])
            if parts[:1] != ["keyload_host"]:
                continue
            if len(parts) == 1:
                found |= {alias.name for alias in node.names}
            else:
                found.add(parts[1])
    return found


@pytest.mark.parametrize("path", sorted(HOST.rglob("*.py")), ids=lambda p: p.name)
def test_the_layers_only_point_down(path: Path) -> None:
    name = path.relative_to(HOST).parts[0].removesuffix(".py")
    allowed = {"cli": LIBRARY | GLUE | {"cli"}, "__init__": set()}
    allowed |= dict.fromkeys(GLUE, LIBRARY | GLUE)
    allowed |= dict.fromkeys(LIBRARY, LIBRARY)
    assert name in allowed, f"{path.name} belongs to no layer of the map"
    upward = _imported_modules(path) - allowed[name]
    assert not upward, f"{path.relative_to(REPO)} imports {sorted(upward)} from a higher layer"
