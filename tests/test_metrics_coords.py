"""Coordinate metrics (RMSD, TM-score, GDT, score_coordinates) on real structures,
cross-checked against mdtraj, tmtools (TM-align with a fixed alignment), the
TMscore program when installed, and an exhaustive superposition search."""

import itertools
import shutil
import subprocess

import numpy as np
import pytest

from distfold.structure import metrics as M
from distfold.structure.alignment import correspond
from distfold.structure.compare import compare_files, compare_structures
from distfold.errors import InputError
from distfold.structure.io import AA1_TO_3, read_chain
from distfold.geometry.superpose import apply, kabsch, kabsch_batch, superposed_rmsd

from conftest import DATA

D = DATA / "compare"


@pytest.fixture(scope="module")
def chains():
    return {
        "nmr1": read_chain(D / "1adz_nmr_models_1_2.pdb.gz"),  # first model of the two-model file
        "nmr2": read_chain(D / "1adz_model_2.pdb.gz"),
        "cih": read_chain(D / "d1cih.pdb.gz"),  # cytochrome c, X-ray
        "lfm": read_chain(D / "d1lfma.pdb.gz"),  # a homologous cytochrome c
    }


def corresponded(model, ref):
    c = correspond(model, ref)
    return model.ca[c.model_index], ref.ca[c.ref_index], c


# Real model/reference pairs: NMR model 2 vs model 1, a homologue, a poor model (an
# unrelated protein aligned by sequence) and mirror images.
PAIRS = [("nmr2", "nmr1", False), ("lfm", "cih", False), ("nmr2", "cih", False), ("nmr2", "nmr1", True),
         ("lfm", "cih", True)]


def _tmtools_fixed(xm, seq_m, ref_index, yr, seq_r):
    """TM-align (tmtools) told to keep our residue correspondence."""
    tmtools = pytest.importorskip("tmtools")
    row = ["-"] * len(yr)
    for k, j in enumerate(ref_index):
        row[j] = seq_m[k]
    res = tmtools.tm_align(np.ascontiguousarray(xm), np.ascontiguousarray(yr), seq_m, seq_r,
                           alignment=["".join(row), seq_r])
    return res.tm_norm_chain2


@pytest.mark.parametrize("model,ref,mirrored", PAIRS)
def test_tm_score_matches_tmalign_with_fixed_alignment(chains, model, ref, mirrored):
    m, r = chains[model], chains[ref]
    xm, yr, c = corresponded(m, r)
    if mirrored:
        xm = M.mirror(xm)
    ours = M.tm_score(xm, yr, len(r))
    seq_m = "".join(m.sequence[i] for i in c.model_index)
    theirs = _tmtools_fixed(xm, seq_m, c.ref_index, r.ca, r.sequence)
    assert abs(ours - theirs) < 0.01, (ours, theirs)
    assert abs(ours - theirs) < 2e-3  # measured: equal to 4 decimals on all of these


def test_cross_check_pairs_cover_poor_models_and_mirrors(chains):
    scores = {}
    for model, ref, mirrored in PAIRS:
        xm, yr, _ = corresponded(chains[model], chains[ref])
        scores[(model, ref, mirrored)] = M.tm_score(M.mirror(xm) if mirrored else xm, yr, len(chains[ref]))
    assert scores[("nmr2", "cih", False)] < 0.3  # poor model
    assert scores[("nmr2", "nmr1", False)] > 0.8 and scores[("lfm", "cih", False)] > 0.9
    assert scores[("nmr2", "nmr1", True)] < 0.4 and scores[("lfm", "cih", True)] < 0.4


