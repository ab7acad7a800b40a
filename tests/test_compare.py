"""``distfold compare`` on real structures: single pairs, folders, bad input."""

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from distfold.structure.alignment import align_sequences, match_residue_numbers
from distfold.cli.compare import stem
from distfold.cli.main import cli
from distfold.structure.metrics import mirror
from distfold.structure.io import read_chain, write_ca_trace

from conftest import DATA, run_distfold

D = DATA / "compare"
NMR2 = D / "1adz_model_2.pdb.gz"
NMR_BOTH = D / "1adz_nmr_models_1_2.pdb.gz"
CIH = D / "d1cih.pdb.gz"
LFM = D / "d1lfma.pdb.gz"


def invoke(*args):
    return CliRunner().invoke(cli, ["compare", *map(str, args)])


def compare_json(*args):
    res = invoke(*args, "--json")
    return res.exit_code, json.loads(res.stdout)


# ---------------------------------------------------------------- correspondence

def test_alignment_of_homologues_and_identity():
    a, b = read_chain(LFM), read_chain(CIH)
    c = align_sequences(a.sequence, b.sequence)
    assert 90 <= c.n_aligned <= len(a)
    assert np.all(np.diff(c.model_index) > 0) and np.all(np.diff(c.ref_index) > 0)
    same = sum(a.sequence[i] == b.sequence[j] for i, j in zip(c.model_index, c.ref_index))
    assert c.seq_identity == pytest.approx(same / c.n_aligned)
    full = align_sequences(b.sequence, b.sequence)
    assert full.n_aligned == len(b) and full.seq_identity == 1.0
    # a fragment aligns onto its place in the whole chain
    frag = align_sequences(b.sequence[30:70], b.sequence)
    assert list(frag.ref_index) == list(range(30, 70))


def test_match_by_residue_number():
    ids_m = [(1, ""), (2, ""), (5, ""), (6, "A")]
    ids_r = [(0, ""), (2, ""), (5, ""), (6, "A"), (7, "")]
    c = match_residue_numbers(ids_m, ids_r, "ACDE", "GCDEF")
    assert list(c.model_index) == [1, 2, 3] and list(c.ref_index) == [1, 2, 3]
    assert c.n_identical == 3 and c.method == "residue_number"


# ---------------------------------------------------------------- single pairs

def test_nmr_models_table_and_json():
    res = invoke(NMR2, NMR_BOTH)
    assert res.exit_code == 0, res.output
    for label in ("RMSD", "TM-score", "GDT-TS", "GDT-HA", "lDDT", "Distance MAE", "C-alpha contact precision"):
        assert label in res.stdout
    code, d = compare_json(NMR2, NMR_BOTH)
    assert code == 0 and d["status"] == "ok"
    assert d["n_aligned"] == d["model_length"] == d["ref_length"] == 71 and d["seq_identity"] == 1.0
    assert d["model_chain"] == d["ref_chain"] == "A"
    # two real NMR models of one protein: same fold, a few Å apart
    assert 0.75 < d["tm_score"] < 0.95 and 1.0 < d["rmsd"] < 6.0
    assert d["tm_score_mirror"] < 0.4
    assert 60 < d["gdt_ts"] <= 100 and d["gdt_ha"] < d["gdt_ts"]
    assert len(d["lddt_per_residue"]) == 71
    for key in ("distance_mae", "distance_rmse", "distance_pearson", "contact_precision_l5", "lddt"):
        assert isinstance(d[key], float)
    # by residue number: the same correspondence here
    code, n = compare_json(NMR2, NMR_BOTH, "--by-number")
    assert n["correspondence"] == "residue_number" and n["tm_score"] == d["tm_score"]


def test_mmcif_model_gives_the_same_numbers():
    _, a = compare_json(NMR2, NMR_BOTH)
    _, b = compare_json(D / "1adz_model_2.cif.gz", NMR_BOTH)
    assert {k: v for k, v in a.items() if k != "model"} == {k: v for k, v in b.items() if k != "model"}


def test_homologue_by_alignment_poor_model_and_missing_contacts():
    code, d = compare_json(LFM, CIH)
    assert code == 0 and d["n_aligned"] < d["ref_length"] and d["seq_identity"] < 0.9
    assert d["tm_score"] > 0.9
    # standard lDDT: a reference residue the model lacks scores 0, its pairs count as not
    # preserved, and the coverage is reported beside it
    assert d["lddt_per_residue"][0] == 0.0 and d["lddt_per_residue"][50] > 0.5
    assert d["coverage"] == pytest.approx(d["n_aligned"] / d["ref_length"])
    assert d["align"] == "sequence" and d["pairing"]["status"] == "ok" and d["warning"] is None
    assert d["pairing"]["z_score"] > 20


