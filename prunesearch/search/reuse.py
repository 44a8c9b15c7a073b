"""Reuse a saved predictor for a new budget: a search with no new measurement (and, optionally, verification)."""

from __future__ import annotations

import math
from functools import partial
import time
from pathlib import Path
from typing import Any

import torch

from prunesearch.errors import PrunesearchError
from prunesearch.evaluate import measure
from prunesearch.evaluate.latency import with_latency
from prunesearch.evaluate.store import Fidelity, Pair
from prunesearch.models import load_config, resolve_device, resolve_dtype
from prunesearch.predictor import Predictor
from prunesearch.pruners.greedy import greedy_allocation
from prunesearch.search.campaign import SEARCH, sensitivity_of
from prunesearch.search.optimize import optuna_sampler, search
from prunesearch.space import Architecture, Limits, SearchSpace, cost


NEAR = 0.025
"""Reuse warns when its pick removes a share farther than this from every budget the predictor's campaign trained at
(the band its rank quality is reported in): at such a budget, or where a ceiling or speed floor pushes the pick past
its budget. On SmolLM2 a predictor trained at 20% and 30% picked a 25% model worse than two heuristics on test text,
where the greedy seed it started from was far better (BENCHMARKS.md)."""


def reuse_search(directory: Path, budget: float, verify: int = 0, trials: int = 20000, out: Path | None = None,
                 seed: int = 0, sampler: str = "evolution", pessimism: float = 1.0,
                 progress: bool = True, limits: Limits = Limits(), device: str = "cpu") -> dict[str, Any]:
    """Search ``directory``'s predictor at ``budget`` within ``limits``, seeded with the greedy allocation (from
    the predictor's own sensitivity tables) and an even MLP cut; with ``verify`` > 0, measure the top candidates
    and the greedy seed on the predictor's fidelity, the model on ``device``, and keep the best measured one. A
    speed floor's latency model is timed on ``device`` too. Warns (``record["warning"]``) when the pick removes a
    share far from every budget the predictor was trained at."""
    start = time.perf_counter()
    target = resolve_device(device)
    predictor = Predictor.load(directory)
    space = SearchSpace.from_dict(predictor.meta["space"])
    space.check_budget(budget)
    if pessimism < 0:
        raise PrunesearchError(f"pessimism must not be negative, got {pessimism}")
    if space.shape != predictor.ctx.shape:
        raise PrunesearchError(f"predictor {directory} is inconsistent: its space and features describe other models")
    precision = resolve_dtype(predictor.meta.get("dtype", "float32"))
    limits = with_latency(limits, load_config(predictor.meta["model"]), space, progress, target, precision)
    greedy_seed = greedy_allocation(space, sensitivity_of(predictor.ctx), budget)
    seeds = [greedy_seed, space.repair(Architecture.dense(space.shape), budget)]
    score = partial(predictor.predict_arrays, pessimism=pessimism)
    result = search(space, score, budget, seeds, trials=trials, seed=seed, top=max(verify, 1) * 4,
                    sampler=optuna_sampler(sampler, seed), progress=progress, limits=limits)
    best = result.candidates[0]
    predicted = (math.exp(best.predicted) if predictor.meta.get("objective", "ppl") == "ppl"
                 else -best.predicted)
    record: dict[str, Any] = {"budget": budget, f"predicted_{predictor.meta.get('objective', 'ppl')}": predicted,
                              "trials": result.trials, "queries_per_s": result.queries_per_second}
    arch = best.arch
    if verify > 0:
        candidates = [c.arch for c in result.candidates[:verify]]
        if limits.met_by(greedy_seed) and greedy_seed.key() not in {c.key() for c in candidates}:
            candidates.append(greedy_seed)
        arch, record["verified"] = _verify(predictor, candidates, progress, target)
    path = out or Path(directory).parent / f"search-{round(budget * 100)}.json"
    meta = {**arch.meta, "budget": budget, "source": str(directory),
            "units": predictor.meta.get("units", "activation"), **({"limits": limits.to_dict()} if limits else {}),
            **({"refit": predictor.meta["refit"]} if predictor.meta.get("refit") else {})}
    Architecture(arch.shape, arch.layers, meta).save(path)
    figures = cost(arch)
    record.update(arch=str(path), removed=figures.removed, flops_ratio=figures.flops / figures.dense_flops,
                  kv_ratio=figures.kv_bytes / figures.dense_kv_bytes, seconds=time.perf_counter() - start)
    trained = predictor.meta.get("budgets", [])
    if trained and min(abs(figures.removed - b) for b in trained) > NEAR:
        pushed = f" (the limits push it past the {budget:.0%} budget)" if figures.removed > budget + NEAR else ""
        record["warning"] = (f"the predictor was trained on pairs around {', '.join(f'{b:.0%}' for b in trained)}; "
                             f"its pick removes {figures.removed:.1%}{pushed}, where it has seen few pairs and may "
                             "rank badly: measure with --verify K, or run a campaign with this budget and limits")
    if limits.latency is not None:
        record.update(predicted_speedup=limits.predicted_speedup(arch), **limits.speed.to_dict(),
                      latency_device=limits.latency.device)
    return record


def _verify(predictor: Predictor, candidates: list[Architecture], progress: bool, device: torch.device
            ) -> tuple[Architecture, list]:
    """Measure ``candidates`` on the predictor's fidelity with the model it was trained for, on ``device``."""
    from prunesearch.models import load_model
    from prunesearch.pruners import CalibrationSpec, select_units
    from prunesearch.pruners.refit import recorded_refit
    from prunesearch.pruners.priors import compute_priors

    meta = predictor.meta
    loaded = load_model(meta["model"], dtype=meta.get("dtype", "float32"), device=device)
    if loaded.fingerprint != meta["fingerprint"]:
        raise PrunesearchError(f"predictor was trained for model {meta['fingerprint']}, not {loaded.fingerprint}")
    calibration = CalibrationSpec(**meta["calibration"])
    scores = compute_priors(loaded, calibration, progress=progress).unit[meta.get("units", "activation")]
    fidelity = Fidelity.from_dict(meta["fidelity"])
    refit = recorded_refit(loaded, meta.get("refit"), progress)
    measured = []
    for arch in candidates:
        arch = select_units(arch, scores)
        measured.append((Pair(0, arch, SEARCH, measure(loaded, arch, fidelity, scores, refit=refit))))
    objective = meta.get("objective", "ppl")
    best = min(measured, key=lambda p: p.loss(objective)).arch
    return best, [{"ppl": p.ppl, "accuracy": p.record.get("accuracy"), "key": p.arch.key(units=True),
                   "counts_key": p.arch.key()} for p in measured]
