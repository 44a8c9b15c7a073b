"""How well predictions rank architectures: what a search needs is order, not calibrated values.

Targets are log-perplexities (lower is better). ``rank_report`` also scores the pairs near the search's budget,
since a search compares architectures of (nearly) the same size, where the budget no longer explains the order.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats


def _defined(value: float) -> float | None:
    """A statistic, or None where it is undefined (constant input): JSON-friendly."""
    return None if math.isnan(value) else float(value)


def _constant(*arrays: np.ndarray) -> bool:
    """Whether any of ``arrays`` holds one value only: a rank correlation is undefined there (nan, not a warning)."""
    return any(np.ptp(np.asarray(a, dtype=np.float64)) == 0 for a in arrays)


def kendall_tau(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return math.nan if _constant(y_true, y_pred) else float(stats.kendalltau(y_true, y_pred).statistic)


def spearman(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return math.nan if _constant(y_true, y_pred) else float(stats.spearmanr(y_true, y_pred).statistic)


def precision_at_top(y_true: np.ndarray, y_pred: np.ndarray, frac: float = 0.1) -> float:
    """Share of the predicted best ``frac`` (lowest values, at least one item) that is in the true best ``frac``."""
    k = max(1, round(frac * len(y_true)))
    best_true = np.argsort(np.asarray(y_true), kind="stable")[:k]
    best_pred = np.argsort(np.asarray(y_pred), kind="stable")[:k]
    return len(np.intersect1d(best_true, best_pred)) / k


def _report(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    if len(y_true) < 2:
        return {"n": int(len(y_true)), "kendall_tau": None, "spearman": None, "precision_at_top": None}
    return {
        "n": int(len(y_true)),
        "kendall_tau": _defined(kendall_tau(y_true, y_pred)),
        "spearman": _defined(spearman(y_true, y_pred)),
        "precision_at_top": precision_at_top(y_true, y_pred),
    }


def rank_report(y_true: np.ndarray, y_pred: np.ndarray, removed: np.ndarray, budget: float | None = None,
                band: float = 0.025) -> dict:
    """``{"all": metrics}`` plus, with a budget, ``{"band": metrics}`` over pairs with |removed - budget| <= band;
    metrics are n, kendall_tau, spearman, precision_at_top (None where undefined: fewer than 2 pairs, constant)."""
    y_true, y_pred, removed = (np.asarray(a, dtype=np.float64) for a in (y_true, y_pred, removed))
    out = {"all": _report(y_true, y_pred)}
    if budget is not None:
        near = np.abs(removed - budget) <= band + 1e-12
        out["band"] = {**_report(y_true[near], y_pred[near]), "budget": budget, "band": band}
    return out
