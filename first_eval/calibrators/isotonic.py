"""Isotonic regression of the top-label confidence (Zadrozny & Elkan, "Transforming Classifier
Scores into Accurate Multiclass Probability Estimates", KDD 2002).

The calibrated confidence is the non-decreasing step-then-linear function ``f`` of the top-label
confidence ``c`` (softmax at T=1) that minimises ``sum_i (f(c_i) - correct_i)^2`` (pool adjacent
violators), fit with scikit-learn's ``IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip")``.
Between its breakpoints ``f`` interpolates linearly; outside them it is clipped to the end values.

The fitted function is kept as its breakpoints (``x_thresholds_``, ``y_thresholds_``) and applied
with ``np.interp``, both right after ``fit`` and after ``from_dict``, so a saved calibrator predicts
exactly what the fitted one did.

One class only: when every answer is right (or every one wrong) the least-squares fit is the
constant 1 (or 0); unlike Platt scaling that is a well-defined fit, so ``fit`` does not raise. The
constant is clipped to ``[1e-6, 1 - 1e-6]`` by ``transform`` like every calibrated confidence.

``transform`` spreads ``1 - c'`` over the other choices in proportion to their T=1 probabilities
(``first_eval.calibrators.top_label``), keeping the original prediction.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from first_eval.calibrators.base import check_fit_input, check_fitted, check_kind
from first_eval.calibrators.top_label import top_label_confidences, top_label_probs
from first_eval.scores import ChoiceProbs, ChoiceScores


class IsotonicCalibration:
    """Top-label isotonic regression: ``P(correct) = f(confidence)`` with ``f`` non-decreasing.

    Fitted attributes:
        x_thresholds_: (m,) strictly increasing confidences where ``f`` has a breakpoint.
        y_thresholds_: (m,) non-decreasing values of ``f`` there, in [0, 1].
        n_fit_, n_correct_: questions fit on, and how many of them were answered right.
    """

    name = "isotonic"

    def __init__(self) -> None:
        self.x_thresholds_: np.ndarray | None = None
        self.y_thresholds_: np.ndarray | None = None
        self.n_fit_: int | None = None
        self.n_correct_: int | None = None

    def fit(self, scores: ChoiceScores) -> "IsotonicCalibration":
        from sklearn.isotonic import IsotonicRegression

        check_fit_input(scores, "isotonic regression")
        probs = scores.probabilities()
        correct = probs.correct.astype(np.float64)
        model = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
        model.fit(probs.confidences, correct)
        self.x_thresholds_ = np.asarray(model.X_thresholds_, dtype=np.float64)
        self.y_thresholds_ = np.asarray(model.y_thresholds_, dtype=np.float64)
        self.n_fit_ = scores.n_questions
        self.n_correct_ = int(correct.sum())
        return self

    def predict_confidences(self, scores: ChoiceScores) -> np.ndarray:
        """(n,) calibrated ``P(correct)`` of each question's predicted choice (before clipping)."""
        check_fitted(self, "x_thresholds_")
        # np.interp holds the end values outside the breakpoints: out_of_bounds="clip".
        return np.interp(top_label_confidences(scores), self.x_thresholds_, self.y_thresholds_)

    def transform(self, scores: ChoiceScores) -> ChoiceProbs:
        """Choice probabilities with the predicted choice at its isotonic-calibrated confidence."""
        return top_label_probs(scores, self.predict_confidences(scores))

    def to_dict(self) -> dict[str, Any]:
        check_fitted(self, "x_thresholds_")
        return {
            "kind": self.name,
            "x_thresholds": [float(x) for x in self.x_thresholds_],
            "y_thresholds": [float(y) for y in self.y_thresholds_],
            "feature": "top-label confidence at T=1",
            "n_fit": int(self.n_fit_) if self.n_fit_ is not None else None,
            "n_correct": int(self.n_correct_) if self.n_correct_ is not None else None,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "IsotonicCalibration":
        check_kind(d, cls.name, ("x_thresholds", "y_thresholds"))
        x = np.asarray(d["x_thresholds"], dtype=np.float64)
        y = np.asarray(d["y_thresholds"], dtype=np.float64)
        if x.ndim != 1 or x.shape != y.shape or len(x) == 0:
            raise ValueError(
                f"isotonic thresholds must be two equally long non-empty lists; got {len(x)} x and {len(y)} y values"
            )
        if not (np.isfinite(x).all() and np.isfinite(y).all()):
            raise ValueError("isotonic thresholds must be finite numbers")
        if (np.diff(x) <= 0).any():
            bad = int(np.flatnonzero(np.diff(x) <= 0)[0])
            raise ValueError(f"isotonic x_thresholds must increase strictly; got {float(x[bad])!r} then {float(x[bad + 1])!r}")
        if (np.diff(y) < 0).any() or y[0] < 0 or y[-1] > 1:
            raise ValueError(f"isotonic y_thresholds must be non-decreasing within [0, 1]; got {y.tolist()[:5]}...")
        calibrator = cls()
        calibrator.x_thresholds_ = x
        calibrator.y_thresholds_ = y
        calibrator.n_fit_ = d.get("n_fit")
        calibrator.n_correct_ = d.get("n_correct")
        return calibrator

    def __repr__(self) -> str:
        if self.x_thresholds_ is None:
            return "IsotonicCalibration()"
        return f"IsotonicCalibration({len(self.x_thresholds_)} breakpoints)"
