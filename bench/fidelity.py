"""Does the search-time fidelity rank architectures as held-out test text does? Rank correlation on a sample.

Usage: .venv/bin/python bench/fidelity.py --run runs/<campaign> [--per-budget 16] [--max-tokens 8192]
       [--final-tokens 8192] [--write BENCHMARKS.md]

Takes the campaign's measured pairs within +-2.5% of each budget (the set the search must rank), spread evenly
over their fidelity-ppl order, measures each on the first --max-tokens tokens of PTB-test and of wiki-test
(pooled; each distinct architecture once), and reports Kendall tau and Spearman rho between fidelity ppl and test ppl, per budget. With
--final-tokens each pick is also read on that many validation tokens (the campaign's finalist read), and the same
correlations are reported for that longer read.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import optuna
import torch
from blocks import write_block

BEGIN, END = "<!-- bench/fidelity.py:begin -->", "<!-- bench/fidelity.py:end -->"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--per-budget", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=8192)
    parser.add_argument("--band", type=float, default=0.025)
    parser.add_argument("--final-tokens", type=int, default=0)
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()

    from scipy.stats import kendalltau, spearmanr

    from prunesearch.evaluate import EvalSpec, evaluate_architecture
    from prunesearch.evaluate.run import measure
    from prunesearch.evaluate.store import Fidelity
    from prunesearch.models import load_model
    from prunesearch.space import Architecture

    config = json.loads((args.run / "config.json").read_text())
    study = optuna.load_study(study_name=config["name"] or args.run.name,
                              storage=f"sqlite:///{(args.run / 'campaign.db').resolve()}")
    loaded = load_model(config["model"])
    trials = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
              if math.isfinite(t.value)]
    results = {"run": str(args.run), "per_budget": args.per_budget, "max_tokens": args.max_tokens, "fidelity": study.user_attrs["fidelity"],
               "final_tokens": args.final_tokens, "budgets": {}}
    final = Fidelity.from_dict({**study.user_attrs["fidelity"], "tokens": args.final_tokens}) if args.final_tokens else None
    out = Path("bench/results/fidelity.json")
    for budget in config["budgets"]:
        distinct = {Architecture.from_json(t.user_attrs["arch"]).key(units=True): t for t in reversed(trials)}
        near = sorted((t for t in distinct.values()
                       if abs(json.loads(t.user_attrs["record"])["removed"] - budget) <= args.band), key=lambda t: t.value)
        picks = [near[int(i)] for i in np.unique(np.linspace(0, len(near) - 1, args.per_budget).round())]
        rows = []
        for t in picks:
            arch = Architecture.from_json(t.user_attrs["arch"])
            nll, count = 0.0, 0
            for data in ("ptb-test", "wiki-test"):
                rec = evaluate_architecture(loaded, arch, EvalSpec(data=data, max_tokens=args.max_tokens),
                                            with_dense=False, speed_repeats=0, progress=False)
                nll += rec["nll"] * rec["tokens"]
                count += rec["tokens"]
            rows.append({"trial": t.number, "fidelity_ppl": math.exp(t.value), "test_ppl": math.exp(nll / count)})
            if final is not None:
                rows[-1]["final_ppl"] = measure(loaded, arch, final)["ppl"]
            print(json.dumps(rows[-1]), flush=True)
        fid, test = [r["fidelity_ppl"] for r in rows], [r["test_ppl"] for r in rows]
        results["budgets"][str(budget)] = {"n": len(rows), "kendall_tau": kendalltau(fid, test)[0],
                                           "spearman": spearmanr(fid, test)[0], "rows": rows}
        if final is not None:
            longer = [r["final_ppl"] for r in rows]
            results["budgets"][str(budget)].update(final_kendall_tau=kendalltau(longer, test)[0],
                                                   final_spearman=spearmanr(longer, test)[0])
        out.write_text(json.dumps(results, indent=1))
    if args.write:
        write(args.write, results)


def write(path: Path, results: dict) -> None:
    fid = results["fidelity"]
    lines = [f"Search fidelity ({fid['tokens']} tokens of {' + '.join(fid['data'])}, {fid['window']}-token "
             f"windows) against held-out test ppl (first {results['max_tokens']} tokens of PTB-test and of "
             f"wiki-test, pooled), on pairs of `{results['run']}` within ±2.5% of each budget, spread over their "
             "fidelity order. Command: `.venv/bin/python bench/fidelity.py --run "
             f"{results['run']} --per-budget {results['per_budget']} --max-tokens {results['max_tokens']} --final-tokens {results['final_tokens']} "
             "--write BENCHMARKS.md`.", "",
             "| budget | pairs | read | Kendall τ | Spearman ρ | test ppl range |",
             "| --- | ---: | --- | ---: | ---: | --- |"]
    for budget, r in results["budgets"].items():
        test = [row["test_ppl"] for row in r["rows"]]
        span = f"{min(test):.1f} – {max(test):.1f}"
        lines.append(f"| {float(budget):.0%} | {r['n']} | search fidelity, {fid['tokens']} tokens | "
                     f"{r['kendall_tau']:.3f} | {r['spearman']:.3f} | {span} |")
        if "final_kendall_tau" in r:
            lines.append(f"| {float(budget):.0%} | {r['n']} | finalists' read, {results['final_tokens']} tokens | "
                         f"{r['final_kendall_tau']:.3f} | {r['final_spearman']:.3f} | {span} |")
    write_block(path, BEGIN, END, lines)


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
