"""Sequence rules, FASTA parsing and id sanitising (distfold.structure.sequence)."""

import gzip
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distfold.errors import InputError
from distfold.structure.sequence import (ALLOWED, MAX_ID_LENGTH, clean_sequence, parse_fasta, parse_fasta_text, query_record,
                               safe_id)

FAST = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


# -- sequence rules -----------------------------------------------------------------

def test_case_and_whitespace_are_ignored():
    assert clean_sequence(" acd\nEFg \t hik\r\n") == "ACDEFGHIK"


def test_standard_letters_and_x_pass_unchanged():
    letters = "ACDEFGHIKLMNPQRSTVWYX"
    assert clean_sequence(letters) == letters
    assert clean_sequence(letters.lower()) == letters


@pytest.mark.parametrize("raw, expected", [("U", "C"), ("O", "K"), ("B", "X"), ("Z", "X"), ("J", "X"),
                                           ("aUoBzJ", "ACKXXX")])
def test_rare_and_ambiguous_letters_are_mapped(raw, expected):
    assert clean_sequence(raw) == expected


def test_one_trailing_stop_is_dropped_but_not_an_inner_one():
    assert clean_sequence("ACD*") == "ACD"
    with pytest.raises(InputError, match=r"invalid residue '\*' at position 2"):
        clean_sequence("A*CD")
    with pytest.raises(InputError, match="position 4"):
        clean_sequence("ACD**")


@pytest.mark.parametrize("raw, bad, pos", [("AC1D", "1", 3), ("AC-D", "-", 3), ("A C.D", ".", 3),
                                           ("ACDÄ", "\\xc4", 4), ("AC\x00", "\\x00", 3), ("ACDEFGHIK?", "?", 10)])
def test_other_characters_are_rejected_with_their_position(raw, bad, pos):
    with pytest.raises(InputError) as exc:
        clean_sequence(raw, "record 'x'")
    msg = str(exc.value)
    assert msg.startswith("record 'x': invalid residue") and f"at position {pos}" in msg and bad in msg
    assert "\n" not in msg


@pytest.mark.parametrize("raw", ["", "   \n", "*"])
def test_empty_sequence_is_rejected(raw):
    with pytest.raises(InputError, match="empty sequence"):
        clean_sequence(raw)


def test_query_record_has_id_query_and_raises_at_once():
    rec = query_record("acdu")
    assert (rec.id, rec.sequence, rec.error) == ("query", "ACDC", None)
    with pytest.raises(InputError, match="SEQUENCE: invalid residue '1' at position 2"):
        query_record("A1")


# -- ids --------------------------------------------------------------------------

@pytest.mark.parametrize("raw, expected", [
    ("../../x", "_.._x"), ("/etc/passwd", "_etc_passwd"), ("sp|P69905|HBA_HUMAN", "sp_P69905_HBA_HUMAN"),
    (".hidden", "hidden"), ("-rf", "rf"), ("a b\tc", "a_b_c"), ("1abc_A", "1abc_A"), ("C:\\x", "C_x"),
    ("αβ", "_"), ("x" * 300, "x" * MAX_ID_LENGTH)])
def test_safe_id(raw, expected):
    assert safe_id(raw) == expected


@pytest.mark.parametrize("raw", ["..", ".", "-", "...--"])
def test_id_with_nothing_usable_is_an_error(raw):
    with pytest.raises(InputError, match="no usable characters"):
        safe_id(raw)


def _inside(outdir: Path, stem: str) -> bool:
    target = (outdir / f"{stem}.distmat.npy").resolve()
    return target.parent == outdir.resolve() and not target.name.startswith(".")


@FAST
@given(st.text(min_size=1, max_size=60))
def test_safe_id_never_leaves_the_output_folder(tmp_path_factory, raw):
    outdir = tmp_path_factory.getbasetemp() / "out"
    try:
        stem = safe_id(raw)
    except InputError as exc:
        assert "no usable characters" in str(exc)
        return
    assert _inside(outdir, stem)
    assert 0 < len(stem) <= MAX_ID_LENGTH and stem.isascii()


# -- FASTA ------------------------------------------------------------------------

def test_fasta_records_keep_order_and_sequence_errors():
    recs = parse_fasta_text(">one first\nACD\nEF\n\n>two\nAC1\n>three\n\n")
    assert [r.id for r in recs] == ["one", "two", "three"]
    assert recs[0].sequence == "ACDEF" and recs[0].description == "one first" and recs[0].error is None
    assert recs[1].sequence is None and "invalid residue '1' at position 3" in recs[1].error
    assert recs[2].sequence is None and "empty sequence" in recs[2].error
    assert [r.index for r in recs] == [0, 1, 2]


def test_fasta_crlf_and_bom(tmp_path):
    p = tmp_path / "x.fasta"
    p.write_bytes(b"\xef\xbb\xbf>a\r\nAC\r\nDE\r\n")
    (rec,) = parse_fasta(p)
    assert (rec.id, rec.sequence) == ("a", "ACDE")


