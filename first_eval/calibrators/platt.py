"""Platt scaling of the top-label confidence (Platt, "Probabilistic Outputs for Support Vector
Machines", 1999; as a top-label calibrator in Guo et al. 2017, section 4.2).

A logistic regression from the logit of the top-label confidence ``c`` (softmax of the scores at
T=1) to the probability that the prediction is right:

    c' = sigmoid(slope * log(c / (1 - c)) + intercept)

fit by maximum likelihood on ``correct = (argmax == gold)`` with scikit-learn's
``LogisticRegression`` (lbfgs). Regularisation is negligible: the logit is standardised and the L2
penalty is ``0.5 * w^2`` against ``C = 1e4`` times the summed log-loss. It changes the fit only
when the wrong and right answers are perfectly separated by confidence (then the unpenalised
maximum-likelihood slope is infinite; the penalty keeps it finite). Platt's own target smoothing
is not used. The logit is computed as ``s_top - logsumexp(s_others)``, so confidences that round
to 1.0 still have a finite logit.

``transform`` spreads ``1 - c'`` over the other choices in proportion to their T=1 probabilities
(``first_eval.calibrators.top_label``), keeping the original prediction.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from first_eval.calibrators.base import CalibratorCannotFit, check_fit_input, check_fitted, check_kind
from first_eval.calibrators.top_label import top_label_logits, top_label_probs
from first_eval.scores import ChoiceProbs, ChoiceScores

# Inverse L2 strength on the standardised logit: negligible next to the summed log-loss of any real task.
PLATT_INVERSE_REGULARISATION = 1e4


class PlattScaling:
    """Top-label Platt scaling: ``P(correct) = sigmoid(slope * logit(confidence) + intercept)``.

    Fitted attributes:
        slope_, intercept_: floats, on the raw (unstandardised) logit of the T=1 top-label confidence.
        n_fit_, n_correct_: questions fit on, and how many of them were answered right.

    Raises ``CalibratorCannotFit`` from ``fit`` when every answer is right or every answer is wrong:
    the likelihood then has no maximum (the intercept runs off to +-infinity).
    """

    name = "platt"

    def __init__(self) -> None:
        self.slope_: float | None = None
        self.intercept_: float | None = None
        self.n_fit_: int | None = None
        self.n_correct_: int | None = None

    def fit(self, scores: ChoiceScores) -> "PlattScaling":
        from sklearn.linear_model import LogisticRegression

        check_fit_input(scores, "platt scaling")
        correct = scores.probabilities().correct  # (n,) bool
        n_correct = int(correct.sum())
        n = scores.n_questions
        if n_correct in (0, n):
            raise CalibratorCannotFit(
                f"platt scaling needs both correct and wrong answers; all {n} are {'correct' if n_correct else 'wrong'}"
            )
        logits = top_label_logits(scores)  # (n,)
        # Standardise so lbfgs is well conditioned whatever the logits' scale (summed log-likelihood
        # gaps can reach hundreds), then map the coefficients back to the raw logit.
        centre = float(logits.mean())
        spread = float(logits.std()) or 1.0
        model = LogisticRegression(C=PLATT_INVERSE_REGULARISATION, solver="lbfgs", max_iter=1000)
        model.fit(((logits - centre) / spread)[:, None], correct.astype(np.int64))
        standardised_slope = float(model.coef_[0, 0])
        self.slope_ = standardised_slope / spread
        self.intercept_ = float(model.intercept_[0]) - standardised_slope * centre / spread
        self.n_fit_ = n
        self.n_correct_ = n_correct
        return self

    def predict_confidences(self, scores: ChoiceScores) -> np.ndarray:
        """(n,) calibrated ``P(correct)`` of each question's predicted choice (before clipping)."""
        from scipy.special import expit

        check_fitted(self, "slope_")
        return expit(self.slope_ * top_label_logits(scores) + self.intercept_)

    def transform(self, scores: ChoiceScores) -> ChoiceProbs:
        """Choice probabilities with the predicted choice at its Platt-calibrated confidence."""
        return top_label_probs(scores, self.predict_confidences(scores))

    def to_dict(self) -> dict[str, Any]:
        check_fitted(self, "slope_")
        return {
            "kind": self.name,
            "slope": float(self.slope_),
            "intercept": float(self.intercept_),
            "feature": "logit of the top-label confidence at T=1",
            "n_fit": int(self.n_fit_) if self.n_fit_ is not None else None,
            "n_correct": int(self.n_correct_) if self.n_correct_ is not None else None,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PlattScaling":
        check_kind(d, cls.name, ("slope", "intercept"))
        for key in ("slope", "intercept"):
            value = d[key]
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"platt {key} must be a finite number; got {value!r}")
        calibrator = cls()
        calibrator.slope_ = float(d["slope"])
        calibrator.intercept_ = float(d["intercept"])
        calibrator.n_fit_ = d.get("n_fit")
        calibrator.n_correct_ = d.get("n_correct")
        return calibrator

    def __repr__(self) -> str:
        if self.slope_ is None:
            return "PlattScaling()"
        return f"PlattScaling(slope_={self.slope_:.6g}, intercept_={self.intercept_:.6g})"
