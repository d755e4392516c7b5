"""What every calibrator shares: the interface, the "cannot fit" error, and to/from-dict checks.

A calibrator maps a task's ragged choice scores to calibrated choice probabilities. It is fit on
one set of questions and applied to others (``first_eval.calibrators.crossfit`` makes sure the
report never scores a question with a calibrator that saw it). The interface is scikit-learn's:
``fit`` returns ``self``, fitted attributes end in ``_``, and ``to_dict`` / ``from_dict`` give a
JSON-ready round trip (``calibrators.json``) whose ``transform`` is identical to the original.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from first_eval.scores import ChoiceProbs, ChoiceScores


class CalibratorCannotFit(ValueError):
    """The data cannot determine this calibrator (e.g. Platt scaling when every answer is correct).

    The message is one self-contained sentence naming the situation; the report shows it in place of
    the calibrated metrics.
    """


@runtime_checkable
class Calibrator(Protocol):
    """The interface shared by ``TemperatureScaling``, ``PlattScaling`` and ``IsotonicCalibration``."""

    name: str

    def fit(self, scores: ChoiceScores) -> "Calibrator":
        """Fit on ``scores`` (questions with gold answers); returns ``self``."""
        ...

    def transform(self, scores: ChoiceScores) -> ChoiceProbs:
        """Calibrated per-question choice probabilities for ``scores`` (gold is carried, never used)."""
        ...

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description of the fitted calibrator: ``{"kind": name, ...}``, plain Python types."""
        ...


def check_fitted(calibrator: object, attribute: str) -> None:
    """Raise ValueError when ``calibrator`` has not been fit (its ``attribute`` is missing)."""
    if getattr(calibrator, attribute, None) is None:
        raise ValueError(f"this {type(calibrator).__name__} is not fitted yet; call fit(scores) first")


def check_fit_input(scores: ChoiceScores, what: str) -> None:
    """Every calibrator needs a ``ChoiceScores`` with at least one question."""
    if not isinstance(scores, ChoiceScores):
        raise TypeError(f"{what} is fit on a ChoiceScores value; got {type(scores).__name__}")
    if scores.n_questions == 0:
        raise CalibratorCannotFit(f"{what} needs at least one question to fit; got 0")


def check_kind(d: dict[str, Any], kind: str, required: tuple[str, ...]) -> None:
    """Validate a ``to_dict`` document before ``from_dict`` rebuilds a calibrator from it."""
    if not isinstance(d, dict):
        raise ValueError(f"a {kind} calibrator is rebuilt from a dict; got {type(d).__name__}")
    if d.get("kind") != kind:
        raise ValueError(f"expected a calibrator of kind {kind!r}; got kind {d.get('kind')!r}")
    missing = [key for key in required if key not in d]
    if missing:
        raise ValueError(f"{kind} calibrator description lacks {', '.join(repr(k) for k in missing)}; got keys {sorted(d)}")
