"""The calibrated probe index: the probes' additive loss estimate, each layer's weight fitted to the measured pairs.

To first order a pruned model's log-perplexity is the dense one plus a sum, over layers and modules, of what each
cut alone costs: the sum of the feature matrix's loss-rise columns (sensitivity probes, re-probes, removed blocks'
measured losses). Trees fitted on a few hundred pairs cannot form a sum of ~200 columns, but they split well on
one. Weighting every column alike trusts each probe equally; fitting a free weight per column overfits. So the
targets are regressed on the plain sum, and a ridge (alpha by leave-one-out) fits what remains from the columns,
which pulls each column's weight toward the shared one rather than toward zero. Only pairs up to the 80th target
percentile are fitted: past it models are broken and no sum of one-cut costs describes them.

On SmolLM2's 300 pairs of ``runs/s26`` this column lifts the predictor's 5-fold Kendall tau within ±2.5% of the
budget from 0.808 / 0.834 to 0.818 / 0.842 at 20% / 30% removed, and over all pairs from 0.860 to 0.868 (fold seeds
0-4, ``bench/interactions.py``). Clipping the weights at zero, which keeps the predictor monotone, costs ~0.004 of
the unclipped index's lift.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from sklearn.linear_model import LinearRegression, RidgeCV

from prunesearch.errors import PrunesearchError

QUANTILE = 0.8
ALPHAS = np.logspace(-4, 2, 13)
MIN_ROWS = 3
"""Fewer fitted rows than this leave the index flat (its weights zero): nothing to calibrate on."""


def table_and_layer(column: str) -> tuple[str, int]:
    """``"probed20/mlp[7]"`` -> ``("probed20/mlp", 7)``: a per-layer column's table and layer."""
    table, layer = column.rsplit("[", 1)
    return table, int(layer.rstrip("]"))


def loss_columns(names: Sequence[str], signs: Sequence[int]) -> list[int]:
    """The per-layer columns (``name[i]``) that may only raise perplexity as they grow: measured loss rises."""
    return [j for j, (name, sign) in enumerate(zip(names, signs)) if name.endswith("]") and sign == 1]


@dataclass(frozen=True)
class ProbeIndex:
    """``intercept + X[:, positions] @ weights``; weights are non-negative, so the index never falls as a cut
    deepens and the trees' monotone constraint on it keeps the whole predictor monotone."""

    columns: tuple[str, ...]
    positions: np.ndarray
    weights: np.ndarray
    intercept: float

    @classmethod
    def fit(cls, X: np.ndarray, y: np.ndarray, names: Sequence[str], signs: Sequence[int]) -> "ProbeIndex":
        """Fit on the feature matrix ``X`` (columns ``names`` with monotone ``signs``) and log-perplexities ``y``."""
        cols = loss_columns(names, signs)
        y = np.asarray(y, dtype=np.float64)
        rows = y <= np.quantile(y, QUANTILE) if len(y) else np.zeros(0, bool)
        D, target = X[rows][:, cols].astype(np.float64), y[rows]
        weights = np.zeros(len(cols))
        if cols and len(target) >= MIN_ROWS:
            total = D.sum(1, keepdims=True)
            line = LinearRegression().fit(total, target)
            ridge = RidgeCV(alphas=ALPHAS).fit(D, target - line.predict(total))
            weights = np.clip(line.coef_[0] + ridge.coef_, 0, None)
        intercept = float(np.mean(target - D @ weights)) if len(target) else 0.0
        return cls(tuple(names[j] for j in cols), np.array(cols, np.intp), weights, intercept)

    def transform(self, X: np.ndarray) -> np.ndarray:
        """[n] index of the rows of the feature matrix ``X``."""
        return self.intercept + X[:, self.positions].astype(np.float64) @ self.weights

    def by_layer(self, X: np.ndarray, num_layers: int) -> np.ndarray:
        """[n, num_layers] the index's terms summed per layer (every column is one layer's, ``name[i]``): where the
        pairs say each row loses its log-perplexity. The rows sum to ``transform(X) - intercept``."""
        layers = np.array([table_and_layer(column)[1] for column in self.columns], np.intp)
        terms = X[:, self.positions].astype(np.float64) * self.weights
        out = np.zeros((len(X), num_layers))
        np.add.at(out, (slice(None), layers), terms)
        return out

    def weights_by_table(self, num_layers: int) -> dict[str, np.ndarray]:
        """Per probe table (``sensitivity/mlp``, ``probed20/kv``, ``block:sensitivity``, ...), the weight the pairs
        gave each layer's column ([num_layers], nan where the table has no column for a layer): which measured
        losses the pairs trust, layer by layer (1 would take a probe at its word, 0 ignores it)."""
        out: dict[str, np.ndarray] = {}
        for column, weight in zip(self.columns, self.weights):
            table, layer = table_and_layer(column)
            out.setdefault(table, np.full(num_layers, np.nan))[layer] = weight
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"columns": list(self.columns), "weights": self.weights.tolist(), "intercept": self.intercept}

    @classmethod
    def from_dict(cls, data: Any, names: Sequence[str]) -> "ProbeIndex":
        """Read ``to_dict``'s output for the feature columns ``names``, refusing one that does not fit them."""
        if not isinstance(data, dict):
            raise PrunesearchError(f"bad probe index: expected an object, got {type(data).__name__}")
        try:
            columns, weights = tuple(data["columns"]), np.asarray(data["weights"], dtype=np.float64)
            intercept = float(data["intercept"])
        except (KeyError, TypeError, ValueError) as exc:
            raise PrunesearchError(f"bad probe index: {exc}") from None
        where = {name: j for j, name in enumerate(names)}
        if weights.shape != (len(columns),) or any(c not in where for c in columns):
            raise PrunesearchError("bad probe index: its columns and weights do not match the features")
        return cls(columns, np.array([where[c] for c in columns], np.intp), weights, intercept)
