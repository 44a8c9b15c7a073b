"""The report's predictor figures on a finished campaign's pairs, re-estimated as a campaign now estimates them.

Usage: .venv/bin/python bench/learning_curve.py --run runs/<campaign> [--out F] [--figure F]

A campaign's report used to draw its learning curve from one random split: 30% of the pairs held out once, so
within ±2.5% of a budget it scored ~40 pairs, only at the first budget. This bench runs ``predictor_quality``
(k-fold figures, the learning curve on the same folds, held out by sampler) with the run's own config and saved
feature context, times it, and writes its figures and the learning-curve figure.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from types import SimpleNamespace


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--figure", type=Path)
    args = parser.parse_args()

    from prunesearch.search import plots
    from prunesearch.search.campaign import predictor_quality
    from prunesearch.search.config import CampaignConfig
    from runs import run_pairs

    pairs = run_pairs(args.run)
    setup = SimpleNamespace(config=CampaignConfig.from_dict(pairs.config), store=pairs.store, ctx=pairs.predictor.ctx)
    start = time.perf_counter()
    quality = predictor_quality(setup)
    seconds = time.perf_counter() - start
    result = {"run": str(args.run), "pairs": len(quality["real"]), "seconds": round(seconds, 1),
              **{k: v for k, v in quality.items() if k not in ("predicted", "real", "groups")}}
    out = args.out or Path(f"bench/results/learning_curve-{args.run.name}.json")
    out.write_text(json.dumps(result, indent=1) + "\n")
    figure = args.figure or Path(f"bench/figures/learning_curve-{args.run.name}.png")
    plots.learning_curve([{"n": p["n_train"], "all": p["all"], "bands": p["bands"]}
                          for p in quality["learning_curve"]], figure)
    for point in quality["learning_curve"]:
        print(point["n_train"], round(point["all"]["kendall_tau"], 3),
              [(b["budget"], b["n"], round(b["kendall_tau"], 3), round(b["precision_at_top"], 3))
               for b in point["bands"]], flush=True)
    print(f"{seconds:.0f} s", flush=True)


if __name__ == "__main__":
    main()
