"""Secondary-structure segments and scores, against hand-worked examples of the definitions."""

from __future__ import annotations

import numpy as np
import pytest

from distfold.errors import InputError
from distfold.structure.secondary import (SS_STATES, Segment, class_scores, q3, segments, sov,
                                          ss_from_probs, ss_scores)


def test_state_order_is_fixed():
    assert SS_STATES == "HEC"


def test_segments_split_on_state_change_and_unlabelled():
    assert segments("CCHHH-HHEEC") == [Segment("C", 0, 2), Segment("H", 2, 5), Segment("H", 6, 8),
                                       Segment("E", 8, 10), Segment("C", 10, 11)]
    assert segments("CCHHHCEE", "HE") == [Segment("H", 2, 5), Segment("E", 6, 8)]
    assert segments("") == []
    assert Segment("H", 2, 5).length == 3


def test_ss_from_probs_argmax_in_state_order():
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.3, 0.5]], np.float32)
    assert ss_from_probs(p) == "HEC"
    with pytest.raises(InputError, match=r"\(L, 3\)"):
        ss_from_probs(np.ones((3, 2)))


def test_q3_and_class_scores_count_only_labelled_residues():
    assert q3("CCHHHHHCC", "CCCHHHCCC") == pytest.approx(7 / 9)
    # residue 3 unlabelled: out of every score
    assert q3("CC-HH", "CCEHE") == pytest.approx(3 / 4)
    cs = class_scores("CCHHHHHCC", "CCCHHHCCC")
    assert cs["H"]["precision"] == 1.0 and cs["H"]["recall"] == pytest.approx(3 / 5)
    assert cs["C"]["precision"] == pytest.approx(4 / 6) and cs["C"]["recall"] == 1.0
    assert cs["E"]["precision"] is None and cs["E"]["recall"] is None
    assert q3("---", "HHH") is None


def test_sov_perfect_prediction_is_one():
    assert sov("CCHHHHCCEEEC", "CCHHHHCCEEEC") == 1.0


def test_sov_hand_worked_shortened_helix():
    # H: s1 = [2, 7) len 5, s2 = [3, 6) len 3: minov 3, maxov 5,
    #    delta = min(2, 3, 2, 1) = 1 -> (3 + 1) / 5 * 5 = 4, N = 5
    # C: [0, 2) vs [0, 3): minov 2, maxov 3, delta = min(1, 2, 1, 1) = 1 -> 3 / 3 * 2 = 2
    #    [7, 9) vs [6, 9): the same -> 2; N = 4
    assert sov("CCHHHHHCC", "CCCHHHCCC") == pytest.approx((4 + 2 + 2) / 9)
    assert sov("CCHHHHHCC", "CCCHHHCCC", "H") == pytest.approx(4 / 5)


def test_sov_hand_worked_split_segment_counts_the_reference_segment_twice():
    # H: s1 = [1, 9) len 8 overlaps [1, 4) and [5, 8) (len 3 each): minov 3, maxov 8,
    #    delta = min(5, 3, 4, 1) = 1 -> 4 / 8 * 8 = 4 each; N = 8 + 8
    # C: [0, 1) vs [0, 1): 1; [9, 10) vs [8, 10): minov 1, maxov 2, delta 0 -> 0.5; N = 2
    ref, pred = "CHHHHHHHHC", "CHHHCHHHCC"
    assert sov(ref, pred) == pytest.approx((4 + 4 + 1 + 0.5) / 18)
    assert q3(ref, pred) == pytest.approx(0.8)


def test_sov_hand_worked_missed_segment_counts_in_the_normaliser_only():
    # E: [2, 5) with no predicted strand -> adds 3 to N and 0 to the sum
    # C: [0, 2) and [5, 7) each vs [0, 7): minov 2, maxov 7, delta min(5, 2, 1, 3) = 1 -> 3/7 * 2
    assert sov("CCEEECC", "CCCCCCC") == pytest.approx((12 / 7) / 7)
    assert sov("CCEEECC", "CCCCCCC", "E") == 0.0
    assert sov("CCCCCCC", "CCCCCCC", "E") is None


def test_sov_unlabelled_residue_splits_both_strings():
    # the reference gap at 3 masks the prediction there: H [1, 3) and [4, 6) both predicted exactly
    assert sov("CHH-HHC", "CHHHHHC") == 1.0


def test_ss_scores_bundle_and_bad_input():
    s = ss_scores("CCHHHHHCC", "CCCHHHCCC")
    assert set(s) == {"q3", "sov", "sov_per_state", "per_class"}
    with pytest.raises(InputError, match="reference has 3 residues, prediction 2"):
        q3("HHH", "HH")
    with pytest.raises(InputError, match="predicted secondary structure.*'X' at position 2"):
        q3("HHH", "HXH")
    with pytest.raises(InputError, match="predicted"):
        q3("HHH", "H-H")


def test_sov_matches_a_brute_force_pairing_on_random_strings():
    from distfold.structure.secondary import sov_terms

    def brute(ref, pred):
        out = {}
        for s in SS_STATES:
            score, norm = 0.0, 0
            for s1 in segments(ref, s):
                hits = [s2 for s2 in segments(pred, s) if s2.start < s1.end and s1.start < s2.end]
                norm += s1.length * max(1, len(hits))
                for s2 in hits:
                    lo, hi = max(s1.start, s2.start), min(s1.end, s2.end)
                    mx = max(s1.end, s2.end) - min(s1.start, s2.start)
                    delta = min(mx - (hi - lo), hi - lo, s1.length // 2, s2.length // 2)
                    score += (hi - lo + delta) / mx * s1.length
            out[s] = (score, norm)
        return out

    rng = np.random.default_rng(0)
    for _ in range(50):
        ref = "".join(rng.choice(list("HHHEECC-"), 60))
        pred = "".join(rng.choice(list("HEC"), 60))
        masked = "".join(p if r != "-" else "-" for r, p in zip(ref, pred))
        got, want = sov_terms(ref, pred), brute(ref, masked)
        for s in SS_STATES:
            assert got[s][1] == want[s][1] and got[s][0] == pytest.approx(want[s][0])
