"""Every baseline at 10/20/30% of SmolLM2-135M's parameters removed: held-out perplexity, size, speed, and the
wall time of each score, in one run. Writes a table and a figure into BENCHMARKS.md.

Usage: .venv/bin/python bench/baselines.py [--max-tokens 16384] [--write BENCHMARKS.md]
       [--methods bip,sleb --warm]  (redo some methods' rows in the saved results, warm caches, old timings kept)

Calibration (scores) uses PTB *train*; perplexity uses the first --max-tokens tokens of PTB *test* and of the
Wikipedia-prose *test* split, 512-token windows: calibration and evaluation text never overlap. Score times are
measured from a cold score cache (the converted model is reused).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch
from blocks import write_block

BEGIN, END = "<!-- bench/baselines.py:begin -->", "<!-- bench/baselines.py:end -->"
BUDGETS = (0.1, 0.2, 0.3)


def cold_cache() -> None:
    """Point the score caches at a fresh folder, keeping the converted model and token caches."""
    from prunesearch.paths import cache_dir

    models, tokens = cache_dir("models"), cache_dir("tokens")
    fresh = Path(tempfile.mkdtemp(prefix="prunesearch-bench-"))
    (fresh / "models").symlink_to(models)
    (fresh / "tokens").symlink_to(tokens)
    os.environ["PRUNESEARCH_CACHE"] = str(fresh)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--max-tokens", type=int, default=16384)
    parser.add_argument("--write", type=Path)
    parser.add_argument("--results", type=Path, default=Path("bench/results/baselines.json"))
    parser.add_argument("--methods", default="uniform,bip,shortgpt,mi,transact,sleb")
    parser.add_argument("--warm", action="store_true", help="keep caches and the saved score timings")
    args = parser.parse_args()

    from prunesearch.models import load_model

    loaded = load_model(args.model)
    methods = args.methods.split(",")
    rows, dense, seconds = [], {}, {}
    if args.warm:
        saved = json.loads(args.results.read_text())
        rows = [r for r in saved["rows"] if r["method"] not in methods]
        dense, seconds = saved["dense"], saved["seconds"]
    else:
        cold_cache()
    from prunesearch.evaluate import EvalSpec, evaluate_architecture
    from prunesearch.pruners.baselines import baseline

    if not args.warm:
        seconds = score_times(loaded)
    for method in methods:
        for budget in sorted(BUDGETS, reverse=True):
            start = time.perf_counter()
            arch = baseline(method, loaded, budget)
            build = time.perf_counter() - start
            arch.save(Path(f"bench/results/{method}-{int(budget * 100)}.json"))
            row = {"method": method, "budget": budget, "build_seconds": build,
                   "blocks_removed": [i for i, l in enumerate(arch.layers) if not l.keep]}
            for data in ("ptb-test", "wiki-test"):
                rec = evaluate_architecture(loaded, arch, EvalSpec(data=data, max_tokens=args.max_tokens),
                                            speed_repeats=3 if data == "ptb-test" else 0)
                dense[data] = rec["dense_ppl"]
                row[data] = rec["ppl"]
                if data == "ptb-test":
                    row.update(params=rec["params"], dense_params=rec["dense_params"], removed=rec["removed"],
                               speed_ratio=rec["speed_ratio"], tokens=rec["tokens"], fingerprint=rec["fingerprint"])
            rows.append(row)
            print(json.dumps(row), flush=True)
            args.results.parent.mkdir(parents=True, exist_ok=True)
            args.results.write_text(json.dumps({"dense": dense, "rows": rows, "seconds": seconds}, indent=1))
            if args.write:
                write(args.write, dense, rows, seconds, args.max_tokens, loaded.fingerprint)
    seconds.update(sleb_step_times(loaded))
    args.results.write_text(json.dumps({"dense": dense, "rows": rows, "seconds": seconds}, indent=1))
    if args.write:
        write(args.write, dense, rows, seconds, args.max_tokens, loaded.fingerprint)


def timed(seconds: dict, name: str, fn):
    start = time.perf_counter()
    result = fn()
    seconds[name] = time.perf_counter() - start
    return result


def score_times(loaded) -> dict:
    """Wall time of the shared calibration pass and of each score derived from it (cold cache)."""
    from prunesearch.pruners.bip import bip_scores
    from prunesearch.pruners.calibration import CalibrationSpec, calibrate
    from prunesearch.pruners.mi_prun import block_mi, fast_block_select
    from prunesearch.pruners.scores import activation_scores
    from prunesearch.pruners.shortgpt import shortgpt_order
    from prunesearch.pruners.transact import transact_scores
    from prunesearch.space import ModelShape

    seconds: dict = {}
    model, shape = loaded.model, ModelShape.from_config(loaded.model.config)
    stats = timed(seconds, "calibration pass (32 x 256 PTB-train tokens, all statistics)",
                  lambda: calibrate(model, loaded.tokenizer, loaded.fingerprint, CalibrationSpec()))
    timed(seconds, "activation-aware unit scores", lambda: activation_scores(model, stats))
    timed(seconds, "LLM-BIP unit scores", lambda: bip_scores(model, stats))
    timed(seconds, "TransAct unit scores (one step)", lambda: transact_scores(stats, shape))
    timed(seconds, "ShortGPT block influence", lambda: shortgpt_order(stats))
    timed(seconds, "MI-PRUN block MI + Fast-Block-Select (8 blocks)",
          lambda: (block_mi(stats.boundary), fast_block_select(stats.boundary, 8)))
    return seconds


def sleb_step_times(loaded) -> dict:
    """SLEB's first greedy step with and without prefix reuse, side by side on the default calibration."""
    from prunesearch.data import calibration_windows, token_ids
    from prunesearch.pruners.sleb import SlebSpec, sleb_order

    spec, seconds = SlebSpec(), {}
    windows = calibration_windows(token_ids(loaded.tokenizer, spec.data), spec.count, spec.length, spec.seed)
    for reuse in (True, False):
        label = "prefix reuse" if reuse else "naive (full forward per candidate)"
        timed(seconds, f"SLEB first step (28 candidates, 8 x 128 tokens), {label}",
              lambda: sleb_order(loaded.model, windows, 1, reuse=reuse, progress=False))
    return seconds


