"""Would longer reads per pair raise the band ranking? Every pair read a second time, labels of twice the tokens.

Usage: .venv/bin/python bench/label_tokens.py --run runs/<campaign> [--reads F] [--out F] [--seeds 0 1 2]

Every distinct pair of the run is measured again at the run's fidelity on the text that follows the campaign's
read (``bench/retest.py`` does this for 40 band pairs; the reads are saved to ``--reads`` as they come, so a stopped
run resumes). The mean of the two log-ppl reads is the label a campaign with ``--tokens`` twice as large would
have stored. The project's predictor is then fitted out of fold (same folds and seeds) four ways: trained and scored
on the campaign's read, on the second read alone, trained on the first and scored on the mean, and trained and
scored on the mean. Comparing the rows separates what cleaner held-out labels show from what cleaner training
labels teach.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--reads", type=Path, help="second reads, by architecture key (default: <run>/reads2.json)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/label_tokens.json"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()

    from prunesearch.models import load_model
    from prunesearch.predictor.metrics import kendall_tau
    from runs import out_of_fold, predictor_fit, run_pairs, second_read

    pairs = run_pairs(args.run)
    reads_path = args.reads or args.run / "reads2.json"
    done = json.loads(reads_path.read_text()) if reads_path.exists() else {}

    def save(key: str, value: float) -> None:
        done[key] = value
        if len(done) % 10 == 0:
            reads_path.write_text(json.dumps(done))
            print(f"{len(done)} / {len(pairs.y)} read", flush=True)

    rows = np.arange(len(pairs.y))
    second = second_read(pairs, load_model(pairs.store.meta["model"]), rows, done, save)
    reads_path.write_text(json.dumps(done))
    labels = {"first": pairs.y, "second": second, "mean": (pairs.y + second) / 2}
    results: dict = {"run": str(args.run), "pairs": len(rows), "fold seeds": args.seeds,
                     "tokens per read": pairs.store.meta["fidelity"]["tokens"], "retest tau": {}, "variants": {}}
    for budget in pairs.config["budgets"]:
        band = np.abs(pairs.removed - budget) <= pairs.config["band"]
        results["retest tau"][str(budget)] = {"band pairs": int(band.sum()),
                                              "tau": kendall_tau(pairs.y[band], second[band])}
    results["retest tau"]["all"] = kendall_tau(pairs.y, second)
    print(json.dumps(results["retest tau"]), flush=True)
    for name, (train, scored) in {"campaign's read": ("first", "first"), "second read": ("second", "second"),
                                  "trained on one read, scored on the mean": ("first", "mean"),
                                  "both reads (twice the tokens)": ("mean", "mean")}.items():
        fit = predictor_fit(dataclasses.replace(pairs, y=labels[train]), pairs.predictor.ctx)
        results["variants"][name] = out_of_fold(dataclasses.replace(pairs, y=labels[scored]), fit, tuple(args.seeds))
        print(name, json.dumps(results["variants"][name]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
