"""Choosing the hand of a structure rebuilt from distances.

A distance matrix cannot tell a structure from its mirror image. Right-handed
alpha helices put C-alpha pseudo-torsions (i, i+1, i+2, i+3) near +50 degrees
in the IUPAC sign convention (the one ``mdtraj.compute_dihedrals`` uses). If
more torsions fall in [-80, -30] than in [+30, +80] degrees, the structure is
mirrored. :func:`distfold.geometry.reconstruct.reconstruct` applies
:func:`fix_handedness` once to whatever a reconstructor returns; no
reconstructor chooses the hand itself.

The sign convention is tested against ``mdtraj.compute_dihedrals`` on a real
helical chain (4GCN A) and on its mirror image (tests/test_handedness.py):
the two agree to float32 precision, and the chain's helices sit near +50°.
"""

from __future__ import annotations

import numpy as np

HELIX_WINDOW_DEG = (30.0, 80.0)


def ca_pseudo_torsions(coords: np.ndarray) -> np.ndarray:
    """(L-3,) pseudo-torsions in degrees, IUPAC sign, of consecutive C-alphas."""
    x = np.asarray(coords, dtype=np.float64)
    if len(x) < 4:
        return np.zeros(0)
    b0 = x[:-3] - x[1:-2]
    b1 = x[2:-1] - x[1:-2]
    b2 = x[3:] - x[2:-1]
    b1n = b1 / np.maximum(np.linalg.norm(b1, axis=1, keepdims=True), 1e-12)
    v = b0 - (b0 * b1n).sum(1, keepdims=True) * b1n
    w = b2 - (b2 * b1n).sum(1, keepdims=True) * b1n
    xx = (v * w).sum(1)
    yy = (np.cross(b1n, v) * w).sum(1)
    return np.degrees(np.arctan2(yy, xx))


def handedness_margin(coords: np.ndarray) -> int:
    """(# torsions in +30..+80) - (# in -80..-30): positive means right-handed helices."""
    t = ca_pseudo_torsions(coords)
    lo, hi = HELIX_WINDOW_DEG
    right = int(np.count_nonzero((t >= lo) & (t <= hi)))
    left = int(np.count_nonzero((t >= -hi) & (t <= -lo)))
    return right - left


def fix_handedness(coords: np.ndarray) -> tuple[np.ndarray, bool, int]:
    """Return (coords with the chosen hand, mirrored?, margin).

    The margin is measured on the input; a mirrored result has margin -margin.
    Ties (margin 0) keep the input.
    """
    x = np.asarray(coords, dtype=np.float64)
    margin = handedness_margin(x)
    if margin < 0:
        x = x.copy()
        x[:, 2] = -x[:, 2]
        return x, True, margin
    return x, False, margin
