"""Calibrators by name (the ``--calibrators`` flag) and rebuilding one from its ``to_dict()``."""

from __future__ import annotations

from typing import Any

from first_eval.calibrators.base import Calibrator
from first_eval.calibrators.isotonic import IsotonicCalibration
from first_eval.calibrators.platt import PlattScaling
from first_eval.calibrators.temperature import TemperatureScaling
from first_eval.errors import did_you_mean

# name -> class; calling the class with no arguments gives an unfitted calibrator.
CALIBRATORS: dict[str, type] = {
    TemperatureScaling.name: TemperatureScaling,
    PlattScaling.name: PlattScaling,
    IsotonicCalibration.name: IsotonicCalibration,
}


def calibrator_from_dict(d: dict[str, Any]) -> Calibrator:
    """Rebuild a fitted calibrator from its ``to_dict()`` (e.g. one entry of ``calibrators.json``)."""
    if not isinstance(d, dict):
        raise ValueError(f"a calibrator is rebuilt from a dict with a 'kind'; got {type(d).__name__}")
    kind = d.get("kind")
    if kind not in CALIBRATORS:
        raise ValueError(did_you_mean(str(kind), tuple(CALIBRATORS), "calibrator kind"))
    return CALIBRATORS[kind].from_dict(d)
