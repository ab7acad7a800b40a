"""Reading protein chains from PDB / mmCIF (plain or gzipped) and writing
C-alpha traces, through biopython.

Reading rules (shared by every command): first model only; alternate
locations resolved to one atom (biopython keeps the highest-occupancy one);
MSE and other modified residues with a known parent count as the parent
(``Bio.Data.PDBData.protein_letters_3to1_extended``), unknown amino acids as
X; waters and other hetero groups ignored; a residue without a C-alpha atom
is not observed. Coordinates are in Å.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from distfold.errors import InputError
from distfold.fileio import atomic_write, read_text, text_handle

STRUCTURE_SUFFIXES = (".pdb", ".ent", ".cif", ".mmcif")
#: Largest C-alpha coordinate :func:`read_chain` accepts, Å: beyond it a file does not hold
#: a structure in angstrom, and the metrics' arithmetic (float32 in mdtraj) would overflow
#: into a wrong score (a coordinate of 1e308 scored RMSD 0.000).
MAX_COORDINATE = 1e6

AA3_TO_1 = {
    "ALA": "A", "ARG": "R", "ASN": "N", "ASP": "D", "CYS": "C", "GLN": "Q", "GLU": "E",
    "GLY": "G", "HIS": "H", "ILE": "I", "LEU": "L", "LYS": "K", "MET": "M", "PHE": "F",
    "PRO": "P", "SER": "S", "THR": "T", "TRP": "W", "TYR": "Y", "VAL": "V",
}
AA1_TO_3 = {v: k for k, v in AA3_TO_1.items()}
#: Force-field and protonation-state names seen in real files, mapped to their parent.
_EXTRA_PARENTS = {
    "HID": "H", "HIE": "H", "HIP": "H", "HSD": "H", "HSE": "H", "HSP": "H", "CYX": "C",
    "CYM": "C", "ASH": "D", "GLH": "E", "LYN": "K", "MSE": "M", "SEC": "C", "PYL": "K",
}
UNKNOWN = "X"


def residue_letter(resname: str) -> str | None:
    """One-letter code of an amino-acid residue name, ``X`` for a known
    non-standard amino acid without parent, None for a non-amino-acid."""
    resname = resname.strip().upper()
    if resname in AA3_TO_1:
        return AA3_TO_1[resname]
    if resname in _EXTRA_PARENTS:
        return _EXTRA_PARENTS[resname]
    from Bio.Data.PDBData import protein_letters_3to1_extended

    letter = protein_letters_3to1_extended.get(resname)
    if letter is None:
        return "X" if resname == "UNK" else None
    return letter if letter in AA1_TO_3 else UNKNOWN


@dataclass
class Chain:
    """The observed residues of one protein chain.

    sequence: one letter per observed residue (with a C-alpha atom).
    ca: (N, 3) float64, Å.
    residue_ids: (resseq, insertion code) per residue.
    """

    source: str
    chain_id: str
    sequence: str
    ca: np.ndarray
    residue_ids: list[tuple[int, str]] = field(default_factory=list)
    bfactors: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.sequence)


def _is_cif(path: Path) -> bool:
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    return name.endswith((".cif", ".mmcif"))


def _check_pdb_records(text: str, path: Path) -> None:
    """Refuse ATOM/HETATM records cut inside a numeric field.

    biopython reads fixed columns, so a record cut at column 50 would silently
    give a wrong z coordinate (and one cut inside columns 55-66 a wrong
    occupancy or B-factor). Coordinates need 54 columns; occupancy and
    B-factor, when present at all, need 60 and 66.
    """
    for number, line in enumerate(text.splitlines(), 1):
        if not line.startswith(("ATOM  ", "HETATM")):
            continue
        n = len(line.rstrip())
        if n < 54:
            raise InputError(f"{path}: line {number}: {line[:6].strip()} record cut short "
                             f"({n} characters; coordinates need 54)")
        if n < 66 and line[54:].strip():
            if (n < 60 and line[54:60].strip()) or (60 < n < 66):
                raise InputError(f"{path}: line {number}: {line[:6].strip()} record cut inside the "
                                 "occupancy / B-factor columns")


def _ca_records(text: str) -> str | None:
    """The lines of a PDB text that :func:`chains_of` reads: the ATOM/HETATM records of atoms named
    CA, all records of residues whose C-alphas name more than one residue type (a point mutation
    in alternate locations, where biopython picks the type from all of the residue's atoms), and
    the MODEL/ENDMDL records that separate models; None when no atom is named CA. biopython's
    parser spends its time per atom, and a full-atom chain has about 8 atoms a residue: a
    1058-residue chain reads in 0.055 s instead of 0.15 s (2.5x less over the shared data)."""
    lines = text.splitlines(True)
    types: dict[str, set[str]] = {}
    for line in lines:
        if line.startswith(("ATOM  ", "HETATM")) and line[12:16].strip() == "CA":
            types.setdefault(line[21:27], set()).add(line[17:20])  # chain, number, insertion code
    if not types:
        return None
    mixed = {key for key, names in types.items() if len(names) > 1}
    return "".join(line for line in lines
                   if (line.startswith(("ATOM  ", "HETATM"))
                       and (line[12:16].strip() == "CA" or (mixed and line[21:27] in mixed)))
                   or line.startswith(("MODEL ", "ENDMDL")))


def load_structure(path: str | os.PathLike, ca_only: bool = False):
    """The biopython ``Structure`` of a PDB/mmCIF file (plain or .gz). ``ca_only``: of a PDB
    file, only the atoms named CA are parsed (all that :func:`chains_of` reads); same checks."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected a structure file")
    import zlib

    try:
        text = read_text(path)
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"{path}: cannot read ({exc.__class__.__name__}: {exc})") from None
    if not text.strip():
        raise InputError(f"{path}: file is empty")
    from Bio.PDB import MMCIFParser, PDBParser

    cif = _is_cif(path)
    if not cif:
        _check_pdb_records(text, path)
        ca = _ca_records(text) if ca_only else None
        if ca is not None:  # (a file without one is read whole: the same errors as before)
            text = ca
    parser = MMCIFParser(QUIET=True) if cif else PDBParser(QUIET=True, PERMISSIVE=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            structure = parser.get_structure(path.stem, text_handle(text))
    except Exception as exc:  # noqa: BLE001 - biopython raises many kinds on bad text
        if isinstance(exc, IndexError) and cif:
            msg = "a table row has too few values; is the file cut short?"
        else:
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path}: not a readable {'mmCIF' if cif else 'PDB'} file ({msg})") from None
    if len(structure) == 0:
        raise InputError(f"{path}: no models (no atoms) in file")
    return structure


