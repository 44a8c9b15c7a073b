"""Does constraining how the trees may combine features order the budget band better?

Usage: .venv/bin/python bench/interactions.py --run runs/<campaign> [--seeds 0 1 2] [--variants NAME ...]

The predictor's trees may split on any of ~750 columns in any order, with ~240 rows to learn from. Most of those
columns are per-layer values, and a depth-4 tree that mixes layer 3's MLP table with layer 17's KV table learns a
coincidence of the few pairs that reach its leaf. Log-perplexity is, to first order, the dense loss plus a sum over
layers of what each layer's cut costs (the sensitivity probes' premise), plus how those costs compound. Two shapes
say that to the trees with XGBoost's ``interaction_constraints``, and one says it with the target:

- *additive by layer*: a tree uses one layer's columns only, or the aggregate columns only (sums over layers,
  mass lost, costs): a sum of one function per layer and one of the aggregates;
- *by layer, with aggregates*: a tree uses one layer's columns and any aggregates, so that what a layer's cut
  costs may depend on how much the whole model has lost (a varying-coefficient additive model);
- *probe offset*: the trees start from the dense probes' own additive estimate, the sum of every probe table's
  loss rise at the architecture's counts and every removed block's (``base_margin``, shifted to the targets'
  median), and fit only what it misses: how the cuts compound. Unconstrained (the residual need not be monotone in
  anything), and once with the predictor's monotone constraints.
- *aggregates only*: the sums, masses lost and costs, no per-layer column.
- *calibrated probe index*: a column the trees get beside the predictor's: the probes' additive estimate with each
  layer's weight fitted to the training fold's pairs. The loss-rise columns of every layer (dense probes and
  re-probes, removed blocks included) are summed, the fold's targets regressed on that sum, and a ridge (alpha by
  leave-one-out) fits the residual from the per-layer columns, so each layer's weight is pulled toward the shared
  one, not toward zero. Fitted on the fold's pairs below its 80th target percentile: past it the models are broken
  and no sum of one-layer costs describes them.

The last two variants are the project's ``Predictor`` itself, with and without the index it adopted in session 22
(non-negative per-column weights, so it stays monotone), to check the product reproduces the bench's gain.

And the predictor with 15 bootstrap members instead of 5 (a third of the search's queries per second), on the bench's
ensemble and on the project's ``Predictor`` with its index. Same
ensemble otherwise (5 bootstrap members, the predictor's parameters and monotone constraints where not said), 5 folds,
the fold seeds given; each also scored within the band among the pairs of one sampler at a time. Output:
``bench/results/interactions.json``.
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
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", help="only these variants (default: all)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/interactions.json"))
    args = parser.parse_args()

    from runs import matrix_fit, out_of_fold, predictor_fit, run_features, run_pairs

    from prunesearch.predictor.probe_index import loss_columns

    pairs = run_pairs(args.run)
    ctx, y = pairs.predictor.ctx, pairs.y
    X, names, signs = run_features(pairs)
    layers = ctx.shape.num_layers
    by_layer = [[j for j, n in enumerate(names) if n.endswith(f"[{i}]")] for i in range(layers)]
    aggregate = [j for j, n in enumerate(names) if not n.endswith("]")]
    probe_sums = [n for n in names if n.startswith("sum:sensitivity/") or n == "sum:block:sensitivity"]
    rise = X[:, [names.index(n) for n in probe_sums]].sum(1)
    offset = rise + float(np.median(y) - np.median(rise))
    monotone = f"({','.join(map(str, signs))})"
    damage = loss_columns(names, signs)
    loss_tables = {names[j].split("[")[0] for j in damage}

    def ensemble(columns: list[int] | None = None, **kwargs) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        return matrix_fit(X if columns is None else X[:, columns], y, **kwargs)

    def with_index(train: np.ndarray, test: np.ndarray) -> np.ndarray:
        """The predictor's ensemble with the calibrated probe index, fitted on ``train``, as one more column."""
        stacked = np.column_stack([X, probe_index(train)])
        return matrix_fit(stacked, y, monotone_constraints=f"({','.join(map(str, [*signs, 1]))})")(train, test)

    def probe_index(train: np.ndarray) -> np.ndarray:
        """The calibrated probe index of every pair, its weights fitted on the ``train`` rows."""
        from sklearn.linear_model import LinearRegression, RidgeCV

        fit = train[y[train] <= np.quantile(y[train], 0.8)]
        D = X[:, damage]
        total = D.sum(1, keepdims=True)
        line = LinearRegression().fit(total[fit], y[fit])
        ridge = RidgeCV(alphas=np.logspace(-4, 2, 13)).fit(D[fit], y[fit] - line.predict(total[fit]))
        return line.predict(total) + ridge.predict(D)

    variants = {
        "the predictor": ensemble(monotone_constraints=monotone),
        "15 members": ensemble(monotone_constraints=monotone, members=15),
        "additive by layer": ensemble(monotone_constraints=monotone,
                                      interaction_constraints=json.dumps(by_layer + [aggregate])),
        "by layer, with aggregates": ensemble(monotone_constraints=monotone,
                                              interaction_constraints=json.dumps([g + aggregate for g in by_layer])),
        "aggregates only": ensemble(columns=aggregate,
                                    monotone_constraints=f"({','.join(str(signs[j]) for j in aggregate)})"),
        "probe offset": ensemble(margin=offset),
        "probe offset, monotone": ensemble(margin=offset, monotone_constraints=monotone),
        "calibrated probe index alone": lambda train, test: probe_index(train)[test],
        "calibrated probe index": with_index,
        "Predictor without the index": predictor_fit(pairs, ctx, probe_index=False),
        "Predictor (index adopted)": predictor_fit(pairs, ctx),
        "Predictor (index), 15 members": predictor_fit(pairs, ctx, members=15),
    }
    unknown = set(args.variants or ()) - set(variants)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}: choose from {sorted(variants)}")
    results: dict = {"run": str(args.run), "pairs": len(y), "fold seeds": args.seeds, "probe sums": probe_sums,
                     "loss tables": sorted(loss_tables), "variants": {}}
    for name, fit_predict in variants.items():
        if args.variants and name not in args.variants:
            continue
        results["variants"][name] = out_of_fold(pairs, fit_predict, tuple(args.seeds), by_sampler=True)
        print(name, json.dumps(results["variants"][name]), flush=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
