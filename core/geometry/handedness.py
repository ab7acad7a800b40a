"""Choosing the hand of a structure rebuilt from distances.

A distance matrix cannot tell a structure from its mirror image; the C-alpha
trace of an L-amino-acid protein can. :func:`distfold.geometry.reconstruct.reconstruct`
applies :func:`choose_hand` once to whatever a reconstructor returns; no
reconstructor chooses the hand itself.

The evidence: a log-likelihood ratio, right hand against mirror image, of the
chain's C-alpha geometry. For each spacing k = 1, 2, 3, 4 and each quadruple of
C-alphas (i, i+k, i+2k, i+3k) the pseudo-torsion t (IUPAC sign, the convention
of ``mdtraj.compute_dihedrals``) and the two virtual angles a at its inner
vertices (i+k between i and i+2k; i+2k between i+k and i+3k) are looked up in a
learned 2-D table of log p(a, t) - log p(a, -t) (a mirror image keeps every
angle and negates every torsion), the two look-ups averaged and the result
clipped to +-1 (so that no single odd torsion decides). The sum over every
quadruple and spacing is the margin: > 0 right-handed. Spacing 1 carries the
right-handed alpha helix (t near +50 degrees) and the left-handed twist of beta
strands (t near -170 degrees, angle near 120); the longer spacings carry the
same chirality on a coarser scale and survive noise better. Quadruples across a
chain break (a consecutive C-alpha distance far from 3.8 Å, judged against the
chain's own scatter, as :func:`distfold.plugins.mds_smacof.refine.bonded_pairs`
does) are left out.

The tables (``hand_table.json`` beside this module, 5 KB) are histograms of
the training split of distfold's real chains (``benchmarks/build_hand_table.py``
rebuilds them: the exact traces and their reconstructions by SMACOF and classical
MDS from distances with multiplicative noise 0.1 and 0.2, each oriented to the
true hand; chains weighted by 1 / family size). The same script fits one
calibration slope s by logistic regression on those training reconstructions:
P(this hand is right) = 1 / (1 + exp(-s * margin)). Below
``UNCERTAIN_PROBABILITY`` the decision is recorded as "uncertain" (the likelier
hand is still returned).

Measured by ``benchmarks/bench_handedness.py`` over all 1,042 real chains
outside the BioEmu set: the right hand from exact distances for every chain, 11
of them "uncertain" (the old helix-window rule: wrong on 7, a tie left to the
eigenvectors' arbitrary hand on 9 more, 10 wrong in all);
with multiplicative noise 0.2, SMACOF: 3 wrong of the 1,020 chains whose
reconstruction has a hand, all 3 flagged "uncertain" (the old rule: 36 wrong).

The sign convention is tested against ``mdtraj.compute_dihedrals`` on a real
helical chain (4GCN A) and on its mirror image (tests/test_handedness.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

TABLE_PATH = Path(__file__).with_name("hand_table.json")
BOND_LENGTH = 3.8
#: a consecutive distance this far (Å) from 3.8, or break_spread x the chain's own scatter, is a break
BREAK_TOLERANCE = 0.5
BREAK_SPREAD = 5.0
#: below this probability of the chosen hand the decision is "uncertain"
UNCERTAIN_PROBABILITY = 0.95
#: the old rule's windows, kept for :func:`helix_window_margin`
HELIX_WINDOW_DEG = (30.0, 80.0)
RULE = ("log-likelihood ratio of C-alpha virtual angles and pseudo-torsions (spacings 1-4), "
        "right hand vs mirror, learned from real chains")


# -- geometry ------------------------------------------------------------------

def ca_pseudo_torsions(coords: np.ndarray) -> np.ndarray:
    """(L-3,) pseudo-torsions in degrees, IUPAC sign, of consecutive C-alphas."""
    return spaced_torsions(coords, 1)


def _torsions(p0: np.ndarray, p1: np.ndarray, p2: np.ndarray, p3: np.ndarray) -> np.ndarray:
    b0 = p0 - p1
    b1 = p2 - p1
    b2 = p3 - p2
    b1n = b1 / np.maximum(np.linalg.norm(b1, axis=1, keepdims=True), 1e-12)
    v = b0 - (b0 * b1n).sum(1, keepdims=True) * b1n
    w = b2 - (b2 * b1n).sum(1, keepdims=True) * b1n
    xx = (v * w).sum(1)
    yy = (np.cross(b1n, v) * w).sum(1)
    return np.degrees(np.arctan2(yy, xx))


def _angles(p0: np.ndarray, p1: np.ndarray, p2: np.ndarray) -> np.ndarray:
    u = p0 - p1
    v = p2 - p1
    nu = np.maximum(np.linalg.norm(u, axis=1), 1e-12)
    nv = np.maximum(np.linalg.norm(v, axis=1), 1e-12)
    return np.degrees(np.arccos(np.clip((u * v).sum(1) / (nu * nv), -1.0, 1.0)))


def spaced_torsions(coords: np.ndarray, k: int) -> np.ndarray:
    """(L-3k,) torsions in degrees of C-alphas (i, i+k, i+2k, i+3k), IUPAC sign."""
    x = np.asarray(coords, dtype=np.float64)
    m = len(x) - 3 * k
    if m <= 0:
        return np.zeros(0)
    return _torsions(x[:m], x[k:k + m], x[2 * k:2 * k + m], x[3 * k:3 * k + m])


def chain_breaks(coords: np.ndarray, tolerance: float = BREAK_TOLERANCE, spread: float = BREAK_SPREAD) -> np.ndarray:
    """(L-1,) bool: is the gap between C-alphas i and i+1 a chain break?

    A break is a consecutive distance farther from 3.8 Å than max(tolerance,
    spread x 1.4826 x median |d - 3.8|): on an experimental trace (scatter
    ~0.02 Å) anything beyond 3.3-4.3 Å; on a noisy reconstruction only a gross outlier.
    """
    x = np.asarray(coords, dtype=np.float64)
    if len(x) < 2:
        return np.zeros(0, dtype=bool)
    dev = np.abs(np.linalg.norm(np.diff(x, axis=0), axis=1) - BOND_LENGTH)
    return dev > max(tolerance, spread * 1.4826 * float(np.median(dev)))


def hand_features(coords: np.ndarray, k: int, breaks: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(angle at i+k, angle at i+2k, torsion), degrees, of every quadruple (i, i+k, i+2k, i+3k)
    that spans no chain break (``breaks``: (L-1,) bool, default :func:`chain_breaks`)."""
    x = np.asarray(coords, dtype=np.float64)
    m = len(x) - 3 * k
    if m <= 0:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    brk = chain_breaks(x) if breaks is None else np.asarray(breaks, dtype=bool)
    before = np.concatenate([[0], np.cumsum(brk)])  # breaks before row i
    i = np.arange(m)
    ok = before[i + 3 * k] == before[i]
    p0, p1, p2, p3 = x[:m][ok], x[k:k + m][ok], x[2 * k:2 * k + m][ok], x[3 * k:3 * k + m][ok]
    return _angles(p0, p1, p2), _angles(p1, p2, p3), _torsions(p0, p1, p2, p3)


