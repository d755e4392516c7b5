"""Selective prediction: answer only the most confident questions and see how the error rate falls.

Rank the ``n`` questions by confidence, highest first, and let ``E(k)`` be the number of errors among
the top ``k``. Then (Geifman & El-Yaniv 2017; Geifman et al. 2019 for AURC):

    risk-coverage curve:   coverage k/n  ->  selective risk E(k)/k,     k = 1..n
    AURC               =   (1/n) sum_{k=1}^{n} E(k)/k                   (lower is better)
    selective accuracy at coverage q = 1 - E(qn)/(qn)                   (accuracy on the top q share)

Ties: questions of equal confidence cannot be ordered, so ``E`` is its expectation over random orders
of each tie group -- errors are spread evenly over the group's positions. Non-integer ``qn`` counts the
straddling question (or tie group) fractionally. Both choices make every quantity a function of the
confidences alone, and reduce to the usual definitions for distinct confidences and integer ``qn``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from first_eval.metrics._validation import check_confidences_and_correct, check_coverage
from first_eval.metrics.ranking import ConfidenceRanking, rank_by_confidence


@dataclass(frozen=True)
class RiskCoverageCurve:
    """Selective risk at every coverage ``k/n`` (k = 1..n), most confident questions first.

    Attributes:
        coverage: (n,) ``k / n``.
        risk: (n,) expected error rate among the ``k`` most confident questions.
    """

    coverage: np.ndarray
    risk: np.ndarray


def _descending_groups(ranking: ConfidenceRanking) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Tie groups from most to least confident: sizes, errors, questions before, errors before."""
    sizes = ranking.group_sizes[::-1].astype(np.float64)
    errors = (ranking.group_sizes - ranking.group_correct)[::-1].astype(np.float64)
    return sizes, errors, np.cumsum(sizes) - sizes, np.cumsum(errors) - errors


def _expected_errors(ranking: ConfidenceRanking, top: np.ndarray) -> np.ndarray:
    """E(k) for real ``top`` counts (m,) in [0, n], linear within each tie group."""
    sizes, errors, before, errors_before = _descending_groups(ranking)
    group = np.searchsorted(before + sizes, top, side="left").clip(0, len(sizes) - 1)
    return errors_before[group] + (top - before[group]) * errors[group] / sizes[group]


def risk_coverage_curve(confidences, correct) -> RiskCoverageCurve:
    """The risk-coverage curve of ``confidences`` (n,) for ``correct`` (n,) (module docstring)."""
    confidences, correct = check_confidences_and_correct(confidences, correct)
    return risk_coverage_from_ranking(rank_by_confidence(confidences, correct))


def risk_coverage_from_ranking(ranking: ConfidenceRanking) -> RiskCoverageCurve:
    """``risk_coverage_curve`` from an existing ranking (several metrics can share one sort)."""
    n = ranking.n
    sizes, errors, before, errors_before = _descending_groups(ranking)
    group = np.repeat(np.arange(len(sizes)), sizes.astype(np.int64))
    top = np.arange(1, n + 1, dtype=np.float64)
    expected = errors_before[group] + (top - before[group]) * errors[group] / sizes[group]
    return RiskCoverageCurve(coverage=top / n, risk=expected / top)


def aurc(confidences, correct) -> float:
    """Area under the risk-coverage curve, the mean selective risk over ``k = 1..n``."""
    return float(risk_coverage_curve(confidences, correct).risk.mean())


def aurc_from_ranking(ranking: ConfidenceRanking) -> float:
    """``aurc`` from an existing ranking."""
    return float(risk_coverage_from_ranking(ranking).risk.mean())


def selective_accuracy(confidences, correct, coverage: float) -> float:
    """Accuracy on the ``coverage`` share (in (0, 1]) of questions with the highest confidence."""
    coverage = check_coverage(coverage)
    confidences, correct = check_confidences_and_correct(confidences, correct)
    return selective_accuracy_from_ranking(rank_by_confidence(confidences, correct), coverage)


def selective_accuracy_from_ranking(ranking: ConfidenceRanking, coverage: float) -> float:
    """``selective_accuracy`` from an existing ranking."""
    return float(selective_accuracies_from_ranking(ranking, [coverage])[0])


def selective_accuracies_from_ranking(ranking: ConfidenceRanking, coverages) -> np.ndarray:
    """(C,) selective accuracies at several coverages from one ranking."""
    top = np.array([check_coverage(q) for q in coverages]) * ranking.n
    return 1.0 - _expected_errors(ranking, top) / top
