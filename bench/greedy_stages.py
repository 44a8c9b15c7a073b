"""Does the greedy seed improve with more re-probes on its way to the budget?

Usage: .venv/bin/python bench/greedy_stages.py --run runs/<campaign> [--budget 0.2] [--stages 1 3 5] [--tokens 16384]

The campaign's greedy allocator spends the budget in ``stages`` equal steps and probes every layer's cuts again
from each step's architecture (cached per stage count). Each stage count's seed, its units by the campaign's
scores, is read on PTB-valid and Wikipedia-prose-valid, first ``--tokens`` tokens, 512-token windows, beside
TransAct's baseline at the budget.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--budget", type=float, default=0.2)
    parser.add_argument("--stages", type=int, nargs="+", default=[1, 3, 5])
    parser.add_argument("--tokens", type=int, default=16384)
    args = parser.parse_args()

    from prunesearch.data import eval_windows, token_ids
    from prunesearch.evaluate.perplexity import perplexity
    from prunesearch.pruners.baselines import baseline
    from prunesearch.pruners.greedy import greedy
    from prunesearch.pruners.masking import mask_model
    from prunesearch.search.campaign import prepare
    from prunesearch.search.config import CampaignConfig
    from runs import run_config
    from prunesearch.space import cost

    config = CampaignConfig.from_dict(run_config(args.run))
    setup = prepare(config, args.run, progress=False)
    loaded = setup.loaded
    splits = {s: eval_windows(token_ids(loaded.tokenizer, s), 512, args.tokens) for s in ("ptb-valid", "wiki-valid")}
    archs = {"transact": (baseline("transact", loaded, args.budget, setup.calibration, progress=False), 0.0)}
    for stages in args.stages:
        start = time.time()
        arch, _ = greedy(loaded.model, loaded.tokenizer, loaded.fingerprint, setup.scores, setup.scores_key,
                         setup.space, args.budget, setup.sens, stages, progress=False)
        archs[f"greedy, {stages} stage{'s' if stages > 1 else ''}"] = (arch, time.time() - start)
    results: dict = {"run": str(args.run), "budget": args.budget, "tokens": args.tokens, "rows": []}
    with torch.no_grad():
        for name, (arch, seconds) in archs.items():
            row = {"arch": name, "removed": round(cost(arch).removed, 4), "build seconds": round(seconds, 1),
                   **{s: round(perplexity(mask_model(loaded.model, arch), w, progress=False).ppl, 2)
                      for s, w in splits.items()}}
            results["rows"].append(row)
            print(json.dumps(row), flush=True)
    Path(f"bench/results/greedy_stages-{round(args.budget * 100)}.json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
