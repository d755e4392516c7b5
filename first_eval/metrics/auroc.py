"""AUROC of confidence for correctness: can the confidence tell right answers from wrong ones?

    AUROC = P(c_right > c_wrong) + 1/2 P(c_right = c_wrong)
          = (sum of the mid-ranks of the correct answers - P (P + 1) / 2) / (P N)

for ``P`` correct and ``N`` wrong answers (Mann-Whitney U; Hanley & McNeil 1982). Ties count half,
which is what ``sklearn.metrics.roc_auc_score(correct, confidences)`` computes with its trapezoidal
ROC. It is undefined (None) when every answer is right or every answer is wrong.
"""

from __future__ import annotations

from first_eval.metrics._validation import check_confidences_and_correct
from first_eval.metrics.ranking import ConfidenceRanking, rank_by_confidence


def auroc(confidences, correct) -> float | None:
    """AUROC of ``confidences`` (n,) in [0, 1] for ``correct`` (n,) bool or 0/1; None with one class."""
    confidences, correct = check_confidences_and_correct(confidences, correct)
    if correct.all() or not correct.any():
        return None
    return auroc_from_ranking(rank_by_confidence(confidences, correct))


def auroc_from_ranking(ranking: ConfidenceRanking) -> float | None:
    """AUROC from an existing ranking (saves the sort when several metrics share one)."""
    n_correct = int(ranking.group_correct.sum())
    n_wrong = ranking.n - n_correct
    if n_correct == 0 or n_wrong == 0:
        return None
    # 1-based mid-rank of each tie group: the mean of positions start+1 .. end.
    mid_ranks = (ranking.group_starts + ranking.group_ends + 1) / 2.0
    rank_sum = float((mid_ranks * ranking.group_correct).sum())
    return (rank_sum - n_correct * (n_correct + 1) / 2.0) / (n_correct * n_wrong)
