"""Which 2,048-token validation read ranks architectures like test text: two windows per split from one place
(``head``: the first 1,024 tokens) or from two places far apart (``spread``)?

Usage: .venv/bin/python bench/read_layout.py --run runs/<campaign> [--budget 0.2] [--count 32] [--ref-tokens 16384]
       [--draws 2000] [--out bench/results/read_layout-<campaign>-<pct>.json] | --rescore FILE

A campaign fits its predictor to pairs read on a few thousand validation tokens and then searches for what that
predictor favours, so every way in which its read departs from test text is something the search can exploit. The
departure that matters is the part specific to an architecture: ``log ppl_read - log ppl_test`` varying from one
architecture to the next (a read that is hard for every model shifts them all alike and ranks nothing wrong).

The architectures are the campaign's prior-perturbed design pairs within +-``band`` of the budget (measured before any
fit, so no read selected them), at most ``--count`` of them. Each is materialized once and read window by window on
four blocks of four consecutive 512-token windows per validation split (at the head, and at the windows the spread
read and the finalists' spread read start from), and on ``--ref-tokens`` of test text spread over both test splits:
the reference. Reads of k windows per split are then scored on those NLLs, ``--draws`` random placements each:
*consecutive* (k adjacent windows of one block, as a head read is) and *spread* (k windows of k blocks, or for k
over 4 any k of the 16); and the exact reads a campaign uses (head: windows 0-1; spread: the middles of two halves).
``--rescore FILE`` scores a saved result again, measuring nothing.

Per read: Kendall tau with the reference over all the architectures and over the best half by the reference (the
near-ties a search must order), and the spread (std) across architectures of its centred log-ppl error against the
reference.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

WINDOW = 512
BLOCK = 4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path)
    parser.add_argument("--budget", type=float, default=0.2)
    parser.add_argument("--count", type=int, default=32)
    parser.add_argument("--ref-tokens", type=int, default=16384)
    parser.add_argument("--draws", type=int, default=2000)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--rescore", type=Path, help="score the reads again from a saved result, measuring nothing")
    args = parser.parse_args()
    if args.rescore:
        results = json.loads(args.rescore.read_text())
        analyse(results, args.draws)
        args.rescore.write_text(json.dumps(results, indent=1) + "\n")
        return
    if args.run is None:
        parser.error("give --run (or --rescore)")

    import torch

    from runs import run_config

    from prunesearch.data import spread_indices, token_ids
    from prunesearch.evaluate.perplexity import perplexity
    from prunesearch.evaluate.store import Fidelity, PairStore, default_storage
    from prunesearch.models import load_model
    from prunesearch.pruners import materialize
    from prunesearch.search.campaign import PRIOR, distinct

    config = run_config(args.run)
    store = PairStore(default_storage(args.run), config["name"] or args.run.name, read_only=True)
    band = config["band"]
    near = sorted((p for p in distinct(store.pairs()) if p.sampler == PRIOR
                   and abs(p.record["removed"] - args.budget) <= band), key=lambda p: p.number)
    picked = [near[i] for i in np.random.default_rng(0).permutation(len(near))[:args.count]]
    loaded = load_model(config["model"])
    data = tuple(config["data"])
    per_data = config["tokens"] // len(data)
    count = per_data // WINDOW
    starts, rows = {}, {}
    for spec in data:
        ids = token_ids(loaded.tokenizer, spec)
        n = ids.numel() // WINDOW
        spread = spread_indices(n, count)
        finals = spread_indices(n, max(1, config["final_tokens"] // len(data) // WINDOW), count)
        starts[spec] = [0, int(spread[0]), int(finals[len(finals) // 2]), int(spread[-1])]
        index = torch.tensor([s + k for s in starts[spec] for k in range(BLOCK)])
        rows[spec] = ids[: n * WINDOW].reshape(n, WINDOW)[index]
    reference = Fidelity(("ptb-test", "wiki-test"), args.ref_tokens, WINDOW, layout="spread")
    ref_rows = torch.cat([reference.windows(token_ids(loaded.tokenizer, spec)) for spec in reference.data])

    valid_nll = np.zeros((len(picked), len(data), len(starts[data[0]]) * BLOCK))
    ref_nll = np.zeros(len(picked))
    out = args.out or Path(f"bench/results/read_layout-{args.run.name}-{round(args.budget * 100)}.json")
    for i, pair in enumerate(picked):
        model = materialize(loaded.model, pair.arch)
        for d, spec in enumerate(data):
            valid_nll[i, d] = [perplexity(model, rows[spec][j:j + 1], progress=False).nll for j in range(len(rows[spec]))]
        ref_nll[i] = perplexity(model, ref_rows, progress=False).nll
        print(i, pair.number, pair.arch.meta.get("perturbed"), round(math.exp(ref_nll[i]), 2), flush=True)

    results = {"run": str(args.run), "budget": args.budget, "pairs": [p.number for p in picked],
               "block_starts": starts, "ref": reference.to_dict(),
               "ref_ppl": np.exp(ref_nll).tolist(), "valid_nll": valid_nll.tolist()}
    analyse(results, args.draws)
    out.write_text(json.dumps(results, indent=1) + "\n")


def analyse(results: dict, draws: int) -> None:
    """Score every kind of read on the saved per-window NLLs (``results["reads"]``) and print them."""
    from scipy.stats import kendalltau

    valid = np.array(results["valid_nll"])
    ref = np.log(np.array(results["ref_ppl"]))
    best_half = np.argsort(ref)[:len(ref) // 2]
    blocks = valid.shape[2] // BLOCK

    def score(choice: list[list[int]]) -> dict[str, float]:
        """A read taking windows ``choice[d]`` of data set d: pooled mean NLL per architecture against the reference."""
        nll = np.mean([valid[:, d, c].mean(axis=1) for d, c in enumerate(choice)], axis=0)
        error = nll - ref
        return {"kendall_tau": float(kendalltau(nll, ref)[0]), "error_std": float(np.std(error - error.mean())),
                "kendall_tau_best_half": float(kendalltau(nll[best_half], ref[best_half])[0])}

    rng = np.random.default_rng(1)

    def placement(kind: str, k: int) -> list[int]:
        if kind == "consecutive":
            block, start = rng.integers(blocks), rng.integers(BLOCK - k + 1)
            return list(range(block * BLOCK + start, block * BLOCK + start + k))
        if k <= blocks:
            return [int(b) * BLOCK + int(rng.integers(BLOCK)) for b in rng.choice(blocks, k, replace=False)]
        return [int(w) for w in rng.choice(blocks * BLOCK, k, replace=False)]

    results["reads"] = {}
    for kind, sizes in (("consecutive", (1, 2, 4)), ("spread", (1, 2, 4, 8, 16))):
        for k in sizes:
            scored = [score([placement(kind, k) for _ in range(valid.shape[1])]) for _ in range(draws)]
            results["reads"][f"{kind}, {k} per split"] = {
                key: {"mean": float(np.mean([s[key] for s in scored])),
                      "p10": float(np.percentile([s[key] for s in scored], 10)),
                      "p90": float(np.percentile([s[key] for s in scored], 90))} for key in scored[0]}
    results["reads"]["head (windows 0-1, before session 33)"] = score([[0, 1]] * valid.shape[1])
    results["reads"]["spread (the campaign's)"] = score([[BLOCK, 3 * BLOCK]] * valid.shape[1])
    for name, read in results["reads"].items():
        print(name, json.dumps(read))


if __name__ == "__main__":
    main()
