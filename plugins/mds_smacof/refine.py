"""SMACOF, then L-BFGS on stress plus C-alpha chain geometry.

Energy of coordinates X (L, 3), Å, minimised with ``scipy.optimize.minimize
(method="L-BFGS-B")`` from the SMACOF solution::

    E(X) = sum_{i<j} w_ij (D_ij - d_ij)^2                            weighted stress
         + k_bond  * sum_{i bonded} (D_{i,i+1} - b_i)^2              virtual bonds
         + k_clash * sum_{j-i >= clash_min_separation} max(0, clash_distance - D_ij)^2

with D_ij = |x_i - x_j| and d_ij the input distances.

Which consecutive pairs are bonded (:func:`bonded_pairs`): every pair (i, i+1)
except those named in ``breaks`` and those whose input distance says they are
not bonded, ``|d_{i,i+1} - bond_length| > max(bond_tolerance, break_spread *
s)``, where s = 1.4826 * median |d_{i,i+1} - bond_length| is the scatter of the
input's own consecutive distances (a robust standard deviation). On a matrix
measured from a structure (s ~ 0.02 Å) a chain break (C-alpha i to i+1 at 4.5 Å
or more) and a cis peptide (about 2.9 Å) get no bond term, so the stress alone
keeps their true distance; on a noisy matrix (multiplicative noise 0.2: s ~ 0.8
Å) only a consecutive distance far outside the noise (about 8 Å) counts as a
break, and the rest are pulled to bond_length. A consecutive pair whose weight is
0 (distance unknown) stays bonded unless ``breaks`` names it. The diagnostics list
the pairs left without a bond (``unbonded_pairs``, 0-based i).

The bond target b_i (:func:`bond_targets`) is bond_length moved toward the input's
own distance d_{i,i+1} by as much as the input's noise says that distance can be
trusted: b_i = clip(bond_length, d_{i,i+1} - fit_spread * n, d_{i,i+1} + fit_spread
* n), where n = 1.4826 * median |D0_{i,i+1} - d_{i,i+1}| is the robust scatter of
the SMACOF start D0 around the input on the consecutive pairs. On a noisy matrix the
start cannot follow the noise, the band is wider than any bonded pair's deviation and
every target is bond_length, as before (measured on three real chains of 100-294
residues at multiplicative noise 0.02, 0.05, 0.1 and 0.2: n = 0.12-0.18, 0.27-0.43,
0.50-0.57 and 1.06-1.22 Å, no target moved); on exact distances (n ~ 1e-14 Å) each
target is the input's distance, so the bond term agrees
with the stress instead of pulling a 3.45 or 4.2 Å bond of an irregular deposited
trace to 3.8 Å (measured: 0.152 and 0.125 Å RMSD from exact distances before, see
benchmarks/bench_refine_breaks.py). ``fit_spread = inf`` pulls every bond to
bond_length (the rule before), ``fit_spread = 0`` targets the input's distances. The
diagnostics record n (``input_noise``).

``k_bond`` and ``k_clash`` are ``bond_weight`` and
``clash_weight`` times the mean total pair weight of a residue,
(1/L) sum_ij w_ij (L - 1 without weights): the stiffness with which the
stress term holds one residue in place. So the terms keep their meaning
whatever the length and the scale of the weights.
The terms fix local geometry (consecutive C-alphas 3.8 Å apart, no
overlapping residues); they cannot rescue a wrong global fold. Every term
depends on distances only, so the hand is chosen afterwards, by the core, as for
every reconstructor (:func:`distfold.geometry.reconstruct.reconstruct`).

Convergence: L-BFGS stops when the energy's relative decrease falls below
``lbfgs_ftol`` or after ``lbfgs_max_iter`` iterations. In the second case (and when
the SMACOF start hit its own limit) ``converged`` is False and ``warnings`` says so,
with how much the energy still fell over the last tenth of the run: measured on
predicted matrices with 1 / variance weights (L = 101-513), 333-2,008 iterations
were needed; at the default 500 the unconverged answers lay 0.06-13 Å RMSD from
the converged ones, with no better or worse TM-score against the true structure
(0.16-0.19, the predicted folds were poor). ``distfold reconstruct`` prints NOT
CONVERGED with the warning; raise ``lbfgs_max_iter`` for a converged answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.spatial.distance import cdist

from distfold.components import Configurable, Reconstruction
from distfold.errors import InputError
from distfold.geometry.classical import (LANCZOS_MIN_LENGTH, LANCZOS_TOL, SHARE_EXACT_MAX_LENGTH, SHARE_PROBES,
                                         SHARE_STEPS, ClassicalStart)
from distfold.geometry.distmat import CheckedDistances, as_checked
from distfold.plugins.mds_smacof.smacof import SMACOF, final_stress


def bonded_pairs(checked: CheckedDistances, bond_length: float = 3.8, bond_tolerance: float = 0.5,
                 break_spread: float = 5.0, breaks: Sequence[int] = ()) -> np.ndarray:
    """(L - 1,) bool: does pair (i, i+1) get a virtual-bond term? (the rule is in the module docstring)

    breaks: 0-based i, each meaning "rows i and i+1 are not bonded"; one outside
        0..L-2 is an InputError.
    """
    n = len(checked)
    bonded = np.ones(max(n - 1, 0), dtype=bool)
    for i in breaks:
        if not 0 <= int(i) < n - 1:
            raise InputError(f"breaks: {int(i)} is not a consecutive pair of rows 0..{n - 1} "
                             f"(a break i separates rows i and i+1, 0 <= i <= {n - 2})")
        bonded[int(i)] = False
    if n < 2:
        return bonded
    idx = np.arange(n - 1)
    cons = checked.distances[idx, idx + 1]
    known = np.ones(n - 1, dtype=bool) if checked.weights is None else checked.weights[idx, idx + 1] > 0
    if known.any():
        dev = np.abs(cons - bond_length)
        scatter = 1.4826 * float(np.median(dev[known]))
        far = dev > max(bond_tolerance, break_spread * scatter)
        bonded &= ~(far & known)
    return bonded


def bond_targets(checked: CheckedDistances, start: np.ndarray, bond_length: float = 3.8,
                 fit_spread: float = 5.0) -> tuple[np.ndarray, float]:
    """((L - 1,) bond targets b_i, the input's noise n in Å) from the start coordinates
    (L, 3) (the rule is in the module docstring; pairs of weight 0 do not count in n)."""
    n = len(checked)
    if n < 2:
        return np.full(max(n - 1, 0), bond_length), 0.0
    idx = np.arange(n - 1)
    cons = checked.distances[idx, idx + 1]
    known = np.ones(n - 1, dtype=bool) if checked.weights is None else checked.weights[idx, idx + 1] > 0
    fitted = np.linalg.norm(start[1:] - start[:-1], axis=1)
    noise = 1.4826 * float(np.median(np.abs(fitted - cons)[known])) if known.any() else float("inf")
    if not (np.isfinite(fit_spread) and np.isfinite(noise)):
        return np.full(n - 1, bond_length), noise
    band = fit_spread * noise
    return np.where(known, np.clip(bond_length, cons - band, cons + band), bond_length), noise


class ChainEnergy:
    """E(X) and its gradient for flattened (3 L,) coordinates (see the module docstring).

    bonded: (L - 1,) bool, which consecutive pairs get the bond term (all when None).
    bond_length: the bond targets b_i, a number or (L - 1,) per pair.
    """

    def __init__(self, checked: CheckedDistances, bond_length: float | np.ndarray, bond_weight: float,
                 clash_distance: float, clash_weight: float, clash_min_separation: int,
                 bonded: np.ndarray | None = None):
        d = checked.distances
        n = len(d)
        self.n = n
        self.d = d
        self.w = checked.weights  # None: every pair weighs 1
        # a residue's total pair weight: how hard the stress holds it in place
        scale = float(n - 1) if self.w is None else float(self.w.sum()) / n
        self.k_bond = bond_weight * scale
        self.k_clash = clash_weight * scale
        self.bond_length = np.broadcast_to(np.asarray(bond_length, dtype=np.float64), (max(n - 1, 0),))
        self.clash_distance = clash_distance
        sep = np.abs(np.arange(n)[:, None] - np.arange(n)[None, :])
        self.clash_pairs = sep >= max(int(clash_min_separation), 1)
        self.bonded = np.ones(max(n - 1, 0), dtype=bool) if bonded is None else np.asarray(bonded, dtype=bool)
        self.history: list[float] = []  # E at every evaluation, for the convergence report

    def terms(self, x: np.ndarray) -> dict[str, float]:
        """The three energy terms at coordinates x (L, 3)."""
        dist = cdist(x, x)
        diff = dist - self.d
        wdiff2 = diff * diff if self.w is None else self.w * diff * diff
        bonds = np.linalg.norm(np.diff(x, axis=0), axis=1)[self.bonded]
        over = np.where(self.clash_pairs, np.maximum(self.clash_distance - dist, 0.0), 0.0)
        return {
            "stress": float(wdiff2.sum()) / 2.0,
            "bond": float(self.k_bond * ((bonds - self.bond_length[self.bonded]) ** 2).sum()),
            "clash": float(self.k_clash * (over * over).sum()) / 2.0,
        }

    def __call__(self, flat: np.ndarray) -> tuple[float, np.ndarray]:
        x = flat.reshape(self.n, 3)
        dist = cdist(x, x)
        np.fill_diagonal(dist, 1.0)  # no pair; avoids 0/0 below
        diff = dist - self.d
        np.fill_diagonal(diff, 0.0)
        # g_ij = dE/dD_ij / D_ij, so that dE/dx_i = sum_j g_ij (x_i - x_j)
        if self.w is None:
            energy = float(np.dot(diff.ravel(), diff.ravel())) / 2.0
            g = 2.0 * diff
        else:
            wdiff = self.w * diff
            energy = float(np.dot(wdiff.ravel(), diff.ravel())) / 2.0
            g = 2.0 * wdiff
        over = np.maximum(self.clash_distance - dist, 0.0)
        over[~self.clash_pairs] = 0.0
        if over.any():
            energy += self.k_clash * float(np.dot(over.ravel(), over.ravel())) / 2.0
            g -= 2.0 * self.k_clash * over
        g /= np.maximum(dist, 1e-12)
        grad = g.sum(1)[:, None] * x - g @ x
        if self.n > 1:
            b = x[1:] - x[:-1]
            length = np.linalg.norm(b, axis=1)
            dev = np.where(self.bonded, length - self.bond_length, 0.0)
            energy += self.k_bond * float(dev @ dev)
            f = (2.0 * self.k_bond * dev / np.maximum(length, 1e-12))[:, None] * b
            grad[1:] += f
            grad[:-1] -= f
        self.history.append(energy)
        return energy, grad.ravel()

    def recent_decrease(self, fraction: float = 0.1) -> float:
        """Relative fall of the lowest energy over the last ``fraction`` of the evaluations."""
        h = np.minimum.accumulate(np.asarray(self.history, dtype=np.float64))
        if len(h) < 2:
            return 0.0
        start = h[max(int(len(h) * (1.0 - fraction)) - 1, 0)]
        return float((start - h[-1]) / max(abs(h[-1]), 1e-300))


class Refine(ClassicalStart, Configurable):
    """SMACOF (same parameters as ``smacof``), then L-BFGS on stress + 3.8 Å bonds + clashes.

    bond_length: target consecutive C-alpha distance, Å.
    breaks: 0-based row indices i whose pair (i, i+1) is not bonded (a chain break), on
        top of those the input's distances reveal (see :func:`bonded_pairs`).
    bond_tolerance, break_spread: a consecutive pair whose input distance is farther than
        max(bond_tolerance Å, break_spread x the consecutive distances' robust scatter)
        from bond_length gets no bond term.
    fit_spread: a bond's target is the length nearest bond_length within fit_spread x the
        input's noise of the input's distance (see :func:`bond_targets`); inf: always
        bond_length (the rule before).
    bond_weight, clash_weight: term weights, relative to a residue's total pair weight.
    clash_distance: pairs with |i - j| >= clash_min_separation closer than this (Å) are penalised.
    min_length: shorter chains skip the L-BFGS stage and keep the SMACOF solution
        (1-3 points embed exactly; there is no fold to fix).
    lbfgs_max_iter, lbfgs_ftol, lbfgs_gtol, lbfgs_memory: ``scipy.optimize.minimize``
        L-BFGS-B options ``maxiter``, ``ftol``, ``gtol``, ``maxcor``.
    The rest configure the SMACOF start (see :class:`SMACOF`).
    """

    accepts_weights = True

    def __init__(self, bond_length: float = 3.8, bond_weight: float = 10.0, clash_distance: float = 3.8,
                 clash_weight: float = 10.0, clash_min_separation: int = 2, min_length: int = 4,
                 lbfgs_max_iter: int = 500,
                 lbfgs_ftol: float = 1e-9, lbfgs_gtol: float = 1e-6, lbfgs_memory: int = 10,
                 max_iter: int = 300, eps: float = 1e-6, relaxation: float = 1.0, block_size: int = 256,
                 negative_share: bool = True, negative_share_exact_max_length: int = SHARE_EXACT_MAX_LENGTH,
                 negative_share_probes: int = SHARE_PROBES, negative_share_steps: int = SHARE_STEPS,
                 lanczos_min_length: int = LANCZOS_MIN_LENGTH, lanczos_tol: float = LANCZOS_TOL, seed: int = 0,
                 breaks: Sequence[int] = (), bond_tolerance: float = 0.5, break_spread: float = 5.0,
                 fit_spread: float = 5.0):
        self.bond_length = float(bond_length)
        self.breaks = tuple(sorted({int(i) for i in breaks}))
        self.bond_tolerance = float(bond_tolerance)
        self.break_spread = float(break_spread)
        self.fit_spread = float(fit_spread)
        self.bond_weight = float(bond_weight)
        self.clash_distance = float(clash_distance)
        self.clash_weight = float(clash_weight)
        self.clash_min_separation = int(clash_min_separation)
        self.min_length = int(min_length)
        self.lbfgs_max_iter = int(lbfgs_max_iter)
        self.lbfgs_ftol = float(lbfgs_ftol)
        self.lbfgs_gtol = float(lbfgs_gtol)
        self.lbfgs_memory = int(lbfgs_memory)
        self.max_iter = int(max_iter)
        self.eps = float(eps)
        self.relaxation = float(relaxation)
        self.block_size = int(block_size)
        if min(self.bond_weight, self.clash_weight) < 0 or self.bond_length < 0 or self.clash_distance < 0:
            raise ValueError("bond/clash weights and lengths must be >= 0")
        if min(self.bond_tolerance, self.break_spread, self.fit_spread) < 0 or any(i < 0 for i in self.breaks):
            raise ValueError("bond_tolerance, break_spread, fit_spread and breaks must be >= 0")
        self._init_classical(negative_share, negative_share_exact_max_length, negative_share_probes,
                             negative_share_steps, lanczos_min_length, lanczos_tol, seed)

    def _smacof(self) -> SMACOF:
        return SMACOF(max_iter=self.max_iter, eps=self.eps, relaxation=self.relaxation, block_size=self.block_size,
                      **self._classical_params())

    def reconstruct(self, distances, weights=None) -> Reconstruction:
        """Checked (L, L) float64 distances in Å, (L, L) weights >= 0 or None -> (L, 3) Å, any hand."""
        from scipy.optimize import minimize

        checked = as_checked(distances, weights)
        bonded = bonded_pairs(checked, self.bond_length, self.bond_tolerance, self.break_spread, self.breaks)
        x, info = self._smacof().embed(checked)
        n = len(checked)
        targets, noise = bond_targets(checked, x, self.bond_length, self.fit_spread)
        energy = ChainEnergy(checked, targets, self.bond_weight, self.clash_distance,
                             self.clash_weight, self.clash_min_separation, bonded)
        before = energy.terms(x)
        lbfgs: dict[str, Any] = {"lbfgs_iterations": 0, "lbfgs_converged": True,
                                 "lbfgs_message": f"skipped: L = {n} < min_length = {self.min_length}"}
        if n >= max(self.min_length, 2) and self.lbfgs_max_iter > 0:
            from threadpoolctl import threadpool_limits

            # L-BFGS-B's own LAPACK calls are on (m, m) matrices, m = lbfgs_memory: BLAS
            # threads cannot help them, and on a busy machine their spinning costs ~10 ms a call
            with threadpool_limits(1, user_api="blas"):
                res = minimize(energy, x.ravel(), jac=True, method="L-BFGS-B",
                               options={"maxiter": self.lbfgs_max_iter, "ftol": self.lbfgs_ftol,
                                        "gtol": self.lbfgs_gtol, "maxcor": self.lbfgs_memory})
            if np.all(np.isfinite(res.x)) and res.fun <= sum(before.values()):
                x = res.x.reshape(n, 3)
            lbfgs = {"lbfgs_iterations": int(res.nit), "lbfgs_converged": bool(res.success),
                     "lbfgs_message": str(res.message)}
        warnings = []
        if not info["converged"]:
            warnings.append(f"SMACOF start stopped at max_iter = {self.max_iter} before converging")
        if not lbfgs["lbfgs_converged"]:
            warnings.append(f"L-BFGS did not converge in {lbfgs['lbfgs_iterations']} iterations "
                            f"(lbfgs_max_iter = {self.lbfgs_max_iter}; {lbfgs['lbfgs_message']}); the energy "
                            f"still fell {100 * energy.recent_decrease():.2g} % over the last tenth of the run")
        after = energy.terms(x)
        raw, s1 = final_stress(x, checked)
        bonds = np.linalg.norm(np.diff(x, axis=0), axis=1)[bonded]
        dx = cdist(x, x)
        close = (dx < self.clash_distance) & energy.clash_pairs
        nonbonded = dx[np.triu(energy.clash_pairs)]
        diagnostics = {
            "method": "refine", "stress": raw, "stress1": s1,
            "iterations": info["iterations"] + lbfgs["lbfgs_iterations"],
            "converged": bool(info["converged"] and lbfgs["lbfgs_converged"]),
            "smacof_iterations": info["iterations"], "smacof_converged": info["converged"],
            "stress_smacof": before["stress"], **lbfgs,
            "energy_before": before, "energy_after": after,
            "bond_rmsd": float(np.sqrt(np.mean((bonds - self.bond_length) ** 2))) if bonds.size else 0.0,
            "unbonded_pairs": [int(i) for i in np.flatnonzero(~bonded)],
            "input_noise": noise,
            "clashes": int(np.count_nonzero(np.triu(close))),
            "min_nonbonded_distance": float(nonbonded.min()) if nonbonded.size else None,
            "warnings": warnings,
            **{k: v for k, v in info.items() if k not in ("iterations", "converged")},
        }
        return Reconstruction(x, diagnostics)