@pytest.mark.skipif(shutil.which("TMscore") is None, reason="TMscore program not installed")
@pytest.mark.parametrize("model,ref,mirrored", PAIRS)
def test_tm_score_matches_tmscore_program(tmp_path, chains, model, ref, mirrored):
    m, r = chains[model], chains[ref]
    xm, yr, c = corresponded(m, r)
    if mirrored:
        xm = M.mirror(xm)

    def write(path, xyz, seq, numbers):
        with open(path, "w") as fh:
            for k, (p, a, n) in enumerate(zip(xyz, seq, numbers)):
                fh.write("ATOM  %5d  CA  %3s A%4d    %8.3f%8.3f%8.3f  1.00  0.00           C\n"
                         % (k + 1, AA1_TO_3.get(a, "GLY"), n, *p))
            fh.write("END\n")

    write(tmp_path / "m.pdb", xm, [m.sequence[i] for i in c.model_index], c.ref_index + 1)
    write(tmp_path / "r.pdb", r.ca, r.sequence, np.arange(len(r)) + 1)
    out = subprocess.run(["TMscore", str(tmp_path / "m.pdb"), str(tmp_path / "r.pdb")], capture_output=True,
                         text=True, timeout=60).stdout
    theirs = float(next(line for line in out.splitlines() if line.startswith("TM-score    =")).split()[2])
    # The program prints 4 decimals and writes coordinates with 3.
    assert M.tm_score(xm, yr, len(r)) == pytest.approx(theirs, abs=2e-4)
    # Its GDT comes from the TM-score superpositions only; the per-cutoff search does at least as well.
    g = M.gdt_scores(xm, yr, len(r))
    for key, label in (("gdt_ts", "GDT-TS-score="), ("gdt_ha", "GDT-HA-score=")):
        prog = 100 * float(next(line for line in out.splitlines() if line.startswith(label)).split("=")[1].split()[0])
        assert g[key] >= prog - 0.01, (key, g[key], prog)


def test_tm_search_beats_a_single_superposition(chains):
    """One Kabsch fit on all residues underestimates TM-score; the search must do better."""
    gains = []
    for model, ref, _ in PAIRS[:3]:
        xm, yr, _ = corresponded(chains[model], chains[ref])
        l_ref = len(chains[ref])
        d = np.linalg.norm(apply(xm, *kabsch(xm, yr)) - yr, axis=1)
        single = float((1 / (1 + (d / M.tm_d0(l_ref)) ** 2)).sum() / l_ref)
        gains.append(M.tm_score(xm, yr, l_ref) - single)
    assert min(gains) >= -1e-12
    assert max(gains) > 0.05


def test_tm_d0_and_normalisation():
    assert M.tm_d0(15) == M.tm_d0(21) == 0.5
    assert M.tm_d0(100) == pytest.approx(1.24 * 85 ** (1 / 3) - 1.8)
    assert M.tm_d0(22) == pytest.approx(1.24 * 7 ** (1 / 3) - 1.8)


def test_tm_score_invariances(chains):
    y = chains["nmr1"].ca
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.linalg.det(q))  # proper rotation
    moved = y @ q.T + np.array([40.0, -7.0, 3.0])
    assert M.tm_score(moved, y) == pytest.approx(1.0)
    # covering half the reference at most scores half
    half = len(y) // 2
    assert M.tm_score(moved[:half], y[:half], len(y)) == pytest.approx(half / len(y))
    score, r, t = M.tm_superposition(moved, y)
    assert np.allclose(apply(moved, r, t), y, atol=1e-6)
    with pytest.raises(InputError):
        M.tm_score(moved[:10], y[:10], l_ref=5)
    with pytest.raises(InputError):
        M.tm_score(moved[:10], y[:11])


def test_rmsd_is_mdtraj_in_angstrom_and_proper(chains):
    xm, yr, _ = corresponded(chains["nmr2"], chains["nmr1"])
    ours = M.rmsd(xm, yr)
    assert ours == pytest.approx(superposed_rmsd(xm, yr), abs=1e-3)  # mdtraj works in float32
    assert 1.0 < ours < 10.0  # Å, not nm
    y = chains["cih"].ca
    assert M.rmsd(y + 12.0, y) == pytest.approx(0.0, abs=1e-3)
    # A mirror image does not superpose onto a chiral chain (det R = +1).
    assert M.rmsd(M.mirror(y), y) > 5.0
    r, _ = kabsch(M.mirror(y), y)
    assert np.linalg.det(r) == pytest.approx(1.0)


