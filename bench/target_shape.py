"""Does the shape of the regression target hold the ranking within the budget band down?

Usage: .venv/bin/python bench/target_shape.py --run runs/<campaign> [--folds 5] [--variants NAME ...] [--out F]

Squared error on log-perplexity spends most of the trees' splits on the broken architectures (log-ppl 8-12
against 4.5 for the good ones), while the search needs the fine order among the good ones at one size. Rank
metrics only need a monotone target, so the same features and ensemble are fitted on shapes that compress the
tail: log of the log-ppl above a floor a little under the best pair, log-ppl clipped at a cap, and the
pseudo-Huber loss on log-ppl; and the pairs within the band of a budget counted two or three times (each
member's bootstrap then draws them that much more often); and the pooled log-ppl as the mean of two predictors, one
per validation split (the pooled target is that mean when both splits score the same number of tokens, which the
bench checks). Every fit starts from the median of its targets (the bounded
Huber gradient cannot walk far from XGBoost's default start of 0.5). Same folds, fold seeds 0-4.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Callable

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--variants", nargs="+", help="only these variants (default: all)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/target_shape.json"))
    args = parser.parse_args()

    from prunesearch.predictor import Predictor
    from runs import out_of_fold, run_pairs

    pairs = run_pairs(args.run)
    ctx, y = pairs.predictor.ctx, pairs.y
    floor = float(y.min())

    records = {p.arch.key(units=True): p.record for p in pairs.store.pairs()}
    per_split = {split: np.log([records[a.key(units=True)][f"ppl_{split}"] for a in pairs.archs])
                 for split in pairs.config["data"]}
    pooled_gap = float(np.abs(np.mean(list(per_split.values()), axis=0) - y).max())
    near = np.min([np.abs(pairs.removed - b) for b in pairs.config["budgets"]], axis=0) <= pairs.config["band"]

    def variant(shape: Callable[[np.ndarray], np.ndarray], band_copies: int = 1, **params) -> Callable:
        def fit_predict(train: np.ndarray, test: np.ndarray) -> np.ndarray:
            train = np.concatenate([train] + [train[near[train]]] * (band_copies - 1))
            target = shape(y[train])
            model = Predictor(ctx, base_score=float(np.median(target)), **params).fit(
                [pairs.archs[i] for i in train], target)
            return model.predict([pairs.archs[i] for i in test])
        return fit_predict

    def split_means(train: np.ndarray, test: np.ndarray) -> np.ndarray:
        return np.mean([Predictor(ctx).fit([pairs.archs[i] for i in train], target[train]).predict(
            [pairs.archs[i] for i in test]) for target in per_split.values()], axis=0)

    variants = {
        "log-ppl (the predictor)": variant(lambda t: t),
        "log(log-ppl - best + 0.1)": variant(lambda t: np.log(t - floor + 0.1)),
        "log(log-ppl - best + 0.3)": variant(lambda t: np.log(t - floor + 0.3)),
        "log(log-ppl - best + 1)": variant(lambda t: np.log(t - floor + 1.0)),
        "log-ppl clipped at ppl 1000": variant(lambda t: np.minimum(t, np.log(1000.0))),
        "pseudo-Huber, slope 0.3": variant(lambda t: t, objective="reg:pseudohubererror", huber_slope=0.3),
        "band pairs counted twice": variant(lambda t: t, band_copies=2),
        "band pairs counted three times": variant(lambda t: t, band_copies=3),
        "mean of per-split predictors": split_means,
    }
    unknown = set(args.variants or ()) - set(variants)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}: choose from {sorted(variants)}")
    variants = {name: f for name, f in variants.items() if not args.variants or name in args.variants}
    results: dict = {"run": str(args.run), "pairs": len(y), "folds": args.folds, "fold seeds": args.seeds,
                     "best log-ppl": floor, "pooled - mean of per-split log-ppl, max": pooled_gap, "variants": {}}
    for name, fit_predict in variants.items():
        results["variants"][name] = out_of_fold(pairs, fit_predict, tuple(args.seeds), folds=args.folds)
        print(name, json.dumps(results["variants"][name]), flush=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
