"""Structure reading rules and C-alpha trace writers, on real files; property-based
tests feed truncated, mutated and random PDB / mmCIF text to the readers."""

import gzip
import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distfold.errors import InputError
from distfold.structure.io import read_chain, write_ca_trace

from conftest import DATA

D = DATA / "compare"
PDB_TEXT = gzip.open(D / "1adz_model_2.pdb.gz", "rt").read()


def _write(tmp_path, name, text):
    p = tmp_path / name
    if name.endswith(".gz"):
        with gzip.open(p, "wt") as fh:
            fh.write(text)
    else:
        p.write_text(text)
    return p


def _one_line_error(excinfo):
    msg = str(excinfo.value)
    assert msg and "\n" not in msg
    return msg


# ---------------------------------------------------------------- reading rules

def test_pdb_and_mmcif_plain_and_gzipped_agree(tmp_path):
    a = read_chain(D / "1adz_model_2.pdb.gz")
    b = read_chain(D / "1adz_model_2.cif.gz")
    c = read_chain(_write(tmp_path, "m.pdb", PDB_TEXT))
    d = read_chain(_write(tmp_path, "m.cif", gzip.open(D / "1adz_model_2.cif.gz", "rt").read()))
    assert len(a) == 71 and a.sequence.startswith("DYKDDDDK")
    for other in (b, c, d):
        assert other.sequence == a.sequence and np.array_equal(other.ca, a.ca)
        assert other.residue_ids == a.residue_ids


def _chains(path, ca_only):
    from distfold.structure.io import chains_of, load_structure

    try:
        return chains_of(load_structure(path, ca_only=ca_only), str(path))
    except InputError as exc:
        return str(exc)


@pytest.mark.parametrize("path", sorted(p for p in DATA.rglob("*") if p.name.endswith((".pdb", ".pdb.gz", ".ent.gz"))),
                         ids=lambda p: p.name)
def test_reading_c_alpha_records_only_gives_the_chains_of_the_whole_file(path):
    """read_chain parses only the records chains_of reads (3x faster on full-atom files); every
    PDB file of the test data gives the same chains, field by field, as the whole file (also
    checked once on all 1,085 chains of the shared data). 1ejg_A.pdb.gz has a residue in two
    types (PRO / SER), which biopython picks from all of the residue's atoms."""
    whole, ca = _chains(path, False), _chains(path, True)
    if isinstance(whole, str):
        assert ca == whole
        return
    assert [c.chain_id for c in ca] == [c.chain_id for c in whole]
    for a, b in zip(ca, whole):
        assert a.sequence == b.sequence and a.residue_ids == b.residue_ids
        np.testing.assert_array_equal(a.ca, b.ca)
        np.testing.assert_array_equal(a.bfactors, b.bfactors)
    if path.name == "1ejg_A.pdb.gz":
        assert ca[0].sequence[21] == "P" and read_chain(path).sequence == whole[0].sequence


def test_first_model_only():
    two = read_chain(D / "1adz_nmr_models_1_2.pdb.gz")
    second = read_chain(D / "1adz_model_2.pdb.gz")
    assert two.sequence == second.sequence
    assert not np.allclose(two.ca, second.ca)  # model 1, not model 2
    first_ca = [line for line in gzip.open(D / "1adz_nmr_models_1_2.pdb.gz", "rt")
                if line.startswith("ATOM") and line[12:16] == " CA "][0]
    assert np.allclose(two.ca[0], [float(first_ca[30:38]), float(first_ca[38:46]), float(first_ca[46:54])])


def _ca_line(resseq):
    return next(line for line in PDB_TEXT.splitlines() if line.startswith("ATOM") and line[12:16] == " CA "
                and int(line[22:26]) == resseq)


def test_altloc_resolved_to_one_atom(tmp_path):
    line = _ca_line(10)
    a = line[:16] + "A" + line[17:54] + "  0.60" + line[60:]
    b = line[:16] + "B" + line[17:30] + "%8.3f" % (float(line[30:38]) + 5.0) + line[38:54] + "  0.40" + line[60:]
    text = PDB_TEXT.replace(line, a + "\n" + b)
    ch = read_chain(_write(tmp_path, "alt.pdb", text))
    ref = read_chain(D / "1adz_model_2.pdb.gz")
    assert len(ch) == len(ref)
    k = [r[0] for r in ch.residue_ids].index(10)
    assert np.allclose(ch.ca[k], ref.ca[k])  # the higher-occupancy location


