"""Post-hoc calibrators for multiple-choice scores: temperature, Platt and isotonic; cross-fitting.

- ``TemperatureScaling`` (Guo et al. 2017): ``softmax(scores / T)``, T by minimum NLL.
- ``PlattScaling`` (Platt 1999) and ``IsotonicCalibration`` (Zadrozny & Elkan 2002): recalibrate the
  top-label confidence, spreading the rest over the other choices (``top_label``).
- ``cross_fit``: out-of-fold calibrated probabilities for honest post-calibration metrics.

Every calibrator has ``fit(scores) -> self``, ``transform(scores) -> ChoiceProbs``, ``to_dict()``
and ``from_dict(d)``; ``CALIBRATORS`` maps the ``--calibrators`` names to the classes.
"""

from first_eval.calibrators.base import Calibrator, CalibratorCannotFit
from first_eval.calibrators.crossfit import CrossFitResult, assign_folds, cross_fit
from first_eval.calibrators.isotonic import IsotonicCalibration
from first_eval.calibrators.platt import PlattScaling
from first_eval.calibrators.registry import CALIBRATORS, calibrator_from_dict
from first_eval.calibrators.temperature import (
    TemperatureAtBoundWarning, TemperatureScaling, nll_optimal_temperature, solve_nll_slope)
from first_eval.calibrators.top_label import CONFIDENCE_EPS, top_label_confidences, top_label_logits, top_label_probs

__all__ = [
    "CALIBRATORS",
    "CONFIDENCE_EPS",
    "Calibrator",
    "CalibratorCannotFit",
    "CrossFitResult",
    "IsotonicCalibration",
    "PlattScaling",
    "TemperatureAtBoundWarning",
    "TemperatureScaling",
    "assign_folds",
    "calibrator_from_dict",
    "cross_fit",
    "nll_optimal_temperature",
    "solve_nll_slope",
    "top_label_confidences",
    "top_label_logits",
    "top_label_probs",
]
