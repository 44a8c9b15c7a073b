"""Does a Gaussian process on the aggregate features, averaged with the predictor, rank the band better?

Usage: .venv/bin/python bench/gp_blend.py --run runs/<campaign> [--run ...] [--seeds 0 1 2]

Session 8 (``bench/predictor_limits.py``) found the mean of the XGBoost ensemble and a Gaussian process (RBF +
linear + noise kernels, standardised aggregate features: the sums over layers, the mass lost and the costs)
0.03 better at 20% than the ensemble alone, and level at 30%, on features that had no re-probes and no probe
index yet. This scores the same blend against today's predictor (15 members, probe index) on a run's pairs, 5
folds: the predictor, the GP alone, the GP that also sees the predictor's probe index, and each GP averaged with
the predictor. Results in ``bench/results/gp_blend.json`` (or ``--out``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

OUT = Path("bench/results/gp_blend.json")


NAMES = ["predictor (15 members, probe index)", "GP, aggregate features", "GP, aggregate features + probe index",
         "mean of predictor and GP", "mean of predictor and GP + probe index"]


def models(pairs):
    """Per fold: the predictor as it was before the blend (its trees), the two processes, and their means."""
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, DotProduct, WhiteKernel
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from prunesearch.predictor import Predictor
    from runs import run_features

    X, names, _ = run_features(pairs)
    aggregate = np.array([not n.endswith("]") for n in names]) & (X.std(0) > 1e-12)

    def gp():
        kernel = ConstantKernel() * RBF(10.0) + ConstantKernel(0.1) * DotProduct() + WhiteKernel(0.01)
        return make_pipeline(StandardScaler(), GaussianProcessRegressor(kernel, normalize_y=True))

    def fit_all(train: np.ndarray, test: np.ndarray) -> dict[str, np.ndarray]:
        model = Predictor(pairs.predictor.ctx, smooth=False).fit([pairs.archs[i] for i in train], pairs.y[train])
        xgb = model.predict([pairs.archs[i] for i in test])
        with_index = np.concatenate([X[:, aggregate], model.index.transform(X.astype(np.float32))[:, None]], axis=1)
        plain = gp().fit(X[train][:, aggregate], pairs.y[train]).predict(X[test][:, aggregate])
        indexed = gp().fit(with_index[train], pairs.y[train]).predict(with_index[test])
        return dict(zip(NAMES, (xgb, plain, indexed, (xgb + plain) / 2, (xgb + indexed) / 2)))

    return fit_all


if __name__ == "__main__":
    from runs import blend_args, score_models

    args = blend_args(OUT)
    score_models(args.run, args.seeds, args.out, NAMES, models)
