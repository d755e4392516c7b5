"""Questions ordered by confidence, with tie groups: the common ground of AUROC, selective metrics and
the bootstrap engine.

Order: ascending confidence; within a group of equal confidences, correct answers first. That tie order
is a convention that makes pair counts easy (no wrong answer precedes a correct one of equal confidence);
every metric built on it treats ties symmetrically (half a pair for AUROC, an even spread for selective
risk), so the convention never changes a result.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ConfidenceRanking:
    """Questions sorted by confidence (ascending, correct first within ties) and their tie groups.

    Attributes:
        order: (n,) question index at each ranked position.
        confidences: (n,) sorted confidences.
        correct: (n,) bool, correctness in ranked order.
        group_starts: (G,) first position of each group of equal confidences.
        group_ends: (G,) one past the last position of each group.
        group_correct: (G,) number of correct answers in each group.
    """

    order: np.ndarray
    confidences: np.ndarray
    correct: np.ndarray
    group_starts: np.ndarray
    group_ends: np.ndarray
    group_correct: np.ndarray

    @property
    def n(self) -> int:
        return len(self.order)

    @property
    def group_sizes(self) -> np.ndarray:
        return self.group_ends - self.group_starts

    @property
    def mixed_groups(self) -> np.ndarray:
        """(K,) indices of tie groups holding both correct and wrong answers."""
        return np.flatnonzero((self.group_correct > 0) & (self.group_correct < self.group_sizes))


def rank_by_confidence(confidences: np.ndarray, correct: np.ndarray) -> ConfidenceRanking:
    """Sort (validated) ``confidences`` (n,) float and ``correct`` (n,) bool; O(n log n)."""
    # One int64 sort key instead of np.lexsort (~3x faster): the bits of a non-negative double sort like
    # its value, and the spare top bit makes room for "wrong" as the lowest bit (right answers first).
    # Adding 0.0 turns -0.0 into 0.0, whose bits would otherwise sort first.
    bits = np.add(confidences, 0.0).view(np.int64)
    order = np.argsort((bits << 1) | ~correct)
    sorted_confidences = confidences[order]
    sorted_correct = correct[order]
    starts_group = np.empty(len(order), dtype=bool)
    starts_group[:1] = True
    np.not_equal(sorted_confidences[1:], sorted_confidences[:-1], out=starts_group[1:])
    group_starts = np.flatnonzero(starts_group)
    group_ends = np.append(group_starts[1:], len(order))
    correct_before = np.concatenate([[0], np.cumsum(sorted_correct)])
    group_correct = correct_before[group_ends] - correct_before[group_starts]
    return ConfidenceRanking(order, sorted_confidences, sorted_correct, group_starts, group_ends, group_correct)