def test_gzipped_fasta(tmp_path):
    p = tmp_path / "x.fasta.gz"
    with gzip.open(p, "wt") as fh:
        fh.write(">a\nACDE\n")
    assert parse_fasta(p)[0].sequence == "ACDE"


@pytest.mark.parametrize("text, match", [
    ("", "no FASTA records"), ("\n\n", "no FASTA records"),
    ("ACDE\n>a\nAC\n", "line 1: expected a '>' header"),
    ("\n;comment\n>a\nAC\n", "line 2: expected a '>' header"),
    (">\nACD\n", "record 1 has an empty id"),
    (">a\nAC\n>..\nAC\n", "record 2: FASTA id '..' has no usable characters"),
    (">a\nAC\n>b\nCC\n>a\nDD\n", r"duplicate id 'a' \(records 1 and 3\)"),
    (">Abc\nAC\n>aBC\nCC\n", "duplicate id 'aBC'.*same file name as 'Abc'"),
    (">x/y\nAC\n>x_y\nCC\n", "duplicate id 'x_y'.*same file name as 'x/y'"),
    (">a\nAC\x00D\n", "NUL characters"),
])
def test_fasta_file_errors(text, match):
    with pytest.raises(InputError, match=match) as exc:
        parse_fasta_text(text, "in.fasta")
    assert str(exc.value).startswith("in.fasta: ") and "\n" not in str(exc.value)


def test_fasta_path_errors(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        parse_fasta(tmp_path / "missing.fasta")
    with pytest.raises(InputError, match="is a directory"):
        parse_fasta(tmp_path)
    bad = tmp_path / "latin1.fasta"
    bad.write_bytes(b">a\nAC\xe9\n")
    with pytest.raises(InputError, match=r"latin1.fasta: not UTF-8 text \(byte 5\)"):
        parse_fasta(bad)
    gz = tmp_path / "broken.fasta.gz"
    gz.write_bytes(b"not gzip at all")
    with pytest.raises(InputError, match="cannot read"):
        parse_fasta(gz)


# -- property-based: random and mutated FASTA ---------------------------------------------

def _check_records(records, outdir: Path):
    """Invariants of whatever parse_fasta_text returns."""
    assert records
    seen = set()
    for r in records:
        assert _inside(outdir, r.id)
        assert r.id.lower() not in seen
        seen.add(r.id.lower())
        if r.error is None:
            assert r.sequence and set(r.sequence) <= ALLOWED
        else:
            assert r.sequence is None
            assert ("invalid residue" in r.error and "at position" in r.error) or "empty sequence" in r.error
            assert "\n" not in r.error


DOCUMENTED = ("no FASTA records", "expected a '>' header", "empty id", "no usable characters", "duplicate id",
              "NUL characters")


def _parse_or_documented_error(text: str, outdir: Path):
    try:
        records = parse_fasta_text(text, "in.fasta")
    except InputError as exc:
        msg = str(exc)
        assert msg.startswith("in.fasta: ") and "\n" not in msg
        assert any(d in msg for d in DOCUMENTED), msg
        return None
    _check_records(records, outdir)
    return records


fasta_chars = st.sampled_from(list("ACDEFGHIKLMNPQRSTVWYXUOBZJ acdefxuo*-.>|/\\\n\r\t01;_") + ["\x00", "é", "Ω"])


@FAST
@given(st.text(fasta_chars, max_size=200))
def test_random_text_gives_records_or_documented_errors(tmp_path_factory, text):
    _parse_or_documented_error(text, tmp_path_factory.getbasetemp() / "out")


@FAST
@given(st.text(max_size=200))
def test_arbitrary_unicode_gives_records_or_documented_errors(tmp_path_factory, text):
    _parse_or_documented_error(text, tmp_path_factory.getbasetemp() / "out")


VALID = ">sp|P1|A one\nMKTAYIAKQR\nQISFVKSHFS\n>../../etc/x\nacdefghik\n>b\nMVLSPADKTN\n"


@st.composite
def mutated_fasta(draw):
    text = VALID
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["insert", "delete", "duplicate_line", "swap_lines"]))
        lines = text.split("\n")
        if op == "insert":
            pos = draw(st.integers(0, len(text)))
            text = text[:pos] + draw(st.text(fasta_chars, min_size=1, max_size=5)) + text[pos:]
        elif op == "delete" and text:
            a = draw(st.integers(0, len(text) - 1))
            text = text[:a] + text[a + draw(st.integers(1, 8)):]
        elif op == "duplicate_line":
            k = draw(st.integers(0, len(lines) - 1))
            lines.insert(k, lines[k])
            text = "\n".join(lines)
        else:
            a, b = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
            lines[a], lines[b] = lines[b], lines[a]
            text = "\n".join(lines)
    return text


@FAST
@given(mutated_fasta())
def test_mutated_fasta_gives_records_or_documented_errors(tmp_path_factory, text):
    _parse_or_documented_error(text, tmp_path_factory.getbasetemp() / "out")


def test_the_unmutated_fasta_parses():
    recs = parse_fasta_text(VALID)
    assert [r.id for r in recs] == ["sp_P1_A", "_.._etc_x", "b"]
    assert all(r.error is None for r in recs)
