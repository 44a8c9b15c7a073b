"""Do unit scores from more calibration text choose better units, for the searched widths and for TransAct's own?

Usage: .venv/bin/python bench/calibration_tokens.py [--arch A.json ...] [--spec 32x256 --spec 128x512]
       [--budget 0.2] [--tokens 8192] [--out F]

Every prior is scored on one calibration pass over 32 windows of 256 PTB-train tokens (8,192 tokens). The refit's
moments gained 4-9% from four times that text (session 13); the unit scores were never tried on more. For each
calibration spec this bench recomputes the statistics, re-chooses each architecture's units by TransAct's
single-pass scores (its widths, heads and dims kept), and builds TransAct's own baseline at ``--budget`` with its
iterative schedule on the same windows. Perplexity on the first ``--tokens`` tokens of PTB-valid and wiki-valid
(512-token windows): validation text, so no test text tunes a default. Output: ``bench/results/calibration_tokens.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--arch", type=Path, nargs="+",
                        default=[Path("bench/results/archs/s33-fresh-pick-20.json"),
                                 Path("bench/results/archs/s34-best-20.json")])
    parser.add_argument("--spec", action="append", help="COUNTxLENGTH calibration windows (repeatable)")
    parser.add_argument("--budget", type=float, default=0.2)
    parser.add_argument("--tokens", type=int, default=8192)
    parser.add_argument("--out", type=Path, default=Path("bench/results/calibration_tokens.json"))
    args = parser.parse_args()

    from prunesearch.data import eval_windows, token_ids
    from prunesearch.evaluate.perplexity import perplexity
    from prunesearch.models import load_model
    from prunesearch.pruners import CalibrationSpec, materialize
    from prunesearch.pruners.baselines import baseline
    from prunesearch.pruners.calibration import calibrate
    from prunesearch.pruners.priors import unit_scores
    from prunesearch.pruners.selection import select_units
    from prunesearch.space import Architecture

    loaded = load_model("smollm2-135m")
    archs = {path.stem: Architecture.load(path) for path in args.arch}
    data = {name: eval_windows(token_ids(loaded.tokenizer, name), 512, args.tokens)
            for name in ("ptb-valid", "wiki-valid")}

    def read(arch: Architecture) -> dict[str, float]:
        pruned = materialize(loaded.model, arch)
        return {name: perplexity(pruned, windows, progress=False).ppl for name, windows in data.items()}

    results: dict = {"tokens": args.tokens, "budget": args.budget, "specs": {}}
    for text in args.spec or ["32x256", "128x512"]:
        count, length = (int(x) for x in text.split("x"))
        spec = CalibrationSpec(count=count, length=length)
        start = time.perf_counter()
        scores = unit_scores(loaded.model, calibrate(loaded.model, loaded.tokenizer, loaded.fingerprint, spec,
                                                     progress=False), "transact")
        row: dict = {"calibration pass s": time.perf_counter() - start}
        for name, arch in archs.items():
            row[f"{name}, units re-chosen"] = read(select_units(arch, scores, "transact"))
        start = time.perf_counter()
        own = baseline("transact", loaded, args.budget, calibration=spec, progress=False)
        row["transact baseline s"] = time.perf_counter() - start
        row[f"transact {args.budget:.0%}"] = read(own)
        results["specs"][text] = row
        print(text, json.dumps(row), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