def test_mse_counts_as_met_and_hetero_groups_and_water_ignored(tmp_path):
    lines = PDB_TEXT.splitlines()
    met = [k for k, line in enumerate(lines) if line.startswith("ATOM") and line[17:20] == "MET"]
    assert met, "the test file has a methionine"
    for k in met:
        lines[k] = "HETATM" + lines[k][6:17] + "MSE" + lines[k][20:]
    ca = _ca_line(20)
    extra = [
        "HETATM 9001  O   HOH A 201    " + ca[30:54] + "  1.00 20.00           O",
        "HETATM 9002  C1  GOL A 202    " + ca[30:54] + "  1.00 20.00           C",
        "HETATM 9003  CA  CA  A 203    " + ca[30:54] + "  1.00 20.00          CA",
    ]
    end = lines.index("END")
    text = "\n".join(lines[:end] + extra + lines[end:]) + "\n"
    ch = read_chain(_write(tmp_path, "mse.pdb", text))
    ref = read_chain(D / "1adz_model_2.pdb.gz")
    assert ch.sequence == ref.sequence and np.array_equal(ch.ca, ref.ca)


def test_chain_selection_and_default(tmp_path):
    # two chains: the real chain as B, and a copy renamed A placed first
    body = [line for line in PDB_TEXT.splitlines() if line.startswith("ATOM")]
    chain_b = [line[:21] + "B" + line[22:] for line in body]
    first20 = [line[:21] + "A" + line[22:] for line in body if int(line[22:26]) <= 20]
    p = _write(tmp_path, "two.pdb", "\n".join(first20 + ["TER"] + chain_b + ["END"]) + "\n")
    assert read_chain(p).chain_id == "A" and len(read_chain(p)) == 20
    assert len(read_chain(p, "B")) == 71
    with pytest.raises(InputError) as e:
        read_chain(p, "Z")
    assert "'Z' not found" in _one_line_error(e) and "'A', 'B'" in str(e.value)


@pytest.mark.parametrize("case", ["missing", "empty", "directory", "not_gzip", "truncated_gzip", "water_only",
                                  "no_ca", "cut_record", "garbage"])