def chains_of(structure, source: str = "") -> list[Chain]:
    """Every protein chain of the first model, in file order."""
    model = next(iter(structure))
    out = []
    for ch in model:
        letters, coords, ids, bfs = [], [], [], []
        named_unk = False  # an explicit UNK (unknown amino acid), e.g. a trace written without a sequence
        for res in ch:
            hetflag, resseq, icode = res.id
            if hetflag == "W":
                continue
            letter = residue_letter(res.get_resname())
            if letter is None or "CA" not in res:
                continue
            atom = res["CA"]
            if atom.is_disordered():
                atom = atom.selected_child
            xyz = atom.get_coord().tolist()  # three floats: numpy calls per residue were half of this loop
            if not all(map(math.isfinite, xyz)):
                continue
            letters.append(letter)
            coords.append(xyz)
            ids.append((int(resseq), str(icode).strip()))
            bfs.append(float(atom.get_bfactor()))
            named_unk = named_unk or res.get_resname().strip().upper() == "UNK"
        if letters and (named_unk or any(l != UNKNOWN for l in letters)):
            out.append(Chain(source, ch.id, "".join(letters), np.array(coords, dtype=np.float64).reshape(-1, 3),
                             ids, np.array(bfs)))
    return out


def read_chain(path: str | os.PathLike, chain: str | None = None) -> Chain:
    """One protein chain of a file: ``chain`` by id, or the first protein chain."""
    structure = load_structure(path, ca_only=True)
    chains = chains_of(structure, str(path))
    if not chains:
        raise InputError(f"{path}: no protein chain with C-alpha atoms")
    for c in chains:
        if chain is None or c.chain_id == chain:
            far = np.abs(c.ca) > MAX_COORDINATE
            if far.any():
                i, k = (int(v) for v in np.argwhere(far)[0])
                num, code = c.residue_ids[i] if i < len(c.residue_ids) else (i + 1, "")
                raise InputError(f"{path}: chain {c.chain_id}: C-alpha coordinate {c.ca[i, k]:.4g} of residue "
                                 f"{num}{code} is beyond {MAX_COORDINATE:g} A; not a structure in angstrom")
            return c
    raise InputError(f"{path}: chain {chain!r} not found; protein chains: {', '.join(repr(c.chain_id) for c in chains)}")


