"""Held-out rank quality of the predictor: k-fold, learning curve, and transfer across samplers.

Every figure is a ``rank_report`` on architectures the predictor did not see; ``removed`` (fraction of parameters
removed, per architecture) and ``budget`` add the figures near the budget. Extra keyword arguments are xgboost
parameters, so objectives and settings compare on equal terms.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from joblib import Parallel, delayed
from sklearn.model_selection import KFold

from prunesearch.predictor.context import FeatureContext
from prunesearch.predictor.metrics import rank_report
from prunesearch.predictor.model import Predictor
from prunesearch.space import Architecture


def _fit_predict(ctx: FeatureContext, archs: Sequence[Architecture], y: np.ndarray, train: np.ndarray,
                 test: np.ndarray, xgb_params: dict[str, Any]) -> np.ndarray:
    predictor = Predictor(ctx, **xgb_params).fit([archs[i] for i in train], y[train])
    return predictor.predict([archs[i] for i in test])


def _fit_predict_all(ctx: FeatureContext, archs: Sequence[Architecture], y: np.ndarray,
                     splits: Sequence[tuple[np.ndarray, np.ndarray]], n_jobs: int,
                     xgb_params: dict[str, Any]) -> list[np.ndarray]:
    """``_fit_predict`` of every (train, test) split, ``n_jobs`` at once in threads (xgboost releases the GIL while
    it trains, and threads share the feature context instead of copying it)."""
    return Parallel(n_jobs=n_jobs, backend="threading")(
        delayed(_fit_predict)(ctx, archs, y, train, test, xgb_params) for train, test in splits)


def out_of_fold(archs: Sequence[Architecture], y: Sequence[float], ctx: FeatureContext, folds: int = 5,
                seed: int = 0, n_train: int | None = None, n_jobs: int = 1, **xgb_params: Any) -> np.ndarray:
    """Every architecture's prediction by a fit on the other folds, one that never saw it. With ``n_train``, each
    fold's fit sees only that many of the other folds' pairs: the first ``n_train`` of one permutation per fold drawn
    with ``seed``, so a smaller subset is part of every larger one. ``n_jobs`` folds fit at once."""
    y = np.asarray(y, dtype=np.float64)
    splits = list(KFold(folds, shuffle=True, random_state=seed).split(y))
    smallest = min(len(train) for train, _ in splits)
    if n_train is not None and not 1 <= n_train <= smallest:
        raise ValueError(f"n_train={n_train}: each of {folds} folds trains on 1 to {smallest} of {len(y)} pairs")
    if n_train is not None:
        rng = np.random.default_rng(seed)
        splits = [(rng.permutation(train)[:n_train], test) for train, test in splits]
    predicted = np.empty_like(y)
    for (_, test), fold in zip(splits, _fit_predict_all(ctx, archs, y, splits, n_jobs, xgb_params)):
        predicted[test] = fold
    return predicted


def cross_validate(archs: Sequence[Architecture], y: Sequence[float], removed: Sequence[float], ctx: FeatureContext,
                   budget: float | None, folds: int = 5, seed: int = 0, band: float = 0.025,
                   **xgb_params: Any) -> dict:
    """``rank_report`` of ``out_of_fold`` predictions, over all pairs and within ``band`` of the budget."""
    return rank_report(y, out_of_fold(archs, y, ctx, folds, seed, **xgb_params), removed, budget, band)


def curve_point(n_train: int, y: Sequence[float], predicted: Sequence[float], removed: Sequence[float],
                budgets: Sequence[float], band: float = 0.025) -> dict:
    """One learning-curve point from out-of-fold ``predicted``: ``{"n_train", "all": metrics, "bands": [metrics
    within ``band`` of each budget]}``."""
    reports = [rank_report(y, predicted, removed, b, band) for b in budgets]
    all_pairs = reports[0]["all"] if reports else rank_report(y, predicted, removed)["all"]
    return {"n_train": int(n_train), "all": all_pairs, "bands": [r["band"] for r in reports]}


def learning_curve(archs: Sequence[Architecture], y: Sequence[float], removed: Sequence[float], ctx: FeatureContext,
                   budgets: Sequence[float], sizes: Sequence[int], folds: int = 5, seed: int = 0,
                   band: float = 0.025, n_jobs: int = 1, **xgb_params: Any) -> list[dict]:
    """``curve_point`` of ``out_of_fold`` at each training size in ``sizes``: every pair is scored at every size, on
    the same folds as the k-fold figures, so the curve is as steady as they are and ends where they stand. How much
    more measuring would still buy."""
    return [curve_point(n, y, out_of_fold(archs, y, ctx, folds, seed, n, n_jobs, **xgb_params), removed, budgets,
                        band)
            for n in sizes]


def held_out_by_group(archs: Sequence[Architecture], y: Sequence[float], removed: Sequence[float],
                      groups: Sequence[str], ctx: FeatureContext, budget: float | None, n_jobs: int = 1,
                      **xgb_params: Any) -> dict[str, dict]:
    """For each group (the sampler that proposed each architecture: random, prior, search), train on all other
    groups and report on it: does the predictor transfer to architectures a different sampler proposes?"""
    y, removed, groups = np.asarray(y, dtype=np.float64), np.asarray(removed, dtype=np.float64), np.asarray(groups)
    names = sorted(set(groups.tolist()))
    if len(names) < 2:
        raise ValueError("held_out_by_group needs architectures from at least two groups")
    splits = [(np.flatnonzero(groups != name), np.flatnonzero(groups == name)) for name in names]
    fits = _fit_predict_all(ctx, archs, y, splits, n_jobs, xgb_params)
    return {name: rank_report(y[test], predicted, removed[test], budget)
            for name, (_, test), predicted in zip(names, splits, fits)}
