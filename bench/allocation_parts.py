"""Where does the 20% greedy allocation gain on TransAct: in attention, in the MLP, or in how attention is thinned?

Usage: .venv/bin/python bench/allocation_parts.py [--greedy runs/smollm2-units/best-20.json] [--tokens 16384]

Hybrids of the greedy seed and the TransAct baseline at 20%, each moved back onto the budget by the search
space's ``repair`` (one MLP channel at a time, so TransAct's off-grid widths fit), units chosen by TransAct's
dense scores (the greedy seed's and TransAct's own architectures keep their own units):

- one model's attention counts with the other's MLP widths;
- the greedy MLP widths with every KV group kept and TransAct-style thinning of the per-head dims instead of
  whole groups (uniform q/k and value dims), and with both groups removed and dims thinned.

PTB-valid and Wikipedia-prose-valid ppl on the first ``--tokens`` tokens, 512-token windows.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--greedy", type=Path, default=Path("runs/smollm2-units/best-20.json"))
    parser.add_argument("--budget", type=float, default=0.2)
    parser.add_argument("--tokens", type=int, default=16384)
    args = parser.parse_args()

    from prunesearch.data import eval_windows, token_ids
    from prunesearch.evaluate.perplexity import perplexity
    from prunesearch.models import load_model
    from prunesearch.pruners import CalibrationSpec
    from prunesearch.pruners.baselines import baseline
    from prunesearch.pruners.masking import mask_model
    from prunesearch.pruners.priors import compute_priors
    from prunesearch.pruners.selection import select_units
    from prunesearch.space import Architecture, ModelShape, SearchSpace, param_count

    torch.set_grad_enabled(False)
    loaded = load_model("smollm2-135m")
    shape = ModelShape.from_config(loaded.model.config)
    space = SearchSpace(shape, mlp_step=1)
    scores = compute_priors(loaded, CalibrationSpec()).unit["transact"]
    greedy = Architecture.load(args.greedy, shape)
    transact = baseline("transact", loaded, args.budget, progress=False)

    def mix(attention: Architecture, mlp: Architecture) -> Architecture:
        layers = tuple(replace(a.counts(), mlp=m.mlp) if a.keep else a.counts()
                       for a, m in zip(attention.layers, mlp.layers))
        return space.repair(Architecture(shape, layers), args.budget)

    def dims(arch: Architecture, qk: int, v: int, all_groups: bool = True) -> Architecture:
        layers = tuple(
            replace(layer.counts(), kv_heads=shape.num_kv_heads if all_groups else layer.kv_heads,
                    q_per_kv=shape.group_size, qk_dim=qk, v_dim=v)
            if layer.keep and (all_groups or layer.kv_heads) else layer.counts()
            for layer in arch.layers)
        return space.repair(Architecture(shape, layers), args.budget)

    candidates = {
        "greedy seed": greedy,
        "transact": transact,
        "transact attention + greedy MLP": mix(transact, greedy),
        "greedy attention + transact MLP": mix(greedy, transact),
        "greedy MLP, all groups, q/k and v dims 56": dims(greedy, 56, 56),
        "greedy MLP, all groups, q/k dims 48": dims(greedy, 48, 64),
        "greedy MLP, all groups, v dims 48": dims(greedy, 64, 48),
        "greedy groups and MLP, q/k and v dims 56": dims(greedy, 56, 56, all_groups=False),
    }
    texts = {split: eval_windows(token_ids(loaded.tokenizer, split), 512, args.tokens)
             for split in ("ptb-valid", "wiki-valid")}
    total = param_count(Architecture.dense(shape))
    results = {"budget": args.budget, "tokens": args.tokens, "window": 512, "models": {}}
    for name, arch in candidates.items():
        model = mask_model(loaded.model, arch if arch.has_indices else select_units(arch, scores, "transact"))
        row = {"removed": round(1 - param_count(arch) / total, 4)}
        row.update({split: round(perplexity(model, text, progress=False).ppl, 2) for split, text in texts.items()})
        results["models"][name] = row
        print(name, json.dumps(row), flush=True)
    Path("bench/results/allocation_parts.json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