def test_kabsch_batch_matches_single_fits(chains):
    x, y = chains["nmr2"].ca, chains["nmr1"].ca
    rng = np.random.default_rng(1)
    w = rng.random((5, len(x))) < 0.5
    r, t = kabsch_batch(x, y, w)
    for k in range(5):
        r1, t1 = kabsch(x[w[k]], y[w[k]])
        assert np.allclose(r[k], r1) and np.allclose(t[k], t1)


# ---------------------------------------------------------------- GDT

def _exhaustive_counts(x, y, cutoffs):
    """Most residues within each cutoff over the Kabsch fits of every subset of >= 3 residues."""
    n = len(x)
    rows = [np.isin(np.arange(n), c) for k in range(3, n + 1) for c in itertools.combinations(range(n), k)]
    r, t = kabsch_batch(x, y, np.array(rows))
    d = np.linalg.norm(np.einsum("sij,nj->sni", r, x) + t[:, None] - y, axis=2)
    return {c: int((d <= c).sum(1).max()) for c in cutoffs}


def _small_cases(chains):
    """Windows of 7-11 residues of real pairs: NMR models, homologues, an unrelated pair."""
    rng = np.random.default_rng(7)
    pairs = [corresponded(chains["nmr2"], chains["nmr1"])[:2], corresponded(chains["lfm"], chains["cih"])[:2],
             (chains["nmr2"].ca[:71], chains["cih"].ca[:71])]
    cases = []
    for k in range(18):
        x, y = pairs[k % 3]
        n = int(rng.integers(7, 12))
        s = int(rng.integers(0, len(x) - n))
        cases.append((x[s:s + n], y[s:s + n]))
    return cases


def test_gdt_against_exhaustive_search_on_small_cases(chains):
    cutoffs = M.GDT_CUTOFFS
    exact = short = 0
    for x, y in _small_cases(chains):
        ref = _exhaustive_counts(x, y, cutoffs)
        ours = {c: round(f * len(x)) for c, f in M.gdt(x, y).items()}
        for c in cutoffs:
            # Every superposition we try is the fit of some subset, so never above the
            # exhaustive search; and never more than one residue below it.
            assert ours[c] <= ref[c], (c, ours, ref)
            assert ours[c] >= ref[c] - 1, (c, ours, ref)
            exact += ours[c] == ref[c]
            short += ours[c] < ref[c]
    # measured on these 90 (case, cutoff) counts: 90 equal
    assert exact >= 0.95 * (exact + short), (exact, short)


def test_gdt_exact_on_a_rigid_core(chains):
    """A chain with k residues displaced by 20 Å: GDT is exactly (L - k) / L at every cutoff."""
    y = chains["cih"].ca
    x = y.copy()
    moved = [3, 17, 40, 41, 90]
    x[moved] += np.array([20.0, 0.0, 0.0])
    frac = M.gdt(x, y)
    expected = (len(y) - len(moved)) / len(y)
    assert all(f == pytest.approx(expected) for f in frac.values())
    s = M.gdt_scores(x, y)
    assert s["gdt_ts"] == pytest.approx(100 * expected) and s["gdt_ha"] == pytest.approx(100 * expected)
    assert M.gdt_scores(y, y) == {"gdt_ts": 100.0, "gdt_ha": 100.0}


def test_gdt_normalised_by_reference_length(chains):
    y = chains["cih"].ca
    frac = M.gdt(y[:54], y[:54], l_ref=len(y))
    assert all(f == pytest.approx(54 / len(y)) for f in frac.values())


# ---------------------------------------------------------------- score_coordinates

