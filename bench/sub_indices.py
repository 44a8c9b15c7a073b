"""Does splitting the calibrated probe index into parts let the trees model how kinds of damage compound?

Usage: .venv/bin/python bench/sub_indices.py --run runs/<campaign> [--seeds 0 1 2] [--variants NAME ...]

The predictor's probe index (``prunesearch/predictor/probe_index.py``) is one weighted sum of every loss-rise
column. Session 10 found the band's misorders lean one way at 30%: the predictor overrates what a removed block
costs once the rest is thinned, an interaction between kinds of damage that one sum hides and ~270 raw per-layer
columns bury. Here the same fitted weights are summed over parts of the columns, and the parts join the index as
more monotone columns:

- *by module*: MLP-channel tables, attention tables (KV groups, value dims, q/k pairs), removed blocks;
- *by depth*: layers in thirds;
- *both*: the six parts of either split;
- *module slopes*: the first stage regresses on the three module sums (one slope each) instead of their total.

The index itself is the product's (``ProbeIndex``), fitted on each training fold. Output:
``bench/results/sub_indices.json``.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", help="only these variants (default: all)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/sub_indices.json"))
    args = parser.parse_args()

    from runs import matrix_fit, out_of_fold, run_features, run_pairs
    from sklearn.linear_model import LinearRegression, RidgeCV

    from prunesearch.predictor.context import module_of
    from prunesearch.predictor.probe_index import ALPHAS, QUANTILE, ProbeIndex, loss_columns

    pairs = run_pairs(args.run)
    y = pairs.y
    X, names, signs = run_features(pairs)
    layers = pairs.predictor.ctx.shape.num_layers
    damage = loss_columns(names, signs)

    def family(j: int) -> str:
        table = names[j].split("[")[0]
        return "block" if table.startswith("block:") else ("mlp" if module_of(table) == "mlp" else "attention")

    def layer(j: int) -> int:
        return int(re.search(r"\[(\d+)\]$", names[j]).group(1))

    by_module = {m: [k for k, j in enumerate(damage) if family(j) == m] for m in ("mlp", "attention", "block")}
    thirds = {f"layers {t}": [k for k, j in enumerate(damage) if layer(j) * 3 // layers == t] for t in range(3)}

    def index_weights(train: np.ndarray, slopes: bool = False) -> tuple[np.ndarray, float]:
        if not slopes:
            index = ProbeIndex.fit(X[train], y[train], names, signs)
            return index.weights, index.intercept
        fit = train[y[train] <= np.quantile(y[train], QUANTILE)]
        D = X[fit][:, damage]
        sums = np.column_stack([D[:, part].sum(1) for part in by_module.values()])
        line = LinearRegression(positive=True).fit(sums, y[fit])
        base = np.zeros(len(damage))
        for slope, part in zip(line.coef_, by_module.values()):
            base[part] = slope
        ridge = RidgeCV(alphas=ALPHAS).fit(D, y[fit] - D @ base)
        weights = np.clip(base + ridge.coef_, 0, None)
        return weights, float(np.mean(y[fit] - D @ weights))

    def with_parts(parts: dict[str, list[int]], full: bool = True, slopes: bool = False):
        def fit_predict(train: np.ndarray, test: np.ndarray) -> np.ndarray:
            weights, intercept = index_weights(train, slopes)
            weighted = X[:, damage] * weights
            extra = [weighted[:, part].sum(1) for part in parts.values()]
            if full:
                extra.insert(0, intercept + weighted.sum(1))
            stacked = np.column_stack([X, *extra])
            monotone = f"({','.join(map(str, [*signs] + [1] * len(extra)))})"
            return matrix_fit(stacked, y, monotone_constraints=monotone)(train, test)
        return fit_predict

    variants = {
        "index": with_parts({}),
        "index + by module": with_parts(by_module),
        "index + by depth": with_parts(thirds),
        "index + both": with_parts({**by_module, **thirds}),
        "by module, no full index": with_parts(by_module, full=False),
        "module slopes index": with_parts({}, slopes=True),
        "module slopes index + by module": with_parts(by_module, slopes=True),
    }
    unknown = set(args.variants or ()) - set(variants)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}: choose from {sorted(variants)}")
    results: dict = {"run": str(args.run), "pairs": len(y), "fold seeds": args.seeds,
                     "parts": {k: len(v) for k, v in {**by_module, **thirds}.items()}, "variants": {}}
    for name, fit_predict in variants.items():
        if args.variants and name not in args.variants:
            continue
        results["variants"][name] = out_of_fold(pairs, fit_predict, tuple(args.seeds), by_sampler=True)
        print(name, json.dumps({k: round(v, 3) for k, v in results["variants"][name].items() if "band" in k}),
              flush=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