def test_bad_input_is_one_line_input_error(tmp_path, case):
    if case == "missing":
        p = tmp_path / "nope.pdb"
    elif case == "empty":
        p = _write(tmp_path, "e.pdb", "")
    elif case == "directory":
        p = tmp_path
    elif case == "not_gzip":
        p = _write(tmp_path, "x.pdb.gz".replace(".gz", ""), PDB_TEXT).rename(tmp_path / "x.pdb.gz")
    elif case == "truncated_gzip":
        raw = (D / "1adz_model_2.pdb.gz").read_bytes()
        p = tmp_path / "t.pdb.gz"
        p.write_bytes(raw[: len(raw) // 2])
    elif case == "water_only":
        p = _write(tmp_path, "w.pdb", "HETATM    1  O   HOH A   1      10.000  10.000  10.000  1.00 20.00           O\nEND\n")
    elif case == "no_ca":
        p = _write(tmp_path, "n.pdb", "\n".join(line for line in PDB_TEXT.splitlines() if line[12:16] != " CA "))
    elif case == "cut_record":
        ca = _ca_line(30)
        p = _write(tmp_path, "c.pdb", PDB_TEXT.replace(ca, ca[:50]))
    else:
        p = _write(tmp_path, "g.cif", "data_x\nloop_\n_atom_site.id\n_atom_site.Cartn_x\n1\n")
    with pytest.raises(InputError) as e:
        read_chain(p)
    msg = _one_line_error(e)
    assert str(p.name) in msg or str(p) in msg


# ---------------------------------------------------------------- writers

@pytest.mark.parametrize("fmt", ["pdb", "cif"])
def test_write_ca_trace_round_trips(tmp_path, fmt):
    ref = read_chain(D / "d1cih.pdb.gz")
    b = np.linspace(0, 100, len(ref))
    p = tmp_path / f"trace.{fmt}"
    write_ca_trace(p, ref.ca, ref.sequence, b)
    back = read_chain(p)
    assert back.sequence == ref.sequence
    assert np.abs(back.ca - ref.ca).max() <= 5e-4 + 1e-9  # 3 decimals in both formats
    assert np.abs(back.bfactors - b).max() <= 5e-3 + 1e-9
    assert [r[0] for r in back.residue_ids] == list(range(1, len(ref) + 1))


def test_write_ca_trace_refuses_bad_input_and_leaves_no_file(tmp_path):
    p = tmp_path / "x.pdb"
    with pytest.raises(InputError):
        write_ca_trace(p, np.zeros((5, 2)))
    with pytest.raises(InputError):
        write_ca_trace(p, np.zeros((5, 3)), "ACD")
    with pytest.raises(InputError):
        write_ca_trace(p, np.full((5, 3), 1e5))
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- property-based

# A small real piece (residues 1-12 of 1ADZ model 2) keeps each example fast.
_SMALL = "\n".join(line for line in PDB_TEXT.splitlines()
                   if line.startswith("ATOM") and int(line[22:26]) <= 12) + "\nEND\n"


def _as_cif(pdb_text: str) -> str:
    from Bio.PDB import MMCIFIO, PDBParser

    s = PDBParser(QUIET=True).get_structure("x", io.StringIO(pdb_text))
    out = io.StringIO()
    w = MMCIFIO()
    w.set_structure(s)
    w.save(out)
    return out.getvalue()


_TEXT = {"pdb": _SMALL, "cif": _as_cif(_SMALL)}
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _read(tmp_path, fmt, text):
    p = tmp_path / f"fuzz.{fmt}"
    p.write_text(text)
    try:
        return read_chain(p)
    except InputError as exc:
        assert str(exc) and "\n" not in str(exc)
        return None


@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    out = {}
    for fmt, text in _TEXT.items():
        p = tmp_path_factory.mktemp("orig") / f"orig.{fmt}"
        p.write_text(text)
        out[fmt] = read_chain(p)
    return out


@pytest.mark.parametrize("fmt", ["pdb", "cif"])
@SETTINGS
@given(data=st.data())
def test_truncated_text_never_gives_a_wrong_number(tmp_path, originals, fmt, data):
    text = _TEXT[fmt]
    cut = data.draw(st.integers(0, len(text)))
    ch = _read(tmp_path, fmt, text[:cut])
    if ch is not None:
        orig = originals[fmt]
        pos = {rid: k for k, rid in enumerate(orig.residue_ids)}
        assert len(ch.sequence) == len(ch.ca) == len(ch.residue_ids)
        for k, rid in enumerate(ch.residue_ids):
            assert ch.sequence[k] == orig.sequence[pos[rid]]
            assert np.array_equal(ch.ca[k], orig.ca[pos[rid]])


@pytest.mark.parametrize("fmt", ["pdb", "cif"])
@SETTINGS
@given(data=st.data())
def test_mutated_text_reads_or_fails_with_input_error(tmp_path, fmt, data):
    chars = list(_TEXT[fmt])
    for _ in range(data.draw(st.integers(1, 12))):
        i = data.draw(st.integers(0, len(chars) - 1))
        chars[i] = data.draw(st.sampled_from(list("0123456789.-+eE \n\tAXZ#_;'\"?")))
    ch = _read(tmp_path, fmt, "".join(chars))
    if ch is not None:
        assert len(ch.sequence) == len(ch.ca) and np.isfinite(ch.ca).all()


@pytest.mark.parametrize("fmt", ["pdb", "cif"])
@SETTINGS
@given(text=st.text(alphabet=st.sampled_from(list("ATOMHETCA 0123456789.-\n_;#'\"loopdata")), max_size=600))
def test_random_text_reads_or_fails_with_input_error(tmp_path, fmt, text):
    ch = _read(tmp_path, fmt, text)
    if ch is not None:
        assert len(ch.sequence) == len(ch.ca) and np.isfinite(ch.ca).all()


def test_atomic_write_gives_usual_permissions_and_no_partial_file(tmp_path):
    import os
    import stat

    from distfold.fileio import atomic_write

    target = tmp_path / "out.txt"
    with atomic_write(target) as fh:
        fh.write("complete")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask
    try:
        with atomic_write(tmp_path / "half.txt") as fh:
            fh.write("partial")
            raise RuntimeError("interrupted")
    except RuntimeError:
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


# -- secondary structure in the written files -----------------------------------

SS_SEQ = "MKVLAAGHEEKLAAGW"
SS_STR = "CHHHHCEEECEECHHH"


def _trace(tmp_path, fmt):
    x = np.cumsum(np.random.default_rng(0).normal(size=(len(SS_SEQ), 3)) * 2.0, 0)
    path = tmp_path / f"ss.{fmt}"
    write_ca_trace(path, x, SS_SEQ, np.arange(len(SS_SEQ)), fmt, ss=SS_STR)
    return path, x


def test_pdb_helix_and_sheet_records_follow_the_format_columns(tmp_path):
    import warnings

    from Bio.PDB import PDBParser
    from Bio.PDB.PDBExceptions import PDBConstructionWarning

    path, x = _trace(tmp_path, "pdb")
    lines = path.read_text().splitlines()
    helix = [ln for ln in lines if ln.startswith("HELIX ")]
    sheet = [ln for ln in lines if ln.startswith("SHEET ")]
    assert len(helix) == 2 and len(sheet) == 2
    assert lines.index(sheet[-1]) < min(i for i, ln in enumerate(lines) if ln.startswith("ATOM"))
    # PDB format 3.3, HELIX: serNum 8-10, helixID 12-14, initResName 16-18, initChainID 20,
    # initSeqNum 22-25, endResName 28-30, endChainID 32, endSeqNum 34-37, helixClass 39-40, length 72-76
    h = helix[0]
    assert (h[7:10], h[11:14].strip(), h[15:18], h[19], h[21:25], h[27:30], h[31], h[33:37], h[38:40],
            h[71:76]) == ("  1", "1", "LYS", "A", "   2", "ALA", "A", "   5", " 1", "    4")
    assert helix[1][21:25] == "  14" and helix[1][33:37] == "  16" and helix[1][71:76] == "    3"
    # SHEET: strand 8-10, sheetID 12-14, numStrands 15-16, initResName 18-20, initChainID 22,
    # initSeqNum 23-26, endResName 29-31, endChainID 33, endSeqNum 34-37, sense 39-40
    s = sheet[1]
    assert (s[7:10], s[11:14].strip(), s[14:16], s[17:20], s[21], s[22:26], s[28:31], s[32], s[33:37],
            s[38:40]) == ("  1", "2", " 1", "LYS", "A", "  11", "LEU", "A", "  12", " 0")
    assert all(len(ln) == 80 for ln in helix + sheet)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PDBConstructionWarning)
        structure = PDBParser(PERMISSIVE=False).get_structure("x", str(path))
    atoms = list(structure.get_atoms())
    assert len(atoms) == len(SS_SEQ)
    np.testing.assert_allclose([a.coord for a in atoms], x, atol=1e-3)
    assert read_chain(path).sequence == SS_SEQ


def test_mmcif_struct_conf_and_sheet_range_read_back(tmp_path):
    from Bio.PDB import MMCIFParser
    from Bio.PDB.MMCIF2Dict import MMCIF2Dict

    path, x = _trace(tmp_path, "cif")
    d = MMCIF2Dict(str(path))
    assert d["_struct_conf.conf_type_id"] == ["HELX_P", "HELX_P"]
    assert d["_struct_conf.beg_label_seq_id"] == ["2", "14"]
    assert d["_struct_conf.end_auth_seq_id"] == ["5", "16"]
    assert d["_struct_conf.beg_label_comp_id"] == ["LYS", "ALA"]
    assert d["_struct_conf.pdbx_PDB_helix_length"] == ["4", "3"]
    assert d["_struct_sheet_range.beg_label_seq_id"] == ["7", "11"]
    assert d["_struct_sheet_range.end_label_seq_id"] == ["9", "12"]
    assert d["_struct_sheet_range.sheet_id"] == ["S1", "S2"]
    assert d["_struct_sheet.number_strands"] == ["1", "1"]
    # the segment residues are the atom_site residues of the same numbers
    seq_ids = d["_atom_site.label_seq_id"]
    comp = d["_atom_site.label_comp_id"]
    assert comp[seq_ids.index("14")] == "ALA"
    structure = MMCIFParser(QUIET=True).get_structure("x", str(path))
    np.testing.assert_allclose([a.coord for a in structure.get_atoms()], x, atol=1e-3)
    assert read_chain(path).sequence == SS_SEQ


def test_ss_records_absent_without_segments_and_bad_ss_refused(tmp_path):
    x = np.zeros((4, 3)) + np.arange(4)[:, None] * 3.8
    write_ca_trace(tmp_path / "c.pdb", x, "AAAA", fmt="pdb", ss="CCCC")
    assert not any(ln.startswith(("HELIX", "SHEET")) for ln in (tmp_path / "c.pdb").read_text().splitlines())
    write_ca_trace(tmp_path / "c.cif", x, "AAAA", fmt="cif", ss="CCCC")
    assert "_struct_conf" not in (tmp_path / "c.cif").read_text()
    with pytest.raises(InputError, match="secondary structure has 3 residues"):
        write_ca_trace(tmp_path / "d.pdb", x, "AAAA", fmt="pdb", ss="CCC")
    with pytest.raises(InputError, match="'X'"):
        write_ca_trace(tmp_path / "d.pdb", x, "AAAA", fmt="pdb", ss="CCXC")
    assert not (tmp_path / "d.pdb").exists()
