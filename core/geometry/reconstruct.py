"""The one call that runs a reconstructor, with the invariants the pipeline relies on.

Every caller (``distfold predict``, ``distfold reconstruct``, the conformance
suite) goes through :func:`reconstruct`, so that whatever the method:

1. the matrix is checked once (:func:`distfold.geometry.distmat.check_distances`:
   symmetrised, zero diagonal, ignored pairs set to 0, weights checked), and a bad
   one raises the same one-line :class:`distfold.errors.InputError`;
2. the reconstructor receives the checked float64 arrays, and weights only if it
   declares ``accepts_weights = True``;
3. its coordinates are checked ((L, 3), finite), centred, and given the hand once
   (:func:`distfold.geometry.handedness.choose_hand`);
4. the diagnostics are plain JSON (:func:`distfold.serialise.jsonable`) and say
   what the core did: ``max_asymmetry``, ``weighted``, ``mirrored``,
   ``handedness_margin`` and ``handedness`` (the decision: "right", "mirrored" or
   "uncertain", its log-likelihood ratio and calibrated probability).

The contract a reconstructor follows is in
:func:`distfold.hookspecs.distfold_reconstructors`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from distfold.components import Reconstruction
from distfold.errors import DistfoldError, InputError
from distfold.geometry.distmat import check_distances
from distfold.geometry.handedness import choose_hand
from distfold.serialise import jsonable


def reconstruct(reconstructor: Any, distances: Any, weights: Any = None) -> Reconstruction:
    """Coordinates from a distance matrix by ``reconstructor``, with the hand chosen.

    distances: (L, L) Å, any numeric array-like (see
        :func:`distfold.geometry.distmat.check_distances` for what is accepted).
    weights: (L, L) >= 0 or None; 0 ignores a pair (only there may its distance
        be non-finite). Given to a reconstructor without ``accepts_weights = True``,
        they are an :class:`InputError`.

    Returns a :class:`Reconstruction`: coords (L, 3) float64, Å, centred, right
    hand chosen; diagnostics: the reconstructor's own (stress, stress1,
    iterations, converged, ...) plus ``max_asymmetry`` (Å symmetrised away),
    ``weighted`` (weights were passed on), ``mirrored`` (the plugin's coordinates were
    mirrored), ``handedness_margin`` (the log-likelihood ratio, right hand vs mirror, of
    the plugin's coordinates: < 0 means they were mirrored; a float since the learned rule,
    an integer count of helix-window torsions before) and ``handedness``
    (:meth:`distfold.geometry.handedness.HandDecision.as_dict`: ``decision`` "right",
    "mirrored" or "uncertain", ``log_likelihood_ratio``, ``probability``, ...), all
    plain JSON. The caller's arrays are never modified.

    Raises InputError for bad input (before the reconstructor runs) and a one-line
    DistfoldError naming the reconstructor when it returns anything but (L, 3)
    finite coordinates.
    """
    name = type(reconstructor).__name__
    if weights is not None and not getattr(reconstructor, "accepts_weights", False):
        raise InputError(f"weights: reconstructor {name} does not take per-pair weights "
                         "(it does not declare accepts_weights = True)")
    checked = check_distances(distances, weights)
    n = len(checked)
    if checked.weights is not None:
        result = reconstructor.reconstruct(checked.distances, weights=checked.weights)
    else:
        result = reconstructor.reconstruct(checked.distances)
    coords = getattr(result, "coords", None)
    if not isinstance(result, Reconstruction) or coords is None:
        raise DistfoldError(f"reconstructor {name} returned {type(result).__name__}, not a Reconstruction")
    try:
        x = np.asarray(coords, dtype=np.float64)
    except (TypeError, ValueError):
        raise DistfoldError(f"reconstructor {name} returned coordinates that are not numeric") from None
    if x.shape != (n, 3):
        raise DistfoldError(f"reconstructor {name} returned coordinates of shape {x.shape}; expected ({n}, 3)")
    if not np.all(np.isfinite(x)):
        raise DistfoldError(f"reconstructor {name} returned {int(np.count_nonzero(~np.isfinite(x)))} "
                            "non-finite coordinates")
    x = x - x.mean(0)
    x, hand = choose_hand(x)
    diagnostics = dict(result.diagnostics or {})
    diagnostics["max_asymmetry"] = checked.max_asymmetry
    diagnostics["weighted"] = checked.weights is not None
    diagnostics["mirrored"] = hand.mirrored
    diagnostics["handedness_margin"] = round(hand.margin, 6)
    diagnostics["handedness"] = hand.as_dict()
    return Reconstruction(np.ascontiguousarray(x, dtype=np.float64), jsonable(diagnostics))
