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

import argparse
import json
from pathlib import Path

import numpy as np

OUT = Path("bench/results/gp_blend.json")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", type=Path, action="append", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, DotProduct, WhiteKernel
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from prunesearch.predictor import Predictor
    from runs import out_of_fold, run_features, run_pairs

    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    for run in args.run:
        pairs = run_pairs(run)
        X, names, _ = run_features(pairs)
        varies = X.std(0) > 1e-12
        aggregate = np.array([not n.endswith("]") for n in names]) & varies
        cache: dict[bytes, dict[str, np.ndarray]] = {}

        def gp():
            kernel = ConstantKernel() * RBF(10.0) + ConstantKernel(0.1) * DotProduct() + WhiteKernel(0.01)
            return make_pipeline(StandardScaler(), GaussianProcessRegressor(kernel, normalize_y=True))

        def all_models(train: np.ndarray, test: np.ndarray) -> dict[str, np.ndarray]:
            key = train.tobytes() + b"|" + test.tobytes()
            if key not in cache:
                model = Predictor(pairs.predictor.ctx).fit([pairs.archs[i] for i in train], pairs.y[train])
                xgb = model.predict([pairs.archs[i] for i in test])
                index = model.index.transform(X.astype(np.float32))[:, None]
                with_index = np.concatenate([X[:, aggregate], index], axis=1)
                plain = gp().fit(X[train][:, aggregate], pairs.y[train]).predict(X[test][:, aggregate])
                indexed = gp().fit(with_index[train], pairs.y[train]).predict(with_index[test])
                cache[key] = {
                    "predictor (15 members, probe index)": xgb,
                    "GP, aggregate features": plain,
                    "GP, aggregate features + probe index": indexed,
                    "mean of predictor and GP": (xgb + plain) / 2,
                    "mean of predictor and GP + probe index": (xgb + indexed) / 2,
                }
            return cache[key]

        names_of = ["predictor (15 members, probe index)", "GP, aggregate features",
                    "GP, aggregate features + probe index", "mean of predictor and GP",
                    "mean of predictor and GP + probe index"]
        results[str(run)] = {}
        for name in names_of:
            scores = out_of_fold(pairs, lambda tr, te, n=name: all_models(tr, te)[n], tuple(args.seeds),
                                 ("kendall_tau", "precision_at_top"))
            results[str(run)][name] = scores
            print(run, name, json.dumps({k: round(v, 3) for k, v in scores.items() if "band" in k}), flush=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
