"""One booster against the bagged ensemble on a campaign's pairs: 5-fold rank quality, and the refitted predictor.

Usage: .venv/bin/python bench/ensemble.py --run runs/<campaign> [--save DIR]

Both predictors are fitted on the same distinct pairs (``training_data``) with the same folds and feature context
(the run's saved predictor's), and reported within +-2.5% of each of the run's budgets and over all pairs. With
``--save`` the ensemble fitted on every pair is written there, with the run's predictor's metadata (what the
campaign's final fit would write), for ``prunesearch search --predictor DIR``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from sklearn.model_selection import KFold


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--save", type=Path)
    args = parser.parse_args()

    from prunesearch.predictor import Predictor, rank_report
    from runs import run_pairs

    run = run_pairs(args.run)
    config, saved, archs, y, removed = run.config, run.predictor, run.archs, run.y, run.removed
    results = {"run": str(args.run), "pairs": len(y), "members": {}}
    for members in (1, 5):
        start = time.perf_counter()
        predicted = np.empty_like(y)
        for train, test in KFold(5, shuffle=True, random_state=config["seed"]).split(y):
            model = Predictor(saved.ctx, members=members).fit([archs[i] for i in train], y[train])
            predicted[test] = model.predict([archs[i] for i in test])
        results["members"][members] = {
            "seconds": time.perf_counter() - start,
            **{str(b): rank_report(y, predicted, removed, b, config["band"]) for b in config["budgets"]},
        }
        print(json.dumps({"members": members, **results["members"][members]}, default=str)[:600], flush=True)
    Path("bench/results").mkdir(parents=True, exist_ok=True)
    Path("bench/results/ensemble.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    if args.save:
        Predictor(saved.ctx).fit(archs, y, {**saved.meta, "n_train": len(y)}).save(args.save)


if __name__ == "__main__":
    main()
