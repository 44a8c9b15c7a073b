"""Do features of how damage is spread over the layers order the band better?

Usage: .venv/bin/python bench/concentration.py --run runs/<campaign> [--seeds 0 1 2]

The predictor sees each layer's table values and their sums over layers. Two architectures with the same summed
probe loss can spread it evenly or pile it into a few (or neighbouring) layers, and cuts compound where they
pile up; trees over 30 per-layer columns cannot form a sum of squares. ``bench/band_errors.py`` shows the
predictor misorders 14-22% of band pairs whose perplexities differ by 10-30%, well above the labels' noise.
This adds, per table and per signed block vector: the sum of squares over layers, the sum of products of
neighbouring layers, and the maximum, each constrained like its table. Same ensemble (5 bootstrap members,
the predictor's parameters), 5 folds, the fold seeds given.
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

    from runs import matrix_fit, out_of_fold, run_features, run_pairs

    pairs = run_pairs(args.run)
    ctx, y = pairs.predictor.ctx, pairs.y
    X, names, signs = run_features(pairs)
    layers = ctx.shape.num_layers
    structure = {"keep", "kv", "q_per_kv", "qk", "v", "mlp"}
    families = sorted({n.split("[")[0] for n in names if n.endswith("]")} - structure)
    extra, extra_signs = [], []
    for family in families:
        cols = [names.index(f"{family}[{i}]") for i in range(layers)]
        sign = signs[cols[0]]
        if sign == 0:
            continue
        values = X[:, cols]
        extra += [(values ** 2).sum(1), (values[:, 1:] * values[:, :-1]).sum(1), values.max(1)]
        extra_signs += [sign] * 3
    X_more = np.column_stack([X] + extra)

    def ensemble(features: np.ndarray, constraints: list[int]):
        return matrix_fit(features, y, monotone_constraints=f"({','.join(map(str, constraints))})")

    results: dict = {"run": str(args.run), "pairs": len(y), "fold seeds": args.seeds,
                     "extra features": len(extra), "variants": {}}
    for name, features, constraints in (("the predictor's features", X, signs),
                                        ("+ spread of each table over layers", X_more, signs + extra_signs)):
        results["variants"][name] = out_of_fold(pairs, ensemble(features, constraints), tuple(args.seeds))
        print(name, json.dumps(results["variants"][name]), flush=True)
        Path("bench/results/concentration.json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
