"""Protein sequence rules and FASTA input for ``distfold predict``.

Sequence rules (:func:`clean_sequence`), the same for a positional sequence and
for FASTA records:

- case-insensitive (``acdE`` == ``ACDE``); all whitespace is ignored;
- one trailing ``*`` (a stop marker written by translation tools) is dropped;
- the 20 standard one-letter codes ``ACDEFGHIKLMNPQRSTVWY`` and ``X`` (unknown)
  are accepted as they are;
- ambiguous and rare codes are mapped: ``U`` (selenocysteine) -> ``C``,
  ``O`` (pyrrolysine) -> ``K``, ``B`` (D or N), ``Z`` (E or Q) and ``J`` (I or L)
  -> ``X``; this is the same parent mapping the structure reader applies to
  SEC and PYL residues;
- anything else (digits, ``-`` and ``.`` alignment gaps, ``*`` inside the
  sequence, punctuation, non-ASCII letters) is rejected with an
  :class:`~distfold.errors.InputError` that names the character and its
  1-based position among the non-whitespace characters;
- an empty sequence is rejected.

FASTA rules (:func:`parse_fasta`): UTF-8 text (gzip when the name ends in
``.gz``), parsed by biopython's ``Bio.SeqIO.FastaIO.SimpleFastaParser``. The first non-blank
line must be a ``>`` header; at least one record is required. A record's id
is the first word of its header; :func:`safe_id` makes it safe as a file-name
stem (it can never name a path outside the output folder); two records whose
safe ids are equal ignoring case are an error. A record whose *sequence*
breaks the rules above is not a file error: it is kept, with its error, so
that ``distfold predict`` can report it and carry on with the others.
"""

from __future__ import annotations

import gzip
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path

from distfold.errors import InputError

STANDARD = "ACDEFGHIKLMNPQRSTVWY"
UNKNOWN = "X"
ALLOWED = frozenset(STANDARD + UNKNOWN)
#: Letters accepted but replaced (U/O by their parent residue, ambiguity codes by X).
MAPPED = {"U": "C", "O": "K", "B": "X", "Z": "X", "J": "X"}
#: The longest file-name stem :func:`safe_id` returns.
MAX_ID_LENGTH = 100
#: Id given to a sequence passed on the command line.
QUERY_ID = "query"

RULES_SUMMARY = ("allowed: the 20 standard letters and X, case-insensitive; "
                 "U->C, O->K, B/Z/J->X; whitespace ignored")

_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]+")


def clean_sequence(raw: str, name: str = "sequence") -> str:
    """The canonical upper-case sequence of ``raw`` under the rules above.

    name: how error messages refer to the input (e.g. ``"record 'abc'"``).
    Raises InputError naming the first invalid character and its position.
    """
    if not isinstance(raw, str):
        raise InputError(f"{name}: expected text, got {type(raw).__name__}")
    letters = "".join(raw.split())
    if letters.endswith("*"):
        letters = letters[:-1]
    if not letters:
        raise InputError(f"{name}: empty sequence")
    out = []
    for pos, ch in enumerate(letters.upper(), start=1):
        if ch in ALLOWED:
            out.append(ch)
        elif ch in MAPPED:
            out.append(MAPPED[ch])
        else:
            raise InputError(f"{name}: invalid residue {ascii(letters[pos - 1])} at position {pos} ({RULES_SUMMARY})")
    return "".join(out)


def safe_id(raw: str) -> str:
    """A file-name stem made from a FASTA id.

    Every run of characters outside ``A-Z a-z 0-9 _ . -`` (path separators,
    spaces, control and non-ASCII characters) becomes ``_``; leading ``.`` and
    ``-`` are removed (no hidden files, no ``..``, nothing that reads as an
    option); the result is cut to :data:`MAX_ID_LENGTH` characters. So
    ``../../x`` -> ``_.._x`` and ``sp|P69905|HBA_HUMAN`` -> ``sp_P69905_HBA_HUMAN``.
    An id with nothing usable left raises InputError.
    """
    stem = _UNSAFE.sub("_", raw).lstrip(".-")[:MAX_ID_LENGTH]
    if not stem:
        raise InputError(f"FASTA id {raw!r} has no usable characters for a file name (use letters, digits, _ . -)")
    return stem


