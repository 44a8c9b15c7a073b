"""Do sensitivity probes on Wikipedia prose, beside the PTB ones, rank the band better?

Usage: .venv/bin/python bench/wiki_probes.py --run runs/<campaign> [--seeds 0 1 2] [--members 5] [--count 8]

Half of every label is wiki-valid perplexity, but every measured feature comes from probes on PTB-train text (the
corpus has no wiki train split). Here the same probes (loss rise, one layer cut alone) are taken on ``--count``
windows of 128 wiki-valid tokens drawn past the first 8,192, text no pair, finalist or label read: from the dense
model (``wiki/...``) and from each budget's greedy seed (``wiki<pct>/...``). They join the run's feature context,
and the predictor is scored out of fold on the run's pairs (5 folds per fold seed) with and without them. Output:
``bench/results/wiki_probes.json``.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

SKIP = 8192
"""Leading wiki-valid tokens left to the labels and the finalists' read."""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--count", type=int, default=8)
    args = parser.parse_args()

    from prunesearch.data import calibration_windows, token_ids
    from prunesearch.predictor.context import FeatureContext
    from prunesearch.pruners.greedy import greedy_reference
    from prunesearch.pruners.sensitivity import probe, probe_spec
    from runs import run_model, run_pairs, score_contexts

    pairs = run_pairs(args.run)
    m = run_model(pairs)
    ctx = pairs.predictor.ctx
    config = pairs.config
    spec = replace(probe_spec(config["probes"]), count=args.count)
    windows = calibration_windows(token_ids(m.loaded.tokenizer, "wiki-valid")[SKIP:], spec.count, spec.length,
                                  spec.seed)
    greedy_at = greedy_reference(m.loaded, config["units"], config["mlp_step"], progress=False)
    out = Path("bench/results/wiki_probes.json")
    results: dict = {"run": str(args.run), "pairs": len(pairs.y), "seeds": args.seeds, "members": args.members,
                     "windows": [args.count, spec.length]}
    tables, block = {}, {}
    bases = {"wiki": None}
    bases.update({f"wiki{round(b * 100)}": greedy_at(b, config["greedy_stages"]) for b in config["budgets"]})
    for name, base in bases.items():
        start = time.perf_counter()
        probed = probe(m.loaded.model, m.scores, windows, spec, progress=False, base=base)
        tables.update({f"{name}/mlp": probed.mlp, f"{name}/kv": probed.attn})
        block[name] = probed.block
        results[f"probe seconds {name}"] = time.perf_counter() - start
        print(name, results[f"probe seconds {name}"], flush=True)
    wiki = FeatureContext(ctx.shape, {**ctx.tables, **tables}, {**ctx.block, **block})
    contexts = {"the run's features": ctx, "with the wiki probes": wiki}
    score_contexts(pairs, contexts, tuple(args.seeds), args.members, results, out)


if __name__ == "__main__":
    main()
