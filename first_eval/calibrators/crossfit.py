"""Cross-fitting: out-of-fold calibrated probabilities, so no question is scored by a calibrator
that saw it.

A calibrator evaluated on its own training data looks better than it is (isotonic regression can
reach ECE 0 on the questions it was fit on). ``cross_fit`` splits the questions into ``n_folds``
shuffled folds; each fold is transformed by a calibrator fit on the other ``n_folds - 1`` folds
only, and the pieces are put back in the questions' original order (K-fold cross-fitting, as in
Chernozhukov et al., "Double/debiased machine learning", 2018).

Folds: ``StratifiedKFold`` on correctness (argmax == gold at T=1) when both right and wrong answers
number at least ``n_folds``: each fold then holds its share of both, so every training part has both
classes (Platt scaling needs them) and the folds' accuracies match the task's. Otherwise (a task
with, say, 3 wrong answers) a plain shuffled ``KFold``. Both shuffle with ``seed``, so a given
seed always gives the same folds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Union

import numpy as np

from first_eval.calibrators.base import Calibrator, CalibratorCannotFit
from first_eval.calibrators.registry import CALIBRATORS
from first_eval.errors import did_you_mean
from first_eval.scores import ChoiceProbs, ChoiceScores

CalibratorSpec = Union[str, Callable[[], Calibrator]]


@dataclass(frozen=True)
class CrossFitResult:
    """Out-of-fold calibrated probabilities and the per-fold calibrators.

    Attributes:
        name: the calibrator's name (``"temperature"``, ``"platt"``, ``"isotonic"`` or a custom one).
        probs: out-of-fold ChoiceProbs for every question, in the input order.
        fold_calibrators: ``to_dict()`` of the calibrator fit for each fold (fold k's is used on fold k).
        fold_ids: (n,) int64, the fold of each question (0..n_folds-1).
        n_folds: number of folds.
        seed: the shuffling seed.
        stratified: whether the folds were stratified on correctness.
    """

    name: str
    probs: ChoiceProbs
    fold_calibrators: list[dict[str, Any]]
    fold_ids: np.ndarray
    n_folds: int
    seed: int
    stratified: bool

    @property
    def fold_temperatures(self) -> list[float]:
        """The temperature fit for each fold (temperature scaling only)."""
        if any("temperature" not in d for d in self.fold_calibrators):
            raise ValueError(f"fold_temperatures needs temperature scaling; this cross-fit used {self.name!r}")
        return [float(d["temperature"]) for d in self.fold_calibrators]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (the out-of-fold probabilities themselves are left out)."""
        return {
            "calibrator": self.name,
            "n_folds": self.n_folds,
            "seed": self.seed,
            "stratified": self.stratified,
            "fold_sizes": np.bincount(self.fold_ids, minlength=self.n_folds).tolist(),
            "fold_calibrators": list(self.fold_calibrators),
        }


def cross_fit(calibrator: CalibratorSpec, scores: ChoiceScores, n_folds: int = 5, seed: int = 0) -> CrossFitResult:
    """Out-of-fold calibrated probabilities for every question (module docstring).

    Args:
        calibrator: a name in ``CALIBRATORS`` or a zero-argument factory returning an unfitted calibrator.
        scores: the task's questions, n of them.
        n_folds: number of folds, 2 <= n_folds <= n.
        seed: seeds the fold shuffle.

    Raises:
        ValueError: unknown calibrator name, ``n_folds < 2`` or fewer questions than folds.
        CalibratorCannotFit: a fold's training part cannot determine the calibrator; the message says which fold.
    """
    factory, name = _resolve(calibrator)
    if isinstance(n_folds, bool) or not isinstance(n_folds, (int, np.integer)) or n_folds < 2:
        raise ValueError(f"cross-fitting needs --folds >= 2 (a held-out part); got {n_folds!r}")
    n = scores.n_questions
    if n < n_folds:
        raise ValueError(
            f"cross-fitting needs at least one question per fold: {n} questions but --folds {n_folds}; "
            "lower --folds or give more questions"
        )
    correct = scores.probabilities().correct  # (n,) bool
    fold_ids, stratified = assign_folds(correct, int(n_folds), seed)

    choice_probs = np.empty_like(scores.choice_scores)  # (total,)
    predictions = np.empty(n, dtype=np.int64)
    fold_calibrators = []
    for fold in range(n_folds):
        held_out = np.flatnonzero(fold_ids == fold)
        training = np.flatnonzero(fold_ids != fold)
        try:
            fitted = factory().fit(scores.subset(training))
        except CalibratorCannotFit as error:
            raise CalibratorCannotFit(
                f"{name}: fold {fold + 1} of {n_folds} cannot be fit on its {len(training)} training questions: {error}"
            ) from error
        fold_probs = fitted.transform(scores.subset(held_out))
        choice_probs[_flat_positions(scores.offsets, held_out)] = fold_probs.choice_probs
        predictions[held_out] = fold_probs.predictions
        fold_calibrators.append(fitted.to_dict())

    probs = ChoiceProbs(choice_probs, scores.offsets, scores.gold, predictions)
    return CrossFitResult(
        name=name, probs=probs, fold_calibrators=fold_calibrators, fold_ids=fold_ids,
        n_folds=int(n_folds), seed=seed, stratified=stratified,
    )


def assign_folds(correct: np.ndarray, n_folds: int, seed: int) -> tuple[np.ndarray, bool]:
    """(n,) fold index of each question, and whether the folds are stratified on ``correct``."""
    from sklearn.model_selection import KFold, StratifiedKFold

    n = len(correct)
    n_correct = int(np.count_nonzero(correct))
    stratified = min(n_correct, n - n_correct) >= n_folds
    splitter = (StratifiedKFold if stratified else KFold)(n_splits=n_folds, shuffle=True, random_state=seed)
    fold_ids = np.empty(n, dtype=np.int64)
    for fold, (_, held_out) in enumerate(splitter.split(np.zeros((n, 1)), correct)):
        fold_ids[held_out] = fold
    return fold_ids, stratified


def _resolve(calibrator: CalibratorSpec) -> tuple[Callable[[], Calibrator], str]:
    if isinstance(calibrator, str):
        if calibrator not in CALIBRATORS:
            raise ValueError(did_you_mean(calibrator, tuple(CALIBRATORS), "calibrator"))
        return CALIBRATORS[calibrator], calibrator
    if not callable(calibrator):
        raise ValueError(f"calibrator must be a name ({', '.join(CALIBRATORS)}) or a factory; got {calibrator!r}")
    return calibrator, str(getattr(calibrator, "name", getattr(calibrator, "__name__", "custom")))


def _flat_positions(offsets: np.ndarray, question_idx: np.ndarray) -> np.ndarray:
    """Flat positions of the choices of ``question_idx`` (in that order), as ``ChoiceScores.subset`` lays them out."""
    counts = np.diff(offsets)[question_idx]
    starts = np.repeat(offsets[:-1][question_idx], counts)
    within = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    return starts + within
