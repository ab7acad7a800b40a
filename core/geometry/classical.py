"""Classical (Torgerson) multidimensional scaling from the top-3 eigenpairs: the
embedding the ``classical`` reconstructor returns and the one ``smacof`` and
``refine`` start from (each plugin uses it from here, so none depends on another).

B = -1/2 J D^2 J (J the centring matrix), X = V_3 sqrt(lambda_3): exact for
Euclidean input. Only the three largest eigenpairs are computed: Lanczos
(``scipy.sparse.linalg.eigsh``) for L >= ``lanczos_min_length``, LAPACK
``scipy.linalg.eigh(subset_by_index=...)`` below it.

The diagnostic share of negative-eigenvalue mass, sum|lambda-| / sum|lambda|
(0 for Euclidean input), is computed by :func:`negative_eigenvalue_share`:
exactly from every eigenvalue (O(L^3)) up to ``negative_share_exact_max_length``
residues, above it by stochastic Lanczos quadrature (O(L^2) per probe and
step; see the function). ``negative_share=False`` skips it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from distfold.geometry.distmat import CheckedDistances, complete_distances

# Defaults of the negative-eigenvalue share, chosen by benchmarks/bench_negative_share.py on
# real chains (5 per length, multiplicative noise 0.05-0.5, 5 probe seeds each), one BLAS thread:
# - exact up to L = 256: every eigenvalue costs ~2 ms there (~20 % of smacof), but ~20 ms at
#   L = 512 and ~0.2 s at 1024 (60 % and 150 % of smacof);
# - above it, 8 probes x 10 Lanczos steps: largest error 0.007 absolute in the share (mean
#   +0.001) at L = 313, 600, 1024 and 2048, costing ~10 % of smacof at L = 1024 and 2048.
#: Default of ``negative_share_exact_max_length``: the share is exact up to this L.
SHARE_EXACT_MAX_LENGTH = 256
#: Default Rademacher probes of the share's estimate above it.
SHARE_PROBES = 8
#: Default Lanczos steps (Gauss quadrature points) per probe.
SHARE_STEPS = 10
#: Default of ``lanczos_min_length``: from this L on, ARPACK finds the top eigenpairs.
LANCZOS_MIN_LENGTH = 64
#: Default ARPACK relative tolerance on eigenvalues.
LANCZOS_TOL = 1e-10


def double_centre(d: np.ndarray) -> np.ndarray:
    """B = -1/2 J D^2 J for an (L, L) distance matrix, without forming J."""
    b = d * d
    row = b.mean(axis=1)
    b -= row[:, None]
    b -= row[None, :]
    b += row.mean()
    b *= -0.5
    return b


def top_eigenpairs(b: np.ndarray, k: int, lanczos_min_length: int, lanczos_tol: float,
                   seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The k largest eigenvalues (descending) and their eigenvectors (L, k) of symmetric b."""
    n = len(b)
    k = min(k, n)
    if n >= max(lanczos_min_length, k + 2):
        from scipy.sparse.linalg import eigsh

        v0 = np.random.default_rng(seed).standard_normal(n)
        vals, vecs = eigsh(b, k=k, which="LA", v0=v0, tol=lanczos_tol)
    else:
        from scipy.linalg import eigh

        vals, vecs = eigh(b, subset_by_index=[n - k, n - 1])
    order = np.argsort(vals)[::-1]
    vals, vecs = vals[order], vecs[:, order]
    # a fixed sign per eigenvector (largest-magnitude entry positive): deterministic output
    idx = np.argmax(np.abs(vecs), axis=0)
    signs = np.sign(vecs[idx, np.arange(vecs.shape[1])])
    signs[signs == 0] = 1.0
    return vals, vecs * signs


