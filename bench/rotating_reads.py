"""Would each pair read on its own random windows, referenced to the dense model's loss on them, rank near-ties as
well as the campaign's fixed windows do?

Usage: .venv/bin/python bench/rotating_reads.py ARCH.json ... [--pool 32] [--per-split 4] [--draws 400]
       [--out bench/results/rotating_reads.json]

A campaign reads every pair on the same spread windows, so similar architectures share their errors on those
windows and the predictor and the search can fit them (the finalists' bias). Reading each pair on windows drawn for
it makes the errors independent, but adds each window's own difficulty; subtracting the dense model's loss on the
same windows removes most of it. This measures the per-window NLL of each architecture (and of the dense model) on
``--pool`` spread windows per validation split, then, over ``--draws`` simulated campaigns, the Kendall tau between
each design's labels and the architectures' loss on the whole pool (every design's read is 1/8 of it at 4 per split).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import kendalltau

from prunesearch.data import spread_windows, token_ids
from prunesearch.evaluate.run import with_units
from prunesearch.models import load_model
from prunesearch.pruners import materialize
from prunesearch.space import Architecture

SPLITS = ("ptb-valid", "wiki-valid")


@torch.no_grad()
def window_nll(model, windows: torch.Tensor) -> np.ndarray:
    """Mean next-token NLL of each window."""
    out = []
    for start in range(0, len(windows), 2):
        batch = windows[start:start + 2]
        logits = model(input_ids=batch, use_cache=False).logits[:, :-1].float()
        nll = F.cross_entropy(logits.transpose(1, 2), batch[:, 1:], reduction="none").mean(dim=1)
        out.extend(nll.tolist())
    return np.array(out)


def simulate(nll: np.ndarray, dense: np.ndarray, per_split: int, draws: int, seed: int = 0) -> dict[str, float]:
    """Mean Kendall tau against the whole pool for the fixed, rotating-raw and rotating-referenced designs.

    ``nll``: [archs, splits, windows]; ``dense``: [splits, windows]."""
    rng = np.random.default_rng(seed)
    archs, splits, pool = nll.shape
    taus: dict[str, list[float]] = {"fixed": [], "rotating raw": [], "rotating vs dense": []}
    for _ in range(draws):
        fixed = np.stack([rng.choice(pool, per_split, replace=False) for _ in range(splits)])
        labels = {key: np.zeros(archs) for key in taus}
        for a in range(archs):
            own = np.stack([rng.choice(pool, per_split, replace=False) for _ in range(splits)])
            for s in range(splits):
                labels["fixed"][a] += nll[a, s, fixed[s]].mean()
                labels["rotating raw"][a] += nll[a, s, own[s]].mean()
                labels["rotating vs dense"][a] += (nll[a, s, own[s]] - dense[s, own[s]]).mean()
        truth = nll.mean(axis=2).sum(axis=1)
        for key in taus:
            taus[key].append(kendalltau(labels[key], truth).statistic)
    return {key: float(np.mean(values)) for key, values in taus.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("archs", nargs="+", type=Path)
    parser.add_argument("--pool", type=int, default=32)
    parser.add_argument("--per-split", type=int, default=4)
    parser.add_argument("--draws", type=int, default=400)
    parser.add_argument("--out", type=Path, default=Path("bench/results/rotating_reads.json"))
    args = parser.parse_args()

    loaded = load_model("smollm2-135m")
    windows = [spread_windows(token_ids(loaded.tokenizer, s), 512, args.pool * 512) for s in SPLITS]
    dense = np.stack([window_nll(loaded.model, w) for w in windows])
    rows = {}
    for path in args.archs:
        arch = with_units(loaded, Architecture.load(path), progress=False)
        model = materialize(loaded.model, arch)
        rows[path.stem] = np.stack([window_nll(model, w) for w in windows]).tolist()
        print(path.stem, [float(np.exp(np.mean(r))) for r in rows[path.stem]], flush=True)
    nll = np.array(list(rows.values()))
    result = {"command": "see the module docstring", "archs": list(rows), "dense": dense.tolist(), "nll": rows,
              "tau": {k: simulate(nll, dense, k, args.draws) for k in (2, 4, 8)}}
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["tau"], indent=1))


if __name__ == "__main__":
    main()
