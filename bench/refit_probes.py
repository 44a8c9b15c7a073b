"""Should a refit campaign's sensitivity probes measure each cut refitted? The greedy allocator on refitted probes.

Usage: .venv/bin/python bench/refit_probes.py [--budget 0.2] [--tokens 16384]

Probes every layer's cuts with the refit applied (``probe(..., refit=)``: the masked dense model refitted as the
materializer refits), runs the 3-stage greedy allocator on them (re-probing refitted), and reads the refitted
result on the first ``--tokens`` tokens of PTB test and wiki test. Compare with the refitted rows of
``bench/results/compare-s12-refit-16k.json``. Writes ``bench/results/refit_probes.json`` and the architecture
to ``bench/results/archs/s12-greedy-refit-<pct>.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--budget", type=float, default=0.2)
    parser.add_argument("--tokens", type=int, default=16384)
    args = parser.parse_args()

    from prunesearch.evaluate import EvalSpec, evaluate_architecture
    from prunesearch.models import load_model
    from prunesearch.pruners import CalibrationSpec, load_refit
    from prunesearch.pruners.greedy import greedy
    from prunesearch.pruners.priors import compute_priors, scores_key
    from prunesearch.pruners.sensitivity import SensitivitySpec, sensitivity
    from prunesearch.space import ModelShape, space_for

    torch.set_grad_enabled(False)
    loaded = load_model("smollm2-135m")
    shape = ModelShape.from_config(loaded.model.config)
    calibration = CalibrationSpec()
    scores = compute_priors(loaded, calibration, progress=False).unit["transact"]
    key = scores_key(calibration, loaded.fingerprint, "transact")
    refit = load_refit(loaded.model, loaded.tokenizer, loaded.fingerprint)
    start = time.perf_counter()
    sens = sensitivity(loaded.model, loaded.tokenizer, loaded.fingerprint, scores, key, SensitivitySpec(), False,
                       refit=refit)
    arch, _ = greedy(loaded.model, loaded.tokenizer, loaded.fingerprint, scores, key, space_for(shape),
                     args.budget, sens, 3, progress=False, refit=refit)
    seconds = time.perf_counter() - start
    arch.meta["refit"] = refit.spec.to_dict()
    path = Path(f"bench/results/archs/s12-greedy-refit-{round(args.budget * 100)}.json")
    arch.save(path)
    ppl = {split: evaluate_architecture(loaded, arch, EvalSpec(data=split, max_tokens=args.tokens), with_dense=False,
                                        speed_repeats=0, progress=False, refit=refit)["ppl"]
           for split in ("ptb-test", "wiki-test")}
    result = {"budget": args.budget, "tokens": args.tokens, "arch": str(path), "probe_and_greedy_seconds": seconds,
              "blocks_removed": sum(not layer.keep for layer in arch.layers),
              "kv_groups_kept": sum(layer.kv_heads for layer in arch.layers), "refitted_ppl": ppl}
    Path("bench/results/refit_probes.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
