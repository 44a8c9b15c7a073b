"""Held-out rank quality of the predictor: k-fold, learning curve, and transfer across samplers.

Every figure is a ``rank_report`` on architectures the predictor did not see; ``removed`` (fraction of parameters
removed, per architecture) and ``budget`` add the figures near the budget. Extra keyword arguments are xgboost
parameters, so objectives and settings compare on equal terms.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from sklearn.model_selection import KFold

from prunesearch.predictor.context import FeatureContext
from prunesearch.predictor.metrics import rank_report
from prunesearch.predictor.model import Predictor
from prunesearch.space import Architecture


def _fit_predict(ctx: FeatureContext, archs: Sequence[Architecture], y: np.ndarray, train: np.ndarray,
                 test: np.ndarray, xgb_params: dict[str, Any]) -> np.ndarray:
    predictor = Predictor(ctx, **xgb_params).fit([archs[i] for i in train], y[train])
    return predictor.predict([archs[i] for i in test])


def out_of_fold(archs: Sequence[Architecture], y: Sequence[float], ctx: FeatureContext, folds: int = 5,
                seed: int = 0, **xgb_params: Any) -> np.ndarray:
    """Every architecture's prediction by a fit on the other folds, one that never saw it."""
    y = np.asarray(y, dtype=np.float64)
    predicted = np.empty_like(y)
    for train, test in KFold(folds, shuffle=True, random_state=seed).split(y):
        predicted[test] = _fit_predict(ctx, archs, y, train, test, xgb_params)
    return predicted


def cross_validate(archs: Sequence[Architecture], y: Sequence[float], removed: Sequence[float], ctx: FeatureContext,
                   budget: float | None, folds: int = 5, seed: int = 0, band: float = 0.025,
                   **xgb_params: Any) -> dict:
    """``rank_report`` of ``out_of_fold`` predictions, over all pairs and within ``band`` of the budget."""
    return rank_report(y, out_of_fold(archs, y, ctx, folds, seed, **xgb_params), removed, budget, band)


def learning_curve(archs: Sequence[Architecture], y: Sequence[float], removed: Sequence[float], ctx: FeatureContext,
                   budget: float | None, sizes: Sequence[int], test_frac: float = 0.3, seed: int = 0,
                   **xgb_params: Any) -> list[dict]:
    """Train on the first n of one shuffled training split for each n in ``sizes``, report on one fixed held-out
    split: how much more measuring would still buy."""
    y, removed = np.asarray(y, dtype=np.float64), np.asarray(removed, dtype=np.float64)
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = max(1, round(test_frac * len(y)))
    test, train = order[:n_test], order[n_test:]
    too_big = [n for n in sizes if n > len(train)]
    if too_big:
        raise ValueError(f"training sizes {too_big} exceed the {len(train)} training architectures")
    return [
        {"n_train": int(n), **rank_report(y[test], _fit_predict(ctx, archs, y, train[:n], test, xgb_params),
                                          removed[test], budget)}
        for n in sizes
    ]


def held_out_by_group(archs: Sequence[Architecture], y: Sequence[float], removed: Sequence[float],
                      groups: Sequence[str], ctx: FeatureContext, budget: float | None,
                      **xgb_params: Any) -> dict[str, dict]:
    """For each group (the sampler that proposed each architecture: random, prior, search), train on all other
    groups and report on it: does the predictor transfer to architectures a different sampler proposes?"""
    y, removed, groups = np.asarray(y, dtype=np.float64), np.asarray(removed, dtype=np.float64), np.asarray(groups)
    names = sorted(set(groups.tolist()))
    if len(names) < 2:
        raise ValueError("held_out_by_group needs architectures from at least two groups")
    out = {}
    for name in names:
        test, train = np.flatnonzero(groups == name), np.flatnonzero(groups != name)
        out[name] = rank_report(y[test], _fit_predict(ctx, archs, y, train, test, xgb_params), removed[test], budget)
    return out
