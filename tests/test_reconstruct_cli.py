"""`distfold reconstruct`: files in, C-alpha trace out, one-line errors."""

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from scipy.spatial.distance import cdist
from scipy.spatial.transform import Rotation

from distfold.cli.main import cli
from distfold.structure.io import read_chain

from conftest import run_distfold

CHAIN = Path(__file__).parent / "data" / "chains" / "c70b106ab8731.pdb.gz"  # 1MR1 D, 96 residues


pytestmark = pytest.mark.usefixtures("one_blas_thread")


@pytest.fixture(scope="module")
def chain():
    return read_chain(CHAIN)


@pytest.fixture
def files(tmp_path, chain):
    d = cdist(chain.ca, chain.ca)
    np.save(tmp_path / "d.npy", d)
    np.savetxt(tmp_path / "d.txt", d, fmt="%.6f")
    return tmp_path, d


def rmsd_proper(a, b):
    a = a - a.mean(0)
    b = b - b.mean(0)
    rot, _ = Rotation.align_vectors(a, b)
    return float(np.sqrt(((a - rot.apply(b)) ** 2).sum(1).mean()))


def invoke(*args):
    return CliRunner().invoke(cli, ["reconstruct", *map(str, args)])


@pytest.mark.parametrize("src, fmt, suffix", [("d.npy", None, ".pdb"), ("d.txt", "cif", ".cif"),
                                              ("d.npy", None, ".mmcif"), ("d.txt", "pdb", ".ent")])
def test_writes_a_ca_trace_with_residue_names(files, chain, src, fmt, suffix):
    tmp, _ = files
    out = tmp / f"model{suffix}"
    args = [tmp / src, "-o", out, "--sequence", chain.sequence] + (["--format", fmt] if fmt else [])
    res = invoke(*args)
    assert res.exit_code == 0, res.output
    text = out.read_text()
    assert ("_atom_site" in text) == (fmt == "cif" or suffix == ".mmcif")
    back = read_chain(out)
    assert back.chain_id == "A" and back.sequence == chain.sequence
    assert rmsd_proper(back.ca, chain.ca) < 0.01  # PDB keeps 3 decimals


def test_json_prints_the_diagnostics(files):
    tmp, _ = files
    res = invoke(tmp / "d.npy", "-o", tmp / "m.pdb", "--method", "classical", "--json")
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert info["method"] == "classical" and info["length"] == 96
    diag = info["diagnostics"]
    for key in ("stress", "stress1", "iterations", "converged", "negative_eigenvalue_share", "mirrored",
                "handedness_margin"):
        assert key in diag
    assert info["config"]["negative_share"] is True
    assert diag["negative_eigenvalue_share_method"] == "exact"  # 96 residues


