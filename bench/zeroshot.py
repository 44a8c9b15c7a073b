"""Zero-shot accuracy of dense SmolLM2-135M, the searched model and every baseline at one budget, through lm-eval
on the locally installed task data. Resumable: models already in the results file are skipped.

Usage: .venv/bin/python bench/zeroshot.py --budget 0.2 [--arch searched=runs/<c>/best-20.json] [--limit 20]
       [--mmlu-limit 1] [--write BENCHMARKS.md]

``--limit`` takes the first N documents of each of the 7 tasks, ``--mmlu-limit`` the first N of each of the 57
MMLU subjects (CPU time: about 0.5 s per scored choice on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from blocks import write_block

BEGIN, END = "<!-- bench/zeroshot.py:begin -->", "<!-- bench/zeroshot.py:end -->"
RESULTS = Path("bench/results/zeroshot.json")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--budget", type=float, default=0.2)
    parser.add_argument("--arch", action="append", default=[], help="name=path of a searched architecture")
    parser.add_argument("--methods", default="transact,uniform,sleb,shortgpt,mi,bip")
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--mmlu-limit", type=int, default=1)
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()

    from prunesearch.evaluate.zeroshot import PAPER7, evaluate_tasks
    from prunesearch.models import load_model
    from prunesearch.pruners import materialize
    from prunesearch.pruners.baselines import baseline
    from prunesearch.space import Architecture, ModelShape, cost

    loaded = load_model()
    shape = ModelShape.from_config(loaded.model.config)
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    settings = {"budget": args.budget, "limit": args.limit, "mmlu_limit": args.mmlu_limit}
    if results.get("settings", settings) != settings:
        results = {}
    results["settings"] = settings
    models = {"dense": None}
    models.update({name: Architecture.load(path, shape) for name, path in (a.split("=", 1) for a in args.arch)})
    models.update({m: baseline(m, loaded, args.budget, progress=False) for m in args.methods.split(",")})
    rows = results.setdefault("rows", {})
    for name, arch in models.items():
        if name in rows:
            continue
        start = time.perf_counter()
        model = loaded.model if arch is None else materialize(loaded.model, arch)
        seven = evaluate_tasks(model, loaded.tokenizer, PAPER7, args.limit, progress=False)
        mmlu = evaluate_tasks(model, loaded.tokenizer, ("mmlu",), args.mmlu_limit, progress=False)
        rows[name] = {"removed": 0.0 if arch is None else cost(arch).removed,
                      "tasks": {**seven["tasks"], **mmlu["tasks"]}, "avg7": seven["zero_shot_avg"],
                      "seconds": time.perf_counter() - start, "lm_eval": seven["lm_eval"]}
        print(json.dumps({name: rows[name]["avg7"], "seconds": rows[name]["seconds"]}), flush=True)
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=1))
        if args.write:
            write(args.write, results)


def write(path: Path, results: dict) -> None:
    from prunesearch.evaluate.zeroshot import PAPER7

    s = results["settings"]
    first = next(iter(results["rows"].values()))
    lines = [f"Zero-shot accuracy (%), lm-eval {first['lm_eval']} on the installed task data, first {s['limit']} "
             f"documents of each task and the first {s['mmlu_limit']} of each of the 57 MMLU subjects (a CPU-time "
             f"limit: the standard error of one task at n={s['limit']} is about ±11 points, of the 7-task average "
             "about ±4). Metric: acc_norm for piqa, hellaswag, arc_e/c, openbookqa; acc otherwise. Models at "
             f"{s['budget']:.0%} of parameters removed. Command: `.venv/bin/python bench/zeroshot.py --budget "
             f"{s['budget']} --arch searched=<best.json> --limit {s['limit']} --mmlu-limit {s['mmlu_limit']} "
             "--write BENCHMARKS.md`.", ""]
    header = ["model", "removed", *PAPER7, "avg 7", "mmlu"]
    lines += ["| " + " | ".join(header) + " |", "| --- |" + " ---: |" * (len(header) - 1)]
    for name, row in results["rows"].items():
        t = row["tasks"]
        cells = [name, f"{row['removed']:.1%}", *(f"{100 * t[k]['value']:.1f}" for k in PAPER7),
                 f"{100 * row['avg7']:.1f}", f"{100 * t['mmlu']['value']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    write_block(path, BEGIN, END, lines)


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
