"""How reliable are a campaign's labels? Band pairs read a second time on the next tokens of the same splits.

Usage: .venv/bin/python bench/retest.py --run runs/<campaign> [--budget 0.2] [--count 40]

``count`` distinct pairs within the run's band around ``budget`` (drawn with seed 0) are measured again at the
run's fidelity (same splits, window and token count) on the text that follows the first read. Kendall tau between
the two reads bounds what any predictor can reach against one read; the out-of-fold predictions of the run's
predictor setup (5 folds, the run's seed) are scored against each read and against their mean.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.model_selection import KFold


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--budget", type=float, default=0.2)
    parser.add_argument("--count", type=int, default=40)
    args = parser.parse_args()

    from prunesearch.models import load_model
    from prunesearch.predictor.metrics import kendall_tau
    from runs import predictor_fit, run_pairs, second_read

    run = run_pairs(args.run)
    config, store, archs, y, removed = run.config, run.store, run.archs, run.y, run.removed
    fit_predict = predictor_fit(run, run.predictor.ctx)
    predicted = np.empty_like(y)
    for train, test in KFold(5, shuffle=True, random_state=config["seed"]).split(y):
        predicted[test] = fit_predict(train, test)
    band = np.flatnonzero(np.abs(removed - args.budget) <= config["band"])
    pick = np.random.default_rng(0).choice(band, min(args.count, len(band)), replace=False)
    second = second_read(run, load_model(store.meta["model"]), pick)
    first = y[pick]
    out = {"run": str(args.run), "budget": args.budget, "n": len(pick),
           "tau_read1_read2": kendall_tau(first, second), "tau_predicted_read1": kendall_tau(first, predicted[pick]),
           "tau_predicted_read2": kendall_tau(second, predicted[pick]),
           "tau_predicted_mean": kendall_tau((first + second) / 2, predicted[pick]),
           "read1": first.tolist(), "read2": second.tolist(), "predicted": predicted[pick].tolist()}
    print(json.dumps({k: v for k, v in out.items() if not isinstance(v, list)}))
    Path("bench/results").mkdir(parents=True, exist_ok=True)
    Path("bench/results/retest.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