def slq_abs_trace(b: np.ndarray, probes: int, steps: int, seed: int,
                  deflate: np.ndarray | None = None) -> float:
    """Estimate of tr|P b P| = sum |lambda| over the eigenvalues of symmetric b
    (L, L) restricted to the complement of the orthonormal columns of
    ``deflate`` (L, k) (P = I - U U'; no deflation when None).

    Stochastic Lanczos quadrature (Ubaru, Chen & Saad 2017): Hutchinson's
    estimator tr f(A) ~ mean_p z_p' f(A) z_p over Rademacher probes z_p
    (projected by P), each quadratic form by ``steps``-point Gauss quadrature
    from Lanczos on A started at z_p / |z_p|: |z_p|^2 sum_k tau_k^2 f(theta_k),
    theta_k the Ritz values and tau_k the first components of their
    eigenvectors of the tridiagonal T_p. The probes run as one block, so a
    Lanczos step is one (L, L) x (L, probes) product, done in float32 (half
    the time of float64; it moves the estimate by about 1e-8 relative,
    measured at L = 1024, against a statistical error of about 1e-3); all else
    is float64. Each probe's vectors are fully reorthogonalised (classical
    Gram-Schmidt, twice). A probe whose Krylov space is exhausted stops there
    (its quadrature is then exact). Deterministic for a given seed.
    """
    n = len(b)
    rng = np.random.default_rng(seed)
    z = rng.integers(0, 2, size=(n, probes)).astype(np.float64)
    z *= 2.0
    z -= 1.0
    if deflate is not None:
        z -= deflate @ (deflate.T @ z)
    norms2 = np.einsum("ip,ip->p", z, z)
    q = z / np.sqrt(np.where(norms2 > 0, norms2, 1.0))
    basis = np.zeros((probes, steps, n))  # probe p's Lanczos vectors, one per row
    alpha = np.zeros((probes, steps))
    beta = np.zeros((probes, steps))  # beta[:, j] couples steps j and j + 1
    b32 = b.astype(np.float32)
    scale = 0.0
    for j in range(steps):
        basis[:, j] = q.T
        w = (b32 @ q.astype(np.float32)).astype(np.float64)
        if deflate is not None:
            w -= deflate @ (deflate.T @ w)
        if j == 0:
            scale = float(np.sqrt(np.einsum("ip,ip->p", w, w).max()))  # ~ |b| on the probes
        alpha[:, j] = np.einsum("ip,ip->p", q, w)
        if j == steps - 1:
            break
        wt = np.ascontiguousarray(w.T)[:, :, None]  # (probes, L, 1)
        done = basis[:, : j + 1]
        for _ in range(2):
            wt -= np.matmul(done.transpose(0, 2, 1), np.matmul(done, wt))
        w = wt[:, :, 0].T
        norm = np.sqrt(np.einsum("ip,ip->p", w, w))
        alive = norm > 1e-5 * scale  # below: float32 round-off of the product, the space is exhausted
        beta[:, j] = np.where(alive, norm, 0.0)
        q = w * np.where(alive, 1.0 / np.where(alive, norm, 1.0), 0.0)
    t = np.zeros((probes, steps, steps))
    k = np.arange(steps)
    t[:, k, k] = alpha
    t[:, k[:-1], k[1:]] = beta[:, :-1]
    t[:, k[1:], k[:-1]] = beta[:, :-1]
    theta, vec = np.linalg.eigh(t)
    quad = norms2 * np.einsum("pk,pk->p", vec[:, 0, :] ** 2, np.abs(theta))
    return float(quad.mean())


def negative_eigenvalue_share(b: np.ndarray, exact_max_length: int = SHARE_EXACT_MAX_LENGTH,
                              probes: int = SHARE_PROBES, steps: int = SHARE_STEPS,
                              seed: int = 0, top: tuple[np.ndarray, np.ndarray] | None = None
                              ) -> tuple[float, str]:
    """(sum|lambda-| / sum|lambda| over all eigenvalues of symmetric b (L, L), method).

    0 for Euclidean input; at most 1/2 for a double-centred squared distance
    matrix (tr B = sum_ij d_ij^2 / 2L >= 0). method "exact": every eigenvalue
    (LAPACK, O(L^3)), used when L <= exact_max_length, or L <= steps + 3 + k
    (the Krylov spaces would fill the space; exact is then as cheap).
    method "slq": sum|lambda| = tr|B| estimated by :func:`slq_abs_trace` with
    the known top eigenpairs ``top`` = (values (k,), orthonormal vectors (L, k))
    deflated (their |lambda| are added exactly; this removes the large
    low-rank part that dominates the probe variance), and
    sum|lambda-| = (tr|B| - tr B) / 2 with tr B exact (clipped at 0).
    """
    n = len(b)
    ndefl = 0 if top is None else len(top[0])
    if n <= max(int(exact_max_length), int(steps) + 3 + ndefl):
        from scipy.linalg import eigh

        lam = eigh(b, eigvals_only=True, driver="evd")
        total = float(np.abs(lam).sum())
        return (float(-lam[lam < 0].sum() / total) if total > 0 else 0.0), "exact"
    if top is None:
        total = slq_abs_trace(b, probes, steps, seed)
    else:
        total = float(np.abs(top[0]).sum()) + slq_abs_trace(b, probes, steps, seed, deflate=top[1])
    negative = max((total - float(np.trace(b))) / 2.0, 0.0)
    return (negative / total if total > 0 else 0.0), "slq"


