"""Does telling the trees how far each pair lies from every heuristic's architecture order the budget band better?

Usage: .venv/bin/python bench/seed_distance.py --run runs/<campaign> [--seeds 0 1 2] [--members 5]

Half of each band's pairs are perturbations of one of the seven heuristic architectures at that budget (the six
baselines and the greedy seed), and the rest are random or search proposals. The predictor's features describe a
pair layer by layer, and its probe index adds up what each cut costs alone; neither says which known architecture a
pair is a small step from. Pairs near one seed share that seed's interactions between cuts, which the additive
index misses. So this adds, per seed of every budget, the pair's distance to it: the L1 distance of the per-layer
count arrays (``Architecture.as_array``), each count divided by its dense size, plus the number of layers whose
kept/removed state differs; and the distance to the nearest seed of each budget. The columns are unconstrained.
Both variants fit the product's probe index on each training fold and the same ensemble, so only the columns
differ. Output: ``bench/results/seed_distance-<run>.json``.
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
    parser.add_argument("--members", type=int, default=5)
    args = parser.parse_args()

    from runs import matrix_fit, out_of_fold, run_features, run_pairs

    from prunesearch.predictor.probe_index import ProbeIndex

    pairs = run_pairs(args.run)
    y = pairs.y
    X, names, signs = run_features(pairs)
    by_key = {p.arch.key(units=True): p.arch for p in pairs.store.pairs(include_collapsed=True)}
    seeds = json.loads((args.run / "summary.json").read_text())["seeds"]
    shape = pairs.archs[0].shape
    dense = np.array([1, shape.num_kv_heads, shape.group_size, shape.head_dim, shape.head_dim,
                      shape.intermediate_size], dtype=np.float64)
    counts = np.stack([a.as_array() for a in pairs.archs]).astype(np.float64) / dense
    columns, blocks = [], []
    for budget, named in seeds.items():
        dists = []
        for name, key in named.items():
            seed = by_key[key].as_array().astype(np.float64) / dense
            dist = np.abs(counts - seed).sum((1, 2))
            dists.append(dist)
            columns.append(dist)
            columns.append((counts[:, :, 0] != seed[:, 0]).sum(1).astype(np.float64))
        columns.append(np.min(dists, axis=0))
    D = np.column_stack(columns)
    print(f"{D.shape[1]} distance columns", flush=True)

    def variant(extra: np.ndarray | None):
        def fit_predict(train: np.ndarray, test: np.ndarray) -> np.ndarray:
            index = ProbeIndex.fit(X[train], y[train], names, signs)
            parts = [X, index.transform(X)[:, None]] + ([extra] if extra is not None else [])
            stacked = np.column_stack(parts)
            width = 0 if extra is None else extra.shape[1]
            monotone = f"({','.join(map(str, [*signs, 1] + [0] * width))})"
            return matrix_fit(stacked, y, members=args.members, monotone_constraints=monotone)(train, test)
        return fit_predict

    out = Path(f"bench/results/seed_distance-{args.run.name}.json")
    results: dict = {"run": str(args.run), "pairs": len(y), "fold seeds": args.seeds, "members": args.members,
                     "distance columns": D.shape[1], "variants": {}}
    for name, extra in {"index": None, "index + seed distances": D}.items():
        results["variants"][name] = out_of_fold(pairs, variant(extra), tuple(args.seeds), by_sampler=True)
        print(name, json.dumps({k: round(v, 3) for k, v in results["variants"][name].items() if "band" in k}),
              flush=True)
        out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
