"""Would the trees rank the band better if they only had to learn what an additive model misses, or only the
pairs near the budget?

Usage: .venv/bin/python bench/residual.py --run runs/<campaign> [--seeds 0 1 2]

The predictor fits log-ppl directly, so its trees must build the near-additive bulk of the effect (each layer's cut
costs about what its probe says) out of axis-aligned splits, a few hundred rows at a time. Here a ridge regression
(standardised features, its strength by leave-one-out) takes the additive part first, and the same ensemble fits
what it leaves; prediction is their sum. Alongside: the ridge alone, and local ensembles, one per budget, fitted
only on the training pairs within +-5% or +-10% of it (each held-out pair is predicted by its nearest budget's).
Same 5 folds as the predictor's figures.
Writes ``bench/results/residual.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()

    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from prunesearch.predictor import Predictor, featurize
    from runs import out_of_fold, predictor_fit, run_pairs

    pairs = run_pairs(args.run)
    ctx = pairs.predictor.ctx
    x = featurize(pairs.archs, ctx)

    def ridge(train: np.ndarray):
        return make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 4, 25))).fit(x[train], pairs.y[train])

    def ridge_only(train: np.ndarray, test: np.ndarray) -> np.ndarray:
        return ridge(train).predict(x[test])

    def residual(train: np.ndarray, test: np.ndarray) -> np.ndarray:
        base = ridge(train)
        trees = Predictor(ctx).fit([pairs.archs[i] for i in train], pairs.y[train] - base.predict(x[train]))
        return base.predict(x[test]) + trees.predict([pairs.archs[i] for i in test])

    budgets = np.asarray(pairs.config["budgets"])
    nearest = budgets[np.abs(pairs.removed[:, None] - budgets[None]).argmin(1)]

    def local(window: float):
        def fit_predict(train: np.ndarray, test: np.ndarray) -> np.ndarray:
            out = np.empty(len(test))
            for b in budgets:
                mine = nearest[test] == b
                if mine.any():
                    near = train[np.abs(pairs.removed[train] - b) <= window]
                    model = Predictor(ctx).fit([pairs.archs[i] for i in near], pairs.y[near])
                    out[mine] = model.predict([pairs.archs[i] for i in test[mine]])
            return out
        return fit_predict

    variants = {"predictor": predictor_fit(pairs, ctx), "ridge alone": ridge_only, "ridge + trees on residual": residual,
                "local, pairs within 5% of the budget": local(0.05),
                "local, pairs within 10% of the budget": local(0.1)}
    results = {"run": str(args.run), "pairs": len(pairs.y), "fold seeds": args.seeds, "variants": {}}
    for name, fit_predict in variants.items():
        results["variants"][name] = out_of_fold(pairs, fit_predict, tuple(args.seeds))
        print(name, {k: round(v, 3) for k, v in results["variants"][name].items() if "tau" in k or "precision" in k},
              flush=True)
    Path("bench/results/residual.json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
