"""Does 1 / FLOPs stand in for measured speed on this machine? Searched and heuristic models timed against dense.

Usage: .venv/bin/python bench/flops_speed.py [--repeats 10]

Each model is timed interleaved with the dense one (``compare_speed``: the fastest of ``--repeats`` forwards of a
1 x seq batch, seq 512 and 128), beside the cost model's dense / pruned FLOPs at the same context. Writes
``bench/results/flops_speed.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()

    from prunesearch.evaluate.speed import compare_speed
    from prunesearch.models import load_model
    from prunesearch.pruners import materialize
    from prunesearch.pruners.baselines import baseline
    from prunesearch.space import Architecture, ModelShape, Workload, cost

    torch.set_grad_enabled(False)
    loaded = load_model("smollm2-135m")
    dense = loaded.model
    shape = ModelShape.from_config(dense.config)
    archs = {"searched 20% (runs/s10)": Architecture.load("bench/results/archs/s10-best-20.json", shape),
             "searched 20%, KV <= 65% (runs/s11-kv65)": Architecture.load("bench/results/archs/s11-kv65-best-20.json",
                                                                           shape),
             "transact 20%": baseline("transact", loaded, 0.2, progress=False),
             "transact 29%": baseline("transact", loaded, 0.29, progress=False)}
    results = {"repeats": args.repeats, "models": {}}
    for name, arch in archs.items():
        model = materialize(dense, arch)
        results["models"][name] = {}
        for seq in (512, 128):
            measured = compare_speed(dense, model, Workload(context=seq), repeats=args.repeats).ratio
            figures = cost(arch, seq_len=seq)
            results["models"][name][seq] = {"speed": round(measured, 3),
                                            "inverse_flops": round(figures.dense_flops / figures.flops, 3)}
            print(name, seq, results["models"][name][seq], flush=True)
    Path("bench/results/flops_speed.json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