def test_unrelated_protein_by_sequence_is_refused_unless_forced_or_aligned_by_structure():
    """An unrelated protein aligned by sequence pairs 32 residues by chance (z-score
    about 1.5): refused; --force-pairing scores it and says so; --align structure is
    the meaningful comparison."""
    res = invoke(NMR2, CIH)
    assert res.exit_code == 1 and res.stdout == ""
    assert len(res.stderr.strip().splitlines()) == 1 and "no better than chance" in res.stderr
    assert "--align structure" in res.stderr and "--force-pairing" in res.stderr
    code, forced = compare_json(NMR2, CIH, "--force-pairing")
    assert code == 0 and forced["tm_score"] < 0.3 and forced["pairing"]["status"] == "forced"
    assert forced["warning"].startswith("meaningless residue pairing")
    code, st = compare_json(NMR2, CIH, "--align", "structure")
    assert code == 0 and st["align"] == "structure" and st["correspondence"] == "structure"
    assert st["pairing"]["rule"] == "structure_alignment" and st["n_aligned"] > 32


def test_xray_chain_vs_its_ca_only_trace_and_its_mirror(tmp_path):
    """No real pair of models exists for an X-ray chain: compare it with its own C-alpha
    trace (identical) and with the mirror image of that trace."""
    ref = read_chain(CIH)
    write_ca_trace(tmp_path / "ca.pdb", ref.ca, ref.sequence)
    write_ca_trace(tmp_path / "mirror.cif", mirror(ref.ca), ref.sequence)
    _, same = compare_json(tmp_path / "ca.pdb", CIH)
    assert same["tm_score"] == pytest.approx(1.0) and same["rmsd"] < 1e-3 and same["gdt_ha"] == 100.0
    assert same["lddt"] == 1.0 and same["distance_mae"] < 1e-3
    _, mir = compare_json(tmp_path / "mirror.cif", CIH)
    assert mir["tm_score"] < 0.5 and mir["tm_score_mirror"] == pytest.approx(1.0)
    assert mir["rmsd"] > 5.0
    assert mir["distance_mae"] < 1e-3 and mir["lddt"] == 1.0  # distances cannot see the hand


@pytest.mark.parametrize("case", ["missing", "no_protein", "bad_chain", "no_ca", "nothing_aligned"])
def test_bad_input_one_line_error_exit_1(tmp_path, case):
    model, extra = NMR2, []
    if case == "missing":
        model = tmp_path / "absent.pdb"
    elif case == "no_protein":
        model = tmp_path / "water.pdb"
        model.write_text("HETATM    1  O   HOH A   1      10.000  10.000  10.000  1.00 20.00           O\nEND\n")
    elif case == "bad_chain":
        extra = ["--chain", "Q"]
    elif case == "no_ca":
        import gzip

        model = tmp_path / "noca.pdb"
        model.write_text("".join(line for line in gzip.open(NMR2, "rt") if line[12:16] != " CA "))
    else:
        model = tmp_path / "shifted.pdb"
        ch = read_chain(NMR2)
        write_ca_trace(model, ch.ca, ch.sequence)  # numbered 1..71
        extra = ["--by-number"]
        ref = tmp_path / "far.pdb"
        text = "".join(line[:22] + "%4d" % (int(line[22:26]) + 500) + line[26:] if line.startswith("ATOM") else line
                       for line in open(model))
        ref.write_text(text)
    reference = ref if case == "nothing_aligned" else NMR_BOTH
    res = invoke(model, reference, *extra)
    assert res.exit_code == 1, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and res.stdout == ""
    res = invoke(model, reference, *extra, "--json")
    assert res.exit_code == 1
    d = json.loads(res.stdout)
    assert d["status"] == "error" and "\n" not in d["error"] and d["error"]
    assert res.stderr == ""


def test_bad_input_as_a_user_sees_it(tmp_path):
    res = run_distfold("compare", str(tmp_path / "absent.pdb"), str(NMR2))
    assert res.returncode == 1 and res.stderr == f"Error: {tmp_path / 'absent.pdb'}: no such file\n"


def test_file_and_folder_mixed_is_usage_error(tmp_path):
    res = invoke(tmp_path, NMR2)
    assert res.exit_code == 2 and "two folders" in res.stderr


# ---------------------------------------------------------------- folders

def test_stem():
    from pathlib import Path

    assert stem(Path("a.pdb.gz")) == "a" and stem(Path("b.CIF")) == "b" and stem(Path("c.d.ent")) == "c.d"