def write_ca_trace(path: str | os.PathLike, coords: np.ndarray, sequence: str | None = None,
                   bfactors: np.ndarray | None = None, fmt: str | None = None, chain_id: str = "A",
                   name: str = "distfold", ss: str | None = None) -> None:
    """Write a C-alpha-only PDB or mmCIF (biopython writers), atomically.

    coords: (L, 3) Å. sequence: residue names (``UNK`` where absent).
    bfactors: (L,) per-residue values for the B-factor column (e.g. confidence 0-100).
    fmt: "pdb" or "cif"; inferred from the suffix when None.
    ss: optional 3-state secondary structure (H/E/C per residue,
    :mod:`distfold.structure.secondary`): its helices and strands are written as PDB
    HELIX/SHEET records before the atoms (:func:`pdb_ss_records`) or as the mmCIF
    ``struct_conf`` / ``struct_sheet_range`` categories after them
    (:func:`cif_ss_categories`). Biopython's writers write neither, so these are
    written here, to the format's columns and items.
    """
    from Bio.PDB import MMCIFIO, PDBIO
    from Bio.PDB.StructureBuilder import StructureBuilder

    path = Path(path)
    coords = np.asarray(coords, dtype=np.float64)
    if coords.ndim != 2 or coords.shape[1] != 3:
        raise InputError(f"coordinates must be (L, 3), got {coords.shape}")
    n = len(coords)
    if sequence is not None and len(sequence) != n:
        raise InputError(f"sequence has {len(sequence)} residues but coordinates have {n}")
    if fmt is None:
        fmt = "cif" if _is_cif(path) else "pdb"
    if fmt not in ("pdb", "cif"):
        raise InputError(f"unknown structure format {fmt!r}; use pdb or cif")
    if fmt == "pdb" and np.abs(coords).max(initial=0.0) >= 9999.0:
        raise InputError("coordinates too large for the PDB format; use --format cif")
    b = np.zeros(n) if bfactors is None else np.asarray(bfactors, dtype=np.float64)
    sb = StructureBuilder()
    sb.init_structure(name)
    sb.init_model(0)
    sb.init_chain(chain_id)
    sb.init_seg("    ")
    for i in range(n):
        resname = AA1_TO_3.get(sequence[i].upper(), "UNK") if sequence else "UNK"
        sb.init_residue(resname, " ", i + 1, " ")
        sb.init_atom("CA", coords[i], float(np.clip(b[i], -999.0, 999.0)), 1.0, " ", " CA ", i + 1, "C")
    io_ = PDBIO() if fmt == "pdb" else MMCIFIO()
    io_.set_structure(sb.get_structure())
    if ss is not None:
        from distfold.structure.secondary import check_ss

        ss = check_ss(ss, allow_unlabelled=False)
        if len(ss) != n:
            raise InputError(f"secondary structure has {len(ss)} residues but coordinates have {n}")
    resnames = [AA1_TO_3.get(sequence[i].upper(), "UNK") if sequence else "UNK" for i in range(n)]
    with atomic_write(path, "w") as fh:
        if ss is not None and fmt == "pdb":
            fh.write(pdb_ss_records(ss, resnames, chain_id))
        io_.save(fh)
        if ss is not None and fmt == "cif":
            fh.write(cif_ss_categories(ss, resnames, chain_id))


#: The PDB format's HELIX serial and SHEET identifier have 3 columns: at most this many of each.
PDB_MAX_SEGMENTS = 999


