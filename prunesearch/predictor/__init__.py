"""The surrogate a search queries instead of measuring: architecture features -> predicted log-perplexity."""

from prunesearch.predictor.context import FeatureContext
from prunesearch.predictor.features import feature_names, featurize, monotone_signs
from prunesearch.predictor.metrics import kendall_tau, precision_at_top, rank_report, spearman
from prunesearch.predictor.model import Predictor
from prunesearch.predictor.validation import (
    cross_validate,
    curve_point,
    held_out_by_group,
    learning_curve,
    out_of_fold,
)

__all__ = [
    "FeatureContext",
    "Predictor",
    "cross_validate",
    "curve_point",
    "feature_names",
    "featurize",
    "held_out_by_group",
    "kendall_tau",
    "learning_curve",
    "monotone_signs",
    "out_of_fold",
    "precision_at_top",
    "rank_report",
    "spearman",
]