def test_folder_mode_tsv(tmp_path):
    m, r = tmp_path / "models", tmp_path / "refs"
    m.mkdir()
    r.mkdir()
    shutil.copy(NMR2, m / "kunitz.pdb.gz")
    shutil.copy(NMR_BOTH, r / "kunitz.pdb.gz")
    shutil.copy(LFM, m / "cyt.pdb.gz")
    shutil.copy(D / "d1cih.pdb.gz", r / "cyt.pdb.gz")
    (m / "broken.pdb").write_text("not a structure\n")
    shutil.copy(CIH, r / "broken.pdb")
    shutil.copy(CIH, m / "lonely.pdb.gz")
    (m / "notes.txt").write_text("ignored\n")
    out = tmp_path / "table.tsv"
    res = invoke(m, r, "-o", out)
    assert res.exit_code == 0, res.output
    lines = out.read_text().splitlines()
    header = lines[0].lstrip("#").split("\t")
    rows = {row["model"].split("/")[-1]: row for row in (dict(zip(header, ln.split("\t"))) for ln in lines[1:])}
    assert set(rows) == {"kunitz.pdb.gz", "cyt.pdb.gz", "broken.pdb", "lonely.pdb.gz"}
    assert rows["kunitz.pdb.gz"]["status"] == "ok" and rows["cyt.pdb.gz"]["status"] == "ok"
    assert rows["broken.pdb"]["status"] == "error" and rows["broken.pdb"]["error"]
    assert rows["lonely.pdb.gz"]["status"] == "unpaired"
    _, single = compare_json(NMR2, NMR_BOTH)
    assert float(rows["kunitz.pdb.gz"]["tm_score"]) == pytest.approx(single["tm_score"], abs=1e-4)
    assert "2 of 3 pairs scored" in res.stderr
    # --json: one object with every row
    res = invoke(m, r, "--json")
    d = json.loads(res.stdout)
    assert res.exit_code == 0 and d["n_ok"] == 2 and d["n_error"] == 1 and d["n_unpaired"] == 1
    assert res.stderr == ""


def test_folder_mode_progress_bar_on_stderr_for_many_pairs(tmp_path):
    m, r = tmp_path / "m", tmp_path / "r"
    m.mkdir()
    r.mkdir()
    ch = read_chain(NMR2)
    ref = read_chain(NMR_BOTH)
    for k in range(10):
        write_ca_trace(m / f"s{k}.pdb", ch.ca[: 30 + k], ch.sequence[: 30 + k])
        write_ca_trace(r / f"s{k}.pdb", ref.ca[: 30 + k], ref.sequence[: 30 + k])
    res = invoke(m, r)
    assert res.exit_code == 0
    assert "Comparing" in res.stderr
    assert len(res.stdout.strip().splitlines()) == 11 and "Comparing" not in res.stdout