def test_score_coordinates_matches_its_parts(chains):
    xm, yr, _ = corresponded(chains["nmr2"], chains["nmr1"])
    s = M.score_coordinates(xm, yr)
    assert s["tm_score"] == pytest.approx(M.tm_score(xm, yr))
    assert s["tm_score_mirror"] == pytest.approx(M.tm_score(M.mirror(xm), yr))
    assert s["rmsd"] == pytest.approx(M.rmsd(xm, yr))
    assert {k: s[k] for k in ("gdt_ts", "gdt_ha")} == pytest.approx(M.gdt_scores(xm, yr))
    dm, dr = M.distance_matrix(xm), M.distance_matrix(yr)
    assert s["lddt"] == pytest.approx(M.lddt(dm, dr)[0])
    i, j = np.triu_indices(len(yr), 1)
    e = dm[i, j] - dr[i, j]
    assert s["distance_mae"] == pytest.approx(np.abs(e).mean())
    assert s["distance_rmse"] == pytest.approx(np.sqrt((e ** 2).mean()))
    assert s["distance_pearson"] == pytest.approx(np.corrcoef(dm[i, j], dr[i, j])[0, 1])
    assert s["contact_precision_l5"] == pytest.approx(M.contact_precision(dm, dr))
    assert s["n_aligned"] == s["ref_length"] == len(yr)
    assert len(s["lddt_per_residue"]) == len(yr)


def test_score_coordinates_identical_structures(chains):
    y = chains["cih"].ca
    s = M.score_coordinates(y, y)
    assert s["tm_score"] == pytest.approx(1.0) and s["rmsd"] == pytest.approx(0.0, abs=1e-3)
    assert s["gdt_ts"] == s["gdt_ha"] == 100.0 and s["lddt"] == 1.0
    assert s["contact_precision_l5"] == 1.0
    assert s["tm_score_mirror"] < 0.5


def test_score_coordinates_masks_and_unobserved_rows(chains):
    """NaN reference rows are dropped (unobserved); NaN / masked model rows stay in the denominators."""
    xm, yr, _ = corresponded(chains["nmr2"], chains["nmr1"])
    x = xm.copy()
    y = yr.copy()
    y[[0, 30]] = np.nan  # unobserved in the reference
    mask = np.ones(len(y), bool)
    mask[5:9] = False  # no model coordinates
    x[60] = np.nan
    s = M.score_coordinates(x, y, mask=mask)
    keep = np.isfinite(y).all(1)
    cov = (mask & np.isfinite(x).all(1))[keep]
    xs, ys = x[keep], y[keep]
    assert s["ref_length"] == keep.sum() and s["n_aligned"] == cov.sum()
    assert s["tm_score"] == pytest.approx(M.tm_score(xs[cov], ys[cov], l_ref=len(ys)))
    assert s["rmsd"] == pytest.approx(M.rmsd(xs[cov], ys[cov]))
    # reference rows 5-8 (4-7 once row 0 is dropped) lack a model residue: lDDT 0, not undefined
    assert s["lddt_per_residue"][4] == 0.0 and s["lddt_per_residue"][10] > 0.5
    assert s["coverage"] == pytest.approx(cov.mean())
    with pytest.raises(InputError):
        M.score_coordinates(x, y, mask=np.zeros(len(y), bool))
    with pytest.raises(InputError):
        M.score_coordinates(x[:-1], y)


def test_compare_gives_the_numbers_of_score_coordinates(chains):
    """evaluate scores predicted vs dataset coordinates with score_coordinates; compare on
    files must agree exactly."""
    res = compare_files(D / "d1lfma.pdb.gz", D / "d1cih.pdb.gz")
    m, r = chains["lfm"], chains["cih"]
    c = correspond(m, r)
    full = np.full_like(r.ca, np.nan)
    full[c.ref_index] = m.ca[c.model_index]
    direct = M.score_coordinates(full, r.ca)
    for k, v in direct.items():
        if k == "lddt_per_residue":
            assert np.allclose(np.array(res[k], float), np.array(v, float), equal_nan=True)
        else:
            assert res[k] == v, k
    assert res["n_aligned"] == c.n_aligned and 0.3 < res["seq_identity"] < 0.9
    assert compare_structures(m, r)["tm_score"] == res["tm_score"]


def test_distance_matrix_is_the_euclidean_formula_bit_for_bit(chains):
    y = chains["cih"].ca.copy()
    y[4] = np.nan  # a residue the model lacks stays NaN
    direct = np.sqrt(((y[:, None, :] - y[None, :, :]) ** 2).sum(-1))
    assert np.array_equal(M.distance_matrix(y), direct, equal_nan=True)


