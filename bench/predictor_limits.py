"""Is the band ranking limited by the model class or by the number of pairs near the budget? Two checks on a run.

Usage: .venv/bin/python bench/predictor_limits.py --run runs/<campaign>

- **Model classes**: the run's saved features fitted by ridge regression (standardised, alpha by CV), a Gaussian
  process (RBF + linear + noise kernels, on the aggregate features or on all), the project's XGBoost ensemble,
  and averages of the two kinds; 5-fold, fold seeds 0 and 1.
- **Pairs in the band**: each budget's band pairs in 5 folds; every pair outside the band always trains, and a
  growing share of the in-band training folds joins them. If the band tau still climbs at the full share, more
  pairs at the budget would raise it; if it is flat, the features are the limit.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", type=Path, required=True)
    args = parser.parse_args()

    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, DotProduct, WhiteKernel
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import KFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from prunesearch.predictor import Predictor, rank_report
    from prunesearch.predictor.features import feature_names, featurize
    from runs import out_of_fold, predictor_fit, run_pairs

    pairs = run_pairs(args.run)
    ctx, y = pairs.predictor.ctx, pairs.y
    X = featurize(pairs.archs, ctx).astype(np.float64)
    varies = X.std(0) > 1e-12
    X = X[:, varies]
    aggregate = np.array([not n.endswith("]") for n, v in zip(feature_names(ctx), varies) if v])

    def ridge():
        return make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 4, 20)))

    def gp():
        kernel = ConstantKernel() * RBF(10.0) + ConstantKernel(0.1) * DotProduct() + WhiteKernel(0.01)
        return make_pipeline(StandardScaler(), GaussianProcessRegressor(kernel, normalize_y=True))

    def sklearn_fit(make, columns):
        def fit_predict(train: np.ndarray, test: np.ndarray) -> np.ndarray:
            return make().fit(X[train][:, columns], y[train]).predict(X[test][:, columns])
        return fit_predict

    def mean_of(*fits):
        def fit_predict(train: np.ndarray, test: np.ndarray) -> np.ndarray:
            return np.mean([f(train, test) for f in fits], 0)
        return fit_predict

    every = np.ones(X.shape[1], bool)
    xgb = predictor_fit(pairs, ctx, 5)
    classes = {
        "ridge, all features": sklearn_fit(ridge, every),
        "ridge, aggregate features": sklearn_fit(ridge, aggregate),
        "Gaussian process, aggregate features": sklearn_fit(gp, aggregate),
        "Gaussian process, all features": sklearn_fit(gp, every),
        "XGBoost ensemble (the predictor)": xgb,
        "XGBoost + ridge, all features": mean_of(xgb, sklearn_fit(ridge, every)),
        "XGBoost + Gaussian process, aggregate features": mean_of(xgb, sklearn_fit(gp, aggregate)),
    }
    results: dict = {"run": str(args.run), "pairs": len(y), "model classes": {}, "band pairs": {}}
    for name, fit_predict in classes.items():
        results["model classes"][name] = out_of_fold(pairs, fit_predict, (0, 1), ("kendall_tau", "precision_at_top"))
        print(name, json.dumps(results["model classes"][name]), flush=True)

    band = pairs.config["band"]
    for budget in pairs.config["budgets"]:
        near = np.flatnonzero(np.abs(pairs.removed - budget) <= band + 1e-12)
        far = np.flatnonzero(np.abs(pairs.removed - budget) > band + 1e-12)
        curve = []
        for share in (0.0, 0.25, 0.5, 0.75, 1.0):
            taus = []
            for seed in (0, 1):
                predicted = np.empty(len(near))
                for train, test in KFold(5, shuffle=True, random_state=seed).split(near):
                    chosen = np.random.default_rng(seed).permutation(train)[:int(round(share * len(train)))]
                    rows = np.concatenate([far, near[chosen]])
                    model = Predictor(ctx).fit([pairs.archs[i] for i in rows], y[rows])
                    predicted[test] = model.predict([pairs.archs[near[i]] for i in test])
                taus.append(rank_report(y[near], predicted, pairs.removed[near])["all"]["kendall_tau"])
            curve.append({"in-band share": share, "training pairs": len(far) + int(round(share * 0.8 * len(near))),
                          "band tau": float(np.mean(taus))})
            print(budget, json.dumps(curve[-1]), flush=True)
        results["band pairs"][str(budget)] = {"band pairs": len(near), "curve": curve}
    Path("bench/results/predictor_limits.json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
