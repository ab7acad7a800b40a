"""Two secondary-structure baselines for ``distfold evaluate``, fitted on the train split at
evaluate time (numpy only, deterministic, seconds):

- :class:`MajorityClass`: every residue in the state most frequent among the training
  labels;
- :class:`WindowClassifier`: a linear classifier on one-hot sequence windows of
  +-``half_window`` residues (default 7: 15 positions x 22 symbols, the 20 amino acids,
  X for any other letter and a symbol for positions beyond the chain's ends, plus a
  bias), fitted by ridge least squares (``ridge`` = 1.0) to the one-hot H/E/C labels;
  a residue gets the state of the largest output. This is the single-sequence,
  local-window kind of predictor GOR is (Garnier, Osguthorpe & Robson 1978) in its
  simplest linear form.

Residues labelled ``-`` (no DSSP label) are left out of fitting.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from distfold.structure.secondary import SS_STATES, SS_UNLABELLED

AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"
#: Symbols per window position: 20 amino acids, X (anything else), beyond the chain.
N_SYMBOLS = len(AMINO_ACIDS) + 2


class MajorityClass:
    """The most frequent training state for every residue (ties: SS_STATES order)."""

    def __init__(self) -> None:
        self.state: str | None = None
        self.counts: dict[str, int] = {}

    def fit(self, pairs: Iterable[tuple[str, str]]) -> "MajorityClass":
        counts = {s: 0 for s in SS_STATES}
        for _seq, ss in pairs:
            for s in SS_STATES:
                counts[s] += ss.count(s)
        if not sum(counts.values()):
            raise ValueError("no labelled residue to fit the majority class on")
        self.counts = counts
        self.state = max(SS_STATES, key=lambda s: (counts[s], -SS_STATES.index(s)))
        return self

    def predict(self, sequence: str) -> str:
        return self.state * len(sequence)


def window_features(sequence: str, half_window: int = 7) -> np.ndarray:
    """(L, (2 half_window + 1) * N_SYMBOLS + 1) float64 one-hot windows, last column 1 (bias)."""
    idx = {a: k for k, a in enumerate(AMINO_ACIDS)}
    n = len(sequence)
    codes = np.array([idx.get(a, len(AMINO_ACIDS)) for a in sequence.upper()], dtype=np.int64)
    width = 2 * half_window + 1
    x = np.zeros((n, width * N_SYMBOLS + 1))
    x[:, -1] = 1.0
    pos = np.arange(n)
    for k, off in enumerate(range(-half_window, half_window + 1)):
        src = pos + off
        inside = (src >= 0) & (src < n)
        sym = np.where(inside, codes[np.clip(src, 0, max(n - 1, 0))], N_SYMBOLS - 1)
        x[pos, k * N_SYMBOLS + sym] = 1.0
    return x


class WindowClassifier:
    """Ridge least squares from one-hot windows to one-hot states (see the module docstring)."""

    def __init__(self, half_window: int = 7, ridge: float = 1.0) -> None:
        self.half_window = int(half_window)
        self.ridge = float(ridge)
        self.weights: np.ndarray | None = None
        self.n_residues = 0

    def fit(self, pairs: Iterable[tuple[str, str]]) -> "WindowClassifier":
        dim = (2 * self.half_window + 1) * N_SYMBOLS + 1
        xtx = np.zeros((dim, dim))
        xty = np.zeros((dim, len(SS_STATES)))
        n = 0
        for seq, ss in pairs:  # one chain at a time: memory is dim^2, not residues x dim
            lab = np.array([c != SS_UNLABELLED for c in ss])
            if not lab.any():
                continue
            x = window_features(seq, self.half_window)[lab]
            y = np.zeros((len(x), len(SS_STATES)))
            y[np.arange(len(x)), [SS_STATES.index(c) for c in ss if c != SS_UNLABELLED]] = 1.0
            xtx += x.T @ x
            xty += x.T @ y
            n += len(x)
        if not n:
            raise ValueError("no labelled residue to fit the window classifier on")
        self.weights = np.linalg.solve(xtx + self.ridge * np.eye(dim), xty)
        self.n_residues = n
        return self

    def predict(self, sequence: str) -> str:
        scores = window_features(sequence, self.half_window) @ self.weights
        return "".join(SS_STATES[k] for k in np.argmax(scores, axis=1))
