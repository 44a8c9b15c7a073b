"""How much do a campaign's finalists owe to the text they were picked on? Read from saved summaries, no evaluation.

Usage: .venv/bin/python bench/finalist_bias.py bench/results/campaign-<a>.json [...] [--out bench/results/finalist_bias.json]

The finalists are the best pairs on the search fidelity; the campaign reads each again on fresh validation text.
A pair's fresh read over its search read, divided by the same ratio for the greedy seed (a heuristic, picked by no
read), is 1 when the search text rates the pair as fairly as it rates the seed and above 1 by the share of the pair's
search-text lead that the fresh text does not confirm. The mean over the searched finalists is the bias the search
text leaves in its best pairs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("summaries", type=Path, nargs="+")
    parser.add_argument("--out", type=Path, default=Path("bench/results/finalist_bias.json"))
    args = parser.parse_args()
    results = {}
    for path in args.summaries:
        summary = json.loads(path.read_text())
        for budget, best in summary["best"].items():
            finalists = best["finalists"]
            seed = min((f for f in finalists if f["sampler"] == "prior"), key=lambda f: f["trial"])
            base = seed["final_ppl"] / seed["ppl"]
            searched = [f for f in finalists if f["sampler"] != "prior"]
            ratios = [f["final_ppl"] / f["ppl"] / base for f in searched]
            row = {"greedy_fresh_over_search": base, "searched": len(searched),
                   "relative_mean": float(np.mean(ratios)), "relative_max": float(np.max(ratios)),
                   "winner": best["sampler"], "winner_final_ppl": best["final_ppl"],
                   "greedy_final_ppl": seed["final_ppl"]}
            results[f"{summary['campaign']} {float(budget):.0%}"] = row
            print(f"{summary['campaign']} {float(budget):.0%}", json.dumps(row))
    args.out.write_text(json.dumps({"command": "see the module docstring", "runs": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
