"""A search campaign end to end: priors, measured pairs, predictor, Optuna search, verified winners.

Every step is resumable: scores and sensitivity are cached on disk, every measured architecture is an Optuna
trial in the campaign's storage (deduplicated by its canonical key), and the pair design is a deterministic
stream for the config's seed, so a rerun after a kill skips what was measured and continues the same stream.
Search-time fidelity uses validation text only; calibration and probes use training text; the comparison at
the end uses test text that nothing in the campaign has seen.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from prunesearch.evaluate.latency import with_latency
from prunesearch.evaluate.worker import work
from prunesearch.evaluate.store import Fidelity, Pair, PairStore, default_storage
from prunesearch.models import LoadedModel, describe_device, load_model
from prunesearch.paths import atomic_write_text
from prunesearch.predictor import FeatureContext, Predictor
from prunesearch.pruners import CalibrationSpec, Refit, load_refit, select_units
from prunesearch.pruners.baselines import baseline
from prunesearch.pruners.greedy import greedy
from prunesearch.pruners.priors import Priors, compute_priors, scores_key
from prunesearch.pruners.transact import transact_units
from prunesearch.pruners.sensitivity import Sensitivity, probe_spec, sensitivity
from prunesearch.search.config import CampaignConfig
from prunesearch.search.optimize import Decoder, optuna_sampler, search
from prunesearch.search.report import rows_to_json
from prunesearch.space import Architecture, Limits, ModelShape, SearchSpace, space_for

RANDOM, PRIOR, SEARCH, REFINED = "random", "prior", "search", "refined"
FOLDS = 5
CURVE_SIZES = (25, 50, 100, 150, 200, 300)
"""Training-set sizes of the report's learning curve (those below a fold's training set), and its last point: the
k-fold figures themselves."""


def feature_context(priors: Priors, sens: Sensitivity, shape: ModelShape,
                    probes: Mapping[float, Sensitivity] | None = None) -> FeatureContext:
    """Prior tables plus the measured sensitivity tables (loss increase by units kept, per layer): the dense probe
    and, per budget, the greedy allocator's last re-probe on its way there (``probed<pct>/...``: what a cut costs
    once the model is already cut; on SmolLM2's pairs they raised the 5-fold band Kendall tau 0.78 -> 0.80). Probed
    head dims join as ``<source>/v``, read at the layer's value dims."""
    ctx = FeatureContext.from_priors(priors, shape)
    tables, block = dict(ctx.tables), dict(ctx.block)

    def add(name: str, probed: Sensitivity) -> None:
        tables.update({f"{name}/mlp": probed.mlp, f"{name}/kv": probed.attn})
        if probed.dims is not None:
            tables[f"{name}/v"] = probed.dims
        block[name] = probed.block

    add("sensitivity", sens)
    for budget, probed in (probes or {}).items():
        if probed is not sens:
            add(f"probed{round(budget * 100)}", probed)
    return FeatureContext(shape, tables, block)


def sensitivity_of(ctx: FeatureContext) -> Sensitivity:
    """The sensitivity tables a feature context carries (a saved predictor needs no model for the greedy seed)."""
    dims = ctx.tables.get("sensitivity/v")
    return Sensitivity(0.0, np.asarray(ctx.tables["sensitivity/mlp"]), np.asarray(ctx.tables["sensitivity/kv"]),
                       np.asarray(ctx.block["sensitivity"]), None if dims is None else np.asarray(dims))


@dataclass
class Setup:
    """What a campaign computes once per model: model, space, scores, priors, sensitivity, the pair store and
    the finalists' stores (the same architectures read on more text; None when the campaign has no final step)."""

    config: CampaignConfig
    loaded: LoadedModel
    space: SearchSpace
    priors: Priors
    sens: Sensitivity
    ctx: FeatureContext
    fidelity: Fidelity
    store: PairStore
    finals: PairStore | None
    calibration: CalibrationSpec = field(default_factory=CalibrationSpec)
    seconds: dict[str, float] = field(default_factory=dict)
    probes: dict[float, Sensitivity] = field(default_factory=dict)
    refit: Refit | None = None
    limits: Limits = field(default_factory=Limits)
    """The config's limits, with this device's latency model when they hold a speed floor."""
    deeps: PairStore | None = None
    """The best finalists' second fresh read (None when the campaign has none)."""

    @property
    def scores(self):
        return self.priors.unit[self.config.units]

    @property
    def scores_key(self) -> str:
        return scores_key(self.calibration, self.loaded.fingerprint, self.config.units)


