"""Should a refitted model keep the MLP channels that least-squares reconstruction picks? Greedy OBS against each
method's own channel choice, plain and refitted, side by side.

Usage: .venv/bin/python bench/obs_units.py [--tokens 4096] [--searched A.json]

For every layer, greedy optimal-brain-surgeon removal over ``down_proj``'s input columns (the refit's dense
moments, ridge 0.05 of the mean diagonal) orders the MLP channels: the channel whose removal, with the remaining
columns refitted, adds the least reconstruction error goes first. Keeping the last-removed ``k`` channels is then
the reconstruction-optimal greedy choice for any width. The searched 20% model and the TransAct, LLM-BIP and
uniform baselines at 20% keep their widths and heads; only the MLP channels change. PTB-valid / wiki-valid ppl on
the first ``--tokens`` tokens, 512-token windows. Writes ``bench/results/obs_units.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch


def obs_order(weight: torch.Tensor, moments: torch.Tensor, damp: float = 0.05, every: int = 128) -> torch.Tensor:
    """Per column of ``weight`` the step at which greedy OBS removes it (higher: kept longer)."""
    w, c = weight.double().clone(), moments.double()
    n = c.shape[0]
    hinv = torch.cholesky_inverse(torch.linalg.cholesky(c + damp * c.diagonal().mean() * torch.eye(n, dtype=c.dtype)))
    index, alive, order = torch.arange(n), torch.ones(n, dtype=torch.bool), torch.zeros(n)
    for step in range(n - 1):
        if step and step % every == 0:  # drop removed columns now and then: the cost falls with the size
            keep = alive.nonzero().squeeze(1)
            w, hinv, index, alive = w[:, keep], hinv[keep][:, keep], index[keep], torch.ones(len(keep), dtype=torch.bool)
        diag = hinv.diagonal()
        error = torch.where(alive, (w * w).sum(0) / diag.clamp_min(1e-30), torch.full_like(diag, float("inf")))
        j = int(error.argmin())
        order[index[j]] = step
        row = hinv[j] / hinv[j, j]
        w -= torch.outer(w[:, j], row)
        hinv -= torch.outer(hinv[:, j], row)
        alive[j] = False
    order[index[alive]] = n
    return order


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--searched", type=Path, default=Path("bench/results/archs/s10-best-20.json"))
    args = parser.parse_args()

    from prunesearch.data import eval_windows, token_ids
    from prunesearch.evaluate.perplexity import perplexity
    from prunesearch.models import load_model
    from prunesearch.pruners import RefitSpec, load_refit, materialize
    from prunesearch.pruners.baselines import baseline
    from prunesearch.space import Architecture, ModelShape

    torch.set_grad_enabled(False)
    loaded = load_model("smollm2-135m")
    dense = loaded.model
    shape = ModelShape.from_config(dense.config)
    refit = load_refit(dense, loaded.tokenizer, loaded.fingerprint, RefitSpec())
    start = time.perf_counter()
    orders = [obs_order(block.mlp.down_proj.weight, refit.mlp[i]) for i, block in enumerate(dense.model.layers)]
    seconds = time.perf_counter() - start

    def top(order: torch.Tensor, k: int) -> tuple[int, ...]:
        return tuple(sorted(torch.sort(-order, stable=True).indices[:k].tolist()))

    def with_obs(arch: Architecture) -> Architecture:
        layers = tuple(replace(layer, mlp_idx=top(orders[i], layer.mlp)) if layer.keep and layer.has_mlp else layer
                       for i, layer in enumerate(arch.layers))
        return Architecture(arch.shape, layers, {**arch.meta, "units": "obs"})

    texts = {s: eval_windows(token_ids(loaded.tokenizer, s), 512, args.tokens) for s in ("ptb-valid", "wiki-valid")}
    archs = {"searched": Architecture.load(args.searched, shape)}
    archs.update({m: baseline(m, loaded, 0.2, progress=False) for m in ("transact", "bip", "uniform")})
    results = {"tokens": args.tokens, "searched": str(args.searched), "obs_seconds": round(seconds, 1), "ppl": {}}
    for name, arch in archs.items():
        for label, chosen in (("own units", arch), ("obs mlp units", with_obs(arch))):
            for applied in (None, refit):
                model = materialize(dense, chosen, applied)
                key = f"{name} | {label} | {'refit' if applied else 'plain'}"
                results["ppl"][key] = {s: round(perplexity(model, w, progress=False).ppl, 2) for s, w in texts.items()}
                print(key, results["ppl"][key], flush=True)
    Path("bench/results/obs_units.json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
