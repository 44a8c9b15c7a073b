"""Which MLP channels should a width keep? The channel score's norm and weighting, at a fixed allocation.

Usage: .venv/bin/python bench/mlp_scores.py [--arch bench/results/archs/s10-best-20.json ...] [--tokens 4096]

A searched model keeps the channels TransAct's scores rank highest: the L2 norm of the MLP activation
a = act(gate x) * up x over the calibration tokens. The activation-aware score (E|a| times the norm of the
channel's down_proj column) read 12% worse at TransAct's 20% widths (session 9). This asks why, and whether another
norm does better: each architecture keeps its widths, heads and dims, and only its MLP channels are chosen again
by each score, from one pass over the calibration windows (32 x 256 PTB-train tokens, as the priors):
the L1, L2 and L4 norms and the maximum of |a| over those tokens, each alone and times ||W_down[:, j]||, and the
L2 norm plus a sixteenth of the maximum (each scaled by its layer's mean). Perplexity on the first ``--tokens``
tokens of PTB-valid and wiki-valid, 512-token windows. Output: ``bench/results/mlp_scores.json``.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--arch", type=Path, nargs="+", default=[Path("bench/results/archs/s10-best-20.json")])
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--out", type=Path, default=Path("bench/results/mlp_scores.json"))
    args = parser.parse_args()

    from prunesearch.data import calibration_windows, eval_windows, token_ids
    from prunesearch.evaluate.perplexity import perplexity
    from prunesearch.models import load_model
    from prunesearch.pruners import CalibrationSpec, materialize
    from prunesearch.errors import PrunesearchError
    from prunesearch.space import Architecture

    try:
        archs = {path.stem: Architecture.load(path) for path in args.arch}
    except PrunesearchError as exc:
        parser.error(str(exc))
    loaded, spec = load_model(), CalibrationSpec()
    model, size = loaded.model, loaded.model.config.intermediate_size
    layers = len(model.model.layers)
    norms = {p: torch.zeros(layers, size) for p in (1, 2, 4)}
    peak = torch.zeros(layers, size)

    def collect(i: int):
        def hook(module, inputs) -> None:
            a = inputs[0].detach().float().reshape(-1, size).abs()
            for p, total in norms.items():
                total[i] += (a ** p).sum(0)
            peak[i] = torch.maximum(peak[i], a.max(0).values)
        return hook

    hooks = [block.mlp.down_proj.register_forward_pre_hook(collect(i)) for i, block in enumerate(model.model.layers)]
    windows = calibration_windows(token_ids(loaded.tokenizer, spec.data), spec.count, spec.length, spec.seed)
    with torch.no_grad():
        for start in range(0, len(windows), spec.batch_size):
            model(input_ids=windows[start:start + spec.batch_size], use_cache=False)
    for hook in hooks:
        hook.remove()
    weight = torch.stack([block.mlp.down_proj.weight.float().norm(dim=0) for block in model.model.layers])
    l1, l2, l4 = norms[1], norms[2].sqrt(), norms[4] ** 0.25
    scores = {
        "L2 (TransAct)": l2, "L2 x |W|": l2 * weight, "L1 x |W| (activation-aware)": l1 * weight, "L1": l1,
        "L4": l4, "L4 x |W|": l4 * weight, "max": peak,
        "L2 + max / 16": l2 / l2.mean(1, keepdim=True) + peak / peak.mean(1, keepdim=True) / 16,
    }
    data = {split: eval_windows(token_ids(loaded.tokenizer, split), 512, args.tokens)
            for split in ("ptb-valid", "wiki-valid")}
    results: dict = {"tokens per split": args.tokens, "window": 512, "calibration": vars(spec), "models": {}}
    for stem, arch in archs.items():
        for name, score in scores.items():
            chosen = tuple(replace(layer, mlp_idx=tuple(sorted(torch.sort(-score[i], stable=True).indices[:layer.mlp]
                                                               .tolist()))) if layer.keep else layer
                           for i, layer in enumerate(arch.layers))
            pruned = materialize(model, Architecture(arch.shape, chosen, arch.meta))
            read = {split: perplexity(pruned, w, progress=False).ppl for split, w in data.items()}
            results["models"][f"{stem} | {name}"] = read
            print(stem, "|", name, json.dumps(read), flush=True)
            args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