def pdb_ss_records(ss: str, resnames: list[str], chain_id: str = "A") -> str:
    """HELIX and SHEET records (PDB format 3.3, section 5) for the helices and strands of
    ``ss``, residues numbered 1..L as :func:`write_ca_trace` numbers them.

    HELIX: serial and identifier k = 1, 2, ...; class 1 (right-handed alpha: 3-state H also
    holds DSSP's 3-10 and pi helices, G and I); the length in columns 72-76. SHEET: strand
    pairing is not predicted, so each strand is a one-strand sheet (identifier k, strand 1
    of 1, sense 0, no registration). At most :data:`PDB_MAX_SEGMENTS` of each (the format's
    3-column fields); the mmCIF output has no such limit.
    """
    from distfold.structure.secondary import segments

    lines = []
    for k, seg in enumerate(segments(ss, "H")[:PDB_MAX_SEGMENTS], start=1):
        a, b = seg.start, seg.end - 1
        lines.append(f"HELIX  {k:>3} {str(k):>3} {resnames[a]:>3} {chain_id:1} {a + 1:>4}  "
                     f"{resnames[b]:>3} {chain_id:1} {b + 1:>4} {1:>2}{'':30} {seg.length:>5}")
    for k, seg in enumerate(segments(ss, "E")[:PDB_MAX_SEGMENTS], start=1):
        a, b = seg.start, seg.end - 1
        lines.append(f"SHEET  {1:>3} {str(k):>3}{1:>2} {resnames[a]:>3} {chain_id:1}{a + 1:>4}  "
                     f"{resnames[b]:>3} {chain_id:1}{b + 1:>4} {0:>2}")
    return "".join(f"{line:<80}\n" for line in lines)


def cif_ss_categories(ss: str, resnames: list[str], chain_id: str = "A") -> str:
    """The mmCIF ``struct_conf_type``, ``struct_conf`` (helices, ``HELX_P``) and
    ``struct_sheet`` / ``struct_sheet_range`` (strands, one one-strand sheet each: pairing
    is not predicted) loops for ``ss``, with label and author residue numbers 1..L and
    asym id ``chain_id`` as :func:`write_ca_trace`'s ``atom_site`` has them. Empty when
    ``ss`` has neither helix nor strand."""
    from distfold.structure.secondary import segments

    helices, strands = segments(ss, "H"), segments(ss, "E")
    out = []

    def ends(seg):
        a, b = seg.start, seg.end - 1
        return [resnames[a], chain_id, str(a + 1), "?", resnames[b], chain_id, str(b + 1), "?",
                resnames[a], chain_id, str(a + 1), resnames[b], chain_id, str(b + 1)]

    site = ["beg_label_comp_id", "beg_label_asym_id", "beg_label_seq_id", "pdbx_beg_PDB_ins_code",
            "end_label_comp_id", "end_label_asym_id", "end_label_seq_id", "pdbx_end_PDB_ins_code",
            "beg_auth_comp_id", "beg_auth_asym_id", "beg_auth_seq_id",
            "end_auth_comp_id", "end_auth_asym_id", "end_auth_seq_id"]
    if helices:
        out += ["loop_", "_struct_conf_type.id", "_struct_conf_type.criteria", "HELX_P distfold", "#"]
        items = ["conf_type_id", "id", "pdbx_PDB_helix_id", *site, "pdbx_PDB_helix_class",
                 "pdbx_PDB_helix_length"]
        out += ["loop_", *(f"_struct_conf.{k}" for k in items)]
        for k, seg in enumerate(helices, start=1):
            out.append(" ".join(["HELX_P", f"HELX_P{k}", str(k), *ends(seg), "1", str(seg.length)]))
        out.append("#")
    if strands:
        out += ["loop_", "_struct_sheet.id", "_struct_sheet.number_strands"]
        out += [f"S{k} 1" for k in range(1, len(strands) + 1)]
        out.append("#")
        out += ["loop_", "_struct_sheet_range.sheet_id", "_struct_sheet_range.id",
                *(f"_struct_sheet_range.{k}" for k in site)]
        for k, seg in enumerate(strands, start=1):
            out.append(" ".join([f"S{k}", "1", *ends(seg)]))
        out.append("#")
    return "".join(line + "\n" for line in out)


