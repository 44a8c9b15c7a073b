"""How far apart do two speed readings of the same model land, which estimator narrows them, and does the dense
model materialized in prunesearch's own class run at the dense model's speed?

Usage: .venv/bin/python bench/speed_noise.py [--arch A.json ...] [--trials 4] [--steps 15]
       [--out bench/results/speed_noise.json]

A campaign's comparison once read the same 20% architecture at 1.18x and 1.24x the dense model's tokens/s in one
run, and the greedy 20% model across campaigns at 1.15-1.32x. Each trial here materializes the architecture afresh
and times ``--steps`` prefill steps (1 x 512) interleaved with the dense model's, as ``compare_speed`` does, after
one warm-up step each. From the same timings it reads the ratio three ways, on the first 5 steps (what ``compare``
takes) and on all: each model's fastest step (``compare_speed``'s estimator), each model's median step, and the
median of the step-by-step ratios. The spread of a way's ratios over the trials is the noise a table's speed column
carries with it. The dense architecture materialized in prunesearch's own model class is the control: a ratio away
from 1.00 would be the class, not pruning.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Callable
from pathlib import Path

from prunesearch.evaluate import with_units
from prunesearch.evaluate.speed import interleaved_steps
from prunesearch.models import describe_device, load_model
from prunesearch.pruners import materialize
from prunesearch.space import Architecture, ModelShape, Workload

ESTIMATORS: dict[str, Callable[[list[float], list[float]], float]] = {
    "fastest step": lambda dense, pruned: min(dense) / min(pruned),
    "median step": lambda dense, pruned: statistics.median(dense) / statistics.median(pruned),
    "median of step ratios": lambda dense, pruned: statistics.median(d / p for d, p in zip(dense, pruned)),
}


def summary(ratios: list[float]) -> dict[str, object]:
    return {"ratios": [round(r, 4) for r in ratios], "mean": round(statistics.mean(ratios), 4),
            "stdev": round(statistics.stdev(ratios), 4), "range": round(max(ratios) - min(ratios), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", type=Path, action="append", default=[])
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--out", type=Path, default=Path("bench/results/speed_noise.json"))
    args = parser.parse_args()

    loaded = load_model("smollm2-135m")
    shape = ModelShape.from_config(loaded.model.config)
    archs = {"dense (materialized)": Architecture.dense(shape)}
    archs.update({path.stem: Architecture.load(path, shape) for path in args.arch})
    results = {"device": describe_device(loaded.model.device), "trials": args.trials, "steps": args.steps,
               "workload": Workload().describe(), "models": {}}
    for name, arch in archs.items():
        arch = with_units(loaded, arch, progress=False)
        runs = [interleaved_steps(loaded.model, materialize(loaded.model, arch), repeats=args.steps)
                for _ in range(args.trials)]
        entry = {}
        for steps in sorted({5, args.steps}):
            for way, estimate in ESTIMATORS.items():
                entry[f"{way}, {steps} steps"] = summary([estimate(d[:steps], p[:steps]) for d, p in runs])
        entry["dense step s, median"] = round(statistics.median(s for d, _ in runs for s in d), 4)
        results["models"][name] = entry
        print(name, json.dumps(entry, indent=1), flush=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