def prepare(config: CampaignConfig, run_dir: Path, progress: bool = True) -> Setup:
    """Load the model, compute (or load cached) priors and probes, open the campaign's store."""
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    loaded = load_model(config.model, dtype=config.dtype, device=config.device)
    seconds["load model"] = time.perf_counter() - start
    shape = ModelShape.from_config(loaded.model.config)
    space = space_for(shape, config.mlp_step)
    limits = with_latency(config.limits(), loaded.model.config, space, progress, loaded.model.device,
                          loaded.model.dtype)
    for budget in config.budgets:
        Decoder(space, budget, config.slack, limits)  # refuses an impossible budget or limit up front
    fidelity = config.fidelity()
    storage = config.storage or default_storage(run_dir)
    refit_spec = config.refit_spec()
    meta = {"fingerprint": loaded.fingerprint, "space": space.to_dict(), "fidelity": fidelity.to_dict(),
            "model": loaded.name, "dtype": config.dtype, "units": config.units, "heartbeat": config.heartbeat,
            "refit": refit_spec.to_dict() if refit_spec else None}
    store = PairStore(storage, config.campaign, meta)
    final = config.final_fidelity()
    finals = None if final is None else PairStore(storage, final_study(config.campaign),
                                                  {**meta, "fidelity": final.to_dict()})
    deep = config.deep_fidelity()
    deeps = None if deep is None else PairStore(storage, deep_study(config.campaign),
                                                {**meta, "fidelity": deep.to_dict()})
    calibration = CalibrationSpec()
    priors = compute_priors(loaded, calibration, progress=progress)
    seconds.update({f"prior: {k}": v for k, v in priors.seconds.items()})
    refit = None
    if refit_spec:
        start = time.perf_counter()
        refit = load_refit(loaded.model, loaded.tokenizer, loaded.fingerprint, refit_spec, progress)
        seconds["refit moments"] = time.perf_counter() - start
    start = time.perf_counter()
    # Probes stay plain under a refit: refitted one-layer probes rate attention cuts cheap that cost far more
    # combined, and their greedy allocation lost to the plain one refitted (bench/refit_probes.py).
    sens = sensitivity(loaded.model, loaded.tokenizer, loaded.fingerprint, priors.unit[config.units],
                       scores_key(calibration, loaded.fingerprint, config.units), probe_spec(config.probes), progress)
    seconds["sensitivity probes"] = time.perf_counter() - start
    ctx = feature_context(priors, sens, shape)
    return Setup(config, loaded, space, priors, sens, ctx, fidelity, store, finals, calibration, seconds,
                 refit=refit, limits=limits, deeps=deeps)


def seeds_at(setup: Setup, budget: float, progress: bool = True) -> dict[str, Architecture]:
    """Every heuristic's architecture at ``budget``: the six baselines and the greedy allocator (whose last
    re-probe is kept in ``setup.probes`` for the predictor's features)."""
    out = {}
    for method in setup.config.methods:
        out[method] = baseline(method, setup.loaded, budget, setup.calibration, progress=progress)
    start = time.perf_counter()
    out["greedy"], setup.probes[budget] = greedy_at(setup, budget, setup.config.greedy_stages, progress)
    setup.seconds[f"greedy {budget:.0%}"] = time.perf_counter() - start
    return out


def greedy_at(setup: Setup, budget: float, stages: int, progress: bool = True) -> tuple[Architecture, Sensitivity]:
    """The greedy allocator at ``budget`` in ``stages`` on the campaign's probes, space and unit scores (cached),
    and its last re-probe (the predictor's ``probed<pct>`` features)."""
    arch, probed = greedy(setup.loaded.model, setup.loaded.tokenizer, setup.loaded.fingerprint, setup.scores,
                          setup.scores_key, setup.space, budget, setup.sens, stages, probe_spec(setup.config.probes),
                          progress=progress)
    return _tagged(arch, units=setup.config.units), probed


def _tagged(arch: Architecture, **meta: Any) -> Architecture:
    return Architecture(arch.shape, arch.layers, {**arch.meta, **meta})


