"""A parameter budget with a FLOPs or KV-cache ceiling: a saved predictor searched under the limits, against the
heuristics at the least budget of theirs that meets the same limits, on held-out test text in one run.

Usage: .venv/bin/python bench/limits.py --predictor runs/<campaign>/predictor [--budget 0.2] [--max-kv 0.6]
       [--max-flops 0.72] [--tokens 4096] [--verify 3] [--out bench/results/limits.json]

The searched models come from ``reuse_search`` (no new pair, the predictor's own fidelity for the ``--verify`` top
candidates: validation text). The heuristics stand where ``prunesearch compare --max-kv/--max-flops`` puts them
(``baselines_at``): each at the least budget on a 0.01 grid from ``--budget`` up whose architecture meets the limits;
a method that never cuts what a ceiling counts is listed as unable to meet it. The unconstrained search at
``--budget`` is listed too: what the ceiling costs.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


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
    from prunesearch.search.compare import baselines_at, compare
    from prunesearch.search.report import comparison_markdown, rows_to_json
    from prunesearch.search.reuse import reuse_search
    from prunesearch.space import Architecture, Limits

    limits = Limits(args.max_flops, args.max_kv)
    loaded = load_model(Predictor.load(args.predictor).meta["model"])
    searched = {}
    for name, lim in (("searched", Limits()), ("searched within limits", limits)):
        start = time.perf_counter()
        record = reuse_search(args.predictor, args.budget, verify=args.verify, progress=False, limits=lim,
                              out=args.out.with_name(f"limits-{'plain' if not lim else 'limited'}.json"))
        searched[name] = (record, time.perf_counter() - start)
    models = {name: ("searched", Architecture.load(record["arch"])) for name, (record, _) in searched.items()}
    baselines, unmet = baselines_at(loaded, args.budget, progress=False, limits=limits)
    models.update(baselines)
    rows = compare(loaded, models, args.tokens, speed_repeats=0, progress=False)
    result = {"budget": args.budget, "limits": limits.to_dict(), "tokens": args.tokens,
              "baselines": {name: arch.meta["budget"] for name, (_, arch) in baselines.items()}, "unmet": unmet,
              "search": {name: {**record, "wall_s": seconds} for name, (record, seconds) in searched.items()},
              "rows": rows_to_json(rows), "table": comparison_markdown(rows)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=str))
    print(result["table"])
    print(json.dumps({k: v for k, v in result.items() if k not in ("rows", "table")}, indent=1, default=str))


if __name__ == "__main__":
    main()
