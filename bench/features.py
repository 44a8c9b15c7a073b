"""Do the greedy allocator's re-probed tables help the predictor rank? 5-fold rank quality on a run's pairs.

Usage: .venv/bin/python bench/features.py --run runs/<campaign> [--probe-budget 0.2] [--stages 2]

Two feature contexts on the same distinct pairs and folds: the run's priors and dense sensitivity tables alone,
and the same plus the last re-probe of the greedy allocator at ``--probe-budget`` in ``--stages`` (what a campaign
adds as ``probed<pct>/...``; computed once and cached with the greedy seed, ~8 min on a 2-core CPU for SmolLM2).
Scored within the run's band around each of its budgets and over all pairs, for one booster and the ensemble,
averaged over fold seeds 0, 1, 2 (one booster) or seed 0 (the ensemble).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--probe-budget", type=float, default=0.2)
    parser.add_argument("--stages", type=int, default=2)
    args = parser.parse_args()

    from prunesearch.pruners.greedy import greedy
    from prunesearch.search.campaign import feature_context
    from runs import out_of_fold, predictor_fit, run_model, run_pairs

    pairs = run_pairs(args.run)
    m = run_model(pairs)
    _, probed = greedy(m.loaded.model, m.loaded.tokenizer, m.loaded.fingerprint, m.scores, m.scores_key, m.space,
                       args.probe_budget, m.dense, args.stages)
    base = feature_context(m.priors, m.dense, m.space.shape)
    richer = feature_context(m.priors, m.dense, m.space.shape, {args.probe_budget: probed})

    results = {"run": str(args.run), "pairs": len(pairs.y), "probe_budget": args.probe_budget, "stages": args.stages}
    for label, ctx in (("without", base), ("with", richer)):
        results[label] = {"one booster": out_of_fold(pairs, predictor_fit(pairs, ctx, 1), (0, 1, 2)),
                          "ensemble": out_of_fold(pairs, predictor_fit(pairs, ctx, 5), (0,))}
        print(label, json.dumps(results[label]), flush=True)
    Path("bench/results").mkdir(parents=True, exist_ok=True)
    Path("bench/results/features.json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
