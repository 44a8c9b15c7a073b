"""How well does the latency model predict measured speed, against the FLOPs and parameter ratios?

Usage: .venv/bin/python bench/latency.py [--model smollm2-135m] [--mode prefill|decode] [--batch 1] [--context 512]
       [--test 12] [--repeats 5] [--out F]

The latency model of the search's space on this device (``latency_model``: 24 sampled architectures, timed and
cached) predicts the speedup of ``--test`` other architectures. They are drawn with another seed, on budgets from 5%
to 45% removed. Each is then timed interleaved with the dense model (``compare_speed``, real weights, units by
activation scores). The bench reports the mean and largest relative error of the latency model's speedup and of
the usual stand-ins: the FLOPs ratio (dense FLOPs over the architecture's) and the parameter ratio. ``--mode decode``
does the same for generated tokens against a 512-token KV cache; ``--batch`` and ``--context`` set the workload
(sequences per step, prompt tokens), and the FLOPs ratio is then taken at that context.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--test", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--mode", choices=("prefill", "decode"), default="prefill")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--context", type=int, default=512)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    shape = "" if (args.batch, args.context) == (1, 512) else f"-b{args.batch}-c{args.context}"
    out_path = args.out or Path("bench/results") / ("latency" + ("" if args.mode == "prefill" else f"-{args.mode}")
                                                    + shape + ".json")

    from prunesearch.evaluate.latency import latency_model
    from prunesearch.evaluate.speed import compare_speed
    from prunesearch.models import load_model
    from prunesearch.pruners import CalibrationSpec, materialize, select_units
    from prunesearch.pruners.priors import compute_priors
    from prunesearch.space import ModelShape, Workload, cost, space_for

    loaded = load_model(args.model)
    space = space_for(ModelShape.from_config(loaded.model.config))
    workload = Workload(args.mode, args.batch, args.context)
    model = latency_model(loaded.model.config, space, workload)
    scores = compute_priors(loaded, CalibrationSpec(), progress=False).unit["activation"]
    rows = []
    for i, budget in enumerate(np.linspace(0.05, 0.45, args.test)):
        arch = select_units(space.sample_at_budget(float(budget), 1000 + i), scores)
        figures = cost(arch, seq_len=args.context)
        measured = compare_speed(loaded.model, materialize(loaded.model, arch), workload, args.repeats).ratio
        rows.append({"removed": figures.removed, "blocks removed": sum(not layer.keep for layer in arch.layers),
                     "measured": measured, "latency model": model.speedup_of(arch),
                     "flops ratio": figures.dense_flops / figures.flops,
                     "params ratio": figures.dense_params / figures.params})
        print(json.dumps(rows[-1]), flush=True)
    measured = np.array([r["measured"] for r in rows])
    errors = {name: np.abs(np.array([r[name] for r in rows]) - measured) / measured
              for name in ("latency model", "flops ratio", "params ratio")}
    out = {"model": args.model, "mode": args.mode, "device": model.device, "seq_len": model.seq_len,
           "batch_size": model.batch_size,
           "fit": {k: v for k, v in model.fit.items() if k != "measured_speedups"}, "fixed": model.fixed,
           "parent": model.parent,
           "coef": model.coef, "rows": rows,
           "error": {name: {"mean": float(e.mean()), "max": float(e.max())} for name, e in errors.items()}}
    print(json.dumps(out["error"]))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
