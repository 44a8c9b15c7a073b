"""Is the per-layer consensus of a campaign's best pairs a better model than its winner?

Usage: .venv/bin/python bench/consensus.py --run runs/<campaign> --budget 0.2 [--top 4 8 16]

The finalists at a budget are near-ties whose allocations differ layer by layer in ways that look like noise (an MLP
kept whole next to one cut to a third). If those differences are the winner's curse of a short read, the median of
the best pairs' genes, snapped to the grid and repaired onto the budget, should read at least as well on validation
text the pairs never saw and better on test text. Each consensus of the ``--top`` best measured pairs within the
search slack of the budget is read beside the winner on the first 8,192 tokens of each validation split (twice the
finalists' read), then on the first 8,192 tokens of each test split. Output:
``bench/results/consensus-<budget>.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--budget", type=float, default=0.2)
    parser.add_argument("--top", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    from runs import run_model, run_pairs

    from prunesearch.evaluate.run import measure
    from prunesearch.evaluate.store import Fidelity
    from prunesearch.space import Architecture

    pairs = run_pairs(args.run)
    model = run_model(pairs)
    space, shape = model.space, model.space.shape
    slack = pairs.config["slack"]
    tag = round(args.budget * 100)
    out = args.out or Path(f"bench/results/consensus-{tag}.json")
    near = np.flatnonzero((pairs.removed >= args.budget) & (pairs.removed <= args.budget + slack))
    ranked = near[np.argsort(pairs.y[near])]
    choices = space.choices()

    def snap(values: np.ndarray, gene: str) -> int:
        grid = np.array(choices[gene])
        return int(grid[np.argmin(np.abs(grid - np.median(values)))]) if len(values) else 0

    def consensus(rows: np.ndarray) -> Architecture:
        """Per layer: the block kept if most pairs keep it; each gene the median over the pairs that have the
        module (attention genes over the pairs that keep attention there)."""
        stack = np.stack([pairs.archs[i].counts().as_array() for i in rows])
        counts = np.zeros((shape.num_layers, 6), dtype=np.int64)
        for layer in range(shape.num_layers):
            kept = stack[:, layer][stack[:, layer, 0] == 1]
            if 2 * len(kept) <= len(rows):
                continue
            counts[layer, 0] = 1
            counts[layer, 5] = snap(kept[:, 5], "mlp")
            counts[layer, 1] = snap(kept[:, 1], "kv_heads")
            attention = kept[kept[:, 1] > 0]
            if counts[layer, 1]:
                counts[layer, 2:5] = [snap(attention[:, g], name) for g, name in ((2, "q_per_kv"), (3, "qk_dim"),
                                                                                 (4, "v_dim"))]
        return space.repair(Architecture.from_array(shape, counts, {"units": "transact"}), args.budget, slack)

    valid = Fidelity(tokens=16384)
    test = Fidelity(data=("ptb-test", "wiki-test"), tokens=16384)
    models = {"winner": Architecture.load(args.run / f"best-{tag}.json", shape).counts(),
              "best pair": pairs.archs[ranked[0]].counts()}
    models.update({f"consensus of {k}": consensus(ranked[:k]) for k in args.top})
    log = {"run": str(args.run), "budget": args.budget, "pairs at budget": int(len(near)), "models": {}}
    for name, arch in models.items():
        entry = {"removed": None}
        for label, fidelity in (("valid", valid), ("test", test)):
            result = measure(model.loaded, arch, fidelity, model.scores)
            entry["removed"] = result["removed"]
            entry[label] = {k: result[k] for k in result if k.startswith("ppl")}
        entry["counts"] = arch.as_array().tolist()
        log["models"][name] = entry
        print(name, json.dumps({k: v for k, v in entry.items() if k != "counts"}), flush=True)
        out.write_text(json.dumps(log, indent=1) + "\n")


if __name__ == "__main__":
    main()
