"""A Gaussian process on the columns that describe a whole architecture, for the predictor to average with its trees.

Trees split one column at a time, so between two measured pairs their prediction is a staircase. A Gaussian process
(an RBF plus a linear kernel plus noise, hyperparameters by marginal likelihood) over the standardised aggregate
columns (each family summed over layers, the score mass lost, the cost ratios, and the calibrated probe index)
interpolates smoothly between the pairs instead. The two err differently: averaged, they order the pairs near a
budget better than either alone (``bench/gp_blend.py``).

It is saved as its training rows and fitted kernel parameters, and rebuilt on load with those parameters fixed, so
a loaded predictor predicts exactly what the saved one did, with no pickle.

Each step of the marginal-likelihood fit costs O(n^3) in the rows: ~5 s for 250 rows here, ~20 s for 1,000, and
minutes for the thousands of pairs that many workers collect, once per refit and per fold of the report. The kernel
parameters settle on a few hundred rows, so they are fitted on at most ``TUNE_ROWS`` of them (a fixed random draw);
the process then conditions on at most ``ROWS`` rows at those parameters (2 s for 2,000; its queries stay above
5,000 per second).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, DotProduct, WhiteKernel

from prunesearch.errors import PrunesearchError


def aggregate_columns(names: Sequence[str]) -> list[int]:
    """Positions of the columns that are not one layer's (``name[i]``): sums over layers, mass lost, costs, index."""
    return [j for j, name in enumerate(names) if not name.endswith("]")]


warnings.filterwarnings("ignore", category=ConvergenceWarning, module=r"sklearn\.gaussian_process")
"""A kernel parameter fitted to its bound (a noise level near zero, say) is a fit, not a failure. Filtered once here
rather than around each fit: the report fits in threads, and ``warnings.catch_warnings`` is not thread-safe."""


def _kernel():
    return ConstantKernel() * RBF(10.0) + ConstantKernel(0.1) * DotProduct() + WhiteKernel(0.01)


def _regressor(X: np.ndarray, y: np.ndarray, theta: np.ndarray | None) -> GaussianProcessRegressor:
    """Fitted on standardised rows ``X``: by marginal likelihood from the default kernel, or at ``theta`` fixed."""
    kernel = _kernel() if theta is None else _kernel().clone_with_theta(theta)
    return GaussianProcessRegressor(kernel, normalize_y=True, optimizer="fmin_l_bfgs_b" if theta is None else None,
                                    random_state=0).fit(X, y)


TUNE_ROWS, ROWS = 500, 2000
"""The most rows the kernel parameters are fitted on, and the most the fitted process conditions on."""


def _draw(n: int, most: int) -> np.ndarray:
    """Row positions: all ``n``, or a fixed random ``most`` of them in their order (a refit on the same pairs draws
    the same rows)."""
    return np.arange(n) if n <= most else np.sort(np.random.default_rng(0).permutation(n)[:most])


_ARRAYS = ("positions", "mean", "scale", "rows", "targets", "theta")
"""What a saved smooth model holds, in the order of ``SmoothModel``'s fields."""


@dataclass
class SmoothModel:
    """``predict(X)`` of a Gaussian process on ``X[:, positions]`` standardised by ``mean`` and ``scale``."""

    positions: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    rows: np.ndarray
    targets: np.ndarray
    theta: np.ndarray
    _gp: GaussianProcessRegressor | None = field(default=None, repr=False, compare=False)

    @classmethod
    def fit(cls, X: np.ndarray, y: np.ndarray, names: Sequence[str]) -> "SmoothModel":
        """Fit on the aggregate columns of ``X`` (columns ``names``) that vary over its rows."""
        columns = np.array(aggregate_columns(names), np.intp)
        A = X[:, columns].astype(np.float64)
        varies = A.std(0) > 1e-12
        if not varies.any():
            raise PrunesearchError("no aggregate feature varies over the pairs: nothing for the smooth model to fit")
        A, columns = A[:, varies], columns[varies]
        mean, scale = A.mean(0), A.std(0)
        rows, targets = (A - mean) / scale, np.asarray(y, dtype=np.float64)
        tune, kept = _draw(len(rows), TUNE_ROWS), _draw(len(rows), ROWS)
        gp = _regressor(rows[tune], targets[tune], None)
        theta = gp.kernel_.theta
        if len(kept) > len(tune):  # more rows than the tuning draw: condition on them at the tuned parameters
            gp = _regressor(rows[kept], targets[kept], theta)
        return cls(columns, mean, scale, rows[kept], targets[kept], theta, gp)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """[n] predicted log-perplexity of the feature rows ``X``."""
        if self._gp is None:
            self._gp = _regressor(self.rows, self.targets, self.theta)
        return self._gp.predict((X[:, self.positions].astype(np.float64) - self.mean) / self.scale)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in _ARRAYS}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], columns: int) -> "SmoothModel":
        """Rebuild a saved model whose trees see ``columns`` columns, refusing arrays that do not fit them."""
        try:
            model = cls(*(np.asarray(arrays[name]) for name in _ARRAYS))
        except KeyError as exc:
            raise PrunesearchError(f"missing array {exc}") from None
        n = len(model.positions)
        if (model.positions.ndim != 1 or (n and (model.positions.min() < 0 or model.positions.max() >= columns))
                or model.mean.shape != (n,) or model.scale.shape != (n,) or model.rows.shape[1:] != (n,)
                or model.targets.shape != (len(model.rows),) or len(model.theta) != len(_kernel().theta)):
            raise PrunesearchError("its smooth model does not fit its features")
        model.positions = model.positions.astype(np.intp)
        return model
