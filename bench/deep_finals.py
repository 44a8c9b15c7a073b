"""Would reading the best finalists again on more fresh text pick a winner better on test text?

Usage: .venv/bin/python bench/deep_finals.py --run runs/<campaign> --budget 0.2 [--deep-tokens 32768]
       [--test-tokens 16384] [--out bench/results/deep_finals-<c>-<budget>.json]
       .venv/bin/python bench/deep_finals.py --picks bench/results/deep_finals-<c>-<budget>.json ...

A campaign picks its winner among ~7 finalists (its best pairs and the greedy seed) on 8,192 fresh validation
tokens. The finalists are near-ties, and among the 20% winners of fifteen campaigns a 32-window read of each
validation split ranked them against the full test sets at Kendall tau 0.76, where an 8-window read of PTB-valid
ranked them at 0.49 (``bench/rotating_reads.py``). For every finalist of ``--budget`` this reads
``--deep-tokens`` more validation tokens, spread over each split past the search's and the finalists' windows,
and the first ``--test-tokens`` of each test split, and keeps every window's NLL, so that any pick rule (the
campaign's, or the top k of it read again) can be scored on test text afterwards: ``--picks`` does that for the
campaign's pick, the top 2, 3 or all read again on every fourth or second deep window or on all, and the best on
test text.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from prunesearch.data import eval_windows, spread_windows, token_ids
from prunesearch.evaluate.store import PairStore, default_storage
from prunesearch.models import load_model
from prunesearch.pruners import materialize
from prunesearch.search.campaign import final_study
from prunesearch.search.config import CampaignConfig
from rotating_reads import window_nll


def picks(path: Path) -> list[dict]:
    """Each pick rule's finalist and its test figures, for one measured budget."""
    data = json.loads(path.read_text())
    rows = sorted(data["rows"], key=lambda r: r["final_nll"])
    valid = [s for s in rows[0]["nll"] if s.endswith("-valid")]
    final_tokens = data.get("final_tokens", 8192)

    def fresh(row: dict, step: int) -> float:
        deep = [nll for s in valid for nll in row["nll"][s][::step]]
        windows = len(deep)
        scale = final_tokens / 512
        return (row["final_nll"] * scale + np.mean(deep) * windows) / (scale + windows)

    def test(row: dict) -> float:
        return float(np.mean([n for s in ("ptb-test", "wiki-test") for n in row["nll"][s]]))

    rules = {"campaign (fresh read)": rows[0]}
    for top in (2, 3, len(rows)):
        for step, name in ((4, "8 windows per split"), (2, "16"), (1, "32")):
            rules[f"top {top}, {name} of the deep read"] = min(rows[:top], key=lambda r: fresh(r, step))
    rules["best on test text"] = min(rows, key=test)
    return [{"budget": data["budget"], "rule": rule, "trial": row["trial"], "sampler": row["sampler"],
             "test pooled": float(np.exp(test(row))), "ptb-test": row["ppl ptb-test"],
             "wiki-test": row["ppl wiki-test"]} for rule, row in rules.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path)
    parser.add_argument("--budget", type=float)
    parser.add_argument("--picks", type=Path, nargs="+")
    parser.add_argument("--deep-tokens", type=int, default=32768)
    parser.add_argument("--test-tokens", type=int, default=16384)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.picks:
        for path in args.picks:
            for row in picks(path):
                print(json.dumps(row))
        return
    if args.run is None or args.budget is None:
        parser.error("--run and --budget, or --picks")
    config = CampaignConfig.from_dict(json.loads((args.run / "config.json").read_text()))
    search, final = config.fidelity(), config.final_fidelity()
    loaded = load_model(config.model)
    reads = {}
    for split in config.data:
        ids = token_ids(loaded.tokenizer, split)
        reads[split] = spread_windows(ids, config.window, args.deep_tokens // len(config.data),
                                      (search.per_data, final.per_data))
    for split in ("ptb-test", "wiki-test"):
        reads[split] = eval_windows(token_ids(loaded.tokenizer, split), config.window, args.test_tokens)
    store = PairStore(default_storage(args.run), final_study(config.campaign), read_only=True)
    rows = []
    for pair in store.pairs(include_collapsed=True):
        if abs(pair.record["removed"] - args.budget) > 0.05:  # the two budgets' finalists share one study
            continue
        model = materialize(loaded.model, pair.arch)
        nll = {split: window_nll(model, windows) for split, windows in reads.items()}
        rows.append({"trial": pair.arch.meta.get("trial"), "sampler": pair.sampler, "final_nll": pair.record["nll"],
                     "final_ppl": pair.ppl, "nll": nll,
                     **{f"ppl {s}": float(np.exp(np.mean(v))) for s, v in nll.items()}})
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "nll"}), flush=True)
    out = args.out or Path(f"bench/results/deep_finals-{args.run.name}-{round(args.budget * 100)}.json")
    out.write_text(json.dumps({"command": "see the module docstring", "budget": args.budget,
                               "final_tokens": config.final_tokens,
                               "deep_tokens": args.deep_tokens, "test_tokens": args.test_tokens, "rows": rows},
                              indent=1) + "\n")


if __name__ == "__main__":
    main()
