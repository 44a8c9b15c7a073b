"""Search engines on one saved predictor: the best predicted ppl each reaches and its predictor queries per second.

Usage: .venv/bin/python bench/search.py --predictor runs/<campaign>/predictor [--budget 0.2 --budget 0.3]
       [--write BENCHMARKS.md]

Every engine starts from the same seeds as `prunesearch search` (the greedy allocation from the predictor's own
sensitivity tables and an even cut) and minimises the same score (the ensemble's mean log-ppl, no pessimism), so
the figures compare optimisers, not objectives. Then times `prunesearch search --predictor P --budget 0.25`
end to end (a fresh process: imports, loading, 20,000 queries) to check the reuse target.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

from blocks import write_block

BEGIN, END = "<!-- bench/search.py:begin -->", "<!-- bench/search.py:end -->"
ENGINES = (("evolution", 1024), ("nsga2", 1024), ("random", 1024), ("evolution", 20000))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--predictor", type=Path, required=True)
    parser.add_argument("--budget", type=float, action="append")
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()

    from prunesearch.predictor import Predictor
    from prunesearch.pruners.greedy import greedy_allocation
    from prunesearch.search.campaign import sensitivity_of
    from prunesearch.search.optimize import optuna_sampler, search
    from prunesearch.space import Architecture, SearchSpace

    predictor = Predictor.load(args.predictor)
    space = SearchSpace.from_dict(predictor.meta["space"])
    rows = []
    for budget in args.budget or [0.2, 0.3]:
        seeds = [greedy_allocation(space, sensitivity_of(predictor.ctx), budget),
                 space.repair(Architecture.dense(space.shape), budget)]
        seeded = math.exp(predictor.predict(seeds).min())
        for name, trials in ENGINES:
            result = search(space, predictor.predict_arrays, budget, seeds, trials=trials, seed=0,
                            sampler=optuna_sampler(name, 0, 64 if name == "nsga2" else 256), progress=False)
            rows.append({"budget": budget, "engine": name, "trials": trials, "seed_ppl": seeded,
                         "best_ppl": math.exp(result.candidates[0].predicted), "seconds": result.seconds,
                         "queries_per_s": result.queries_per_second})
            print(json.dumps(rows[-1]), flush=True)
    start = time.perf_counter()
    command = [str(Path(sys.executable).parent / "prunesearch"), "search", "--predictor", str(args.predictor),
               "--budget", "0.25", "--json", "--out", "/tmp/prunesearch-bench-search-25.json"]
    reuse = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
    reuse["wall_s"] = time.perf_counter() - start
    print(json.dumps(reuse), flush=True)
    Path("bench/results").mkdir(parents=True, exist_ok=True)
    Path("bench/results/search.json").write_text(json.dumps({"engines": rows, "reuse": reuse}, indent=1) + "\n")
    if args.write:
        write(args.write, args.predictor, rows, reuse)


def write(path: Path, predictor: Path, rows: list[dict], reuse: dict) -> None:
    lines = [
        f"Predictor `{predictor}` (fitted on {json.loads((predictor / 'predictor.json').read_text())['meta']['n_train']} "
        "pairs); every engine gets the same seeds and score (the ensemble's mean). Predicted ppl is the predictor's, "
        "not a measurement. Command: `.venv/bin/python bench/search.py --predictor "
        f"{predictor} --write BENCHMARKS.md`.",
        "",
        "| budget | engine | predictor queries | best predicted ppl (seeds: best) | seconds | queries/s |",
        "| ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(f"| {r['budget']:.0%} | {r['engine']} | {r['trials']:,} | {r['best_ppl']:.1f} ({r['seed_ppl']:.1f}) "
                     f"| {r['seconds']:.1f} | {r['queries_per_s']:,.0f} |")
    lines += ["", f"Reuse for a new budget, `prunesearch search --predictor {predictor} --budget 0.25` in a fresh "
              f"process: **{reuse['wall_s']:.1f} s wall** (its search {reuse['seconds']:.1f} s for "
              f"{reuse['trials']:,} queries, {reuse['queries_per_s']:,.0f}/s), no evaluation."]
    write_block(path, BEGIN, END, lines)


if __name__ == "__main__":
    main()
