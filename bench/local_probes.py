"""Do probes taken around each budget's greedy seed, cutting further and growing back, rank the band better?

Usage: .venv/bin/python bench/local_probes.py --run runs/<campaign> [--seeds 0 1 2] [--members 5]

The band's best pairs sit near the greedy seed, where the dense probes (and the greedy's re-probe on its way
there) cannot see what restoring units would buy. Here each kept layer of the greedy seed at each of the run's
budgets is moved alone: its MLP by -512..+512 channels and to dense, its KV groups to every other count. Each move
is scored by the KL divergence of its next-token distribution from the dense model's, minus the seed's own (KL,
not the loss rise: session 14 found the loss rise of small cuts to be noise on probe text of this size). The
tables ``local<pct>/mlp`` and ``local<pct>/kv`` then join the run's feature context, and the predictor is scored
out of fold on the run's pairs (5 folds per fold seed) with and without them. Output:
``bench/results/local_probes.json``.
"""

from __future__ import annotations

import argparse
import copy
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

MLP_MOVES = (-512, -256, -128, 128, 256, 512)


@torch.no_grad()
def local_probe(model, scores, windows: torch.Tensor, base) -> tuple[np.ndarray, np.ndarray]:
    """[L, I + 1] and [L, KV + 1]: KL from the dense model of ``base`` with one layer's MLP width or KV groups
    moved, minus the KL of ``base`` itself, interpolated over every count (0 at the layer's own)."""
    from prunesearch.pruners.masking import mask_layer, mask_model
    from prunesearch.pruners.selection import select_layer, select_units
    from prunesearch.pruners.sleb import BlockRunner
    from prunesearch.space import Architecture, ModelShape

    shape = ModelShape.from_config(model.config)
    L, I, KV = shape.num_layers, shape.intermediate_size, shape.num_kv_heads
    dense_runner = BlockRunner(model, windows, 4)
    reference = [F.log_softmax(dense_runner.head(h)[:, :-1].float(), -1)
                 for h in dense_runner.run(range(L), dense_runner.embed())]
    base = select_units(base, scores)
    dense_layers = model.model.layers
    masked = mask_model(model, base)
    runner = BlockRunner(masked, windows, 4)
    inputs = [runner.embed()]
    for i in range(L):
        inputs.append(runner.block(i, inputs[-1]) if base.layers[i].keep else inputs[-1])

    def kl(states: list[torch.Tensor]) -> float:
        total = count = 0
        for ref, h in zip(reference, states, strict=True):
            cut = F.log_softmax(runner.head(h)[:, :-1].float(), -1)
            total += F.kl_div(cut, ref, log_target=True, reduction="sum").item()
            count += ref.shape[0] * ref.shape[1]
        return total / count

    base_kl = kl(inputs[-1])
    layers = masked.model.layers
    mlp, attn = np.zeros((L, I + 1)), np.zeros((L, KV + 1))
    for i in range(L):
        now = base.layers[i].counts()
        if not now.keep:
            continue
        after = [j for j in range(i + 1, L) if base.layers[j].keep]

        def moved(layer) -> float:
            trial = Architecture(shape, base.layers[:i] + (layer,) + base.layers[i + 1:])
            original, layers[i] = layers[i], copy.deepcopy(dense_layers[i])
            try:
                mask_layer(layers[i], shape, select_layer(trial, i, scores), None, i)
                return kl(runner.run(after, runner.block(i, inputs[i]))) - base_kl
            finally:
                layers[i] = original

        widths = sorted(({min(max(now.mlp + d, 0), I) for d in MLP_MOVES} | {I}) - {now.mlp})
        points = sorted([(now.mlp, 0.0)] + [(k, moved(replace(now, mlp=k))) for k in widths])
        mlp[i] = np.interp(np.arange(I + 1), *zip(*points))
        full = now if now.kv_heads else replace(now, q_per_kv=shape.group_size, qk_dim=shape.head_dim,
                                                 v_dim=shape.head_dim)
        groups = [g for g in range(KV + 1) if g != now.kv_heads]
        cut = {g: replace(full, kv_heads=g) if g else replace(full, kv_heads=0, q_per_kv=0, qk_dim=0, v_dim=0)
               for g in groups}
        points = sorted([(now.kv_heads, 0.0)] + [(g, moved(cut[g])) for g in groups])
        attn[i] = np.interp(np.arange(KV + 1), *zip(*points))
        print(f"layer {i}: mlp {mlp[i, 0]:+.3f}..{mlp[i, -1]:+.3f}, kv {attn[i].round(3).tolist()}", flush=True)
    return mlp, attn


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--members", type=int, default=5)
    args = parser.parse_args()

    from prunesearch.data import calibration_windows, token_ids
    from prunesearch.predictor.context import FeatureContext
    from prunesearch.pruners.greedy import greedy_reference
    from runs import run_model, run_pairs, score_contexts

    pairs = run_pairs(args.run)
    m = run_model(pairs)
    ctx = pairs.predictor.ctx
    greedy_at = greedy_reference(m.loaded, pairs.config["units"], pairs.config["mlp_step"], progress=False)
    windows = calibration_windows(token_ids(m.loaded.tokenizer, "ptb-train"), 8, 128, 1)
    out = Path("bench/results/local_probes.json")
    results: dict = {"run": str(args.run), "pairs": len(pairs.y), "seeds": args.seeds, "members": args.members}
    tables = {}
    for budget in pairs.config["budgets"]:
        start = time.perf_counter()
        mlp, attn = local_probe(m.loaded.model, m.scores, windows, greedy_at(budget, pairs.config["greedy_stages"]))
        tag = f"local{round(budget * 100)}"
        tables.update({f"{tag}/mlp": mlp, f"{tag}/kv": attn})
        results[f"probe seconds {tag}"] = time.perf_counter() - start
    local = FeatureContext(ctx.shape, {**ctx.tables, **tables}, ctx.block)
    contexts = {"the run's features": ctx, "with the local probes": local}
    score_contexts(pairs, contexts, tuple(args.seeds), args.members, results, out)


if __name__ == "__main__":
    main()