def write(path: Path, dense: dict, rows: list[dict], seconds: dict, max_tokens: int, fingerprint: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure = Path("bench/figures/baselines_ppl.png")
    figure.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, data in zip(axes, ("ptb-test", "wiki-test")):
        for method in dict.fromkeys(r["method"] for r in rows):
            pts = [(100 * r["removed"], r[data]) for r in rows if r["method"] == method]
            ax.plot(*zip(*pts), marker="o", label=method)
        ax.axhline(dense[data], color="gray", linestyle="--", label="dense")
        ax.set_yscale("log")
        ax.set_xlabel("parameters removed (%)")
        ax.set_ylabel(f"{data} perplexity (log)")
        ax.set_title(f"{data}, first {max_tokens} tokens, 512-token windows")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(figure, dpi=120)
    lines = [
        f"SmolLM2-135M (fingerprint `{fingerprint}`), scores calibrated on 32 x 256 PTB-train tokens (SLEB: its "
        f"own calibration, see below); perplexity on the first {max_tokens} tokens of each test split, 512-token "
        f"windows. Dense: PTB-test {dense['ptb-test']:.2f}, wiki-test {dense['wiki-test']:.2f} on the same "
        "tokens. Command: `.venv/bin/python bench/baselines.py --write BENCHMARKS.md`.",
        "",
        "| method | budget | removed | params | blocks removed | PTB-test ppl | wiki-test ppl | tokens/s vs dense | build s |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    order = ("uniform", "bip", "shortgpt", "mi", "transact", "sleb")
    rows = sorted(rows, key=lambda r: (order.index(r["method"]), -r["budget"]))
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['budget']:.0%} | {r['removed']:.2%} | {r['params']:,} | "
            f"{r['blocks_removed'] or '-'} | {r['ptb-test']:.1f} | {r['wiki-test']:.1f} | {r['speed_ratio']:.2f}x | "
            f"{r['build_seconds']:.0f} |"
        )
    budgets = sorted({r["budget"] for r in rows})
    lines += ["", "Best baseline per budget (PTB-test): " + ", ".join(
        f"{b:.0%}: {min((r for r in rows if r['budget'] == b), key=lambda r: r['ptb-test'])['method']}"
        for b in budgets), "", f"![ppl vs parameters removed]({figure})", "",
        "Wall time of each score on this 2-core CPU (cold cache; `build s` above includes SLEB's greedy passes and "
        "TransAct's re-scoring passes, and is ~0 when the scores were already cached):", "",
        "| step | seconds |", "| --- | ---: |"]
    lines += [f"| {k} | {v:.1f} |" for k, v in seconds.items()]
    write_block(path, BEGIN, END, lines)


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
