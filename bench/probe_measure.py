"""What the sensitivity probes measure: the loss rise on the text (``nll``) or the KL divergence from the uncut
model's next-token distribution (``kl``). Both on the same 4 x 128 PTB-train tokens.

Usage: .venv/bin/python bench/probe_measure.py --run runs/<campaign> [--stages 3] [--tokens 4096]

Three questions, each answered for both measures:
- how noisy the tables are: Spearman between the tables from two disjoint draws of probe windows (seeds 1, 2);
- whether the greedy allocator spends the budget better: its architecture at each of the run's budgets, in
  ``--stages`` re-probed stages, read on the first ``--tokens`` of PTB-valid and of wiki-valid;
- whether the predictor ranks better with them as features: the run's pairs, 5 folds, fold seeds 0-2, the
  dense tables and the greedy's last re-probe per budget swapped for the measure's.
Writes ``bench/results/probe_measure.json`` and the greedy architectures to ``bench/results/archs/``.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr


def agreement(a, b) -> dict[str, float]:
    """Spearman between two probes' entries that a cut actually sets: MLP at the probed widths, attention at 0-2
    groups kept of 3, and block removal."""
    width = a.mlp.shape[1] - 1
    mlp_cols = [int(round(f * width)) for f in (0.75, 0.5, 0.25, 0.0)]
    pairs = {"mlp": (a.mlp[:, mlp_cols], b.mlp[:, mlp_cols]), "kv": (a.attn[:, :-1], b.attn[:, :-1]),
             "block": (a.block, b.block)}
    return {name: float(spearmanr(np.ravel(x), np.ravel(y))[0]) for name, (x, y) in pairs.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--stages", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=4096)
    args = parser.parse_args()

    from prunesearch.evaluate import EvalSpec, evaluate_architecture
    from prunesearch.pruners.greedy import greedy
    from prunesearch.pruners.sensitivity import SensitivitySpec, sensitivity
    from prunesearch.search.campaign import feature_context
    from runs import out_of_fold, predictor_fit, run_model, run_pairs

    pairs = run_pairs(args.run)
    m = run_model(pairs)
    results: dict = {"run": str(args.run), "pairs": len(pairs.y), "stages": args.stages, "tokens": args.tokens}
    for measure in ("nll", "kl"):
        spec = SensitivitySpec(measure=measure)
        start = time.perf_counter()
        tables = [sensitivity(m.loaded.model, m.loaded.tokenizer, m.loaded.fingerprint, m.scores, m.scores_key,
                              replace(spec, seed=seed), False) for seed in (1, 2)]
        entry: dict = {"agreement of two window draws": agreement(*tables), "greedy": {}}
        probed = {}
        for budget in pairs.config["budgets"]:
            arch, probed[budget] = greedy(m.loaded.model, m.loaded.tokenizer, m.loaded.fingerprint, m.scores,
                                          m.scores_key, m.space, budget, tables[0], args.stages, spec, False)
            tag = round(budget * 100)
            arch.save(Path(f"bench/results/archs/greedy-{measure}-{tag}.json"))
            entry["greedy"][str(budget)] = {
                split: evaluate_architecture(m.loaded, arch, EvalSpec(data=split, max_tokens=args.tokens),
                                             with_dense=False, speed_repeats=0, progress=False)["ppl"]
                for split in ("ptb-valid", "wiki-valid")}
            print(measure, budget, entry["greedy"][str(budget)], flush=True)
        entry["seconds (probes, greedy, reads)"] = time.perf_counter() - start
        ctx = feature_context(m.priors, tables[0], m.space.shape, probed)
        entry["rank"] = out_of_fold(pairs, predictor_fit(pairs, ctx), (0, 1, 2), ("kendall_tau", "precision_at_top"))
        print(measure, json.dumps(entry), flush=True)
        results[measure] = entry
    Path("bench/results/probe_measure.json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
