"""Which of the greedy allocator's re-probes help the predictor rank? 5-fold rank quality on a run's pairs.

Usage: .venv/bin/python bench/probe_variants.py --run runs/<campaign> [--stages 2]

``bench/features.py`` showed that the re-probe a campaign already has (measured half way to 20%, ``probed20``)
raises band tau. This asks whether more probes raise it further: the mid-way re-probe at 30% too, and a probe
measured from the greedy architecture *at* each budget, where the search's candidates lie (one extra probe per
budget, ~5 min each on a 2-core CPU for SmolLM2, cached under the project cache's ``probes-at``). Every variant is
scored with the campaign's ensemble on the same pairs and folds (fold seeds 0 and 1), within the run's band and
over all pairs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--stages", type=int, default=2)
    args = parser.parse_args()

    from prunesearch.data import calibration_windows, token_ids
    from prunesearch.paths import cache_dir
    from prunesearch.predictor import FeatureContext
    from prunesearch.pruners.greedy import greedy
    from prunesearch.pruners.sensitivity import Sensitivity, SensitivitySpec, probe
    from prunesearch.search.campaign import feature_context
    from runs import out_of_fold, predictor_fit, run_model, run_pairs

    pairs = run_pairs(args.run)
    m = run_model(pairs)
    spec = SensitivitySpec()
    windows = calibration_windows(token_ids(m.loaded.tokenizer, spec.data), spec.count, spec.length, spec.seed)
    mid, at = {}, {}
    for budget in (0.2, 0.3):
        arch, mid[budget] = greedy(m.loaded.model, m.loaded.tokenizer, m.loaded.fingerprint, m.scores, m.scores_key,
                                   m.space, budget, m.dense, args.stages)
        path = cache_dir("probes-at") / f"{m.loaded.fingerprint}-at{round(budget * 100)}-stages{args.stages}.json"
        if not path.exists():
            path.write_text(json.dumps(probe(m.loaded.model, m.scores, windows, spec, False, base=arch).to_dict()))
        at[budget] = Sensitivity.from_dict(json.loads(path.read_text()))

    def context(probes: dict[str, Sensitivity]) -> FeatureContext:
        ctx = feature_context(m.priors, m.dense, m.space.shape)
        tables, block = dict(ctx.tables), dict(ctx.block)
        for name, probed in probes.items():
            tables.update({f"{name}/mlp": probed.mlp, f"{name}/kv": probed.attn})
            block[name] = probed.block
        return FeatureContext(m.space.shape, tables, block)

    variants = {
        "none": {},
        "mid20 (the campaign's)": {"probed20": mid[0.2]},
        "mid20+mid30": {"probed20": mid[0.2], "probed30": mid[0.3]},
        "at20": {"at20": at[0.2]},
        "at20+at30": {"at20": at[0.2], "at30": at[0.3]},
        "all four": {"probed20": mid[0.2], "probed30": mid[0.3], "at20": at[0.2], "at30": at[0.3]},
    }
    results = {"run": str(args.run), "pairs": len(pairs.y), "stages": args.stages, "variants": {}}
    for label, probes in variants.items():
        results["variants"][label] = out_of_fold(pairs, predictor_fit(pairs, context(probes)), (0, 1),
                                                 ("kendall_tau", "precision_at_top"))
        print(label, json.dumps(results["variants"][label]), flush=True)
    Path("bench/results/probe_variants.json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
