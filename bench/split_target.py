"""Does targeting one split beat the pooled search fidelity? Fit on one split's ppl of a run's pairs and search.

Usage: .venv/bin/python bench/split_target.py --run runs/<campaign> [--budget 0.2] [--split ptb-valid]
       [--pessimism 1] [--verify 6]

The run's pairs each record every fidelity split's ppl (``ppl_<split>``, tokens / splits tokens of it). The ensemble
is fitted on log ppl of ``--split`` alone, searched at ``--budget`` (seeds: the greedy allocation from the run's
sensitivity tables and the 8 best pairs near the budget on that split), and its ``--verify`` best new candidates
are read on 4,096 tokens of the split, as is the best stored pair near the budget. The two best candidates are
then read on the first 8,192 tokens of PTB-test and wiki-test.
"""

from __future__ import annotations

import argparse
import json
import math
from functools import partial
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--budget", type=float, default=0.2)
    parser.add_argument("--split", default="ptb-valid")
    parser.add_argument("--pessimism", type=float, default=1.0)
    parser.add_argument("--verify", type=int, default=6)
    args = parser.parse_args()

    from prunesearch.evaluate import measure
    from prunesearch.evaluate.store import Fidelity
    from prunesearch.models import load_model
    from prunesearch.predictor import Predictor
    from prunesearch.pruners import CalibrationSpec, select_units
    from prunesearch.pruners.greedy import greedy_allocation
    from prunesearch.pruners.priors import compute_priors
    from prunesearch.search.campaign import REFINED, distinct, sensitivity_of
    from prunesearch.search.optimize import search
    from prunesearch.space import SearchSpace
    from runs import run_pairs

    run = run_pairs(args.run)
    config, saved, store = run.config, run.predictor, run.store
    key = f"ppl_{args.split}"
    pairs = sorted(distinct(p for p in store.pairs() if p.sampler != REFINED), key=lambda p: p.arch.key(units=True))
    y = np.array([math.log(p.record[key]) for p in pairs])
    predictor = Predictor(saved.ctx).fit([p.arch for p in pairs], y, saved.meta)
    space = SearchSpace.from_dict(saved.meta["space"])
    near = sorted((p for p in store.pairs() if abs(p.record["removed"] - args.budget) <= config["band"]),
                  key=lambda p: p.record[key])
    seeds = [greedy_allocation(space, sensitivity_of(saved.ctx), args.budget)] + [p.arch for p in near[:8]]
    result = search(space, partial(predictor.predict_arrays, pessimism=args.pessimism), args.budget, seeds,
                    trials=20000, seed=0, top=args.verify * 4, progress=False)
    loaded = load_model(saved.meta["model"])
    scores = compute_priors(loaded, CalibrationSpec(**saved.meta["calibration"]), progress=False).unit[
        saved.meta["units"]]
    longer = Fidelity((args.split,), 4096)
    known, read = store.keys(), []
    for candidate in result.candidates:
        arch = select_units(candidate.arch, scores)
        if arch.key(units=True) not in known:
            read.append((measure(loaded, arch, longer)["ppl"], math.exp(candidate.predicted), arch))
        if len(read) == args.verify:
            break
    reference = measure(loaded, select_units(near[0].arch, scores), longer)["ppl"]
    read.sort(key=lambda item: item[0])
    tested = []
    for ppl, predicted, arch in read[:2]:
        test = {data: measure(loaded, arch, Fidelity((data,), 8192))["ppl"] for data in ("ptb-test", "wiki-test")}
        tested.append({"read": ppl, "predicted": predicted, **test})
    out = {"run": str(args.run), "budget": args.budget, "split": args.split, "pessimism": args.pessimism,
           "candidates_read": [r[0] for r in read], "best_stored_pair_read": reference, "tested": tested}
    print(json.dumps(out))
    Path("bench/results").mkdir(parents=True, exist_ok=True)
    Path(f"bench/results/split_target-{args.split}.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