# -- the learned table ---------------------------------------------------------

@dataclass(frozen=True)
class HandTable:
    """Log-likelihood-ratio tables per spacing, their bins, clip and calibration."""

    spacings: tuple[int, ...]
    angle_edges: dict[int, np.ndarray]
    torsion_edges: np.ndarray
    llr: dict[int, np.ndarray]          # (angle bins, torsion bins)
    clip: float
    calibration_slope: float

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HandTable:
        spacings = tuple(int(k) for k in data["spacings"])
        nt = int(data["torsion_bins"])
        return cls(
            spacings=spacings,
            angle_edges={k: np.linspace(*data["angle_range"][str(k)], int(data["angle_bins"]) + 1)
                         for k in spacings},
            torsion_edges=np.linspace(-180.0, 180.0, nt + 1),
            llr={k: np.asarray(data["llr"][str(k)], dtype=np.float64) for k in spacings},
            clip=float(data["clip"]),
            calibration_slope=float(data["calibration_slope"]),
        )

    def bins(self, k: int, angle: np.ndarray, torsion: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ae, te = self.angle_edges[k], self.torsion_edges
        ia = np.clip(np.searchsorted(ae, angle, side="right") - 1, 0, len(ae) - 2)
        it = np.clip(np.searchsorted(te, torsion, side="right") - 1, 0, len(te) - 2)
        return ia, it

    def terms(self, coords: np.ndarray, breaks: np.ndarray | None = None) -> np.ndarray:
        """Every clipped per-quadruple log-likelihood ratio, all spacings concatenated."""
        x = np.asarray(coords, dtype=np.float64)
        brk = chain_breaks(x) if breaks is None else breaks
        out = []
        for k in self.spacings:
            a1, a2, t = hand_features(x, k, brk)
            i1, it = self.bins(k, a1, t)
            i2, _ = self.bins(k, a2, t)
            out.append(np.clip(0.5 * (self.llr[k][i1, it] + self.llr[k][i2, it]), -self.clip, self.clip))
        return np.concatenate(out) if out else np.zeros(0)


@lru_cache(maxsize=1)
def hand_table() -> HandTable:
    """The shipped table (``hand_table.json``), read once."""
    return HandTable.from_json(json.loads(TABLE_PATH.read_text()))


# -- the decision --------------------------------------------------------------

def handedness_margin(coords: np.ndarray, table: HandTable | None = None) -> float:
    """Log-likelihood ratio, right hand vs mirror image, of a C-alpha trace (> 0: right-handed).

    A mirror image has exactly the opposite margin; fewer than 4 residues give 0.
    """
    t = (table or hand_table()).terms(coords)
    return float(t.sum())


def helix_window_margin(coords: np.ndarray) -> int:
    """The old rule: (# pseudo-torsions in +30..+80) - (# in -80..-30) degrees.

    Kept for comparison (``benchmarks/bench_handedness.py``): on the experimental traces of
    the 1,042 real chains it is negative on 7 and 0 on 9 (helix-poor ones), where
    :func:`handedness_margin` is positive on all.
    """
    t = ca_pseudo_torsions(coords)
    lo, hi = HELIX_WINDOW_DEG
    return int(np.count_nonzero((t >= lo) & (t <= hi))) - int(np.count_nonzero((t >= -hi) & (t <= -lo)))


@dataclass(frozen=True)
class HandDecision:
    """What :func:`choose_hand` decided.

    decision: "right" (the input kept), "mirrored" (the input was mirrored) or
        "uncertain" (evidence too weak: the likelier hand is returned all the same,
        ``mirrored`` says which).
    mirrored: whether the returned coordinates are the input's mirror image.
    margin: log-likelihood ratio of the *input* (> 0 right-handed); the returned
        coordinates have margin |margin|.
    probability: calibrated probability that the returned hand is the right one (>= 0.5).
    terms: number of quadruples that gave evidence.
    """

    decision: str
    mirrored: bool
    margin: float
    probability: float
    terms: int

    def as_dict(self) -> dict[str, Any]:
        return {"decision": self.decision, "mirrored": self.mirrored,
                "log_likelihood_ratio": round(self.margin, 6), "probability": round(self.probability, 6),
                "terms": self.terms, "uncertain_below": UNCERTAIN_PROBABILITY, "rule": RULE}


def choose_hand(coords: np.ndarray, table: HandTable | None = None) -> tuple[np.ndarray, HandDecision]:
    """(coords with the likelier hand, the decision). The input array is never modified.

    Mirroring negates z. A margin of exactly 0 (no evidence: fewer than 4 residues,
    or a straight chain) keeps the input and is "uncertain".
    """
    tab = table or hand_table()
    x = np.asarray(coords, dtype=np.float64)
    terms = tab.terms(x)
    margin = float(terms.sum())
    mirrored = margin < 0
    probability = float(1.0 / (1.0 + np.exp(-tab.calibration_slope * abs(margin))))
    if probability < UNCERTAIN_PROBABILITY:
        decision = "uncertain"
    else:
        decision = "mirrored" if mirrored else "right"
    if mirrored:
        x = x.copy()
        x[:, 2] = -x[:, 2]
    return x, HandDecision(decision, bool(mirrored), margin, probability, int(terms.size))


def fix_handedness(coords: np.ndarray) -> tuple[np.ndarray, bool, float]:
    """Return (coords with the chosen hand, mirrored?, margin): :func:`choose_hand` in short.

    The margin is measured on the input; a mirrored result has margin -margin.
    Ties (margin 0) keep the input.
    """
    x, d = choose_hand(coords)
    return x, d.mirrored, d.margin
