"""Does a pairwise ranking objective rank the band better than the predictor's regression? 5-fold on a run's pairs.

Usage: .venv/bin/python bench/ranking_objective.py --run runs/<campaign>

The issue allows a ranking objective "if it ranks better". XGBoost's ``rank:pairwise`` learns only the order
within each query group; here a group is a bin of parameters removed (``--bins`` wide), so it learns to order
architectures of about the same size, which is what the search needs. Same features (the run's saved predictor
context) and hyperparameters as the predictor; five seeds averaged (rows are not resampled: a ranker's weights
are per group); fold seeds 0 and 1.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--bins", type=float, nargs="+", default=[0.02, 0.05])
    args = parser.parse_args()

    import xgboost as xgb

    from prunesearch.predictor.features import featurize
    from prunesearch.predictor.model import DEFAULTS, MEMBERS
    from runs import out_of_fold, predictor_fit, run_pairs

    pairs = run_pairs(args.run)
    X = featurize(pairs.archs, pairs.predictor.ctx)
    params = {k: v for k, v in DEFAULTS.items() if k != "objective"}

    def ranker(width: float):
        def fit_predict(train: np.ndarray, test: np.ndarray) -> np.ndarray:
            bins = np.floor(pairs.removed[train] / width).astype(int)
            train = train[np.argsort(bins, kind="stable")]
            _, sizes = np.unique(bins, return_counts=True)
            scores = []
            for m in range(MEMBERS):
                model = xgb.XGBRanker(**{**params, "random_state": m}, objective="rank:pairwise")
                model.fit(X[train], -pairs.y[train], group=sizes)
                scores.append(-model.predict(X[test]))
            return np.mean(scores, 0)
        return fit_predict

    objectives = {"regression (the predictor)": predictor_fit(pairs, pairs.predictor.ctx),
                  **{f"rank:pairwise, bins of {w:.0%}": ranker(w) for w in args.bins}}
    results = {"run": str(args.run), "pairs": len(pairs.y), "objectives": {}}
    for label, fit_predict in objectives.items():
        results["objectives"][label] = out_of_fold(pairs, fit_predict, (0, 1), ("kendall_tau", "precision_at_top"))
        print(label, json.dumps(results["objectives"][label]), flush=True)
    Path("bench/results/ranking_objective.json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
