"""Does telling the trees which way each feature must push the perplexity help them rank at the budget?

Usage: .venv/bin/python bench/monotone.py --run runs/<campaign>

A pruned model keeping more of anything should not get worse, so the predicted log-perplexity can be constrained
monotone in every feature whose meaning says which way it goes (XGBoost's ``monotone_constraints``, the signs of
``prunesearch.predictor.monotone_signs``). Trees fitted on a few hundred pairs may otherwise split on noise against
that direction, and ranking many architectures of one size is what such splits disturb most. The run's saved
features, 5 folds, fold seeds 0-4, the project's ensemble with and without the constraints.
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

    from prunesearch.predictor import Predictor, monotone_signs
    from runs import out_of_fold, run_pairs

    pairs = run_pairs(args.run)
    ctx = pairs.predictor.ctx
    signs = monotone_signs(ctx)

    def fit(monotone: bool):
        def fit_predict(train: np.ndarray, test: np.ndarray) -> np.ndarray:
            model = Predictor(ctx, monotone=monotone).fit([pairs.archs[i] for i in train], pairs.y[train])
            return model.predict([pairs.archs[i] for i in test])
        return fit_predict

    results: dict = {"run": str(args.run), "pairs": len(pairs.y), "fold seeds": [0, 1, 2, 3, 4],
                     "constrained": {"down": signs.count(-1), "up": signs.count(1), "free": signs.count(0)},
                     "variants": {}}
    for name, monotone in (("unconstrained", False), ("monotone (the predictor)", True)):
        results["variants"][name] = out_of_fold(pairs, fit(monotone), (0, 1, 2, 3, 4),
                                                ("kendall_tau", "spearman", "precision_at_top"))
        print(name, json.dumps(results["variants"][name]), flush=True)
    Path("bench/results/monotone.json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