@dataclass
class SequenceRecord:
    """One input sequence.

    id: safe file-name stem; raw_id: the id as written; description: the full header.
    sequence: the cleaned sequence, or None when ``error`` says why it was rejected.
    raw: the sequence text as given. index: position in the input (0-based).
    """

    id: str
    raw_id: str
    description: str
    raw: str
    sequence: str | None
    error: str | None
    index: int

    @property
    def length(self) -> int:
        """Residues of the cleaned sequence (non-whitespace characters when rejected)."""
        if self.sequence is not None:
            return len(self.sequence)
        return len("".join(self.raw.split()))


def make_record(raw_id: str, raw_sequence: str, index: int = 0, description: str | None = None,
                id_: str | None = None) -> SequenceRecord:
    """A record with its sequence cleaned (or its error kept)."""
    sid = id_ if id_ is not None else safe_id(raw_id)
    try:
        seq, err = clean_sequence(raw_sequence, f"record {raw_id!r}"), None
    except InputError as exc:
        seq, err = None, str(exc)
    return SequenceRecord(sid, raw_id, description if description is not None else raw_id, raw_sequence,
                          seq, err, index)


def query_record(sequence: str) -> SequenceRecord:
    """The record of a sequence given on the command line (id ``query``); its
    sequence must follow the rules (an error is raised here, not deferred)."""
    seq = clean_sequence(sequence, "SEQUENCE")
    return SequenceRecord(QUERY_ID, QUERY_ID, QUERY_ID, sequence, seq, None, 0)


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected a FASTA file")
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except (OSError, EOFError) as exc:
        raise InputError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from None


def decode_text(data: bytes, name: str) -> str:
    """UTF-8 text (a BOM is allowed); other bytes raise InputError naming the offset."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{name}: not UTF-8 text (byte {exc.start})") from None


def parse_fasta_text(text: str, name: str = "FASTA") -> list[SequenceRecord]:
    """Records of FASTA text; file-level problems raise InputError naming ``name``.

    File-level problems: no records; text before the first ``>`` header; a
    header without an id; an id with no usable characters; NUL characters;
    duplicate ids (compared after :func:`safe_id`, ignoring case, because they
    would write the same files). Sequence problems stay with their record.
    """
    if "\x00" in text:
        raise InputError(f"{name}: contains NUL characters; not a FASTA text file")
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if not line.startswith(">"):
            raise InputError(f"{name}: line {lineno}: expected a '>' header before any sequence")
        break
    from Bio.SeqIO.FastaIO import SimpleFastaParser

    parsed = []
    for title, seq in SimpleFastaParser(io.StringIO(text)):
        words = title.split(None, 1)
        parsed.append((words[0] if words else "", title.strip(), seq))
    if not parsed:
        raise InputError(f"{name}: no FASTA records (a record starts with a '>' header line)")
    records: list[SequenceRecord] = []
    seen: dict[str, tuple[int, str]] = {}  # lower-case safe id -> (record number, raw id)
    for index, (raw_id, description, seq) in enumerate(parsed):
        if not raw_id:
            raise InputError(f"{name}: record {index + 1} has an empty id (write '>name' on its header line)")
        try:
            sid = safe_id(raw_id)
        except InputError as exc:
            raise InputError(f"{name}: record {index + 1}: {exc}") from None
        key = sid.lower()
        if key in seen:
            first, first_raw = seen[key]
            same = "" if first_raw == raw_id else f" (same file name as {first_raw!r})"
            raise InputError(f"{name}: duplicate id {raw_id!r} (records {first} and {index + 1}){same}; "
                             "ids must be unique ignoring case")
        seen[key] = (index + 1, raw_id)
        records.append(make_record(raw_id, seq, index, description, sid))
    return records


def parse_fasta(path: str | os.PathLike) -> list[SequenceRecord]:
    """Records of a FASTA file (``-`` reads standard input)."""
    if str(path) == "-":
        import sys

        data = sys.stdin.buffer.read()
        return parse_fasta_text(decode_text(data, "<stdin>"), "<stdin>")
    path = Path(path)
    return parse_fasta_text(decode_text(_read_bytes(path), str(path)), str(path))
