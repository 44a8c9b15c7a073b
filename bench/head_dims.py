"""Does the greedy allocator gain from probing TransAct's intra-head cut (every head's q/k and v dims thinned)?

Usage: .venv/bin/python bench/head_dims.py --run runs/<campaign> [--budgets 0.2 0.3] [--levels 0.75 0.5 0.25]
[--stages 3] [--tokens 16384] [--measure nll|kl]

The campaign's greedy allocator chooses, per layer, MLP widths, whole KV groups and block removal from one-layer
probes. With ``SensitivitySpec(dim_levels=...)`` the probes also thin every head's dims in each layer, and the
greedy may spend the budget there. Both allocators (units by the campaign's scores) and TransAct's baseline are
read on PTB-valid and Wikipedia-prose-valid, first ``--tokens`` tokens, 512-token windows.
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
    parser.add_argument("--budgets", type=float, nargs="+", default=[0.2, 0.3])
    parser.add_argument("--levels", type=float, nargs="+", default=[0.75, 0.5, 0.25])
    parser.add_argument("--stages", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=16384)
    parser.add_argument("--measure", choices=["nll", "kl"], default="nll")
    args = parser.parse_args()

    from prunesearch.data import eval_windows, token_ids
    from prunesearch.evaluate.perplexity import perplexity
    from prunesearch.pruners.baselines import baseline
    from prunesearch.pruners.greedy import greedy
    from prunesearch.pruners.masking import mask_model
    from prunesearch.pruners.sensitivity import SensitivitySpec, sensitivity
    from prunesearch.search.campaign import prepare
    from prunesearch.search.config import CampaignConfig
    from runs import run_config
    from prunesearch.space import cost

    config = CampaignConfig.from_dict(run_config(args.run))
    setup = prepare(config, args.run, progress=False)
    loaded = setup.loaded
    splits = {s: eval_windows(token_ids(loaded.tokenizer, s), 512, args.tokens) for s in ("ptb-valid", "wiki-valid")}
    spec = SensitivitySpec(dim_levels=tuple(args.levels), measure=args.measure)
    start = time.time()
    dense = sensitivity(loaded.model, loaded.tokenizer, loaded.fingerprint, setup.scores, setup.scores_key, spec,
                        progress=False)
    results: dict = {"run": str(args.run), "levels": args.levels, "measure": args.measure, "stages": args.stages,
                     "tokens": args.tokens,
                     "dense probe seconds": round(time.time() - start, 1), "rows": []}
    for budget in args.budgets:
        archs = {"transact": (baseline("transact", loaded, budget, setup.calibration, progress=False), 0.0)}
        for name, probes, tables in (("greedy", SensitivitySpec(), setup.sens), ("greedy + head dims", spec, dense)):
            start = time.time()
            arch, _ = greedy(loaded.model, loaded.tokenizer, loaded.fingerprint, setup.scores, setup.scores_key,
                             setup.space, budget, tables, args.stages, probes, progress=False)
            archs[name if probes is not spec or args.measure == "nll" else f"{name} (kl)"] = (arch, time.time() - start)
        with torch.no_grad():
            for name, (arch, seconds) in archs.items():
                thinned = [i for i, layer in enumerate(arch.layers) if layer.keep and 0 < layer.v_dim < 64]
                row = {"budget": budget, "arch": name, "removed": round(cost(arch).removed, 4),
                       "build seconds": round(seconds, 1), "kv groups": sum(l.kv_heads for l in arch.layers),
                       "layers with thinned dims": thinned,
                       "dims": [l.v_dim for l in arch.layers], "mlp": [l.mlp for l in arch.layers],
                       **{s: round(perplexity(mask_model(loaded.model, arch), w, progress=False).ppl, 2)
                          for s, w in splits.items()}}
                results["rows"].append(row)
                print(json.dumps(row), flush=True)
                if "head dims" in name:
                    arch.save(Path(f"bench/results/archs/head-dims-{args.measure}-{round(budget * 100)}.json"))
    Path(f"bench/results/head_dims-{args.measure}.json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
