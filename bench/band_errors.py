"""Where, within the budget band, does the predictor misorder pairs?

Usage: .venv/bin/python bench/band_errors.py --run runs/<campaign> [--folds 5] [--seed 0]

Out-of-fold predictions of the project's predictor on the run's pairs; within each budget's band: Kendall tau
by sampler and over the better and worse halves, and the share of discordant pairs by how far apart the two
measured log-perplexities are. If the misordered pairs are near-ties, more features cannot fix them; if they are
far apart, the features miss something; for those misordered 10-30% apart, how often the truly better one
removed more (or fewer) whole blocks than the other.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

GAPS = ((0.0, 0.02), (0.02, 0.05), (0.05, 0.1), (0.1, 0.3), (0.3, np.inf))
"""Bins of |log-ppl difference|: 0.02 is 2% in perplexity."""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from scipy.stats import kendalltau
    from sklearn.model_selection import KFold

    from prunesearch.predictor import Predictor
    from prunesearch.search.campaign import training_data
    from runs import run_pairs

    pairs = run_pairs(args.run)
    ctx, y = pairs.predictor.ctx, pairs.y
    groups = np.array(training_data(pairs.store, pairs.config["objective"])[3])
    predicted = np.empty_like(y)
    for train, test in KFold(args.folds, shuffle=True, random_state=args.seed).split(y):
        model = Predictor(ctx).fit([pairs.archs[i] for i in train], y[train])
        predicted[test] = model.predict([pairs.archs[i] for i in test])

    blocks = np.array([sum(not layer.keep for layer in arch.layers) for arch in pairs.archs])

    def tau(rows: np.ndarray) -> float:
        return float(kendalltau(y[rows], predicted[rows])[0])

    results: dict = {"run": str(args.run), "pairs": len(y), "folds": args.folds, "seed": args.seed, "budgets": {}}
    for budget in pairs.config["budgets"]:
        band = np.flatnonzero(np.abs(pairs.removed - budget) <= pairs.config["band"])
        order = band[np.argsort(y[band])]
        half = len(order) // 2
        out: dict = {"n": len(band), "kendall_tau": tau(band),
                     "better half": {"tau": tau(order[:half]), "ppl": [float(np.exp(y[order[0]])),
                                                                       float(np.exp(y[order[half - 1]]))]},
                     "worse half": {"tau": tau(order[half:]), "ppl": [float(np.exp(y[order[half]])),
                                                                      float(np.exp(y[order[-1]]))]},
                     "by sampler": {g: {"n": int((groups[band] == g).sum()), "tau": tau(band[groups[band] == g])}
                                    for g in sorted(set(groups[band])) if (groups[band] == g).sum() > 3},
                     "discordant by gap": []}
        i, j = np.triu_indices(len(band), 1)
        gap = np.abs(y[band][i] - y[band][j])
        wrong = np.sign(y[band][i] - y[band][j]) != np.sign(predicted[band][i] - predicted[band][j])
        for lo, hi in GAPS:
            rows = (gap >= lo) & (gap < hi)
            out["discordant by gap"].append({"gap": [lo, None if np.isinf(hi) else hi], "pairs": int(rows.sum()),
                                             "discordant": float(wrong[rows].mean()) if rows.any() else None})
        mid = wrong & (gap >= 0.1) & (gap < 0.3)
        first_better = y[band][i] < y[band][j]
        better, worse = np.where(first_better, band[i], band[j]), np.where(first_better, band[j], band[i])
        out["misordered 10-30% apart: the better one removed"] = {
            "more blocks": float((blocks[better] > blocks[worse])[mid].mean()),
            "fewer blocks": float((blocks[better] < blocks[worse])[mid].mean())}
        results["budgets"][str(budget)] = out
        print(budget, json.dumps(out), flush=True)
    Path("bench/results/band_errors.json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
