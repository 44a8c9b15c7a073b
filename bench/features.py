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

import numpy as np
from sklearn.model_selection import KFold


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--probe-budget", type=float, default=0.2)
    parser.add_argument("--stages", type=int, default=2)
    args = parser.parse_args()

    from prunesearch.evaluate.store import PairStore, default_storage
    from prunesearch.models import load_model
    from prunesearch.predictor import FeatureContext, Predictor, rank_report
    from prunesearch.pruners import CalibrationSpec
    from prunesearch.pruners.greedy import greedy
    from prunesearch.pruners.priors import compute_priors
    from prunesearch.search.campaign import feature_context, scores_key, sensitivity_of, training_data
    from prunesearch.space import SearchSpace

    config = json.loads((args.run / "config.json").read_text())
    saved = Predictor.load(args.run / "predictor")
    store = PairStore(default_storage(args.run), config["name"] or args.run.name)
    archs, y, removed, _ = training_data(store, config["objective"])
    meta = saved.meta
    dense = sensitivity_of(saved.ctx)
    loaded = load_model(meta["model"])
    calibration = CalibrationSpec(**meta["calibration"])
    priors = compute_priors(loaded, calibration)
    space = SearchSpace.from_dict(meta["space"])
    _, probed = greedy(loaded.model, loaded.tokenizer, loaded.fingerprint, priors.unit[meta["units"]],
                       scores_key(calibration, loaded.fingerprint, meta["units"]), space, args.probe_budget,
                       dense, args.stages)
    base = feature_context(priors, dense, space.shape)
    richer = feature_context(priors, dense, space.shape, {args.probe_budget: probed})

    def scored(ctx: FeatureContext, members: int, seeds: tuple[int, ...]) -> dict:
        runs = []
        for seed in seeds:
            predicted = np.empty_like(y)
            for train, test in KFold(5, shuffle=True, random_state=seed).split(y):
                model = Predictor(ctx, members=members).fit([archs[i] for i in train], y[train])
                predicted[test] = model.predict([archs[i] for i in test])
            runs.append({str(b): rank_report(y, predicted, removed, b, config["band"]) for b in config["budgets"]})
        out = {}
        for b in map(str, config["budgets"]):
            for subset in ("all", "band"):
                for metric in ("kendall_tau", "spearman", "precision_at_top"):
                    out[f"{b} {subset} {metric}"] = float(np.mean([r[b][subset][metric] for r in runs]))
        return out

    results = {"run": str(args.run), "pairs": len(y), "probe_budget": args.probe_budget, "stages": args.stages}
    for label, ctx in (("without", base), ("with", richer)):
        results[label] = {"one booster": scored(ctx, 1, (0, 1, 2)), "ensemble": scored(ctx, 5, (0,))}
        print(label, json.dumps(results[label]), flush=True)
    Path("bench/results").mkdir(parents=True, exist_ok=True)
    Path("bench/results/features.json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
