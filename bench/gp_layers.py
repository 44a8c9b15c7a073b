"""Does the predictor's Gaussian process rank the band better when it also sees where each model loses?

Usage: .venv/bin/python bench/gp_layers.py --run runs/<campaign> [--run ...] [--seeds 0 1 2] [--out F]

The adopted process (``prunesearch/predictor/smooth.py``) sees only whole-model columns: two models that cut the
same totals from different layers look alike to it. The calibrated probe index knows, per layer, how much
log-perplexity each model's cuts cost (``ProbeIndex.by_layer``: 30 columns that sum to the index). This scores, 5
folds per fold seed, the trees averaged with: the adopted process; a process that also sees the 30 per-layer
costs (standardised); and one that sees them at half weight (scaled by 0.5 after standardising, so they count
for less in the RBF's one length scale). Results in ``bench/results/gp_layers.json`` (or ``--out``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

OUT = Path("bench/results/gp_layers.json")


VARIANTS = ("adopted (whole-model columns)", "+ per-layer index costs", "+ per-layer index costs at half weight")
NAMES = ["trees alone", *(f"mean with {v}" for v in VARIANTS)]


def models(pairs):
    """Per fold: the trees, and a process on each variant's columns, blended."""
    from prunesearch.predictor import Predictor
    from prunesearch.predictor.features import featurize
    from prunesearch.predictor.smooth import _regressor, aggregate_columns

    layers = pairs.predictor.ctx.shape.num_layers

    def fit_all(train: np.ndarray, test: np.ndarray) -> dict[str, np.ndarray]:
        def standard(A: np.ndarray) -> np.ndarray:
            A = A[:, A[train].std(0) > 1e-12]
            return (A - A[train].mean(0)) / A[train].std(0)

        trees = Predictor(pairs.predictor.ctx, smooth=False).fit([pairs.archs[i] for i in train], pairs.y[train])
        F = featurize(pairs.archs, pairs.predictor.ctx)
        whole = standard(trees._with_index(F).astype(np.float64)[:, aggregate_columns(trees._columns())])
        per_layer = standard(trees.index.by_layer(F, layers).astype(np.float64))
        tree = trees.predict([pairs.archs[i] for i in test])
        out = {"trees alone": tree}
        for name, A in zip(VARIANTS, (whole, np.hstack([whole, per_layer]), np.hstack([whole, 0.5 * per_layer]))):
            out[f"mean with {name}"] = (tree + _regressor(A[train], pairs.y[train], None).predict(A[test])) / 2
        return out

    return fit_all


if __name__ == "__main__":
    from runs import blend_args, score_models

    args = blend_args(OUT)
    score_models(args.run, args.seeds, args.out, NAMES, models)
