"""Pruners: calibration statistics, unit importance scores, unit selection, and the materializer."""

from prunesearch.pruners.calibration import CalibrationSpec, CalibrationStats, calibrate, collect
from prunesearch.pruners.masking import mask_model
from prunesearch.pruners.materialize import materialize
from prunesearch.pruners.refit import Refit, RefitSpec, load_refit
from prunesearch.pruners.scores import UnitScores, activation_scores
from prunesearch.pruners.selection import select_units

__all__ = [
    "CalibrationSpec",
    "CalibrationStats",
    "Refit",
    "RefitSpec",
    "UnitScores",
    "activation_scores",
    "calibrate",
    "collect",
    "load_refit",
    "mask_model",
    "materialize",
    "select_units",
]
