"""Does the predictor rank another campaign's pairs as well as its own held-out folds?

Usage: .venv/bin/python bench/cross_run.py --run runs/<a> --run runs/<b> [--run ...] [--out F]

Name campaigns drawn with different seeds: two runs of one seed share their first pairs (the same architectures,
read on the same text to the same labels), so only the pairs a test run does not share with the training pairs are
scored. Each run's pairs train the project's predictor (and its trees alone) on all of them, at most 300 as the
issue allows, and it ranks every other run's unshared pairs within ±2.5% of each budget; then each pair of runs
together (twice the pairs) ranks the third. The 5-fold figures train on 240 pairs and test on pairs of the same
draw; these train on 300 and test on an independent draw of the same design. For a like-for-like reference, each
test run's own 5-fold predictions (fold seed 0, the same models) are scored on the same unshared pairs. Results in
``bench/results/cross_run.json`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np

OUT = Path("bench/results/cross_run.json")
MODELS = {"the predictor (trees and smooth model)": True, "trees alone": False}


def main() -> None:
    from prunesearch.predictor import Predictor, rank_report
    from prunesearch.predictor.model import MEMBERS
    from runs import out_of_fold_predictions, predictor_fit, run_pairs

    parser = argparse.ArgumentParser()
    parser.add_argument("--run", type=Path, action="append", required=True)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    runs = {run.name: run_pairs(run) for run in args.run}
    own = {(name, model_name): out_of_fold_predictions(
        np.arange(len(pairs.y)), predictor_fit(pairs, pairs.predictor.ctx, MEMBERS, smooth=smooth), 0)
        for name, pairs in runs.items() for model_name, smooth in MODELS.items()}
    results = []
    for size in (1, 2):
        for train_names in itertools.combinations(runs, size):
            train = [runs[n] for n in train_names]
            archs = [a for p in train for a in p.archs]
            y = np.concatenate([p.y for p in train])
            seen = {a.key() for a in archs}
            unique = {a.key(): i for i, a in enumerate(archs)}
            rows = np.array(sorted(unique.values()))
            for model_name, smooth in MODELS.items():
                model = Predictor(train[0].predictor.ctx, smooth=smooth).fit([archs[i] for i in rows], y[rows])
                for test_name in sorted(set(runs) - set(train_names)):
                    test = runs[test_name]
                    keep = [i for i, a in enumerate(test.archs) if a.key() not in seen]
                    predicted = {"cross": model.predict([test.archs[i] for i in keep]),
                                 "own 5-fold": own[test_name, model_name][keep]}
                    row = {"train": list(train_names), "train pairs": len(rows), "test": test_name,
                           "test pairs": len(keep), "model": model_name}
                    for budget in test.config["budgets"]:
                        for kind, values in predicted.items():
                            band = rank_report(test.y[keep], values, test.removed[keep], budget,
                                               test.config["band"])["band"]
                            row[f"{budget} {kind}"] = {k: band[k] for k in ("n", "kendall_tau", "precision_at_top")}
                    results.append(row)
                    print(json.dumps(row), flush=True)
            args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
