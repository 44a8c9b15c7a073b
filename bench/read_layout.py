"""Which 2,048-token validation read ranks architectures like test text: two windows per split from one place
(``head``: the first 1,024 tokens) or from two places far apart (``spread``)?

Usage: .venv/bin/python bench/read_layout.py --run runs/<campaign> [--budget 0.2] [--count 32] [--ref-tokens 16384]
       [--out bench/results/read_layout-<campaign>.json]

A campaign fits its predictor to pairs read on a few thousand validation tokens and then searches for what that
predictor favours, so every way in which its read departs from test text is something the search can exploit. The
departure that matters is the part specific to an architecture: ``log ppl_read - log ppl_test`` varying from one
architecture to the next (a read that is hard for every model shifts them all alike and ranks nothing wrong).

The architectures are the campaign's prior-perturbed design pairs within +-``band`` of the budget (measured before any
fit, so no read selected them), at most ``--count`` of them. Each is materialized once and read window by window on
four blocks of four consecutive 512-token windows per validation split (at the head, and at the windows the spread
read and the finalists' spread read start from), and on ``--ref-tokens`` of test text spread over both test splits:
the reference. A *head-like* read is two consecutive windows of one block per split; a *spread-like* read is two
windows of two blocks per split; every placement of each kind is scored (up to ``--draws`` of them), and the exact
reads a campaign uses (head: windows 0-1; spread: the middles of two halves) are shown beside them.

Per read: Kendall tau with the reference, the spread (std) across architectures of its centred log-ppl error against
the reference, and the reference log-ppl regret of the architecture it ranks first.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
from pathlib import Path

import numpy as np

WINDOW = 512
BLOCK = 4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--budget", type=float, default=0.2)
    parser.add_argument("--count", type=int, default=32)
    parser.add_argument("--ref-tokens", type=int, default=16384)
    parser.add_argument("--draws", type=int, default=2000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import torch
    from scipy.stats import kendalltau

    from runs import run_config

    from prunesearch.data import token_ids
    from prunesearch.data.windows import _spaced
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
        spread = _spaced(n, count)
        finals = np.setdiff1d(np.arange(n), spread)[_spaced(n - len(spread), max(1, config["final_tokens"] // len(data) // WINDOW))]
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

    def score(choice: tuple[list[int], ...]) -> dict[str, float]:
        """A read taking windows ``choice[d]`` of data set d: pooled mean NLL per architecture against the reference."""
        nll = np.mean([valid_nll[:, d, c].mean(axis=1) for d, c in enumerate(choice)], axis=0)
        error = nll - ref_nll
        return {"kendall_tau": float(kendalltau(nll, ref_nll)[0]), "error_std": float(np.std(error - error.mean())),
                "regret": float(ref_nll[np.argmin(nll)] - ref_nll.min())}

    blocks = len(starts[data[0]])
    head_like = [[b * BLOCK + k, b * BLOCK + k + 1] for b in range(blocks) for k in range(BLOCK - 1)]
    spread_like = [[b1 * BLOCK + k1, b2 * BLOCK + k2] for b1, b2 in itertools.combinations(range(blocks), 2)
                   for k1 in range(BLOCK) for k2 in range(BLOCK)]
    rng = np.random.default_rng(1)
    results = {"run": str(args.run), "budget": args.budget, "pairs": [p.number for p in picked],
               "block_starts": starts, "ref": reference.to_dict(),
               "ref_ppl": np.exp(ref_nll).tolist(), "valid_nll": valid_nll.tolist(), "reads": {}}
    for name, kinds in (("head-like", head_like), ("spread-like", spread_like)):
        combos = list(itertools.product(kinds, repeat=len(data)))
        chosen = [combos[j] for j in rng.permutation(len(combos))[:args.draws]]
        scored = [score(c) for c in chosen]
        results["reads"][name] = {key: {"mean": float(np.mean([s[key] for s in scored])),
                                        "p10": float(np.percentile([s[key] for s in scored], 10)),
                                        "p90": float(np.percentile([s[key] for s in scored], 90))}
                                  for key in scored[0]} | {"draws": len(chosen)}
    results["reads"]["head (windows 0-1)"] = score(tuple([0, 1] for _ in data))
    results["reads"]["spread (the campaign's)"] = score(tuple([BLOCK, 3 * BLOCK] for _ in data))
    out.write_text(json.dumps(results, indent=1) + "\n")
    for name, read in results["reads"].items():
        print(name, json.dumps(read))


if __name__ == "__main__":
    main()
