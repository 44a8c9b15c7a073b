"""Would choosing *which* KV groups to drop by measured loss, instead of by score, improve the 20% greedy seed?

Usage: .venv/bin/python bench/group_choice.py [--greedy runs/smollm2-units/best-20.json] [--tokens 16384]

The greedy seed's group counts stay; in each layer that drops groups, every other choice of groups is tried with
the rest of the model as it stands, and the one with the lowest calibration loss is kept (one pass, layer by
layer; 16 PTB-train windows of 256 tokens, seed 11, not the probes' or the calibration's windows). The seed and
the result are then read on PTB-valid and Wikipedia-prose-valid, first ``--tokens`` tokens, 512-token windows.
"""

from __future__ import annotations

import argparse
import itertools
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--greedy", type=Path, default=Path("runs/smollm2-units/best-20.json"))
    parser.add_argument("--tokens", type=int, default=16384)
    args = parser.parse_args()

    from prunesearch.data import calibration_windows, eval_windows, token_ids
    from prunesearch.evaluate.perplexity import perplexity
    from prunesearch.models import load_model
    from prunesearch.pruners import CalibrationSpec
    from prunesearch.pruners.masking import mask_model
    from prunesearch.pruners.priors import compute_priors
    from prunesearch.pruners.selection import select_units
    from prunesearch.space import Architecture, ModelShape

    torch.set_grad_enabled(False)
    loaded = load_model("smollm2-135m")
    dense, shape = loaded.model, ModelShape.from_config(loaded.model.config)
    scores = compute_priors(loaded, CalibrationSpec()).unit["transact"]
    seed = select_units(Architecture.load(args.greedy, shape), scores, "transact")
    calibration = calibration_windows(token_ids(loaded.tokenizer, "ptb-train"), 16, 256, 11)

    def loss(arch: Architecture) -> float:
        return float(np.log(perplexity(mask_model(dense, arch), calibration, batch_size=4, progress=False).ppl))

    def with_groups(arch: Architecture, i: int, groups: tuple[int, ...]) -> Architecture:
        layers, layer = list(arch.layers), arch.layers[i]
        n = len(groups)
        layers[i] = replace(layer, kv_idx=groups, q_idx=(layer.q_idx[0],) * n, qk_idx=(layer.qk_idx[0],) * n,
                            v_idx=(layer.v_idx[0],) * n)
        return Architecture(shape, tuple(layers), arch.meta)

    current, best_loss = seed, loss(seed)
    results: dict = {"seed calibration loss": best_loss, "layers": []}
    for i, layer in enumerate(seed.layers):
        if not layer.keep or layer.kv_heads in (0, shape.num_kv_heads):
            continue
        tried = {str(list(layer.kv_idx)): best_loss}
        choice = tuple(layer.kv_idx)
        for groups in itertools.combinations(range(shape.num_kv_heads), layer.kv_heads):
            if groups != tuple(layer.kv_idx):
                tried[str(list(groups))] = value = loss(with_groups(current, i, groups))
                if value < best_loss:
                    best_loss, choice = value, groups
        current = with_groups(current, i, choice)
        results["layers"].append({"layer": i, "by score": list(layer.kv_idx), "by loss": list(choice), "tried": tried})
        print(json.dumps(results["layers"][-1]), flush=True)
    results["final calibration loss"] = best_loss
    results["changed layers"] = sum(r["by score"] != r["by loss"] for r in results["layers"])
    results["ppl"] = {}
    for name, arch in (("greedy seed", seed), ("groups by measured loss", current)):
        results["ppl"][name] = {split: round(perplexity(mask_model(dense, arch), eval_windows(
            token_ids(loaded.tokenizer, split), 512, args.tokens), progress=False).ppl, 2)
            for split in ("ptb-valid", "wiki-valid")}
        print(name, json.dumps(results["ppl"][name]), flush=True)
    Path("bench/results/group_choice.json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
