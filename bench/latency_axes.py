"""Would samples with one kind of cut in every layer let the latency fit see what attention width costs?

Usage: .venv/bin/python bench/latency_axes.py [--mode decode] [--batch 8] [--context 512] [--bench F] [--out F]

The cached latency model of the workload (``latency_model``: 24 random architectures and the dense one, timed
beside the dense parent) keeps its timings. Seven more architectures, each one kind of cut in every layer
(``bench/speed.py``'s variants: blocks, MLP halved or removed, a KV group, a query head per group, half the v/o or
q/k dims), are timed the same way. Both sample sets are refitted, with and without a KV-cache term (key/value heads
x dims x context), and scored on the held-out architectures of ``bench/latency.py``'s run for that workload
(``--bench``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LinearRegression

from speed import variants

KV_VARIANT = "1 of 3 KV groups removed per layer"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", default="decode")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--context", type=int, default=512)
    parser.add_argument("--bench", type=Path, default=Path("bench/results/latency-decode-b8-c512.json"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/latency-axes-decode-b8-c512.json"))
    args = parser.parse_args()

    from prunesearch.evaluate import latency as fit
    from prunesearch.evaluate.speed import prompt, step_timer
    from prunesearch.models.loading import load_config
    from prunesearch.space import ModelShape, Workload, space_for
    from prunesearch.space.latency import block_terms

    torch.set_grad_enabled(False)
    workload = Workload(args.mode, args.batch, args.context)
    config = load_config()
    shape = ModelShape.from_config(config)
    space = space_for(shape)
    cached = fit.latency_model(config, space, workload, progress=False)
    axes = {n: a for n, a in variants(shape).items() if n not in ("dense (materialized)",
                                                                  "random mix at 30% of parameters")}
    scores = fit._random_scores(space, 0)
    batch = prompt(config, workload, 0)
    parent = step_timer(fit._random_parent(config), batch, args.mode)
    parent()
    timed = {}
    for name, arch in axes.items():
        timer = step_timer(fit._random_model(config, arch, scores), batch, args.mode)
        timer()
        times, beside = [], []
        for _ in range(3):
            beside.append(parent())
            times.append(timer())
        timed[name] = min(beside) / min(times)
        print(name, round(timed[name], 3), flush=True)

    counts = np.stack([a.as_array() for a in fit.latency_archs(space, 24, 0)] + [a.as_array() for a in axes.values()])
    seconds = cached.parent / np.concatenate([cached.fit["measured_speedups"], list(timed.values())])
    held_out = json.loads(args.bench.read_text())["rows"]
    test = np.stack([space.sample_at_budget(float(b), 1000 + i).as_array()
                     for i, b in enumerate(np.linspace(0.05, 0.45, len(held_out)))])
    truth = np.array([r["measured"] for r in held_out])

    def design(c: np.ndarray, kv_term: bool) -> np.ndarray:
        c = np.asarray(c, np.float64)
        columns = [np.ones((len(c), 1)), block_terms(shape, c, args.context)]
        if kv_term:
            columns.append((c[..., 1] * (c[..., 3] + c[..., 4]) * (args.context + 1)).sum(-1)[:, None])
        return np.hstack(columns)

    fits = []
    for rows, samples in ((slice(0, 25), "random 25"), (slice(None), "random 25 + 7 one-kind")):
        for kv_term in (False, True):
            regression = LinearRegression(positive=True, fit_intercept=False)
            regression.fit(design(counts, kv_term)[rows], seconds[rows])
            predicted = cached.parent / regression.predict(design(test, kv_term))
            error = np.abs(predicted - truth) / truth
            kv_cut = cached.parent / regression.predict(design(axes[KV_VARIANT].as_array()[None], kv_term))[0]
            fits.append({"samples": samples, "kv_term": kv_term, "held_out_error_mean": float(error.mean()),
                         "held_out_error_max": float(error.max()), "kv_cut_predicted": float(kv_cut),
                         "coef": regression.coef_.tolist()})
            print(json.dumps(fits[-1]), flush=True)
    args.out.write_text(json.dumps({"workload": workload.to_dict(), "one_kind_timed": timed, "fits": fits},
                                   indent=1) + "\n")


if __name__ == "__main__":
    main()
