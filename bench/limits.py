"""A parameter budget with a FLOPs or KV-cache ceiling: a saved predictor searched under the limits, against the
heuristics at the least budget of theirs that meets the same limits, on held-out test text in one run.

Usage: .venv/bin/python bench/limits.py --predictor runs/<campaign>/predictor [--budget 0.2] [--max-kv 0.6]
       [--max-flops 0.72] [--tokens 4096] [--verify 3] [--out bench/results/limits.json]

The searched models come from ``reuse_search`` (no new pair, the predictor's own fidelity for the ``--verify`` top
candidates: validation text). A heuristic has no notion of a ceiling, so each is taken at the least budget on a
0.01 grid from ``--budget`` up whose architecture meets the limits (what a user without a search would do); a
method that never cuts what a ceiling counts (LLM-BIP and the uniform MLP cut keep every KV head) is listed as
unable to meet it. The
unconstrained search at ``--budget`` is listed too: what the ceiling costs.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def least_budget(meets, start: float, coarse: float = 0.05, highest: float = 0.5) -> float | None:
    """The least budget on a 0.01 grid from ``start`` at which ``meets(budget)`` holds: a 0.05 grid up first, then
    0.01 steps back down (a heuristic's ceilings fall with its budget); None where even ``highest`` fails (a method
    that never cuts what the ceiling counts, e.g. KV heads)."""
    budget = round(start, 2)
    while not meets(budget):
        if budget >= highest:
            return None
        budget = round(min(budget + coarse, highest), 2)
    while budget - 0.01 >= start - 1e-9 and meets(round(budget - 0.01, 2)):
        budget = round(budget - 0.01, 2)
    return budget


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--predictor", type=Path, required=True)
    parser.add_argument("--budget", type=float, default=0.2)
    parser.add_argument("--max-kv", type=float)
    parser.add_argument("--max-flops", type=float)
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--verify", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/results/limits.json"))
    args = parser.parse_args()

    from prunesearch.models import load_model
    from prunesearch.predictor import Predictor
    from prunesearch.pruners.baselines import METHODS, baseline
    from prunesearch.search.compare import compare
    from prunesearch.search.report import comparison_markdown, rows_to_json
    from prunesearch.search.reuse import reuse_search
    from prunesearch.space import Architecture, Limits, cost

    limits = Limits(args.max_flops, args.max_kv)
    loaded = load_model(Predictor.load(args.predictor).meta["model"])
    searched = {}
    for name, lim in (("searched", Limits()), ("searched within limits", limits)):
        start = time.perf_counter()
        record = reuse_search(args.predictor, args.budget, verify=args.verify, progress=False, limits=lim,
                              out=args.out.with_name(f"limits-{'plain' if not lim else 'limited'}.json"))
        searched[name] = (record, time.perf_counter() - start)
    models = {name: ("searched", Architecture.load(record["arch"])) for name, (record, _) in searched.items()}
    budgets: dict[str, float | None] = {}
    for method in METHODS:
        found = least_budget(lambda b: limits.met_by(cost(baseline(method, loaded, b, progress=False))), args.budget)
        budgets[method] = found
        if found is not None:
            models[f"{method} {found:.0%}"] = ("baseline", baseline(method, loaded, found, progress=False))
    rows = compare(loaded, models, args.tokens, speed_repeats=0, progress=False)
    result = {"budget": args.budget, "limits": limits.to_dict(), "tokens": args.tokens,
              "baseline_budgets": budgets,
              "search": {name: {**record, "wall_s": seconds} for name, (record, seconds) in searched.items()},
              "rows": rows_to_json(rows), "table": comparison_markdown(rows)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=str))
    print(result["table"])
    print(json.dumps({k: v for k, v in result.items() if k not in ("rows", "table")}, indent=1, default=str))


if __name__ == "__main__":
    main()
