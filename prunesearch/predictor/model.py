"""The surrogate: gradient-boosted trees from architecture features to search-time log-perplexity.

Trees suit a few hundred measured architectures and hundreds of correlated features, and predict in microseconds
per row. A saved predictor records what it was trained for (model fingerprint, search space), and loading refuses
a mismatch rather than silently ranking another model's architectures.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import xgboost as xgb

from prunesearch.errors import PrunesearchError
from prunesearch.paths import atomic_dir
from prunesearch.predictor.context import FeatureContext
from prunesearch.predictor.features import feature_names, featurize, featurize_arrays
from prunesearch.space import Architecture

FORMAT = "prunesearch.predictor/1"
MODEL_FILE, CONTEXT_FILE, META_FILE = "model.json", "context.npz", "predictor.json"

DEFAULTS: dict[str, Any] = {
    "objective": "reg:squarederror",
    "n_estimators": 400,
    "learning_rate": 0.05,
    "max_depth": 4,
    "subsample": 0.8,
    "colsample_bytree": 0.5,
    "min_child_weight": 1,
    "reg_lambda": 1.0,
    "random_state": 0,
    "tree_method": "hist",
    "n_jobs": 1,
}
"""Sized for a few hundred rows: shallow trees, shrinkage, row and column subsampling; fixed seed; one thread
(threads buy nothing at this size, and OpenMP waiting on a busy machine can cost seconds per fit). Squared error
beat ``rank:pairwise`` on held-out Kendall tau (overall and within budget bins) on a synthetic additive problem
of SmolLM2's shape, and keeps predictions on the log-perplexity scale."""


class Predictor:
    """Predicts log-perplexity of architectures of one model (scikit-learn style: ``fit``, then ``predict``)."""

    def __init__(self, ctx: FeatureContext, **xgb_params: Any) -> None:
        self.ctx = ctx
        self.params = {**DEFAULTS, **xgb_params}
        if not str(self.params["objective"]).startswith("reg:"):
            raise ValueError(f"the predictor regresses log-perplexity: objective must be 'reg:...', not "
                             f"{self.params['objective']!r}")
        self.meta: dict[str, Any] = {}
        self.booster: xgb.Booster | None = None

    def fit(self, archs: Sequence[Architecture], y: Sequence[float], meta: dict[str, Any] | None = None) -> "Predictor":
        """Train on measured log-perplexities ``y``; ``meta`` (fingerprint, space, ...) is saved alongside."""
        X, y = featurize(archs, self.ctx), np.asarray(y, dtype=np.float64)
        if len(y) != len(X):
            raise ValueError(f"{len(X)} architectures but {len(y)} targets")
        model = xgb.XGBRegressor(**self.params)
        model.fit(X, y)
        self.booster = model.get_booster()
        self.meta = dict(meta or {})
        return self

    def predict(self, archs: Sequence[Architecture]) -> np.ndarray:
        """Predicted log-perplexities, [n] float64."""
        return self._predict(featurize(archs, self.ctx))

    def predict_arrays(self, counts: np.ndarray) -> np.ndarray:
        """``predict`` of count arrays [n, L, 6] (``Architecture.as_array`` rows): what a search queries."""
        return self._predict(featurize_arrays(counts, self.ctx))

    def _predict(self, X: np.ndarray) -> np.ndarray:
        if self.booster is None:
            raise PrunesearchError("the predictor has not been trained")
        return self.booster.inplace_predict(X).astype(np.float64)

    def save(self, directory: str | Path) -> None:
        """Write the trees, the feature context and ``predictor.json`` (format, features, shape, meta) at once."""
        if self.booster is None:
            raise PrunesearchError("the predictor has not been trained")
        info = {
            "format": FORMAT,
            "features": feature_names(self.ctx),
            "shape": self.ctx.shape.to_dict(),
            "params": self.params,
            "meta": self.meta,
        }
        with atomic_dir(Path(directory)) as tmp:
            self.booster.save_model(tmp / MODEL_FILE)
            self.ctx.save(tmp / CONTEXT_FILE)
            (tmp / META_FILE).write_text(json.dumps(info, indent=1) + "\n")

    @classmethod
    def load(cls, directory: str | Path, fingerprint: str | None = None, space: dict | None = None) -> "Predictor":
        """Read a saved predictor; refuse one that is incomplete, corrupt, of another format or feature set, or
        trained for another model (``fingerprint``) or search space (``space``, as ``SearchSpace.to_dict()``)."""
        directory = Path(directory)
        if not directory.is_dir():
            raise PrunesearchError(f"no predictor at {directory}")
        missing = [name for name in (MODEL_FILE, CONTEXT_FILE, META_FILE) if not (directory / name).is_file()]
        if missing:
            raise PrunesearchError(f"predictor at {directory} is incomplete: missing {', '.join(missing)}")
        info = _read_info(directory / META_FILE)
        ctx = FeatureContext.load(directory / CONTEXT_FILE)
        if info.get("shape") != ctx.shape.to_dict():
            raise PrunesearchError(f"predictor at {directory} is corrupt: its context is for another model shape")
        if info.get("features") != feature_names(ctx):
            raise PrunesearchError(
                f"predictor at {directory} was trained on other features than this version computes; retrain it"
            )
        _check_trained_for(info["meta"], fingerprint, space)
        predictor = cls(ctx, **info["params"])
        predictor.meta = info["meta"]
        predictor.booster = xgb.Booster({"nthread": predictor.params["n_jobs"] or 0})
        try:
            predictor.booster.load_model(directory / MODEL_FILE)
        except xgb.core.XGBoostError as exc:
            first_line = str(exc).splitlines()[0]
            raise PrunesearchError(f"predictor at {directory} is corrupt: {MODEL_FILE}: {first_line}") from None
        if predictor.booster.num_features() != len(info["features"]):
            raise PrunesearchError(f"predictor at {directory} is corrupt: its trees expect another feature count")
        return predictor


def _read_info(path: Path) -> dict[str, Any]:
    try:
        info = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PrunesearchError(f"predictor file {path} is corrupt: {exc}") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        found = info.get("format") if isinstance(info, dict) else None
        raise PrunesearchError(f"predictor file {path} has unknown format {found!r} (expected '{FORMAT}')")
    kinds = {"features": list, "shape": dict, "params": dict, "meta": dict}
    wrong = [key for key, kind in kinds.items() if not isinstance(info.get(key), kind)]
    if wrong:
        raise PrunesearchError(f"predictor file {path} is corrupt: bad or missing {', '.join(wrong)}")
    return info


def _check_trained_for(meta: dict[str, Any], fingerprint: str | None, space: dict | None) -> None:
    """Refuse a predictor trained for another model or search space than the caller's."""
    if fingerprint is not None and meta.get("fingerprint") != fingerprint:
        raise PrunesearchError(f"predictor was trained for model {meta.get('fingerprint')}, not {fingerprint}")
    if space is not None:
        stored, given = meta.get("space") or {}, json.loads(json.dumps(space))
        differ = sorted(k for k in set(stored) | set(given) if stored.get(k) != given.get(k))
        if differ:
            raise PrunesearchError(f"predictor was trained for another search space (differs in {', '.join(differ)})")
