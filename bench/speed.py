"""Dense vs pruned SmolLM2-135M throughput, side by side in one run, for block drops, MLP cuts and head cuts.

Usage: .venv/bin/python bench/speed.py [--model smollm2-135m] [--repeats 7] [--write BENCHMARKS.md]

Each pruned model is timed interleaved with the dense one on the same input (prefill: one forward of a
1 x 512 batch, ``compare_speed``: each model's fastest repeat; decode: ``generate`` end to end, 64 greedy tokens
after a 64-token prompt, KV cache on, medians). Absolute tokens/s on this shared 2-core CPU are noisy.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch

from prunesearch.evaluate import compare_speed, with_units
from prunesearch.models import load_model
from prunesearch.pruners import materialize
from prunesearch.space import Architecture, ModelShape, SearchSpace, cost

BEGIN, END = "<!-- bench/speed.py:begin -->", "<!-- bench/speed.py:end -->"


def variants(shape: ModelShape) -> dict[str, Architecture]:
    dense = Architecture.dense(shape)
    full = dense.layers[0]

    def each(**change) -> Architecture:
        return Architecture(shape, tuple(replace(layer, **change) for layer in dense.layers))

    middle = set(range(shape.num_layers // 2 - 2, shape.num_layers // 2 + 2))
    drop = Architecture(shape, tuple(replace(l, keep=False) if i in middle else l for i, l in enumerate(dense.layers)))
    return {
        "dense (materialized)": dense,
        "4 middle blocks removed": drop,
        "MLP 50% in every layer": each(mlp=full.mlp // 2),
        "MLP removed in every layer": each(mlp=0),
        "1 of 3 KV groups removed per layer": each(kv_heads=full.kv_heads - 1),
        "2 of 3 query heads per group": each(q_per_kv=max(1, full.q_per_kv - 1)),
        "v/o dim 32 of 64 per head": each(v_dim=full.v_dim // 2),
        "q/k dim 32 of 64 per head (rotary pairs)": each(qk_dim=full.qk_dim // 2),
        "random mix at 30% of parameters": SearchSpace(shape).sample_at_budget(0.3, seed=0),
    }


@torch.no_grad()
def decode_ratio(dense, pruned, repeats: int, prompt_len: int = 64, new: int = 64) -> float:
    prompt = torch.randint(0, dense.config.vocab_size, (1, prompt_len), generator=torch.Generator().manual_seed(0))
    kwargs = dict(max_new_tokens=new, min_new_tokens=new, do_sample=False, pad_token_id=0)
    times: dict[str, list[float]] = {"dense": [], "pruned": []}
    for _ in range(repeats):
        for name, model in (("dense", dense), ("pruned", pruned)):
            start = time.perf_counter()
            model.generate(prompt, **kwargs)
            times[name].append(time.perf_counter() - start)
    return statistics.median(times["dense"]) / statistics.median(times["pruned"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    loaded = load_model(args.model)
    shape = ModelShape.from_config(loaded.model.config)
    rows = []
    for name, arch in variants(shape).items():
        arch = with_units(loaded, arch, progress=False)
        pruned = materialize(loaded.model, arch)
        c = cost(arch)
        speed = compare_speed(loaded.model, pruned, repeats=args.repeats)
        decode = decode_ratio(loaded.model, pruned, repeats=max(3, args.repeats // 2))
        rows.append(
            f"| {name} | {c.params / c.dense_params:.3f} | {c.flops / c.dense_flops:.3f} | "
            f"{c.kv_bytes / c.dense_kv_bytes:.3f} | {speed.ratio:.2f}x | {decode:.2f}x | "
            f"{speed.dense_tokens_per_s:.0f} / {speed.tokens_per_s:.0f} |"
        )
        print(rows[-1], flush=True)
    table = "\n".join([
        f"Model `{args.model}` (fingerprint `{loaded.fingerprint}`), fp32, {torch.get_num_threads()} threads, "
        f"{args.repeats} interleaved repeats (prefill: each model's fastest; decode: medians). "
        "Command: `.venv/bin/python bench/speed.py --write BENCHMARKS.md`.",
        "",
        "| architecture | params | FLOPs/token | KV bytes | prefill speed (1x512) | decode speed (64+64) | prefill tok/s dense / pruned |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        *rows,
    ])
    if args.write:
        text = args.write.read_text() if args.write.exists() else ""
        block = f"{BEGIN}\n{table}\n{END}"
        if BEGIN in text:
            text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END):]
        else:
            text += f"\n{block}\n"
        args.write.write_text(text)
    print(table)


if __name__ == "__main__":
    main()
