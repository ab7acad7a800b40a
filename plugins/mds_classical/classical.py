"""The ``classical`` reconstructor: classical (Torgerson) MDS from the top-3 eigenpairs.

A thin component over :mod:`distfold.geometry.classical`, where the embedding,
its parameters and the negative-eigenvalue share live (``smacof`` and
``refine`` start from the same embedding there, without this plugin).
"""

from __future__ import annotations

from distfold.components import Configurable, Reconstruction
from distfold.geometry.classical import (LANCZOS_MIN_LENGTH, LANCZOS_TOL, SHARE_EXACT_MAX_LENGTH, SHARE_PROBES,
                                         SHARE_STEPS, ClassicalStart)
from distfold.geometry.distmat import as_checked, stress


class ClassicalMDS(ClassicalStart, Configurable):
    """Classical (Torgerson) MDS: closed form, no iterations.

    Parameters: see :class:`distfold.geometry.classical.ClassicalStart`.
    Weights: only their zeros matter (ignored pairs are filled by
    :func:`distfold.geometry.distmat.complete_distances` before the embedding).
    """

    accepts_weights = True

    def __init__(self, negative_share: bool = True, negative_share_exact_max_length: int = SHARE_EXACT_MAX_LENGTH,
                 negative_share_probes: int = SHARE_PROBES, negative_share_steps: int = SHARE_STEPS,
                 lanczos_min_length: int = LANCZOS_MIN_LENGTH, lanczos_tol: float = LANCZOS_TOL, seed: int = 0):
        self._init_classical(negative_share, negative_share_exact_max_length, negative_share_probes,
                             negative_share_steps, lanczos_min_length, lanczos_tol, seed)

    def reconstruct(self, distances, weights=None) -> Reconstruction:
        """Checked (L, L) float64 distances in Å (and weights, or None) -> (L, 3) Å, any hand."""
        checked = as_checked(distances, weights)
        x, info = self._classical_start(checked)
        raw, s1 = stress(x, checked)
        return Reconstruction(x, {"method": "classical", "stress": raw, "stress1": s1, "iterations": 0,
                                  "converged": True, **info})
