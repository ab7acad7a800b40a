"""TM-align's own scores for tests/test_structural_alignment.py, from the ``tmtools``
package (a Python binding of TM-align version 20210224, GPL-3.0; used only here, to make
these numbers, never by distfold at run time).

Run from the repository root (tmtools is in the ``test`` extra):

    python tests/data/reference_scores/make_tmalign_reference.py

It writes ``tmalign_reference.json``: for each (model, reference) pair of real chains
under tests/data (different proteins, homologues and different constructs of 71-496
residues), TM-align's TM-score normalised by the reference (Structure_2) and by the
model (Structure_1), its RMSD, aligned length and alignment. The chains are read with
distfold's reader (C-alpha atoms of the first protein chain, first model).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent

CHAINS = {
    "1adz_m1": "compare/1adz_nmr_models_1_2.pdb.gz",
    "1cih": "compare/d1cih.pdb.gz",
    "1lfm": "compare/d1lfma.pdb.gz",
    "4gcn": "chains/c55406f94174e.pdb.gz",
    "1a2p": "chains/c51d4cae83570.pdb.gz",
    "7cth": "chains/cb98f573e0d35.pdb.gz",
    "1mr1": "chains/c70b106ab8731.pdb.gz",
    "1us0": "chains/c9fa041c82503.pdb.gz",
    "1o6z": "databuild/1o6z_A.pdb.gz",
    "2e37": "databuild/2e37_A.pdb.gz",
    "barnase_c16d": "databuild/c16db4efb0c0e.pdb.gz",
    "1s40": "databuild/1s40_models1-2.pdb.gz",
    "7ok9": "databuild/7ok9_D.pdb.gz",
    "5eep": "databuild/5eep.pdb.gz",
}

# (model, reference): homologues / constructs first, then unrelated proteins of many sizes.
PAIRS = [
    ("1lfm", "1cih"), ("1cih", "1lfm"), ("1o6z", "2e37"), ("2e37", "1o6z"), ("barnase_c16d", "1a2p"),
    ("1adz_m1", "1cih"), ("1cih", "1adz_m1"), ("4gcn", "7cth"), ("1mr1", "1us0"), ("1us0", "1mr1"),
    ("1us0", "1o6z"), ("1s40", "5eep"), ("7cth", "1a2p"), ("5eep", "4gcn"), ("1lfm", "4gcn"),
    ("1a2p", "1mr1"), ("7ok9", "1us0"), ("1adz_m1", "7ok9"), ("1s40", "2e37"), ("5eep", "1mr1"),
    ("7cth", "1o6z"), ("1mr1", "1adz_m1"),
]


def aligned_pairs(seqx_a: str, seqy_a: str) -> int:
    return sum(a != "-" and b != "-" for a, b in zip(seqx_a, seqy_a))


def main():
    sys.path.insert(0, str(ROOT))
    import tmtools
    from importlib.metadata import version

    from distfold.structure.io import read_chain

    chains = {k: read_chain(ROOT / "tests" / "data" / v) for k, v in CHAINS.items()}
    out = {"chains": {k: {"file": f"tests/data/{v}", "length": len(chains[k])} for k, v in CHAINS.items()},
           "pairs": []}
    for m, r in PAIRS:
        a, b = chains[m], chains[r]
        res = tmtools.tm_align(np.ascontiguousarray(a.ca), np.ascontiguousarray(b.ca), a.sequence, b.sequence)
        row = {"model": m, "reference": r, "model_length": len(a), "ref_length": len(b),
               "tm_score_ref": float(res.tm_norm_chain2), "tm_score_model": float(res.tm_norm_chain1),
               "rmsd": float(res.rmsd), "n_aligned": aligned_pairs(res.seqxA, res.seqyA),
               "alignment": [res.seqxA, res.seqM, res.seqyA]}
        out["pairs"].append(row)
        print(f"{m:13s} {r:13s} {len(a):4d} {len(b):4d}  TM {row['tm_score_ref']:.4f} (by model "
              f"{row['tm_score_model']:.4f})  aligned {row['n_aligned']}")
    out["made_by"] = "python tests/data/reference_scores/make_tmalign_reference.py"
    out["versions"] = {"tmtools": version("tmtools"), "TM-align": "20210224 (bundled in tmtools)",
                       "numpy": np.__version__}
    (HERE / "tmalign_reference.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