def test_folder_mode_no_pairs_is_an_error(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    res = run_distfold("compare", str(tmp_path / "a"), str(tmp_path / "b"))
    assert res.returncode == 1 and res.stderr.startswith("Error: ") and len(res.stderr.splitlines()) == 1


def test_folder_mode_goes_on_past_an_unexpected_failure(tmp_path, monkeypatch):
    import distfold.structure.compare as comp

    real = comp.compare_files

    def flaky(model, *args, **kwargs):
        if "bad" in str(model):
            raise RuntimeError("boom")
        return real(model, *args, **kwargs)

    monkeypatch.setattr(comp, "compare_files", flaky)
    m, r = tmp_path / "m", tmp_path / "r"
    m.mkdir()
    r.mkdir()
    for name in ("bad", "good"):
        shutil.copy(NMR2, m / f"{name}.pdb.gz")
        shutil.copy(NMR_BOTH, r / f"{name}.pdb.gz")
    res = invoke(m, r, "--json")
    d = json.loads(res.stdout)
    assert res.exit_code == 0 and [row["status"] for row in d["rows"]] == ["error", "ok"]
    assert "RuntimeError: boom" in d["rows"][0]["error"]


# ---------------------------------------------------------------- pairing (issue 15, point 2)

EXAMPLE = DATA.parent.parent / "examples" / "example.pdb"


@pytest.fixture(scope="module")
def unk_model(tmp_path_factory):
    """What ``distfold reconstruct`` writes without --sequence: UNK residues numbered
    1..L, here of the example protein (numbered 8-147 in examples/example.pdb) with
    0.5 Å noise."""
    ref = read_chain(EXAMPLE)
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("unk") / "model.pdb"
    write_ca_trace(path, ref.ca + rng.normal(scale=0.5, size=ref.ca.shape))
    assert set(read_chain(path).sequence) == {"X"} and read_chain(path).residue_ids[0] == (1, "")
    return path


def test_model_without_sequence_is_refused(unk_model):
    """Before: paired by residue number, shifted by seven, identity 0.000, TM 0.206, exit 0."""
    res = invoke(unk_model, EXAMPLE)
    assert res.exit_code == 1 and res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "no sequence" in lines[0] and "--by-number" in lines[0]
    res = invoke(unk_model, EXAMPLE, "--json")
    d = json.loads(res.stdout)
    assert res.exit_code == 1 and d["status"] == "error" and "no sequence" in d["error"]


def test_model_without_sequence_by_structure_or_on_purpose(unk_model):
    code, st = compare_json(unk_model, EXAMPLE, "--align", "structure")
    assert code == 0 and st["tm_score"] > 0.9 and st["n_aligned"] >= 135 and st["warning"] is None
    assert st["pairing"]["identity"] is None  # nothing to compare the reference's sequence with
    # --by-number on purpose: scored as asked (the numbering is off by 7 here), with a warning
    res = invoke(unk_model, EXAMPLE, "--by-number")
    assert res.exit_code == 0 and "Warning: weak residue pairing" in res.stderr
    assert "cannot be checked" in res.stderr
    code, bn = compare_json(unk_model, EXAMPLE, "--by-number")
    assert bn["pairing"]["rule"] == "residue_number" and bn["pairing"]["status"] == "weak"
    assert bn["tm_score"] < 0.5  # the shifted pairing is as poor as it looks
    code, forced = compare_json(unk_model, EXAMPLE, "--force-pairing")
    assert code == 0 and forced["pairing"]["status"] == "forced"


def test_unrelated_short_query_is_refused(tmp_path):
    """A 33-residue query of an unrelated protein against the 140-residue example: the
    global alignment pairs 15 residues by chance. Before: scored, no warning."""
    other = read_chain(DATA / "chains" / "c55406f94174e.pdb.gz")
    q = tmp_path / "query.pdb"
    write_ca_trace(q, other.ca[:33], other.sequence[:33])
    res = invoke(q, EXAMPLE)
    assert res.exit_code == 1 and "no better than chance" in res.stderr
    code, d = compare_json(q, EXAMPLE, "--force-pairing")
    assert code == 0 and d["pairing"]["z_score"] < 4 and d["n_aligned"] < 20


def test_fragment_model_is_weak_and_scored(tmp_path):
    """A real fragment (40 of 108 residues) pairs well but covers little: scored, with
    a warning; lDDT is bounded by the coverage."""
    ref = read_chain(CIH)
    frag = tmp_path / "frag.pdb"
    write_ca_trace(frag, ref.ca[20:60], ref.sequence[20:60])
    res = invoke(frag, CIH)
    assert res.exit_code == 0 and res.stderr.startswith("Warning: weak residue pairing")
    assert "under 50% of the reference" in res.stderr and "Pairing    weak" in res.stdout
    code, d = compare_json(frag, CIH)
    assert d["pairing"]["status"] == "weak" and d["coverage"] == pytest.approx(40 / 108)
    assert d["lddt"] <= d["coverage"] and d["pairing"]["identity"] == 1.0


def test_structure_and_by_number_exclude_each_other():
    res = invoke(NMR2, NMR_BOTH, "--by-number", "--align", "structure")
    assert res.exit_code == 1 and len(res.stderr.strip().splitlines()) == 1


def test_structure_alignment_of_homologues_matches_tmalign_fixture():
    """compare --align structure on d1lfma vs d1cih: TM-align's 0.9294 (fixture)."""
    ref = json.loads((DATA / "reference_scores" / "tmalign_reference.json").read_text())
    want = next(p for p in ref["pairs"] if (p["model"], p["reference"]) == ("1lfm", "1cih"))
    code, d = compare_json(LFM, CIH, "--align", "structure")
    assert code == 0 and d["tm_score"] == pytest.approx(want["tm_score_ref"], abs=1e-3)
    res = invoke(LFM, CIH, "--align", "structure")
    assert "structural alignment" in res.stdout


def test_tsv_has_coverage_align_and_pairing_columns(tmp_path):
    out = tmp_path / "t.tsv"
    res = invoke(LFM, CIH, "-o", out)
    assert res.exit_code == 0
    header, row = out.read_text().splitlines()
    cols = dict(zip(header.lstrip("#").split("\t"), row.split("\t")))
    assert cols["align"] == "sequence" and cols["pairing_status"] == "ok" and float(cols["coverage"]) > 0.9


def test_report_page_of_a_structural_alignment(tmp_path):
    page = tmp_path / "p.html"
    res = invoke(NMR2, CIH, "--align", "structure", "--html", page)
    assert res.exit_code == 0, res.output
    assert "structural alignment" in page.read_text()