def test_contact_precision_takes_the_first_k_of_a_stable_sort_with_ties():
    rng = np.random.default_rng(7)
    n = 120
    true_d = rng.uniform(3.0, 30.0, (n, n))
    true_d = np.triu(true_d, 1) + np.triu(true_d, 1).T
    pred = np.round(true_d + rng.normal(0.0, 3.0, (n, n)))  # rounded: many tied scores
    pred = np.triu(pred, 1) + np.triu(pred, 1).T
    i, j = np.triu_indices(n, 24)
    for higher, score in ((False, pred), (True, -pred)):
        s, t = score[i, j], true_d[i, j]
        k = int(n * 0.2)
        order = np.argsort(-s if higher else s, kind="stable")[:k]
        expect = float((t[order] < 8.0).mean())
        assert M.contact_precision(score, true_d, higher_is_contact=higher) == expect


def test_searches_on_two_threads_give_the_same_numbers(chains, monkeypatch):
    x, y, _ = corresponded(chains["lfm"], chains["cih"])
    monkeypatch.setattr(M, "THREAD_MIN_RESIDUES", 10**9)
    serial = M.score_coordinates(x, y)
    monkeypatch.setattr(M, "THREAD_MIN_RESIDUES", 1)
    monkeypatch.setattr(M, "_cores", lambda: 2)
    threaded = M.score_coordinates(x, y)
    np.testing.assert_equal(threaded, serial)
    np.testing.assert_equal(M.score_coordinates(x, y, threads=False), serial)
    assert threaded["tm_score_mirror"] < threaded["tm_score"]