def design(setup: Setup, seeds: dict[float, dict[str, Architecture]]) -> Iterator[tuple[Architecture, str]]:
    """The deterministic stream of architectures to measure before the first fit, alternating between the two
    kinds below, each kind cycling through the budgets (so with two budgets every budget gets both kinds):

    - random: ``SearchSpace.sample_at_budget`` at a budget drawn within +-10% of a target (half of them within
      the +-``band`` the search ranks in), for coverage;
    - prior: a heuristic's architecture with its allocation perturbed (gene cut propensities jittered on a random
      subset of layers, a block kept or removed now and then), decoded onto a budget within +-``band`` of the
      target (and within the campaign's limits): the region the search will visit.
    """
    config, space = setup.config, setup.space
    rng = np.random.default_rng(config.seed)
    limit = space.max_removable() - 0.02
    step = 0
    while True:
        budget = config.budgets[(step // 2) % len(config.budgets)]
        if step % 2 == 0:
            spread = config.band if rng.random() < 0.5 else 0.1
            target = float(np.clip(budget + rng.uniform(-spread, spread), 0.02, limit))
            arch = space.sample_at_budget(target, int(rng.integers(2**31)))
            yield _tagged(arch, budget=budget, target=target), RANDOM
        else:
            names = sorted(seeds[budget])
            base = seeds[budget][names[int(rng.integers(len(names)))]]
            target = float(np.clip(budget + rng.uniform(-config.band, config.band), 0.02, limit))
            decoder = Decoder(space, target, config.slack, setup.limits)
            keep, cuts = (genes[0] for genes in decoder.encode(base.as_array()[None]))
            layers = rng.random(len(keep)) < rng.uniform(0.1, 0.6)
            cuts = np.clip(cuts + layers[:, None] * rng.normal(0, rng.uniform(0.05, 0.3), cuts.shape), 0, 1)
            removable = np.flatnonzero(decoder.removable)
            if rng.random() < 0.3 and len(removable):
                flip = removable[int(rng.integers(len(removable)))]
                keep[flip] = not keep[flip]
            arch = Architecture.from_array(space.shape, decoder.decode(keep[None], cuts[None])[0])
            yield _tagged(arch, budget=budget, target=target, perturbed=base.meta.get("method")), PRIOR
        step += 1


def measure_all(setup: Setup, items: list[tuple[Architecture, str]], desc: str, progress: bool = True) -> list[Pair]:
    """Queue every architecture not yet in the store (units chosen first), then work the queue with any other
    workers until it is empty; returns the stored pairs of ``items``."""
    keys = []
    for arch, sampler in items:
        if not arch.has_indices:
            arch = select_units(arch, setup.scores, setup.config.units)
        setup.store.enqueue(arch, sampler)
        keys.append(arch.key(units=True))
    drain(setup, desc, progress)
    by_key = {p.arch.key(units=True): p for p in setup.store.pairs(include_collapsed=True)}
    return [by_key[k] for k in keys if k in by_key]


def drain(setup: Setup, desc: str, progress: bool = True) -> list[Pair]:
    """Evaluate queued work until none waits or runs anywhere (workers elsewhere may take part)."""
    return work(setup.store, setup.loaded, setup.fidelity, progress=progress, desc=desc, refit=setup.refit)


def fill_design(setup: Setup, seeds: dict[float, dict[str, Architecture]], progress: bool = True) -> None:
    """Queue design architectures until the store holds ``pairs`` (seeds included), then evaluate them."""
    target = setup.config.pairs
    taken = setup.store.keys()
    stream = design(setup, seeds)
    while len(taken) < target:
        arch, sampler = next(stream)
        arch = select_units(arch, setup.scores, setup.config.units)
        if setup.store.enqueue(arch, sampler):
            taken.add(arch.key(units=True))
    drain(setup, "pairs", progress)


def distinct(pairs: Iterable[Pair]) -> list[Pair]:
    """The first measured pair of each architecture (a store may hold one twice: older stores, or a race)."""
    first: dict[str, Pair] = {}
    for pair in sorted(pairs, key=lambda p: p.number):
        first.setdefault(pair.arch.key(units=True), pair)
    return list(first.values())


def training_data(store: PairStore, objective: str = "ppl"
                  ) -> tuple[list[Architecture], np.ndarray, np.ndarray, list[str]]:
    """Architectures, loss (log-ppl or minus accuracy), fraction removed and sampler of every finite pair whose
    units the campaign's scores chose (refined units would make one width two targets), one pair per
    architecture (the first measured; a copy in both a training and a held-out fold would flatter every rank
    metric), in key order: a fit does not depend on the order workers finished in."""
    pairs = sorted(distinct(p for p in store.pairs() if p.sampler != REFINED), key=lambda p: p.arch.key(units=True))
    return ([p.arch for p in pairs], np.array([p.loss(objective) for p in pairs]),
            np.array([p.record["removed"] for p in pairs]), [p.sampler for p in pairs])


def fit(setup: Setup, extra_meta: dict[str, Any] | None = None) -> Predictor:
    archs, y, _, _ = training_data(setup.store, setup.config.objective)
    meta = {"fingerprint": setup.loaded.fingerprint, "model": setup.loaded.name, "dtype": setup.config.dtype,
            "space": setup.space.to_dict(),
            "fidelity": setup.fidelity.to_dict(), "calibration": asdict(setup.calibration), "n_train": len(y),
            "units": setup.config.units, "objective": setup.config.objective, "refit": _refit_meta(setup),
            **(extra_meta or {})}
    return Predictor(setup.ctx, members=setup.config.members, smooth=setup.config.smooth).fit(archs, y, meta)


def _refit_meta(setup: Setup) -> dict[str, Any] | None:
    return setup.refit.spec.to_dict() if setup.refit else None


def search_seeds(store: PairStore | None, heuristics: list[Architecture], budget: float,
                 band: float, count: int = 8, objective: str = "ppl") -> list[Architecture]:
    """The search's first trials: every heuristic, then the best measured pairs near the budget."""
    seeds = list(heuristics)
    if store is not None:
        near = [p for p in store.pairs() if abs(p.record["removed"] - budget) <= band]
        seeds += [p.arch for p in sorted(near, key=lambda p: p.loss(objective))[:count]]
    return seeds


def eligible_pairs(store: PairStore, budget: float, slack: float, limits: Limits = Limits()) -> list[Pair]:
    """The distinct measured architectures that remove at least ``budget``: at most 1% more, or with ``limits``
    any more that meets them (a binding ceiling makes the search remove more than the budget)."""
    if limits:
        return distinct(p for p in store.pairs()
                        if p.record["removed"] >= budget - 1e-9 and limits.met_by(p.arch))
    return distinct(p for p in store.pairs() if budget - 1e-9 <= p.record["removed"] <= budget + max(slack, 0.01))


def best_pairs(store: PairStore, budget: float, slack: float, count: int = 1, objective: str = "ppl",
               limits: Limits = Limits()) -> list[Pair]:
    """The ``count`` lowest measured losses among ``eligible_pairs``."""
    return sorted(eligible_pairs(store, budget, slack, limits), key=lambda p: p.loss(objective))[:count]


def final_study(campaign: str) -> str:
    """The finalists' study beside the campaign's (workers join it by this name). Campaigns before the finalists
    read fresh text kept theirs as ``<campaign>/final``; resumed, they read their finalists again under this name."""
    return f"{campaign}/final-fresh"


def deep_study(campaign: str) -> str:
    """The best finalists' second fresh read, beside the finalists' study (workers join it by this name)."""
    return f"{campaign}/final-deep"


@dataclass(frozen=True)
class Finalist:
    """A finalist: its pair at the search fidelity, its read on fresh text (None without a final step) and, for the
    best of those, its read on more fresh text (None otherwise)."""

    pair: Pair
    final: Pair | None = None
    deep: Pair | None = None

    @property
    def fresh_ppl(self) -> float | None:
        """Perplexity over every fresh token read: both fresh reads pooled where there are two."""
        if self.final is None or self.deep is None:
            return None if self.final is None else self.final.ppl
        reads = (self.final.record, self.deep.record)
        nll = sum(r["nll"] * r["scored_tokens"] for r in reads) / sum(r["scored_tokens"] for r in reads)
        return math.exp(nll) if math.isfinite(nll) and nll < 700 else math.inf

    def loss(self, objective: str) -> tuple[int, float]:
        """Sort key: the deeply read first, by pooled fresh loss, then the rest by their fresh read."""
        if self.deep is not None:
            return 0, math.log(self.fresh_ppl)
        return 1, self.final.loss(objective) if self.final else math.inf


def finalists(setup: Setup, budget: float, progress: bool = True,
              contenders: Iterable[Architecture] = ()) -> list[Finalist]:
    """The ``final_top`` best pairs at ``budget`` and the measured pairs of ``contenders`` (the greedy seed), each
    with its measurement on ``final_tokens`` of validation text that the search fidelity did not read (None without
    a final step), the ``deep_top`` best of those also on ``deep_tokens`` more; best first by their fresh text.

    A few thousand tokens rank hundreds of pairs well enough to fit and search, but picking one winner among
    near-ties on them favours whichever the short text happens to flatter (the winner's curse): a search of
    thousands of queries finds what those tokens favour, and the finalists are the pairs those tokens rank best.
    Reading them on more text of the same splits corrects that at the cost of ``final_top`` evaluations, and only
    text past the search's own is free of the bias (on SmolLM2 the fresh read picked the finalist best on test
    text in three of four picks, a read that included the search's text in none; BENCHMARKS.md, session 30).
    Reading the seed the search has to beat beside them keeps a proposal from winning on the short text alone, and
    reading the best few again on more text picks among near-ties on more than a few windows (successive halving).
    """
    config = setup.config
    top = best_pairs(setup.store, budget, config.slack, max(config.final_top, 1), config.objective, setup.limits)
    if setup.finals is None or not top:
        return [Finalist(pair) for pair in top[:1]]
    chosen = {p.arch.key(units=True) for p in top}
    wanted = {a.key(units=True) for a in contenders} - chosen
    top += [p for p in eligible_pairs(setup.store, budget, config.slack, setup.limits)
            if p.arch.key(units=True) in wanted]
    for pair in top:
        setup.finals.enqueue(_tagged(pair.arch, trial=pair.number), pair.sampler)
    work(setup.finals, setup.loaded, config.final_fidelity(), progress=progress, desc=f"finalists {budget:.0%}",
         refit=setup.refit)
    longer = {p.arch.key(units=True): p for p in setup.finals.pairs(include_collapsed=True)}
    read = sorted((Finalist(pair, longer.get(pair.arch.key(units=True))) for pair in top),
                  key=lambda f: f.loss(config.objective))
    if setup.deeps is None:
        return read
    ahead = [f.pair for f in read[:config.deep_top] if f.final is not None and not f.final.collapsed]
    for pair in ahead:
        setup.deeps.enqueue(_tagged(pair.arch, trial=pair.number), pair.sampler)
    work(setup.deeps, setup.loaded, config.deep_fidelity(), progress=progress, desc=f"deep read {budget:.0%}",
         refit=setup.refit)
    deeper = {p.arch.key(units=True): p for p in setup.deeps.pairs(include_collapsed=True)}
    read[:len(ahead)] = [replace(f, deep=deeper.get(f.pair.arch.key(units=True))) for f in read[:len(ahead)]]
    return sorted(read, key=lambda f: f.loss(config.objective))


def refine(setup: Setup, budget: float, progress: bool = True) -> list[Pair]:
    """Re-choose the units of the best measured widths at ``budget`` with TransAct's iterative schedule (re-scoring
    the masked model between steps) and measure them: the search picks widths, this picks their units better."""
    config = setup.config
    refined = {a.meta.get("refined_from") for a, sampler in setup.store.entries() if sampler == REFINED}
    widths = [p for p in best_pairs(setup.store, budget, config.slack, len(setup.store.keys()), config.objective,
                                    setup.limits) if p.sampler != REFINED]
    fresh = []
    for pair in widths[:config.refine_top]:
        if pair.number in refined:
            continue
        arch = transact_units(setup.loaded, pair.arch, setup.calibration, config.refine_steps, progress=False)
        fresh.append((_tagged(arch, refined_from=pair.number, budget=budget), REFINED))
    return measure_all(setup, fresh, f"refine {budget:.0%}", progress)


def verify_round(setup: Setup, predictor: Predictor, budget: float, heuristics: list[Architecture], round_: int,
                 progress: bool = True) -> list[Pair]:
    """Search the predictor at ``budget`` and measure its best new candidates."""
    config = setup.config
    done = [a for a, sampler in setup.store.entries()
            if sampler == SEARCH and a.meta.get("round") == round_ and a.meta.get("budget") == budget]
    if len(done) >= config.verify:  # a resumed campaign does not redo a round it queued
        return measure_all(setup, [], f"verify {budget:.0%} round {round_ + 1}", progress)
    seeds = search_seeds(setup.store, heuristics, budget, config.band, objective=config.objective)
    score = partial(predictor.predict_arrays, pessimism=config.pessimism)
    sampler = optuna_sampler(config.sampler, config.seed + round_, config.population)
    result = search(setup.space, score, budget, seeds, trials=config.trials, population=config.population,
                    seed=config.seed + round_, slack=config.slack, top=config.verify * 4, sampler=sampler,
                    progress=progress, limits=setup.limits)
    known = setup.store.keys()
    fresh = []
    for candidate in result.candidates:
        arch = select_units(candidate.arch, setup.scores, setup.config.units)
        if arch.key(units=True) not in known:
            fresh.append((_tagged(arch, predicted=candidate.predicted, round=round_, budget=budget), SEARCH))
        if len(fresh) == config.verify - len(done):
            break
    setup.seconds[f"search {budget:.0%} round {round_}"] = result.seconds
    setup.seconds.setdefault("search queries/s", result.queries_per_second)
    return measure_all(setup, fresh, f"verify {budget:.0%} round {round_ + 1}", progress)


def run_campaign(config: CampaignConfig, run_dir: Path, progress: bool = True) -> dict[str, Any]:
    """Everything from priors to saved predictor and best architectures; returns the campaign summary."""
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.json", json.dumps(config.to_dict(), indent=1))
    start = time.perf_counter()
    setup = prepare(config, run_dir, progress)
    step = time.perf_counter()
    seeds = {b: seeds_at(setup, b, progress) for b in config.budgets}
    setup.ctx = feature_context(setup.priors, setup.sens, setup.space.shape, setup.probes)
    setup.seconds["baselines"] = time.perf_counter() - step
    step = time.perf_counter()
    measure_all(setup, [(a, PRIOR) for b in config.budgets for a in seeds[b].values()], "baselines", progress)
    fill_design(setup, seeds, progress)
    setup.seconds["pairs"] = time.perf_counter() - step
    for round_ in range(config.rounds):
        step = time.perf_counter()
        predictor = fit(setup)
        setup.seconds[f"fit round {round_}"] = time.perf_counter() - step
        for budget in config.budgets:
            verify_round(setup, predictor, budget, list(seeds[budget].values()), round_, progress)
    if config.units == "transact" and config.refine_steps > 0:
        step = time.perf_counter()
        for budget in config.budgets:
            refine(setup, budget, progress)
        setup.seconds["refine"] = time.perf_counter() - step
    step = time.perf_counter()
    predictor = fit(setup, {"budgets": list(config.budgets), "campaign": config.campaign})
    predictor.save(run_dir / "predictor")
    setup.seconds["final fit"] = time.perf_counter() - step
    best, best_archs = {}, {}
    step = time.perf_counter()
    winners = {budget: finalists(setup, budget, progress, [seeds[budget]["greedy"]]) for budget in config.budgets}
    setup.seconds["finalists"] = time.perf_counter() - step
    for budget in config.budgets:
        if not winners[budget]:
            continue
        winner = winners[budget][0]
        pair, final = winner.pair, winner.final
        deep = {"fresh_ppl": winner.fresh_ppl, "deep_tokens": config.deep_tokens} if winner.deep else {}
        arch = _tagged(pair.arch, budget=budget, sampler=pair.sampler, fidelity_ppl=pair.ppl, trial=pair.number,
                       campaign=config.campaign, fingerprint=setup.loaded.fingerprint,
                       **({"refit": _refit_meta(setup)} if setup.refit else {}),
                       **({"final_ppl": final.ppl, "final_tokens": config.final_tokens} if final else {}), **deep)
        path = run_dir / f"best-{round(budget * 100)}.json"
        arch.save(path)
        if budget == config.budgets[0]:
            arch.save(run_dir / "best.json")
        best[budget] = {"path": str(path), "ppl": pair.ppl, "accuracy": pair.record.get("accuracy"),
                        "sampler": pair.sampler, "removed": pair.record["removed"],
                        "flops_ratio": pair.record.get("flops_ratio"), "kv_ratio": pair.record.get("kv_ratio"),
                        "final_ppl": final.ppl if final else None, "fresh_ppl": winner.fresh_ppl,
                        "finalists": [{"trial": f.pair.number, "sampler": f.pair.sampler, "ppl": f.pair.ppl,
                                       "final_ppl": f.final.ppl if f.final else None,
                                       "deep_ppl": f.deep.ppl if f.deep else None, "fresh_ppl": f.fresh_ppl}
                                      for f in winners[budget]]}
        if setup.limits.latency is not None:
            best[budget].update(predicted_speedup=setup.limits.predicted_speedup(pair.arch),
                                **setup.limits.speed.to_dict())
        best_archs[budget] = pair.arch
    setup.seconds["campaign"] = time.perf_counter() - start
    quality = predictor_quality(setup)
    report, rows = write_campaign_report(setup, seeds, best_archs, run_dir, quality, progress, predictor)
    summary = {"campaign": config.campaign, "run_dir": str(run_dir), "fingerprint": setup.loaded.fingerprint,
               "device": describe_device(setup.loaded.model.device), "dtype": config.dtype,
               "pairs": len(setup.store.pairs(include_collapsed=True)), "best": best,
               "predictor": str(run_dir / "predictor"), "report": str(report), "seconds": setup.seconds,
               "predictor_quality": {k: v for k, v in quality.items() if k not in ("predicted", "real", "groups")},
               "comparison": rows_to_json(rows),
               "seeds": {str(b): {n: a.key(units=True) for n, a in s.items()} for b, s in seeds.items()}}
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=1, default=str))
    return summary


