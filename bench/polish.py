"""Can a local search with real evaluations improve on a campaign's winner where the predictor sees only ties?

Usage: .venv/bin/python bench/polish.py --run runs/<campaign> --budget 0.2 [--rounds 4] [--per-round 6]

The campaign's finalists at 20% lie within ~2% of each other on validation text, near-ties the predictor cannot
order. This asks whether the winner's neighbourhood holds better models the predictor can point to: from the
winner, every budget-neutral MLP move (one grid step of channels from layer a to layer b) is scored by the run's
predictor, the ``--per-round`` best are measured on the finalists' validation text (8,192 tokens of PTB-valid +
wiki-valid), and the best measured move is taken if it beats the incumbent (``--random``: the measured moves are
drawn at random instead, a control). The start and the end are then read on the first 4,096 tokens of each test
split, text the polish never saw. Output: ``bench/results/polish-<budget>.json``.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--budget", type=float, default=0.2)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--per-round", type=int, default=6)
    parser.add_argument("--random", action="store_true", help="pick the measured moves at random (the control)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    from runs import run_model, run_pairs

    from prunesearch.evaluate.run import measure
    from prunesearch.evaluate.store import Fidelity
    from prunesearch.space import Architecture

    pairs = run_pairs(args.run)
    model = run_model(pairs)
    predictor, space = pairs.predictor, model.space
    shape = space.shape
    step = space.choices()["mlp"][1] - space.choices()["mlp"][0]
    tag = round(args.budget * 100)
    start = Architecture.load(args.run / f"best-{tag}.json", shape)
    valid = Fidelity(tokens=8192)
    test = Fidelity(data=("ptb-test", "wiki-test"), tokens=8192)
    rng = np.random.default_rng(0)
    out = args.out or Path(f"bench/results/polish-{tag}{'-random' if args.random else ''}.json")

    def read(counts: np.ndarray, fidelity: Fidelity) -> dict:
        arch = Architecture.from_array(shape, counts, {"units": "transact"})
        return measure(model.loaded, arch, fidelity, model.scores)

    counts = start.counts().as_array()
    incumbent = read(counts, valid)
    log = {"run": str(args.run), "budget": args.budget, "random": args.random, "start valid": incumbent["ppl"],
           "rounds": []}
    print("start", incumbent["ppl"], flush=True)
    for r in range(args.rounds):
        moves = [(a, b) for a in range(shape.num_layers) for b in range(shape.num_layers)
                 if a != b and counts[a, 0] and counts[b, 0] and counts[a, 5] >= step
                 and counts[b, 5] + step <= shape.intermediate_size]
        batch = np.repeat(counts[None], len(moves), 0)
        for k, (a, b) in enumerate(moves):
            batch[k, a, 5] -= step
            batch[k, b, 5] += step
        predicted = predictor.predict_arrays(batch, pessimism=1.0)
        order = (rng.permutation(len(moves)) if args.random else np.argsort(predicted))[:args.per_round]
        tried = []
        for k in order:
            result = read(batch[k], valid)
            tried.append({"move": [int(x) for x in moves[k]], "predicted": float(np.exp(predicted[k])),
                          "valid": result["ppl"]})
            print(r, tried[-1], flush=True)
        best = min(tried, key=lambda t: t["valid"])
        taken = best["valid"] < incumbent["ppl"]
        if taken:
            k = [tuple(m) for m in moves].index(tuple(best["move"]))
            counts, incumbent = batch[k], {"ppl": best["valid"]}
        log["rounds"].append({"tried": tried, "taken": best["move"] if taken else None, "valid": incumbent["ppl"]})
        out.write_text(json.dumps(log, indent=1) + "\n")
    log["end valid"] = incumbent["ppl"]
    first = read(start.counts().as_array(), test)
    last = read(counts, test)
    log["test"] = {"start": {k: first[k] for k in ("ppl", "ppl_ptb-test", "ppl_wiki-test")},
                   "end": {k: last[k] for k in ("ppl", "ppl_ptb-test", "ppl_wiki-test")}}
    log["end counts"] = counts.tolist()
    print(json.dumps(log["test"]), flush=True)
    out.write_text(json.dumps(log, indent=1) + "\n")


if __name__ == "__main__":
    main()