@dataclass
class FullSequence:
    """A chain's full sequence as the file declares it (observed or not).

    sequence: one letter per residue (X for an unknown amino acid).
    scheme: (resseq, insertion code) -> index into ``sequence``, where the file
    maps its residue numbers onto the sequence (mmCIF ``_pdbx_poly_seq_scheme``); else None.
    """

    sequence: str
    scheme: dict[tuple[int, str], int] | None = None


def _letters(resnames: list[str]) -> str:
    out = []
    for name in resnames:
        letter = residue_letter(name)
        if letter is not None:
            out.append(letter)
    return "".join(out)


def polymer_sequences(path: str | os.PathLike) -> dict[str, FullSequence]:
    """Full sequences of the protein chains of a PDB (``SEQRES``) or mmCIF file, by chain id.

    mmCIF sources, in order: ``_pdbx_poly_seq_scheme`` (with the residue-number mapping),
    ``_entity_poly.pdbx_seq_one_letter_code_can`` and ``_entity_poly_seq``, chains named by
    author chain id (as :func:`load_structure` names them). Residues that are not amino
    acids (caps such as ACE, NH2) are left out; chains without amino acids are absent.
    An empty dict when the file declares no sequence.
    """
    path = Path(path)
    try:
        text = read_text(path)
    except (OSError, EOFError) as exc:
        raise InputError(f"{path}: cannot read ({exc.__class__.__name__}: {exc})") from None
    return _cif_sequences(text, path) if _is_cif(path) else _pdb_seqres(text)


def _pdb_seqres(text: str) -> dict[str, FullSequence]:
    names: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.startswith("SEQRES"):
            names.setdefault(line[11:12].strip() or " ", []).extend(line[19:].split())
        elif line.startswith(("ATOM  ", "HETATM", "MODEL ")):
            break  # SEQRES belongs to the header
    out = {}
    for chain, resnames in names.items():
        seq = _letters(resnames)
        if seq and ("UNK" in resnames or any(c != UNKNOWN for c in seq)):
            out[chain] = FullSequence(seq)
    return out


def _cif_sequences(text: str, path: Path) -> dict[str, FullSequence]:
    from Bio.PDB.MMCIF2Dict import MMCIF2Dict

    try:
        d = MMCIF2Dict(text_handle(text))
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"{path}: not a readable mmCIF file ({str(exc).splitlines()[0] if str(exc) else exc})")

    def col(key: str) -> list[str]:
        v = d.get(key, [])
        return [v] if isinstance(v, str) else list(v)

    out: dict[str, FullSequence] = {}
    strand, seq_id, mon = col("_pdbx_poly_seq_scheme.pdb_strand_id"), col("_pdbx_poly_seq_scheme.seq_id"), \
        col("_pdbx_poly_seq_scheme.mon_id")
    num, ins = col("_pdbx_poly_seq_scheme.pdb_seq_num"), col("_pdbx_poly_seq_scheme.pdb_ins_code")
    if strand and len(strand) == len(seq_id) == len(mon) == len(num):
        rows: dict[str, dict[int, tuple[str, str, str]]] = {}
        for k in range(len(strand)):
            try:
                sid = int(seq_id[k])
            except ValueError:
                continue
            rows.setdefault(strand[k], {}).setdefault(sid, (mon[k], num[k], ins[k] if k < len(ins) else "."))
        for chain, by_id in rows.items():
            letters, scheme = [], {}
            for sid in sorted(by_id):
                name, n, ic = by_id[sid]
                letter = residue_letter(name)
                if letter is None:
                    continue
                try:
                    scheme[(int(n), "" if ic in (".", "?") else ic)] = len(letters)
                except ValueError:
                    pass
                letters.append(letter)
            named_unk = any(name.strip().upper() == "UNK" for name, _, _ in by_id.values())
            if letters and (named_unk or any(c != UNKNOWN for c in letters)):
                out[chain] = FullSequence("".join(letters), scheme or None)
        if out:
            return out
    ent_ids, types = col("_entity_poly.entity_id"), col("_entity_poly.type")
    strands, can = col("_entity_poly.pdbx_strand_id"), col("_entity_poly.pdbx_seq_one_letter_code_can")
    eps_ent, eps_num, eps_mon = col("_entity_poly_seq.entity_id"), col("_entity_poly_seq.num"), \
        col("_entity_poly_seq.mon_id")
    by_entity: dict[str, str] = {}
    if eps_ent and len(eps_ent) == len(eps_num) == len(eps_mon):
        seen: dict[str, dict[int, str]] = {}
        for e, n, m in zip(eps_ent, eps_num, eps_mon):
            try:
                seen.setdefault(e, {}).setdefault(int(n), m)
            except ValueError:
                continue
        by_entity = {e: _letters([v[k] for k in sorted(v)]) for e, v in seen.items()}
    elif can and len(can) == len(ent_ids):
        for e, s, t in zip(ent_ids, can, types or [""] * len(ent_ids)):
            if "peptide" in t.lower() or not t:
                seq = "".join(c for c in s if not c.isspace()).upper()
                by_entity[e] = "".join(c if c in AA1_TO_3 else UNKNOWN for c in seq)
    if not by_entity:
        return out
    for k, e in enumerate(ent_ids):
        seq = by_entity.get(e)
        if not seq or all(c == UNKNOWN for c in seq) or k >= len(strands):
            continue
        if types and k < len(types) and types[k] not in ("?", ".") and "peptide" not in types[k].lower():
            continue
        for chain in strands[k].split(","):
            if chain.strip():
                out[chain.strip()] = FullSequence(seq)
    return out


