"""Does pooling out-of-fold predictions understate how well one predictor ranks the band?

Usage: .venv/bin/python bench/fold_estimator.py --run runs/<campaign> [--seeds 0 1 2] [--folds 5] [--members 15]

The report's band Kendall tau pools the out-of-fold predictions of all folds, so it also scores pairs of
architectures that two different fits predicted: an offset between two fits counts against the ranking although
no search ever compares them (a search ranks its candidates with one predictor). Here the same predictions are
also scored over the pairs that one fit predicted (the concordance of each fold's band pairs, pooled over folds),
and the top-10% precision within each fold. Output: ``bench/results/fold_estimator-<run>.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def within_folds(y: np.ndarray, predicted: np.ndarray, fold: np.ndarray) -> tuple[float, float]:
    """Kendall tau over the pairs whose two members one fit predicted, and the top-10% precision within folds."""
    concordance = pairs = hits = picked = 0
    for f in np.unique(fold):
        yy, pp = y[fold == f], predicted[fold == f]
        signs = np.sign(yy[:, None] - yy[None]) * np.sign(pp[:, None] - pp[None])
        upper = np.triu_indices(len(yy), 1)
        concordance, pairs = concordance + signs[upper].sum(), pairs + len(upper[0])
        k = max(1, round(0.1 * len(yy)))
        hits, picked = hits + len(np.intersect1d(np.argsort(yy)[:k], np.argsort(pp)[:k])), picked + k
    return float(concordance / pairs), hits / picked


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--members", type=int, default=15)
    args = parser.parse_args()

    from sklearn.model_selection import KFold

    from prunesearch.predictor import kendall_tau, precision_at_top
    from runs import predictor_fit, run_pairs

    pairs = run_pairs(args.run)
    fit_predict = predictor_fit(pairs, pairs.predictor.ctx, members=args.members)
    y, removed, band = pairs.y, pairs.removed, pairs.config["band"]
    out = Path(f"bench/results/fold_estimator-{args.run.name}.json")
    results: dict = {"run": str(args.run), "folds": args.folds, "members": args.members, "seeds": {}}
    for seed in args.seeds:
        predicted, fold = np.empty_like(y), np.empty(len(y), dtype=int)
        for f, (train, test) in enumerate(KFold(args.folds, shuffle=True, random_state=seed).split(y)):
            predicted[test], fold[test] = fit_predict(train, test), f
        for budget in pairs.config["budgets"]:
            near = np.abs(removed - budget) <= band + 1e-12
            tau, precision = within_folds(y[near], predicted[near], fold[near])
            entry = {"n": int(near.sum()), "pooled tau": kendall_tau(y[near], predicted[near]), "one-fit tau": tau,
                     "pooled precision": precision_at_top(y[near], predicted[near]), "one-fit precision": precision}
            results["seeds"].setdefault(str(seed), {})[str(budget)] = entry
            print(args.run, seed, budget, json.dumps(entry), flush=True)
        out.write_text(json.dumps(results, indent=1) + "\n")
    results["mean"] = {str(b): {key: float(np.mean([s[str(b)][key] for s in results["seeds"].values()]))
                                for key in ("pooled tau", "one-fit tau", "pooled precision", "one-fit precision")}
                       for b in pairs.config["budgets"]}
    print(json.dumps(results["mean"]), flush=True)
    out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
