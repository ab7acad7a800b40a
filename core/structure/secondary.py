"""Three-state secondary structure: the state alphabet, segments and scores.

A secondary-structure (SS) string has one character per residue: ``H`` (helix),
``E`` (strand), ``C`` (coil), the 3-state reduction of DSSP that
``mdtraj.compute_dssp(..., simplified=True)`` returns, or ``-`` where there is no
label (residue unobserved, backbone atoms missing). :data:`SS_STATES` fixes the
order of the three states everywhere: the columns of a model's ``ss_probs``
(L, 3), the per-class metrics, the report.

Scores, all over the residues the reference labels (a ``-`` in the reference
leaves that residue out of every score; a prediction has no ``-``):

- Q3: fraction of residues whose predicted state is the reference state.
- per-class precision (of the residues predicted in the state, the fraction the
  reference has in it) and recall (of the reference's residues in the state, the
  fraction predicted in it); None where the denominator is empty.
- SOV: the segment overlap measure SOV'99 (Zemla, Venclovas, Fidelis & Rost,
  Proteins 34:220-223, 1999), as a fraction in [0, 1] (the paper's percentage
  / 100). For each state i, with S(i) the pairs (s1, s2) of a reference segment
  s1 and a predicted segment s2 of state i that share at least one residue and
  S'(i) the reference segments of state i that no predicted segment of state i
  touches::

      SOV = sum_i sum_{S(i)} (minov + delta) / maxov * len(s1)
            / sum_i [ sum_{S(i)} len(s1) + sum_{S'(i)} len(s1) ]
      delta = min(maxov - minov, minov, len(s1) // 2, len(s2) // 2)

  where minov is the number of residues s1 and s2 share and maxov the extent
  from the first residue of either to the last residue of either. A reference
  ``-`` ends segments in both strings (the prediction is masked there too), so a
  segment never runs across an unlabelled residue.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np

from distfold.errors import InputError

#: The three states, in the order of every (L, 3) probability array.
SS_STATES = "HEC"
#: The character of a residue without a label.
SS_UNLABELLED = "-"


@dataclass(frozen=True)
class Segment:
    """A maximal run of one state: residues ``start`` .. ``end - 1`` (0-based, end exclusive)."""

    state: str
    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start


def check_ss(ss: str, *, allow_unlabelled: bool = True, name: str = "secondary structure") -> str:
    """``ss`` as a str, or InputError naming the first character outside H/E/C (and ``-``)."""
    allowed = SS_STATES + (SS_UNLABELLED if allow_unlabelled else "")
    ss = str(ss)
    for i, ch in enumerate(ss):
        if ch not in allowed:
            raise InputError(f"{name}: character {ch!r} at position {i + 1} is not one of "
                             f"{', '.join(allowed)}")
    return ss


def segments(ss: str, states: str = SS_STATES) -> list[Segment]:
    """Maximal runs of each state in ``states`` (``-`` and other states end a run), in order."""
    out: list[Segment] = []
    start = 0
    for i in range(1, len(ss) + 1):
        if i == len(ss) or ss[i] != ss[start]:
            if ss[start] in states:
                out.append(Segment(ss[start], start, i))
            start = i
    return out


def ss_from_probs(probs: np.ndarray) -> str:
    """The most probable state of each row of (L, 3) probabilities (columns in SS_STATES order)."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != len(SS_STATES):
        raise InputError(f"SS probabilities: expected shape (L, 3), got {p.shape}")
    return "".join(SS_STATES[k] for k in np.argmax(p, axis=1))


def _paired(reference: str, predicted: str) -> tuple[str, str]:
    reference = check_ss(reference, name="reference secondary structure")
    predicted = check_ss(predicted, allow_unlabelled=False, name="predicted secondary structure")
    if len(reference) != len(predicted):
        raise InputError(f"secondary structure: reference has {len(reference)} residues, "
                         f"prediction {len(predicted)}")
    masked = "".join(p if r != SS_UNLABELLED else SS_UNLABELLED
                     for r, p in zip(reference, predicted))
    return reference, masked


def q3(reference: str, predicted: str) -> float | None:
    """Fraction of the reference's labelled residues predicted in their state; None if none is labelled."""
    reference, predicted = _paired(reference, predicted)
    labelled = [(r, p) for r, p in zip(reference, predicted) if r != SS_UNLABELLED]
    if not labelled:
        return None
    return sum(r == p for r, p in labelled) / len(labelled)


def class_scores(reference: str, predicted: str) -> dict[str, dict[str, float | None]]:
    """{state: {"precision", "recall", "n_reference", "n_predicted"}} over labelled residues."""
    reference, predicted = _paired(reference, predicted)
    out: dict[str, dict[str, float | None]] = {}
    for s in SS_STATES:
        tp = sum(r == s and p == s for r, p in zip(reference, predicted))
        n_ref = sum(r == s for r in reference)
        n_pred = sum(p == s for p in predicted)
        out[s] = {"precision": tp / n_pred if n_pred else None,
                  "recall": tp / n_ref if n_ref else None,
                  "n_reference": n_ref, "n_predicted": n_pred}
    return out


def sov_terms(reference: str, predicted: str) -> dict[str, tuple[float, int]]:
    """{state: (sum of (minov + delta) / maxov * len(s1), N(i))} for SOV'99.

    Summing both parts over states (and over chains, to pool a data set) and
    dividing gives :func:`sov`.
    """
    reference, predicted = _paired(reference, predicted)
    out = {}
    for s in SS_STATES:
        obs = segments(reference, s)
        pred = segments(predicted, s)
        pred_ends = [s2.end for s2 in pred]  # segments of one state do not overlap: sorted
        score, norm = 0.0, 0
        for s1 in obs:
            touching = []
            for k in range(bisect.bisect_right(pred_ends, s1.start), len(pred)):
                if pred[k].start >= s1.end:
                    break
                touching.append(pred[k])
            if not touching:
                norm += s1.length
                continue
            for s2 in touching:
                minov = min(s1.end, s2.end) - max(s1.start, s2.start)
                maxov = max(s1.end, s2.end) - min(s1.start, s2.start)
                delta = min(maxov - minov, minov, s1.length // 2, s2.length // 2)
                score += (minov + delta) / maxov * s1.length
                norm += s1.length
        out[s] = (score, norm)
    return out


def sov(reference: str, predicted: str, state: str | None = None) -> float | None:
    """SOV'99 as a fraction in [0, 1], over all states or one; None if the reference has no segment."""
    terms = sov_terms(reference, predicted)
    keys = SS_STATES if state is None else state
    score = sum(terms[k][0] for k in keys)
    norm = sum(terms[k][1] for k in keys)
    return score / norm if norm else None


def ss_scores(reference: str, predicted: str) -> dict:
    """Q3, per-class precision and recall and SOV (overall and per state) of one chain."""
    return {"q3": q3(reference, predicted),
            "sov": sov(reference, predicted),
            "sov_per_state": {s: sov(reference, predicted, s) for s in SS_STATES},
            "per_class": class_scores(reference, predicted)}