@pytest.mark.parametrize("bit_count", [True, False])
def test_row_counts_and_packed_rows(monkeypatch, bit_count):
    if not bit_count:  # numpy < 2.0 has no bitwise_count
        monkeypatch.setattr(M, "_BITWISE_COUNT", None)
    rng = np.random.default_rng(3)
    for n in (1, 7, 8, 9, 63, 64, 65, 150, 983):
        sel = rng.random((37, n)) < rng.random((37, 1))
        np.testing.assert_array_equal(M._row_counts(sel), np.count_nonzero(sel, axis=1))
        packed = M._pack_rows(sel)
        assert packed.dtype == np.uint8 and packed.shape == (37, (n + 7) // 8)
        np.testing.assert_array_equal(np.unpackbits(packed, axis=1, count=n).astype(bool), sel)
        np.testing.assert_array_equal(M._row_counts(sel, packed), np.count_nonzero(sel, axis=1))


def _new_rows_by_hand(sel, seen, min_size, limit):
    """The rule of _Superposer.new_rows on Python sets: rows with enough members, first
    occurrences not seen before, in row order; with a limit, the largest (stable)."""
    rows, keys = [], set()
    for i, row in enumerate(sel):
        key = row.tobytes()
        if row.sum() >= min_size and key not in seen and key not in keys:
            rows.append(i)
            keys.add(key)
    if limit is not None and len(rows) > limit:
        rows = sorted(rows, key=lambda i: -int(sel[i].sum()))[:limit]
    seen |= {sel[i].tobytes() for i in rows}
    return rows


@pytest.mark.parametrize("n", [9, 64, 300])
def test_new_rows_keeps_first_unseen_subsets_and_the_largest_under_a_limit(n):
    rng = np.random.default_rng(n)
    sp = M._Superposer(rng.normal(size=(n, 3)), rng.normal(size=(n, 3)))
    pool = rng.random((40, n)) < 0.1 + 0.8 * rng.random((40, 1))  # 40 distinct-ish subsets, reused
    for limit in (None, 5, 64):
        sp.forget()
        seen = set()
        for _ in range(4):
            sel = pool[rng.integers(0, len(pool), 150)]  # many repeats, within and across calls
            got = sp.new_rows(sel, min_size=3, limit=limit)
            want = _new_rows_by_hand(sel, seen, 3, limit)
            np.testing.assert_array_equal(got, sel[want])
    # the packed bits a caller already has give the same rows
    sp.forget()
    sel = pool[rng.integers(0, len(pool), 150)]
    a = sp.new_rows(sel.copy())
    sp.forget()
    np.testing.assert_array_equal(sp.new_rows(sel, packed=M._pack_rows(sel)), a)


def test_seed_matrices_are_kept_read_only_for_small_lengths_only(monkeypatch):
    a = M._tm_seeds(120)
    assert a is M._tm_seeds(120) and not a.flags.writeable
    np.testing.assert_array_equal(a, M._fragment_masks(120, M._seed_lengths(120)))
    g = M._gdt_seeds(120)
    assert g is M._gdt_seeds(120) and len(g) == len(M._fragment_masks(120, M._seed_lengths(120, l_min=3))) \
        + M.GDT_RANDOM_SEEDS
    monkeypatch.setattr(M, "SEED_CACHE_BYTES", 100)  # too large to keep: made afresh, same values
    b = M._tm_seeds(121)
    c = M._tm_seeds(121)
    assert b is not c and not b.flags.writeable
    np.testing.assert_array_equal(b, c)


@pytest.mark.parametrize("n", [130, 256])
def test_subset_hashes_do_not_collide_on_sparse_subsets(n):
    """Every subset of at most 2 residues gets its own hash: sparse subsets are what the GDT
    search fits, and a hash weighting whole 64-bit words collided on them (the first residue
    of byte 7 of two words is bit 63 twice: (w1 + w2) 2^63 = 0 mod 2^64 for odd weights),
    which lost a GDT residue on a real chain."""
    sp = M._Superposer(np.zeros((n, 3)), np.zeros((n, 3)))
    subsets = [c for k in (0, 1, 2) for c in itertools.combinations(range(n), k)]
    sel = np.zeros((len(subsets), n), dtype=bool)
    for row, members in enumerate(subsets):
        sel[row, list(members)] = True
    keys = sp._keys(M._pack_rows(sel))
    assert len(np.unique(keys)) == len(subsets)


def test_gdt_search_keeps_the_superposition_a_hash_collision_once_lost():
    """The prior's model of a real 239-residue chain (tests/data/compare): with a colliding
    subset hash the GDT search lost one residue within 4 A (20 instead of 21)."""
    d = np.load(D / "prior_239_vs_val_chain.npz")
    counts = M.gdt(d["model"], d["reference"])
    assert round(counts[4.0] * 239) >= 21
    assert M.score_coordinates(d["model"], d["reference"], threads=False)["gdt_ts"] >= 100 * (1 + 3 + 8 + 21) / 4 / 239


def test_scores_do_not_depend_on_block_and_chunk_sizes(chains, monkeypatch):
    """The searches fit BLOCK_ROWS rows per call and compute distances CHUNK_BYTES at a time;
    blocks and chunks that do not divide each other (37 and 8 rows) give the same numbers, on a
    real pair, a real model of its own chain, and a random model (whose fits keep fewer than 3
    pairs and take the grown cutoff)."""
    x, y, _ = corresponded(chains["lfm"], chains["cih"])
    d = np.load(D / "prior_239_vs_val_chain.npz")
    ref = d["reference"]
    noise = np.random.default_rng(5).normal(scale=15.0, size=ref.shape)
    cases = [(x, y), (d["model"], ref), (noise, ref)]
    want = [M.score_coordinates(a, b, threads=False) for a, b in cases]
    grown = []
    grow = M._grow_thin_rows

    def counting(sel, packed, d2_of, *args):
        grown.append(int((M._row_counts(sel, packed) < 3).sum()))
        return grow(sel, packed, d2_of, *args)

    monkeypatch.setattr(M, "_grow_thin_rows", counting)
    monkeypatch.setattr(M, "BLOCK_ROWS", 37)
    monkeypatch.setattr(M, "CHUNK_BYTES", 1)  # the smallest chunk: 8 rows
    for (a, b), w in zip(cases, want):
        got = M.score_coordinates(a, b, threads=False)
        assert got.keys() == w.keys()
        for k in w:
            np.testing.assert_allclose(got[k], w[k], rtol=1e-12, atol=0, err_msg=k)
    assert sum(grown) > 0
