"""Would training-free weight reconstruction change who wins? The greedy and TransAct 20% models, with and without.

Usage: .venv/bin/python bench/reconstruction.py [--budget 0.2] [--tokens 4096]

A pruned unit's contribution to the residual stream can be partly restored without training: the output
projection (down_proj for MLP channels, o_proj for attention value dims) is refitted by least squares on the kept
inputs, ``W' = W C[:, K] (C[K, K] + damp I)^-1``, with a bias restoring the mean (C: covariance of the projection's
input over the calibration windows, 32 x 256 PTB-train tokens, dense model; ``damp`` relative to C[K, K]'s mean
diagonal), or only the mean of the removed inputs is folded into a bias (FLAP's compensation). PTB-valid ppl
on the first ``--tokens`` tokens, 512-token windows. Not part of the product: the question is whether it would
narrow or widen the gap between an allocation and the uniform TransAct baseline.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--budget", type=float, default=0.2)
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--greedy", type=Path, default=Path("runs/smollm2-units/best-20.json"))
    args = parser.parse_args()

    from prunesearch.data import calibration_windows, eval_windows, token_ids
    from prunesearch.evaluate.perplexity import perplexity
    from prunesearch.models import load_model
    from prunesearch.pruners import CalibrationSpec
    from prunesearch.pruners.baselines import baseline
    from prunesearch.pruners.masking import mask_model
    from prunesearch.pruners.materialize import unit_rows
    from prunesearch.space import Architecture, ModelShape

    torch.set_grad_enabled(False)
    loaded = load_model("smollm2-135m")
    dense = loaded.model
    shape = ModelShape.from_config(dense.config)
    spec = CalibrationSpec()
    windows = calibration_windows(token_ids(loaded.tokenizer, spec.data), spec.count, spec.length, spec.seed)
    text = eval_windows(token_ids(loaded.tokenizer, "ptb-valid"), 512, args.tokens)

    moments: dict[tuple[int, str], list] = {}
    hooks = []
    for i, block in enumerate(dense.model.layers):
        for part, proj in (("mlp", block.mlp.down_proj), ("attn", block.self_attn.o_proj)):
            def hook(_, inputs, key=(i, part)):
                x = inputs[0].reshape(-1, inputs[0].shape[-1]).float()
                m = moments.setdefault(key, [0, 0.0, 0.0])
                m[0] += len(x)
                m[1] = m[1] + x.sum(0).double()
                m[2] = m[2] + (x.T @ x).double()
            hooks.append(proj.register_forward_pre_hook(hook))
    for start in range(0, len(windows), spec.batch_size):
        dense(input_ids=windows[start:start + spec.batch_size], use_cache=False)
    for handle in hooks:
        handle.remove()

    def refit(weight: torch.Tensor, key: tuple[int, str], keep: list[int], mode: str, damp: float):
        n, total, outer = moments[key]
        mean = total / n
        w = weight.double()
        if mode == "bias":
            gone = torch.ones(len(mean), dtype=torch.bool)
            gone[keep] = False
            return w[:, keep].float(), (w[:, gone] @ mean[gone]).float()
        cov = outer / n - torch.outer(mean, mean)
        k = torch.as_tensor(keep)
        inner = cov[k][:, k]
        inner = inner + damp * inner.diagonal().mean() * torch.eye(len(k), dtype=cov.dtype)
        kept = torch.linalg.solve(inner, (w @ cov[:, k]).T).T
        return kept.float(), (w @ mean - kept @ mean[k]).float()

    def rebuilt(arch: Architecture, mode: str, parts: tuple[str, ...] = ("mlp", "attn"), damp: float = 0.01):
        model = mask_model(dense, arch)
        for i, layer in enumerate(arch.layers):
            if not layer.keep:
                continue
            for part in parts:
                owner = model.model.layers[i].mlp if part == "mlp" else model.model.layers[i].self_attn
                name = "down_proj" if part == "mlp" else "o_proj"
                has = layer.has_mlp if part == "mlp" else layer.has_attention
                if not has:
                    continue
                keep = list(layer.mlp_idx) if part == "mlp" else unit_rows(shape, layer)["o"].tolist()
                source = getattr(dense.model.layers[i].mlp if part == "mlp" else dense.model.layers[i].self_attn, name)
                if len(keep) == source.in_features:
                    continue
                kept, bias = refit(source.weight, (i, part), keep, mode, damp)
                proj = torch.nn.Linear(source.in_features, source.out_features, bias=True)
                proj.weight.zero_()
                proj.weight[:, keep] = kept
                proj.bias.copy_(bias)
                setattr(owner, name, proj)
        return model

    archs = {"greedy": Architecture.load(args.greedy, shape),
             "transact": baseline("transact", loaded, args.budget, progress=False)}
    results = {"budget": args.budget, "tokens": args.tokens, "ptb-valid ppl": {}}
    for label, arch in archs.items():
        variants = {
            "plain": mask_model(dense, arch),
            "mean bias (FLAP)": rebuilt(arch, "bias"),
            "mean bias, MLP only": rebuilt(arch, "bias", ("mlp",)),
            "least squares, damp 0.01": rebuilt(arch, "ls"),
            "least squares, damp 0.1": rebuilt(arch, "ls", damp=0.1),
        }
        results["ptb-valid ppl"][label] = {name: round(perplexity(model, text, progress=False).ppl, 2)
                                           for name, model in variants.items()}
        print(label, json.dumps(results["ptb-valid ppl"][label]), flush=True)
    Path("bench/results/reconstruction.json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