def split_pdb_chain_segments(text: str) -> tuple[str, dict[str, str]]:
    """Give each molecule of a PDB chain id that holds several its own chain id.

    Files written by simulation and docking tools often put several molecules under
    one (often blank) chain id, numbering each from 1; biopython would merge residues
    whose numbers repeat. Within the first model, a chain restarts a segment where a
    residue id (number, insertion code) already used in the current segment comes back
    (other than the residue just before). Segments after the first are written with an
    unused chain character. Returns the text and {chain character: label}, labels being
    ``A``, ``A#1``, ``A#2``... (``#k`` for the k-th repeat); {} and the text unchanged when
    no chain repeats a residue id.
    """
    import string

    lines = text.splitlines(keepends=True)
    used_ids = {ln[21] for ln in lines if ln.startswith(("ATOM  ", "HETATM")) and len(ln) > 21}
    pool = [c for c in string.ascii_uppercase + string.ascii_lowercase + string.digits if c not in used_ids]
    seen: dict[str, set] = {}
    seg: dict[str, int] = {}
    last: dict[str, tuple] = {}
    char: dict[tuple[str, int], str] = {}
    names: dict[str, str] = {}
    out = []
    done = False
    for ln in lines:
        rec = ln[:6]
        if rec == "ENDMDL":
            done = True
        if not done and rec in ("ATOM  ", "HETATM", "ANISOU") and len(ln) > 26:
            cid, rid = ln[21], (ln[22:26], ln[26])
            if rec != "ANISOU":
                key = (rid, ln[17:20])
                if cid in last and rid != last[cid][0] and rid in seen.get(cid, set()):
                    seg[cid] = seg.get(cid, 0) + 1
                    seen[cid] = set()
                if cid not in last or key != last[cid]:
                    seen.setdefault(cid, set()).add(rid)
                last[cid] = key
            k = seg.get(cid, 0)
            if k:
                if (cid, k) not in char:
                    if not pool:
                        return text, {}  # more segments than chain characters: leave the file as it is
                    char[(cid, k)] = pool.pop(0)
                    names[char[(cid, k)]] = f"{cid.strip() or ''}#{k}"
                ln = ln[:21] + char[(cid, k)] + ln[22:]
        out.append(ln)
    if not names:
        return text, {}
    for cid in seg:
        names.setdefault(cid, cid.strip())
    return "".join(out), names


def load_structure_segments(path: str | os.PathLike):
    """Like :func:`load_structure`, with PDB chains split into molecules by
    :func:`split_pdb_chain_segments`. Returns (structure, {chain id: label}) where the
    labels differ from the ids only for split chains."""
    path = Path(path)
    structure = load_structure(path)  # every check and error message of the plain reader
    if _is_cif(path):
        return structure, {}
    text = read_text(path)
    new_text, names = split_pdb_chain_segments(text)
    if not names:
        return structure, {}
    from Bio.PDB import PDBParser

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        structure = PDBParser(QUIET=True, PERMISSIVE=True).get_structure(path.stem, text_handle(new_text))
    return structure, names