def predictor_quality(setup: Setup) -> dict[str, Any]:
    """Held-out rank metrics (k-fold, per budget band), learning curve on the same folds, and transfer across
    samplers. Folds fit in parallel, one per core."""
    from prunesearch.predictor import curve_point, held_out_by_group, learning_curve, out_of_fold, rank_report

    archs, y, removed, groups = training_data(setup.store, setup.config.objective)
    seed, budgets, band = setup.config.seed, setup.config.budgets, setup.config.band
    jobs = min(FOLDS, os.cpu_count() or 1)
    params = {"members": setup.config.members, "smooth": setup.config.smooth}
    predicted = out_of_fold(archs, y, setup.ctx, FOLDS, seed, n_jobs=jobs, **params)
    quality: dict[str, Any] = {"predicted": predicted.tolist(), "real": y.tolist(), "groups": groups,
                               "kfold": {str(b): rank_report(y, predicted, removed, b, band) for b in budgets}}
    n_train = len(y) - math.ceil(len(y) / FOLDS)
    sizes = [n for n in CURVE_SIZES if n < n_train]
    quality["learning_curve"] = [
        *learning_curve(archs, y, removed, setup.ctx, budgets, sizes, FOLDS, seed, band, jobs, **params),
        curve_point(n_train, y, predicted, removed, budgets, band)]
    if len(set(groups)) > 1:
        quality["by_sampler"] = held_out_by_group(archs, y, removed, groups, setup.ctx, budgets[0], jobs, **params)
    return quality


