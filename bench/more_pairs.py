"""How does the ranking within the budget band grow with the number of training pairs, up to the issue's 300?

Usage: .venv/bin/python bench/more_pairs.py --run runs/<campaign> --out runs/<campaign>-more --total 390

Every earlier estimate held out a fifth of a ~240-pair campaign, so its folds trained on ~190 pairs. This bench
copies the campaign's run folder, continues the campaign's own deterministic design stream (random architectures
around each budget, perturbed heuristics) in the copy until its store holds ``--total`` distinct pairs, measured
at the campaign's fidelity, and then estimates held-out rank quality at each training size: a random subset of
``size * folds / (folds - 1)`` pairs, ``--folds``-fold, so every fit sees ``size`` pairs and every pair of the
subset is predicted once by a fit that never saw it. Means over the subset seeds.
"""

from __future__ import annotations

import argparse
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np


def extend(run: Path, out: Path, total: int) -> None:
    """Copy ``run`` to ``out`` (once) and fill the copy's store up to ``total`` distinct pairs."""
    from prunesearch.search.campaign import feature_context, fill_design, prepare, seeds_at
    from runs import run_config
    from prunesearch.search.config import CampaignConfig

    if not out.exists():
        shutil.copytree(run, out)
    config = replace(CampaignConfig.from_dict(run_config(out)), pairs=total)
    setup = prepare(config, out)
    seeds = {b: seeds_at(setup, b) for b in config.budgets}
    setup.ctx = feature_context(setup.priors, setup.sens, setup.space.shape, setup.probes)
    fill_design(setup, seeds)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--total", type=int, default=390)
    parser.add_argument("--sizes", type=int, nargs="+", default=[150, 190, 240, 292])
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()

    from runs import out_of_fold, predictor_fit, run_pairs

    extend(args.run, args.out, args.total)
    pairs = run_pairs(args.out)
    samplers = [p.sampler for p in pairs.store.pairs()]
    results: dict = {"run": str(args.run), "copy": str(args.out), "pairs": len(pairs.y), "folds": args.folds,
                     "seeds": args.seeds, "samplers": {s: samplers.count(s) for s in sorted(set(samplers))},
                     "sizes": {}}
    for size in args.sizes:
        n = min(len(pairs.y), round(size * args.folds / (args.folds - 1)))
        row = out_of_fold(pairs, predictor_fit(pairs, pairs.predictor.ctx), tuple(args.seeds),
                          ("n", "kendall_tau", "spearman", "precision_at_top"), folds=args.folds, size=n)
        results["sizes"][str(round(n * (args.folds - 1) / args.folds))] = row
        print(size, json.dumps(row), flush=True)
        Path(f"bench/results/more_pairs-{args.run.name}.json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
