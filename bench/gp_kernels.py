"""Which Gaussian-process kernel, and which weight, should the predictor's blend use?

Usage: .venv/bin/python bench/gp_kernels.py --run runs/<campaign> [--run ...] [--seeds 0 1 2] [--out F]

Session 27 adopted the mean of the trees and a Gaussian process with one length scale for all 41 standardised
aggregate columns (``prunesearch/predictor/smooth.py``). One length scale treats a column the band barely moves
(parameters removed) like one that orders it (the score mass lost). This scores, 5 folds per fold seed, the trees
alone and blends with: the adopted kernel; per-column length scales (ARD) on the RBF; a Matern 5/2 kernel, with one
and with per-column scales; and the adopted and ARD kernels weighted 0.65 toward the process. The trees are the
project's predictor without its smooth model; each process is fitted on the same fold as the trees, on the same
columns the predictor hands its own. Results in ``bench/results/gp_kernels.json`` (or ``--out``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

OUT = Path("bench/results/gp_kernels.json")
KERNELS = ("adopted (RBF, one scale)", "RBF, ARD", "Matern 5/2, one scale", "Matern 5/2, ARD")


def kernels(width: int) -> dict:
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, DotProduct, Matern, WhiteKernel

    def around(stationary):
        return ConstantKernel() * stationary + ConstantKernel(0.1) * DotProduct() + WhiteKernel(0.01)

    ard = np.full(width, 10.0)
    return dict(zip(KERNELS, (around(RBF(10.0)), around(RBF(ard, (1e-2, 1e4))), around(Matern(10.0, nu=2.5)),
                              around(Matern(ard, (1e-2, 1e4), nu=2.5)))))


NAMES = ["trees alone", *(f"mean with {k}" for k in KERNELS),
         *(f"0.35 trees + 0.65 {k}" for k in KERNELS if "Matern" not in k)]


def models(pairs):
    """Per fold: the trees, and each kernel's process on the columns the predictor hands its own, blended."""
    from sklearn.gaussian_process import GaussianProcessRegressor

    from prunesearch.predictor import Predictor
    from prunesearch.predictor.features import featurize
    from prunesearch.predictor.smooth import aggregate_columns

    def fit_all(train: np.ndarray, test: np.ndarray) -> dict[str, np.ndarray]:
        trees = Predictor(pairs.predictor.ctx, smooth=False).fit([pairs.archs[i] for i in train], pairs.y[train])
        X = trees._with_index(featurize(pairs.archs, pairs.predictor.ctx)).astype(np.float64)
        A = X[:, aggregate_columns(trees._columns())]
        A = A[:, A[train].std(0) > 1e-12]
        A = (A - A[train].mean(0)) / A[train].std(0)
        tree = trees.predict([pairs.archs[i] for i in test])
        out = {"trees alone": tree}
        for name, kernel in kernels(A.shape[1]).items():
            smooth = GaussianProcessRegressor(kernel, normalize_y=True, random_state=0).fit(
                A[train], pairs.y[train]).predict(A[test])
            out[f"mean with {name}"] = (tree + smooth) / 2
            if "Matern" not in name:
                out[f"0.35 trees + 0.65 {name}"] = 0.35 * tree + 0.65 * smooth
        return out

    return fit_all


if __name__ == "__main__":
    from runs import blend_args, score_models

    args = blend_args(OUT)
    score_models(args.run, args.seeds, args.out, NAMES, models)