def _metrics_markdown(quality: dict[str, Any]) -> str:
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731

    def line(name: str, m: dict) -> str:
        return f"| {name} | {m['n']} | {fmt(m['kendall_tau'])} | {fmt(m['spearman'])} | {fmt(m['precision_at_top'])} |"

    def band(report: dict) -> str:
        return f"within ±{report['band']:.1%} of {report['budget']:.0%}"

    rows = ["| held-out set | n | Kendall tau | Spearman | precision top 10% |", "|---|---|---|---|---|"]
    reports = list(quality["kfold"].values())
    rows.append(line(f"{FOLDS}-fold, all pairs", reports[0]["all"]))
    rows.extend(line(f"{FOLDS}-fold, {band(report['band'])}", report["band"]) for report in reports)
    for group, report in quality.get("by_sampler", {}).items():
        rows.append(line(f"held out: {group} (trained on the others)", report["all"]))
    curve = quality["learning_curve"]
    bands = [band(report) for report in curve[-1]["bands"]]
    rows += ["", f"Learning curve: the same {FOLDS} folds, each fit trained on a random subset of its folds' pairs "
                 "(every pair scored at every size; the last row is the k-fold above).", "",
             "| training pairs per fit | Kendall tau, all | " + " | ".join(f"Kendall tau {b}" for b in bands)
             + " | " + " | ".join(f"precision top 10% {b}" for b in bands) + " |",
             "|---" * (2 + 2 * len(bands)) + "|"]
    for point in curve:
        taus = [fmt(r["kendall_tau"]) for r in point["bands"]]
        precisions = [fmt(r["precision_at_top"]) for r in point["bands"]]
        rows.append(f"| {point['n_train']} | {fmt(point['all']['kendall_tau'])} | " + " | ".join(taus + precisions)
                    + " |")
    return "\n".join(rows)