def test_sequence_from_fasta_and_weights_file(files, chain):
    tmp, d = files
    (tmp / "s.fasta").write_text(f">x\n{chain.sequence}\n")
    n = len(d)
    w = np.ones((n, n))
    w[0, 50] = w[50, 0] = 0.0
    bad = d.copy()
    bad[0, 50] = bad[50, 0] = np.nan
    np.save(tmp / "w.npy", w)
    np.save(tmp / "nan.npy", bad)
    res = invoke(tmp / "nan.npy", "-o", tmp / "m.pdb", "--weights", tmp / "w.npy", "--sequence", tmp / "s.fasta",
                 "--method", "refine", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["diagnostics"]["weighted"] is True
    assert rmsd_proper(read_chain(tmp / "m.pdb").ca, chain.ca) < 0.1


def test_third_party_reconstructor(files, chain):
    tmp, _ = files
    res = invoke(tmp / "d.npy", "-o", tmp / "m.pdb", "--method", "example-spectral", "--sequence", chain.sequence)
    assert res.exit_code == 0, res.output
    assert rmsd_proper(read_chain(tmp / "m.pdb").ca, chain.ca) < 0.01


def _write(tmp, name, content):
    path = tmp / name
    if isinstance(content, np.ndarray):
        np.save(path, content)
    else:
        path.write_text(content)
    return path


@pytest.mark.parametrize("name, content, extra, words", [
    ("rect.npy", np.zeros((3, 4)), [], "not square"),
    ("cube.npy", np.zeros((2, 2, 2)), [], "not square"),
    ("neg.npy", -np.ones((3, 3)) + np.eye(3), [], "negative"),
    ("asym.npy", np.array([[0.0, 1.0], [3.0, 0.0]]), [], "not symmetric"),
    ("nan.npy", np.array([[0.0, np.nan], [np.nan, 0.0]]), [], "non-finite"),
    ("junk.txt", "1 2 x\n", [], "not a readable"),
    ("ragged.txt", "0 1\n1 0 2\n", [], "not a readable"),
    ("empty.txt", "", [], "empty"),
    ("fake.npy", "not numpy", [], "not a readable"),
    ("ok.txt", "0 1\n1 0\n", ["--sequence", "ACD"], "sequence has 3 residues"),
    ("ok2.txt", "0 1\n1 0\n", ["--sequence", "A1"], "invalid residue"),
])
def test_bad_input_is_one_line_exit_1_and_no_output(tmp_path, name, content, extra, words):
    path = _write(tmp_path, name, content)
    out = tmp_path / "never.pdb"
    res = invoke(path, "-o", out, *extra)
    assert res.exit_code == 1, res.output
    lines = [l for l in res.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and words in lines[0], res.stderr
    assert "Traceback" not in res.output
    assert not out.exists() and not list(tmp_path.glob(".never.pdb*"))


def test_missing_file_and_bad_weights(tmp_path):
    res = invoke(tmp_path / "nope.npy", "-o", tmp_path / "m.pdb")
    assert res.exit_code == 1 and "no such file" in res.stderr
    _write(tmp_path, "d.txt", "0 1\n1 0\n")
    np.save(tmp_path / "w.npy", -np.ones((2, 2)))
    res = invoke(tmp_path / "d.txt", "-o", tmp_path / "m.pdb", "--weights", tmp_path / "w.npy")
    assert res.exit_code == 1 and str(tmp_path / "w.npy") in res.stderr and "negative" in res.stderr
    np.save(tmp_path / "w3.npy", np.ones((3, 3)))
    res = invoke(tmp_path / "d.txt", "-o", tmp_path / "m.pdb", "--weights", tmp_path / "w3.npy")
    assert res.exit_code == 1 and "does not match" in res.stderr


def test_unknown_method_is_usage_error_in_a_real_process(tmp_path):
    _write(tmp_path, "d.txt", "0 1\n1 0\n")
    res = run_distfold("reconstruct", str(tmp_path / "d.txt"), "-o", str(tmp_path / "m.pdb"), "--method", "nope")
    assert res.returncode == 2 and "unknown reconstructor 'nope'" in res.stderr
    assert "smacof" in res.stderr  # the choices are listed
    res = run_distfold("reconstruct", str(tmp_path / "d.txt"), "-o", str(tmp_path / "m.pdb"), "--json")
    assert res.returncode == 0 and res.stderr == ""
    assert json.loads(res.stdout)["length"] == 2


@pytest.mark.parametrize("suffix", [".pdb", ".cif"])
def test_output_without_sequence_reads_back_and_compares_to_itself(files, chain, suffix):
    """Without --sequence every residue is written as UNK; distfold must read its own file."""
    tmp, _ = files
    out = tmp / f"unk{suffix}"
    res = invoke(tmp / "d.npy", "-o", out)
    assert res.exit_code == 0, res.output
    assert "UNK" in out.read_text()
    back = read_chain(out)
    assert back.chain_id == "A" and back.sequence == "X" * len(chain.ca)
    assert rmsd_proper(back.ca, chain.ca) < 0.01
    # an all-unknown sequence carries nothing to align on: pairing by number must be asked for
    # (--by-number), or the residues paired by structure; without either, compare refuses
    res = CliRunner().invoke(cli, ["compare", str(out), str(out), "--by-number", "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert info["status"] == "ok" and info["n_aligned"] == len(chain.ca)
    assert info["correspondence"] == "residue_number"
    assert info["rmsd"] < 1e-9 and info["tm_score"] == pytest.approx(1.0)
    res = CliRunner().invoke(cli, ["compare", str(out), str(out), "--json"])
    assert res.exit_code == 1
    assert "no sequence" in json.loads(res.stdout)["error"]
    res = CliRunner().invoke(cli, ["compare", str(out), str(out), "--align", "structure", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["tm_score"] == pytest.approx(1.0)


def test_unk_chains_are_read_but_hetero_groups_still_ignored(tmp_path):
    """UNK residues with a C-alpha make a chain; calcium ions (residue CA, atom CA), a ligand
    and waters do not, even where they are the only thing in their chain."""
    def atom(rec, serial, name, resname, chain_id, resseq, x):
        return (f"{rec:<6}{serial:>5} {name:<4} {resname:>3} {chain_id}{resseq:>4}    "
                f"{x:8.3f}{0.0:8.3f}{0.0:8.3f}{1.0:6.2f}{0.0:6.2f}          {name[:1] if rec == 'ATOM' else 'CA':>2}")
    lines = [atom("ATOM", k + 1, "CA", "UNK", "A", k + 1, 3.8 * k) for k in range(4)]
    lines += [atom("HETATM", 10 + k, "CA", "CA", "B", 100 + k, 50.0 + 5 * k) for k in range(3)]
    lines += [atom("HETATM", 20, "C1", "HEM", "C", 200, 70.0), atom("HETATM", 21, "O", "HOH", "C", 300, 80.0)]
    path = tmp_path / "mixed.pdb"
    path.write_text("\n".join(lines) + "\nEND\n")
    from distfold.structure.io import chains_of, load_structure

    chains = chains_of(load_structure(path))
    assert [(c.chain_id, c.sequence) for c in chains] == [("A", "XXXX")]
    assert np.allclose(chains[0].ca[:, 0], 3.8 * np.arange(4))
    with pytest.raises(Exception, match="chain 'B' not found"):
        read_chain(path, "B")


@pytest.mark.parametrize("method", ["smacof", "refine"])
def test_smacof_and_refine_work_with_the_classical_plugin_disabled(files, chain, method):
    """The classical-MDS start they share lives in distfold.geometry, not in the mds_classical plugin."""
    tmp, _ = files
    env = {"DISTFOLD_DISABLE_PLUGINS": "mds_classical"}
    out = tmp / f"{method}.pdb"
    res = run_distfold("reconstruct", str(tmp / "d.npy"), "-o", str(out), "--method", method, "--json", env=env)
    assert res.returncode == 0, res.stderr
    diag = json.loads(res.stdout)["diagnostics"]
    assert diag["method"] == method and diag["eigenvalues"][0] > 0  # the classical start ran
    assert rmsd_proper(read_chain(out).ca, chain.ca) < 0.1
    if method == "smacof":  # the plugin really is off
        res = run_distfold("reconstruct", str(tmp / "d.npy"), "-o", str(tmp / "c.pdb"), "--method", "classical",
                           env=env)
        assert res.returncode == 2 and "unknown reconstructor 'classical'" in res.stderr


UNWEIGHTED = """
import numpy as np
from distfold import ComponentSpec, hookimpl
from distfold.components import Configurable, Reconstruction


class Unweighted(Configurable):
    accepts_weights = False

    def reconstruct(self, distances):
        n = len(distances)
        x = np.zeros((n, 3))
        x[:, 0] = distances[0]  # exact for points on a line
        return Reconstruction(x, {"stress": 0.0, "stress1": 0.0, "iterations": 0, "converged": True})


@hookimpl
def distfold_reconstructors():
    return [ComponentSpec("unweighted", Unweighted, "takes no weights")]
"""


def test_weights_for_a_reconstructor_that_takes_none_is_a_usage_error(tmp_path, fake_plugin):
    site = fake_plugin("distfold-unweighted", "unweighted", "unweighted_plugin", UNWEIGHTED)
    d = np.abs(np.arange(4.0)[:, None] - np.arange(4.0)[None, :]) * 3.8
    np.save(tmp_path / "d.npy", d)
    np.save(tmp_path / "w.npy", np.ones((4, 4)))
    args = ["reconstruct", str(tmp_path / "d.npy"), "-o", str(tmp_path / "m.pdb"), "--method", "unweighted"]
    res = run_distfold(*args, "--weights", str(tmp_path / "w.npy"), pythonpath=site)
    assert res.returncode == 2 and "--weights: reconstructor 'unweighted' does not take per-pair weights" \
        in res.stderr, res.stderr
    assert not (tmp_path / "m.pdb").exists()
    res = run_distfold(*args, "--json", pythonpath=site)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["diagnostics"]["weighted"] is False
    assert np.allclose(cdist(read_chain(tmp_path / "m.pdb").ca, read_chain(tmp_path / "m.pdb").ca), d, atol=2e-3)
