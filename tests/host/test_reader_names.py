"""Real reader names: brackets, parentheses, serial numbers and slot numbers.

pcsc-lite names a reader "<USB product name> [<interface>] (<serial>) <reader index> <slot>", e.g.
"Identiv uTrust 3700 F [CCID Interface] (55041514307422) 00 00". Brackets are a character class in
fnmatch patterns, so the selection rule treats them literally; these tests show that a pasted
name, a pattern written the natural way and the names `keyload-host readers` prints all select
the reader meant, and that nothing ever selects another one.
"""

from __future__ import annotations

import shlex

import pytest
from click.testing import CliRunner
from fakes import AppKey, Slot, make_as, make_ei
from keyload_host.cli import main
from keyload_host.protocol import Usage
from keyload_host.transport import AmbiguousReaderError, ReaderNotFoundError, match_reader

UTRUST_A = "Identiv uTrust 3700 F [CCID Interface] (55041514307422) 00 00"
UTRUST_B = "Identiv uTrust 3700 F [CCID Interface] (55041514307433) 01 00"
ACR_SAM = "ACS ACR1252 1S CL Reader [ACR1252 Dual Reader SAM] 00 01"
GEMALTO = "Gemalto PC Twin Reader [GemPC Twin] 00 00"
REAL_READERS = [UTRUST_A, UTRUST_B, ACR_SAM, GEMALTO]
SN = bytes.fromhex("4B4C000000000001")
TA = bytes(range(16))


@pytest.mark.parametrize("name", REAL_READERS)
def test_a_pasted_name_selects_its_reader(name: str) -> None:
    assert match_reader(name, REAL_READERS) == name
    assert match_reader(f"  {name} ", REAL_READERS) == name, "blanks copied around a name"


@pytest.mark.parametrize("name", REAL_READERS)
def test_the_printed_form_is_the_name_once_the_shell_has_read_it(name: str) -> None:
    assert shlex.split(shlex.quote(name)) == [name]


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("*[CCID Interface] (55041514307433)*", UTRUST_B),
        ("*(5504151430742?)*", UTRUST_A),
        ("*[ACR1252 Dual Reader SAM]*", ACR_SAM),
        ("Gemalto PC Twin Reader [GemPC Twin] *", GEMALTO),
        ("*01 00", UTRUST_B),
    ],
    ids=["brackets literal", "question mark", "SAM slot", "prefix", "suffix"],
)
def test_patterns_read_brackets_literally(pattern: str, expected: str) -> None:
    assert match_reader(pattern, REAL_READERS) == expected


def test_a_pattern_matching_two_readers_names_both_and_picks_neither() -> None:
    with pytest.raises(AmbiguousReaderError) as caught:
        match_reader("*[CCID Interface]*", REAL_READERS)
    message = str(caught.value)
    assert f"'{UTRUST_A}', '{UTRUST_B}'" in message
    assert ACR_SAM not in message


def test_the_name_of_an_absent_reader_never_selects_a_present_one() -> None:
    """Read as fnmatch, "[X]" is the character X: the absent bracketed reader's exact name would
    select the present "Reader X 00 00"."""
    present = ["Reader X 00 00", UTRUST_A]
    with pytest.raises(ReaderNotFoundError, match="no reader matches 'Reader \\[X\\] 00 00'"):
        match_reader("Reader [X] 00 00", present)


def test_an_unplugged_reader_whose_twin_is_present_is_not_found() -> None:
    """The same model with another serial is another reader."""
    with pytest.raises(ReaderNotFoundError) as caught:
        match_reader(UTRUST_A.replace("22)", "99)"), REAL_READERS)
    assert all(f"'{name}'" in str(caught.value) for name in REAL_READERS)


def test_other_regular_expression_characters_are_literal() -> None:
    names = ["Vendor (A) 1.0 00 00", "Vendor (A) 110 00 00"]
    assert match_reader("Vendor (A) 1.0*", names) == names[0]
    with pytest.raises(ReaderNotFoundError):
        match_reader("Vendor .A. 1.0 00 00", names)


# ------------------------------------------------------------------------------ through the CLI


@pytest.fixture
def real_readers(fake_readers) -> None:
    fake_readers(
        {
            UTRUST_A: make_as(k03=AppKey(TA, Usage.AUTHENTICATE, 1)),
            UTRUST_B: make_ei(SN, s01=Slot(16, Usage.AUTHENTICATE)),
            ACR_SAM: make_ei(SN, s01=Slot(16, Usage.AUTHENTICATE)),
            GEMALTO: None,
        }
    )


def run(*arguments: str):
    return CliRunner().invoke(main, list(arguments))


def test_readers_prints_names_that_paste_back(real_readers: None) -> None:
    output = run("readers").output
    rows = output.splitlines()[1 : 1 + len(REAL_READERS)]
    printed = [shlex.split(row)[0] for row in rows]
    assert printed == REAL_READERS
    for row, name in zip(rows, printed, strict=True):
        assert row.startswith(shlex.quote(name))
    for name in (UTRUST_A, UTRUST_B, ACR_SAM):
        selected = run("info", "--reader", name, "--json")
        assert selected.exit_code == 0, selected.output
        assert f'"reader": "{name}"' in selected.output
    assert "quotes included" in output


def test_a_pattern_through_the_cli_selects_one_reader(real_readers: None) -> None:
    result = run("info", "--reader", "*[ACR1252 Dual Reader SAM]*", "--json")
    assert result.exit_code == 0, result.output
    assert f'"reader": "{ACR_SAM}"' in result.output


def test_an_ambiguous_pattern_through_the_cli_fails_in_one_line(real_readers: None) -> None:
    result = run("info", "--reader", "*uTrust*")
    assert result.exit_code == 1
    assert result.output.count("\n") == 1
    assert "matches 2 readers" in result.output and UTRUST_A in result.output