def classical_embedding(checked: CheckedDistances, negative_share: bool, lanczos_min_length: int,
                        lanczos_tol: float, seed: int, share_exact_max_length: int = SHARE_EXACT_MAX_LENGTH,
                        share_probes: int = SHARE_PROBES, share_steps: int = SHARE_STEPS
                        ) -> tuple[np.ndarray, dict[str, Any]]:
    """(L, 3) coordinates (Å, hand not yet chosen) and diagnostics of classical MDS.

    Ignored pairs are filled first (:func:`distfold.geometry.distmat.complete_distances`);
    weight values otherwise play no part. The negative-eigenvalue share
    (:func:`negative_eigenvalue_share`, the top-3 eigenpairs deflated) and the
    method that computed it are reported when ``negative_share`` is True,
    None otherwise.
    """
    n = len(checked)
    d = complete_distances(checked)
    x = np.zeros((n, 3))
    info: dict[str, Any] = {"filled_pairs": 0 if checked.known is None else
                            int(np.count_nonzero(~checked.known) - n) // 2}
    if n == 1:
        info.update(eigenvalues=[0.0, 0.0, 0.0], negative_eigenvalue_share=0.0 if negative_share else None,
                    negative_eigenvalue_share_method="exact" if negative_share else None)
        return x, info
    b = double_centre(d)
    vals, vecs = top_eigenpairs(b, 3, lanczos_min_length, lanczos_tol, seed)
    k = len(vals)
    x[:, :k] = vecs * np.sqrt(np.clip(vals, 0.0, None))
    info["eigenvalues"] = [float(v) for v in vals] + [0.0] * (3 - k)
    share, method = None, None
    if negative_share:
        share, method = negative_eigenvalue_share(b, share_exact_max_length, share_probes, share_steps, seed,
                                                  top=(vals, vecs))
    info["negative_eigenvalue_share"] = share
    info["negative_eigenvalue_share_method"] = method
    return x, info


def check_share_settings(exact_max_length: int, probes: int, steps: int) -> None:
    """ValueError unless the negative-share settings are usable."""
    if exact_max_length < 0 or probes < 1 or steps < 1:
        raise ValueError("negative_share_exact_max_length must be >= 0, negative_share_probes and "
                         f"negative_share_steps >= 1; got {exact_max_length}, {probes}, {steps}")


class ClassicalStart:
    """Mixin: the classical-MDS parameters and :meth:`_classical_start`, shared by
    every reconstructor that computes or starts from a classical embedding.

    negative_share: report sum|lambda-| / sum|lambda| of B
        (diagnostics ``negative_eigenvalue_share`` and
        ``negative_eigenvalue_share_method``, "exact" or "slq"); False reports
        None for both and keeps the cost at three eigenpairs.
    negative_share_exact_max_length: up to this L the share is exact (every
        eigenvalue, O(L^3)); above it, stochastic Lanczos quadrature estimates it
        (see :func:`negative_eigenvalue_share`).
    negative_share_probes, negative_share_steps: Rademacher probes and Lanczos
        steps of that estimate (cost: probes x steps products of B with a vector).
    lanczos_min_length: from this L on, Lanczos (ARPACK) finds the top 3
        eigenpairs; below it, LAPACK's subset eigensolver.
    lanczos_tol: ARPACK relative tolerance on eigenvalues (0 = machine precision);
        1e-10 needs about 21 products with B instead of 36 at L = 1024 and moves
        the coordinates by about 1e-9 Å (measured on a real noisy matrix).
    seed: seeds ARPACK's start vector (results do not depend on it beyond
        round-off; fixed for bitwise reproducibility) and the share's probes.

    A component lists these parameters in its own ``__init__`` signature, with the
    module's constants as defaults (``seed=0``), so that ``get_config()`` writes them
    out, and passes them to :meth:`_init_classical`.
    """

    CLASSICAL_PARAMS = ("negative_share", "negative_share_exact_max_length", "negative_share_probes",
                        "negative_share_steps", "lanczos_min_length", "lanczos_tol", "seed")

    def _init_classical(self, negative_share, negative_share_exact_max_length, negative_share_probes,
                        negative_share_steps, lanczos_min_length, lanczos_tol, seed) -> None:
        self.negative_share = bool(negative_share)
        self.negative_share_exact_max_length = int(negative_share_exact_max_length)
        self.negative_share_probes = int(negative_share_probes)
        self.negative_share_steps = int(negative_share_steps)
        self.lanczos_min_length = int(lanczos_min_length)
        self.lanczos_tol = float(lanczos_tol)
        self.seed = int(seed)
        check_share_settings(self.negative_share_exact_max_length, self.negative_share_probes,
                             self.negative_share_steps)

    def _classical_params(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.CLASSICAL_PARAMS}

    def _classical_start(self, checked: CheckedDistances) -> tuple[np.ndarray, dict[str, Any]]:
        """Classical-MDS coordinates (hand not yet chosen) and their diagnostics."""
        return classical_embedding(checked, self.negative_share, self.lanczos_min_length, self.lanczos_tol,
                                   self.seed, self.negative_share_exact_max_length, self.negative_share_probes,
                                   self.negative_share_steps)
