"""Does a finalist read that includes the search's own text pick the model best on test text, or does fresh text?

Usage: .venv/bin/python bench/fresh_finals.py --run runs/<campaign> [--study <campaign>/final-fresh]
       [--search-tokens 1024] [--final-tokens 4096] [--test-tokens 16384] [--out bench/results/fresh_finals-<c>.json]

The finalists are the pairs the search fidelity's few thousand tokens rank best, so those tokens flatter them (the
winner's curse). Campaigns before session 30 read their finalists on the first ``final_tokens`` of each validation
split, the search's own tokens among them; since then, on the ``final_tokens`` after them. For every finalist of a
run (``--study``: ``<campaign>/final`` for a run from before), this reads both, per split: the first
``--final-tokens`` ("start read") and the ``--final-tokens`` after the first ``--search-tokens`` ("fresh read"),
and the first ``--test-tokens`` of each test split; each figure pools the two splits' tokens as the campaign does.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from prunesearch.data import eval_windows, token_ids
from prunesearch.evaluate.perplexity import perplexity
from prunesearch.evaluate.store import PairStore, default_storage
from prunesearch.models import load_model
from prunesearch.pruners import materialize


def pooled(model, ids: dict, parts: list[tuple[str, int, int]], window: int = 512) -> tuple[float, dict[str, float]]:
    """Perplexity over every token of ``parts`` (split, start, stop) together, and each split's own."""
    nll = count = 0
    each = {}
    for split, start, stop in parts:
        result = perplexity(model, eval_windows(ids[split][start:stop], window), progress=False)
        each[split] = result.ppl
        nll += result.nll * result.scored_tokens
        count += result.scored_tokens
    return math.exp(nll / count), each


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--study")
    parser.add_argument("--search-tokens", type=int, default=1024)
    parser.add_argument("--final-tokens", type=int, default=4096)
    parser.add_argument("--test-tokens", type=int, default=16384)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    loaded = load_model("smollm2-135m")
    store = PairStore(default_storage(args.run), args.study or f"{args.run.name}/final-fresh", read_only=True)
    ids = {s: token_ids(loaded.tokenizer, s) for s in ("ptb-valid", "wiki-valid", "ptb-test", "wiki-test")}
    valid = ("ptb-valid", "wiki-valid")
    start = [(s, 0, args.final_tokens) for s in valid]
    fresh = [(s, args.search_tokens, args.search_tokens + args.final_tokens) for s in valid]
    test = [(s, 0, args.test_tokens) for s in ("ptb-test", "wiki-test")]
    rows = []
    for pair in store.pairs():
        model = materialize(loaded.model, pair.arch)
        row = {"trial": pair.arch.meta.get("trial"), "sampler": pair.sampler,
               "removed": round(pair.record["removed"], 4), "start read": pooled(model, ids, start)[0],
               "fresh read": pooled(model, ids, fresh)[0]}
        row["test"], each = pooled(model, ids, test)
        rows.append({**row, **each})
        print(json.dumps(rows[-1]), flush=True)
    out = args.out or Path(f"bench/results/fresh_finals-{args.run.name}.json")
    out.write_text(json.dumps({"command": "see the module docstring", "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