def write_campaign_report(setup: Setup, seeds: dict[float, dict[str, Architecture]],
                          best: dict[float, Architecture], run_dir: Path, quality: dict[str, Any],
                          progress: bool = True, predictor: Predictor | None = None) -> tuple[Path, list]:
    """``report.md`` with the comparison on test text (when ``compare_tokens`` > 0), predictor quality and plots
    (with the final ``predictor``'s probe index, where each model spends its loss layer by layer)."""
    from prunesearch.search import plots
    from prunesearch.search.compare import HIGHEST_BUDGET, baselines_at, compare, greedy_beside
    from prunesearch.search.report import write_report

    figures_dir = run_dir / "figures"
    real, predicted = np.asarray(quality["real"]), np.asarray(quality["predicted"])
    shown = (np.exp(real), np.exp(predicted)) if setup.config.objective == "ppl" else (-real, -predicted)
    figures = {
        "Predicted vs measured (out-of-fold)": plots.predicted_vs_real(
            *shown, quality["groups"], figures_dir / "predicted_vs_real.png", quantity=setup.config.objective),
        "Learning curve": plots.learning_curve(
            [{"n": p["n_train"], "all": p["all"], "bands": p["bands"]} for p in quality["learning_curve"]],
            figures_dir / "learning_curve.png"),
    }
    indexed = (setup.config.objective == "ppl" and predictor is not None and predictor.index is not None
               and bool(predictor.index.columns))
    if indexed:
        figures["Which probes the pairs trust"] = plots.index_weights(
            predictor.index.weights_by_table(predictor.ctx.shape.num_layers), figures_dir / "index_weights.png")
    pairs = setup.store.pairs()
    rows: list = []
    limits, unmet = setup.limits, {}
    for budget, arch in best.items():
        tag = f"{round(budget * 100)}"
        heuristics = seeds[budget]
        baselines = {n: p for n, p in ((n, next((q for q in pairs if q.arch.key(units=True) == a.key(units=True)), None))
                                       for n, a in heuristics.items()) if p is not None}
        searched = next(p for p in pairs if p.arch.key(units=True) == arch.key(units=True))
        figures[f"Pareto front, budget {tag}%"] = plots.pareto(
            [(p.record["removed"], p.ppl) for p in pairs],
            {n: (p.record["removed"], p.ppl) for n, p in baselines.items()},
            {"searched": (searched.record["removed"], searched.ppl)}, figures_dir / f"pareto-{tag}.png")
        drawn = {"searched": arch, **heuristics}
        figures[f"Per-layer allocation, budget {tag}%"] = plots.layer_heatmap(drawn, figures_dir / f"layers-{tag}.png")
        if indexed:
            figures[f"Where each model loses, budget {tag}%"] = plots.layer_losses(
                dict(zip(drawn, predictor.layer_losses(list(drawn.values())))), figures_dir / f"layer-losses-{tag}.png")
        if setup.config.compare_tokens > 0:
            models = {f"searched {tag}%": ("searched", arch)}
            if limits:
                greedy_there = greedy_beside(lambda b, n: greedy_at(setup, b, n, progress)[0], budget,
                                             setup.config.greedy_stages, limits)
                limited, unmet[budget] = baselines_at(setup.loaded, budget, setup.config.methods, progress,
                                                      limits, setup.calibration)
                models.update({**greedy_there, **limited})
                if not greedy_there:
                    unmet[budget].insert(0, "greedy")
            else:
                models[f"greedy {tag}%"] = ("greedy", heuristics["greedy"])
                models.update({f"{n} {tag}%": ("baseline", a) for n, a in heuristics.items() if n != "greedy"})
            budget_rows = compare(setup.loaded, models, setup.config.compare_tokens, tasks=setup.config.tasks,
                                  limit=setup.config.task_limit, progress=progress, refit=setup.refit,
                                  speed=limits.speed)
            for row in budget_rows[1:]:
                row.budget = budget
            rows += budget_rows if not rows else budget_rows[1:]
    summary = {"model": setup.loaded.name, "fingerprint": setup.loaded.fingerprint,
               "device": describe_device(setup.loaded.model.device), "weights": setup.config.dtype,
               "budgets": ", ".join(f"{b:.0%}" for b in setup.config.budgets),
               "limits": limits.describe(), "pairs": len(pairs),
               "refit": (f"least-squares refit of output projections, every pruned model "
                         f"({setup.refit.spec.count} x {setup.refit.spec.length} tokens of {setup.refit.spec.data}, "
                         f"damp {setup.refit.spec.damp})" if setup.refit else "none"),
               "fidelity": f"{setup.fidelity.tokens} tokens of {' + '.join(setup.fidelity.data)} "
                           f"({setup.fidelity.window}-token windows)",
               "comparison text": f"first {setup.config.compare_tokens} tokens of each test split",
               **({"baselines": "each at the least budget whose model meets the limits"
                   + "".join(f"; beside {b:.0%}, no budget up to {HIGHEST_BUDGET:.0%} for {', '.join(m)}"
                             for b, m in unmet.items() if m)}
                  if limits and rows else {}),
               "seconds": {k: round(v, 1) for k, v in setup.seconds.items()}}
    sections = {"Predictor (held-out rank quality at the search fidelity)": _metrics_markdown(quality)}
    path = write_report(run_dir, f"Campaign {setup.config.campaign}", summary, rows, figures, sections)
    return path, rows
