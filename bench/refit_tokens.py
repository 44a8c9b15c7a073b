"""How much calibration text should the refit's moments come from? The old default (128 windows of 256 PTB-train
tokens) against four times as many tokens in short or evaluation-length windows.

Usage: .venv/bin/python bench/refit_tokens.py [--tokens 4096]

For the searched 20% model (``runs/s10``) and the TransAct and LLM-BIP baselines at 20%, each refitted with
moments from 128 x 256, 512 x 256 and 256 x 512 tokens (damp 0.05): PTB-valid / wiki-valid ppl on the first
``--tokens`` tokens, 512-token windows, and the seconds each set of moments took (cached ones: ~0). Writes
``bench/results/refit_tokens.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=4096)
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
    texts = {s: eval_windows(token_ids(loaded.tokenizer, s), 512, args.tokens) for s in ("ptb-valid", "wiki-valid")}
    archs = {"searched": Architecture.load("bench/results/archs/s10-best-20.json", ModelShape.from_config(dense.config))}
    archs.update({m: baseline(m, loaded, 0.2, progress=False) for m in ("transact", "bip")})
    results = {"tokens": args.tokens}
    for spec in (RefitSpec(count=128, length=256), RefitSpec(count=512, length=256), RefitSpec(count=256, length=512)):
        start = time.perf_counter()
        refit = load_refit(dense, loaded.tokenizer, loaded.fingerprint, spec, progress=False)
        label = f"{spec.count}x{spec.length}"
        results[label] = {"moments_s": round(time.perf_counter() - start, 1)}
        for name, arch in archs.items():
            model = materialize(dense, arch, refit)
            results[label][name] = {s: round(perplexity(model, w, progress=False).ppl, 2) for s, w in texts.items()}
            print(label, name, results[label][name], flush=True)
    Path("bench/results/refit_tokens.json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
