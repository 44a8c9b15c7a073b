"""Which training-free refit of the output projections should the materializer use? Variants side by side.

Usage: .venv/bin/python bench/reconstruction.py [--budget 0.2] [--tokens 4096] [--searched A.json]

For the searched and the TransAct model at ``--budget``: PTB-valid and wiki-valid ppl (first ``--tokens`` tokens
each, 512-token windows) of
- the plain pruned model;
- session 7's refit: least squares on the *centred* covariance plus a bias restoring the mean, ridge toward zero
  (damp 0.01 of the mean diagonal), bench-only (it needs a bias the pruned config would have to carry);
- the product's refit (``prunesearch.pruners.refit``): uncentred moments, ridge toward the plain slice, at several
  damps and calibration sizes (32 or 128 windows of 256 PTB-train tokens).
Writes ``bench/results/reconstruction.json``.
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
    parser.add_argument("--searched", type=Path, default=Path("bench/results/archs/s10-best-20.json"))
    args = parser.parse_args()

    from prunesearch.data import calibration_windows, eval_windows, token_ids
    from prunesearch.evaluate.perplexity import perplexity
    from prunesearch.models import load_model
    from prunesearch.pruners import RefitSpec, load_refit, materialize
    from prunesearch.pruners.baselines import baseline
    from prunesearch.pruners.masking import mask_model
    from prunesearch.pruners.materialize import unit_rows
    from prunesearch.space import Architecture, ModelShape

    torch.set_grad_enabled(False)
    loaded = load_model("smollm2-135m")
    dense = loaded.model
    shape = ModelShape.from_config(dense.config)
    texts = {s: eval_windows(token_ids(loaded.tokenizer, s), 512, args.tokens) for s in ("ptb-valid", "wiki-valid")}

    def centred_moments(count: int) -> dict[tuple[int, str], list]:
        spec = RefitSpec(count=count)
        windows = calibration_windows(token_ids(loaded.tokenizer, spec.data), spec.count, spec.length, spec.seed)
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
        for start in range(0, len(windows), 8):
            dense(input_ids=windows[start:start + 8], use_cache=False)
        for handle in hooks:
            handle.remove()
        return moments

    def centred_refit(arch: Architecture, moments: dict, damp: float = 0.01):
        model = mask_model(dense, arch)
        for i, layer in enumerate(arch.layers):
            if not layer.keep:
                continue
            for part, has in (("mlp", layer.has_mlp), ("attn", layer.has_attention)):
                owner = model.model.layers[i].mlp if part == "mlp" else model.model.layers[i].self_attn
                name = "down_proj" if part == "mlp" else "o_proj"
                keep = list(layer.mlp_idx) if part == "mlp" else unit_rows(shape, layer)["o"].tolist()
                source = getattr(owner, name)
                if not has or len(keep) == source.in_features:
                    continue
                n, total, outer = moments[(i, part)]
                mean = total / n
                cov = outer / n - torch.outer(mean, mean)
                k = torch.as_tensor(keep)
                inner = cov[k][:, k] + damp * cov[k][:, k].diagonal().mean() * torch.eye(len(k), dtype=cov.dtype)
                w = getattr(getattr(dense.model.layers[i], "mlp" if part == "mlp" else "self_attn"), name)
                w = w.weight.double()
                kept = torch.linalg.solve(inner, (w @ cov[:, k]).T).T
                proj = torch.nn.Linear(source.in_features, source.out_features, bias=True)
                proj.weight.zero_()
                proj.weight[:, keep] = kept.float()
                proj.bias.copy_((w @ mean - kept @ mean[k]).float())
                setattr(owner, name, proj)
        return model

    def refit(count: int, damp: float):
        return load_refit(dense, loaded.tokenizer, loaded.fingerprint, RefitSpec(count=count, damp=damp))

    archs = {"searched": Architecture.load(args.searched, shape),
             "transact": baseline("transact", loaded, args.budget, progress=False)}
    centred = centred_moments(128)
    results = {"budget": args.budget, "tokens": args.tokens, "searched": str(args.searched), "ppl": {}}
    for label, arch in archs.items():
        variants = {
            "plain": lambda: materialize(dense, arch),
            "centred + mean bias, ridge to zero 0.01, 32k tokens": lambda: centred_refit(arch, centred),
            "refit, damp 0.05, 8k tokens": lambda: materialize(dense, arch, refit(32, 0.05)),
            "refit, damp 0.01, 32k tokens": lambda: materialize(dense, arch, refit(128, 0.01)),
            "refit, damp 0.05, 32k tokens (default)": lambda: materialize(dense, arch, refit(128, 0.05)),
            "refit, damp 0.2, 32k tokens": lambda: materialize(dense, arch, refit(128, 0.2)),
        }
        results["ppl"][label] = {}
        for name, build in variants.items():
            model = build()
            results["ppl"][label][name] = {s: round(perplexity(model, w, progress=False).ppl, 2)
                                           for s, w in texts.items()}
            print(label, name, results["ppl"][label][name], flush=True)
    Path("bench/results/reconstruction.json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
