"""Does a pruned model's speedup depend on the workload it serves? The same models timed on several.

Usage: .venv/bin/python bench/workloads.py [--model smollm2-135m] [--repeats 5] [--out bench/results/workloads.json]

Each model of ``bench/speed.py``'s variants (one kind of cut everywhere, and a random mix) is materialized once and
timed interleaved with the dense model (``compare_speed``: each model's fastest repeat) on each workload: a prompt's
forward or generated tokens (decode), at batch 1 and 8, at a 512- and a 2,048-token context. Beside each speedup are
the FLOPs ratio at that context and the KV-cache ratio, the stand-ins a user might otherwise read it from.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from speed import variants

WORKLOADS = (("prefill", 1, 512), ("prefill", 8, 128), ("decode", 1, 512), ("decode", 1, 2048), ("decode", 8, 512))
SHOWN = ("4 middle blocks removed", "MLP 50% in every layer", "1 of 3 KV groups removed per layer",
         "random mix at 30% of parameters")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("bench/results/workloads.json"))
    args = parser.parse_args()

    from prunesearch.evaluate import compare_speed, with_units
    from prunesearch.models import load_model
    from prunesearch.pruners import materialize
    from prunesearch.space import ModelShape, Workload, cost

    torch.set_grad_enabled(False)
    loaded = load_model(args.model)
    archs = variants(ModelShape.from_config(loaded.model.config))
    rows = []
    for name in SHOWN:
        arch = with_units(loaded, archs[name], progress=False)
        pruned = materialize(loaded.model, arch)
        for mode, batch, context in WORKLOADS:
            workload = Workload(mode, batch, context)
            figures = cost(arch, seq_len=context)
            speed = compare_speed(loaded.model, pruned, workload, args.repeats)
            rows.append({"model": name, "workload": workload.describe(), **workload.to_dict(),
                         "speedup": round(speed.ratio, 3), "dense_tokens_per_s": round(speed.dense_tokens_per_s, 1),
                         "flops_ratio": round(figures.dense_flops / figures.flops, 3),
                         "kv_ratio": round(figures.kv_bytes / figures.dense_kv_bytes, 3)})
            print(json.dumps(rows[-1]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"model": args.model, "repeats": args.repeats, "threads": torch.get_num_threads(),
                                    "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
