"""The surrogate: gradient-boosted trees from architecture features to search-time log-perplexity, averaged with a
Gaussian process on the aggregate features (``smooth.py``).

Trees suit a few hundred measured architectures and hundreds of correlated features, and predict in microseconds
per row. A saved predictor records what it was trained for (model fingerprint, search space), and loading refuses
a mismatch rather than silently ranking another model's architectures.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import xgboost as xgb

from prunesearch.errors import PrunesearchError
from prunesearch.paths import atomic_dir
from prunesearch.predictor.context import FeatureContext
from prunesearch.predictor.features import feature_names, featurize, featurize_arrays, monotone_signs
from prunesearch.predictor.probe_index import ProbeIndex
from prunesearch.predictor.smooth import SmoothModel
from prunesearch.space import Architecture

FORMAT = "prunesearch.predictor/4"
FORMATS = ("prunesearch.predictor/1", "prunesearch.predictor/2", "prunesearch.predictor/3", FORMAT)
"""Readable formats: /1 holds one booster in ``model.json``, /2 an ensemble in ``model-<i>.json``, /3 adds the
calibrated probe index (``index`` in ``predictor.json``; the trees then see it as one column past the features), /4
the smooth model averaged with the trees (``smooth.npz``, where ``smooth`` is true in ``predictor.json``)."""
MODEL_FILE, CONTEXT_FILE, META_FILE, SMOOTH_FILE = "model.json", "context.npz", "predictor.json", "smooth.npz"
INDEX_COLUMN = "probe_index"
"""The name of the trees' last column where the predictor has a probe index."""
MEMBERS = 15
"""Ensemble size: trees fitted on bootstrap resamples agree where pairs were measured and spread apart where the
search wanders off them, which ``predict_arrays(..., pessimism=k)`` turns into a penalty. 15 rather than 5 raised the
5-fold Kendall tau within ±2.5% of 20% / 30% removed by 0.007 / 0.006 on each of two SmolLM2 campaigns' 300 pairs
(``bench/interactions.py``), for three times the fit time and ~0.6x the queries per second."""

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
ranks SmolLM2's 240 measured pairs as well as ``rank:pairwise`` grouped by size at 20% and better at 30%
(5-fold band Kendall tau 0.76 vs 0.71-0.72, ``bench/ranking_objective.py``), and keeps predictions on the
log-perplexity scale."""


class Predictor:
    """Predicts log-perplexity of architectures of one model (scikit-learn style: ``fit``, then ``predict``).

    With ``members`` > 1 it is a bagged ensemble: member ``m`` is fitted on a bootstrap resample of the pairs with
    seed ``random_state + m``; predictions are the members' mean, and their spread measures how far an
    architecture lies from what was measured. With ``monotone`` (unless ``monotone_constraints`` is given) the
    trees may only move the prediction the way each feature's meaning allows (``monotone_signs``): on SmolLM2's
    236 distinct pairs that raised the 5-fold Kendall tau by 0.01 within the budget bands and 0.02 over all pairs
    (``bench/monotone.py``), and a search cannot exploit a tree that says removing more helps. With
    ``probe_index`` the trees also see the calibrated probe index (``probe_index.py``), fitted on the same pairs,
    as one more column that may only raise the prediction. With ``smooth`` the prediction is the mean of the trees'
    and a Gaussian process's on the aggregate columns (``smooth.py``); the members' spread stays the trees'.
    """

    def __init__(self, ctx: FeatureContext, members: int = MEMBERS, monotone: bool = True, probe_index: bool = True,
                 smooth: bool = True, **xgb_params: Any) -> None:
        self.ctx = ctx
        self.names, self.signs = feature_names(ctx), monotone_signs(ctx)
        self.probe_index, self.smooth = probe_index, smooth
        if monotone and "monotone_constraints" not in xgb_params:
            signs = self.signs + [1] * probe_index
            xgb_params["monotone_constraints"] = f"({','.join(map(str, signs))})"
        self.params = {**DEFAULTS, **xgb_params}
        if not str(self.params["objective"]).startswith("reg:"):
            raise ValueError(f"the predictor regresses log-perplexity: objective must be 'reg:...', not "
                             f"{self.params['objective']!r}")
        if members < 1:
            raise ValueError(f"an ensemble needs at least one member, got {members}")
        self.members = members
        self.meta: dict[str, Any] = {}
        self.index: ProbeIndex | None = None
        self.smooth_model: SmoothModel | None = None
        self.boosters: list[xgb.Booster] = []

    def fit(self, archs: Sequence[Architecture], y: Sequence[float], meta: dict[str, Any] | None = None) -> "Predictor":
        """Train on measured log-perplexities ``y``; ``meta`` (fingerprint, space, ...) is saved alongside."""
        X, y = featurize(archs, self.ctx), np.asarray(y, dtype=np.float64)
        if len(y) != len(X):
            raise ValueError(f"{len(X)} architectures but {len(y)} targets")
        self.index = ProbeIndex.fit(X, y, self.names, self.signs) if self.probe_index else None
        X = self._with_index(X)
        self.smooth_model = SmoothModel.fit(X, y, self._columns()) if self.smooth and len(y) >= 3 else None
        seed = self.params["random_state"]
        self.boosters = []
        for m in range(self.members):
            rows = (np.random.default_rng(seed + m).integers(0, len(y), len(y)) if self.members > 1
                    else np.arange(len(y)))
            model = xgb.XGBRegressor(**{**self.params, "random_state": seed + m})
            model.fit(X[rows], y[rows])
            self.boosters.append(model.get_booster())
        self.meta = dict(meta or {})
        return self

    def predict(self, archs: Sequence[Architecture]) -> np.ndarray:
        """Predicted log-perplexities, [n] float64."""
        return self._predict(featurize(archs, self.ctx))

    def predict_arrays(self, counts: np.ndarray, pessimism: float = 0.0) -> np.ndarray:
        """``predict`` of count arrays [n, L, 6] (``Architecture.as_array`` rows), what a search queries, plus
        ``pessimism`` times the members' standard deviation (a search that minimises it keeps to where the
        predictor has evidence instead of exploiting its errors)."""
        X = self._with_index(featurize_arrays(counts, self.ctx))
        members = self._members(X)
        mean = self._blend(members.mean(0), X)
        return mean + pessimism * members.std(0) if pessimism else mean

    def layer_losses(self, archs: Sequence[Architecture]) -> np.ndarray:
        """[n, L] the probe index's estimate of the log-perplexity each layer's cuts cost, per architecture: an
        additive reading of the trees' strongest column, for a report to show where a model spends its loss."""
        if self.index is None:
            raise PrunesearchError("the predictor has no probe index (its context holds no measured loss tables, "
                                   "or it was fitted with probe_index=False)")
        return self.index.by_layer(featurize(archs, self.ctx), self.ctx.shape.num_layers)

    def _predict(self, X: np.ndarray) -> np.ndarray:
        X = self._with_index(X)
        return self._blend(self._members(X).mean(0), X)

    def _members(self, X: np.ndarray) -> np.ndarray:
        """[members, n] the trees' predictions of the rows of their input ``X`` (``_with_index``)."""
        if not self.boosters:
            raise PrunesearchError("the predictor has not been trained")
        return np.stack([b.inplace_predict(X) for b in self.boosters]).astype(np.float64)

    def _blend(self, trees: np.ndarray, X: np.ndarray) -> np.ndarray:
        """The trees' mean prediction, averaged with the smooth model's where there is one."""
        return trees if self.smooth_model is None else (trees + self.smooth_model.predict(X)) / 2

    def _columns(self) -> list[str]:
        """The names of the trees' input columns."""
        return self.names + [INDEX_COLUMN] * (self.index is not None)

    def _with_index(self, X: np.ndarray) -> np.ndarray:
        """The trees' input: the features, then the probe index where there is one."""
        if self.index is None:
            return X
        return np.concatenate([X, self.index.transform(X)[:, None].astype(X.dtype)], axis=1)

    def save(self, directory: str | Path) -> None:
        """Write the trees, the feature context and ``predictor.json`` (format, features, shape, meta) at once."""
        if not self.boosters:
            raise PrunesearchError("the predictor has not been trained")
        info = {
            "format": FORMAT,
            "members": len(self.boosters),
            "features": self.names,
            "index": self.index.to_dict() if self.index else None,
            "smooth": self.smooth_model is not None,
            "shape": self.ctx.shape.to_dict(),
            "params": self.params,
            "meta": self.meta,
        }
        with atomic_dir(Path(directory)) as tmp:
            for m, booster in enumerate(self.boosters):
                booster.save_model(tmp / _model_file(m))
            self.ctx.save(tmp / CONTEXT_FILE)
            if self.smooth_model is not None:
                np.savez(tmp / SMOOTH_FILE, **self.smooth_model.to_arrays())
            (tmp / META_FILE).write_text(json.dumps(info, indent=1) + "\n")

    @classmethod
    def load(cls, directory: str | Path, fingerprint: str | None = None, space: dict | None = None) -> "Predictor":
        """Read a saved predictor; refuse one that is incomplete, corrupt, of another format or feature set, or
        trained for another model (``fingerprint``) or search space (``space``, as ``SearchSpace.to_dict()``)."""
        directory = Path(directory)
        if not directory.is_dir():
            raise PrunesearchError(f"no predictor at {directory}")
        missing = [name for name in (CONTEXT_FILE, META_FILE) if not (directory / name).is_file()]
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
        files = ([MODEL_FILE] if info["format"] == FORMATS[0]
                 else [_model_file(m) for m in range(int(info.get("members", 0)))])
        missing = [name for name in files if not (directory / name).is_file()]
        if missing or not files:
            raise PrunesearchError(f"predictor at {directory} is incomplete: missing {', '.join(missing) or 'trees'}")
        try:
            index = None if info.get("index") is None else ProbeIndex.from_dict(info["index"], info["features"])
        except PrunesearchError as exc:
            raise PrunesearchError(f"predictor at {directory} is corrupt: {exc}") from None
        predictor = cls(ctx, members=len(files), monotone=False, probe_index=index is not None,
                        smooth=bool(info.get("smooth")), **info["params"])
        predictor.meta, predictor.index = info["meta"], index
        columns = len(info["features"]) + (index is not None)
        for name in files:
            booster = xgb.Booster({"nthread": predictor.params["n_jobs"] or 0})
            try:
                booster.load_model(directory / name)
            except xgb.core.XGBoostError as exc:
                first_line = str(exc).splitlines()[0]
                raise PrunesearchError(f"predictor at {directory} is corrupt: {name}: {first_line}") from None
            if booster.num_features() != columns:
                raise PrunesearchError(f"predictor at {directory} is corrupt: its trees expect another feature count")
            predictor.boosters.append(booster)
        if predictor.smooth:
            predictor.smooth_model = _read_smooth(directory, columns)
        return predictor


def _read_smooth(directory: Path, columns: int) -> SmoothModel:
    path = directory / SMOOTH_FILE
    if not path.is_file():
        raise PrunesearchError(f"predictor at {directory} is incomplete: missing {SMOOTH_FILE}")
    try:
        with np.load(path) as arrays:
            return SmoothModel.from_arrays(dict(arrays), columns)
    except (OSError, ValueError, zipfile.BadZipFile, PrunesearchError) as exc:
        raise PrunesearchError(f"predictor at {directory} is corrupt: {SMOOTH_FILE}: {exc}") from None


def _model_file(member: int) -> str:
    return f"model-{member}.json"


def _read_info(path: Path) -> dict[str, Any]:
    try:
        info = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PrunesearchError(f"predictor file {path} is corrupt: {exc}") from None
    if not isinstance(info, dict) or info.get("format") not in FORMATS:
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
