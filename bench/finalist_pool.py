"""Which pairs should the finalists' fresh read be spent on, and what would the campaign have picked after fewer rounds?

Usage: .venv/bin/python bench/finalist_pool.py --run runs/<campaign> [--top 6] [--rounds 3 6 9 12]
       [--out bench/results/finalist_pool-<campaign>.json]

A campaign's finalists are the ``final_top`` pairs per budget with the lowest loss on the search fidelity's few
thousand tokens; the fresh read then picks among them. After many rounds the budget holds dozens of near-ties, and
one read of 2,048 tokens per split ranks them with noise (retest Kendall tau ~0.93, session 31): a pair that reads
well on fresh text may never reach the top six. The campaign's final predictor (trained on every pair) smooths that
noise with the pairs around each one (the *predicted* pool).

And every round verifies its proposals on the same search text, so a campaign of many rounds may come to favour what
that text flatters. The *after R rounds* pools are the finalists the campaign would have read had it stopped after
R rounds: the best measured among the priors, the random pairs and the proposals of rounds 1 to R (refined pairs
left out of every pool: the refine step runs once, at the end). Every pool also holds the greedy seed, which the
campaign's finalists always read.

For each pool (top ``--top``), every member not yet read by the campaign's finalists' study is read on the same
fresh text (the campaign's final fidelity), and the pool's pick is its best fresh read. Output: each pool's pick and
its fresh read, and every pair read with its round, per run and budget.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--top", type=int, default=6)
    parser.add_argument("--rounds", type=int, nargs="+", default=[3, 6, 9, 12])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    from runs import run_pairs

    from prunesearch.evaluate.run import measure
    from prunesearch.evaluate.store import PairStore, default_storage
    from prunesearch.models import load_model
    from prunesearch.search.campaign import PRIOR, REFINED, eligible_pairs, final_study
    from prunesearch.search.config import CampaignConfig

    run = args.run
    pairs = run_pairs(run)
    config = CampaignConfig.from_dict(pairs.config)
    if config.refit:
        parser.error(f"{run} materializes its pairs with a refit; this bench reads them plain")
    loaded = load_model(config.model)
    fidelity = config.final_fidelity()
    finals = PairStore(default_storage(run), final_study(config.name or run.name), read_only=True)
    read = finals.pairs(include_collapsed=True)
    fresh = {p.arch.key(units=True): p.ppl for p in read}
    seeds = {p.arch.meta.get("trial") for p in read if p.sampler == PRIOR}
    out = args.out or Path(f"bench/results/finalist_pool-{run.name}.json")
    results = {"command": "see the module docstring", "top": args.top, "runs": {str(run): {}}}
    for budget in config.budgets:
        candidates = [p for p in eligible_pairs(pairs.store, budget, config.slack) if p.sampler != REFINED]
        predicted = pairs.predictor.predict([p.arch for p in candidates])
        measured = np.array([p.loss(config.objective) for p in candidates])
        scores = {"predicted": predicted}
        for rounds in args.rounds:
            late = np.array([p.arch.meta.get("round", -1) >= rounds for p in candidates])
            scores[f"after {rounds} rounds"] = np.where(late, np.inf, measured)
        greedy = [p for p in candidates if p.number in seeds]
        pools = {name: [candidates[i] for i in np.argsort(s, kind="stable")[:args.top]] + greedy
                 for name, s in scores.items()}
        pools["union"] = list({p.arch.key(units=True): p for pool in pools.values() for p in pool}.values())
        for pair in pools["union"]:
            key = pair.arch.key(units=True)
            if key not in fresh:
                fresh[key] = measure(loaded, pair.arch, fidelity)["ppl"]
        predicted_ppl = {p.number: float(np.exp(value)) for p, value in zip(candidates, predicted)}
        rows = {p.number: {"sampler": p.sampler, "round": p.arch.meta.get("round"), "measured_ppl": p.ppl,
                           "fresh_ppl": fresh[p.arch.key(units=True)], "predicted_ppl": predicted_ppl[p.number]}
                for p in pools["union"]}
        picks = {name: min(pool, key=lambda p: fresh[p.arch.key(units=True)]) for name, pool in pools.items()}
        results["runs"][str(run)][str(budget)] = {
            "pools": {name: {"trials": [p.number for p in pool], "pick": picks[name].number,
                             "pick_fresh_ppl": fresh[picks[name].arch.key(units=True)]}
                      for name, pool in pools.items()},
            "pairs": rows}
        print(run, budget, json.dumps(results["runs"][str(run)][str(budget)]["pools"]), flush=True)
        out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
