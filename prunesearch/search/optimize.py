"""Searching the predictor under a budget: genomes decoded onto the budget in bulk, evolved as populations.

A candidate is a genome: per layer ``keep`` (unprotected layers only) and one cut propensity in [0, 1] per width
gene. ``Decoder`` turns a whole population of genomes into count arrays (``Architecture.as_array`` rows) that
spend exactly the budget, in numpy with no Python loop over candidates, and the scorer (the predictor's
``predict_arrays``) reads those arrays directly: a search makes thousands of predictor queries per second.

Two engines share the decoder. The default is a (mu + lambda) genetic algorithm over whole populations: binary
tournaments, per-layer uniform crossover (a layer's genes travel together), Gaussian mutation of propensities and
bit flips of ``keep``. Any Optuna sampler (NSGA-II, TPE, CMA-ES, random) can drive the same genomes instead, one
trial per candidate through Optuna's ask/tell, at milliseconds per query. Either way the priors are the first
trials of the result's Optuna study, which also holds the best candidates found.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import optuna
from tqdm.auto import tqdm

from prunesearch.errors import BudgetError, PrunesearchError
from prunesearch.predictor.costs import cost_tables
from prunesearch.space.limits import TOLERANCE
from prunesearch.space import Architecture, Limits, SearchSpace

Scorer = Callable[[np.ndarray], np.ndarray]
"""Lower is better; takes count arrays [n, L, 6] and returns [n]."""

WIDTH_GENES = ("kv_heads", "q_per_kv", "qk_dim", "v_dim", "mlp")
MIN_CUT = 1e-3
"""Floor of a propensity, so that a finite strength cuts every gene fully and the budget is always reachable."""
CROSSOVER = 0.9
"""Share of children that mix two parents (the rest are mutated copies of one)."""
MUTATE_CUT, MUTATE_SIGMA, MUTATE_KEEP = 0.04, 0.15, 0.02
"""Per-gene probabilities of a propensity's Gaussian step (and its scale) and of a ``keep`` flip."""
SAMPLERS = ("evolution", "nsga2", "tpe", "random")
"""Search engines by name: the vectorised evolution, or one of Optuna's samplers driving the same genomes."""


def optuna_sampler(name: str, seed: int = 0, population: int = 256) -> optuna.samplers.BaseSampler | None:
    """The Optuna sampler called ``name`` (None for the default evolution)."""
    if name not in SAMPLERS:
        raise PrunesearchError(f"unknown search sampler {name!r}: choose one of {', '.join(SAMPLERS)}")
    return {
        "evolution": lambda: None,
        "nsga2": lambda: optuna.samplers.NSGAIISampler(population_size=population, seed=seed),
        "tpe": lambda: optuna.samplers.TPESampler(seed=seed, multivariate=True),
        "random": lambda: optuna.samplers.RandomSampler(seed=seed),
    }[name]()


class Decoder:
    """Turns genomes into count arrays on the budget, and architectures back into genomes.

    A single strength ``s`` per genome, found by bisection, scales its propensities so that the kept grid values
    (``1 - s * c`` of the way down each gene's choices) just fit the budget and the ``limits``. The search thus
    explores the *shape* of an allocation (where to cut, how deep relative to elsewhere) while every candidate
    spends the same budget. Genomes whose removed blocks alone overshoot the budget get the least-cut of those
    blocks back first; one that grid rounding (or a binding limit) leaves under the budget band regrows MLP
    channels while every limit holds, and the rare one still short is finished by ``SearchSpace.repair``.
    """

    def __init__(self, space: SearchSpace, budget: float, slack: float = 0.005, limits: Limits = Limits()) -> None:
        space.check_budget(budget)
        self.space, self.budget, self.slack, self.limits = space, budget, slack, limits
        self.latency = limits.latency_for(space.shape) if limits.speedup is not None else None
        choices = space.choices()
        self.options = [np.asarray(choices[g]) for g in WIDTH_GENES]
        self.tables = cost_tables(space.shape)
        total = self.tables.dense_params
        self.high, self.low = (1 - budget) * total, (1 - budget - slack) * total
        L = space.shape.num_layers
        self.removable = np.array([i not in space.protected for i in range(L)])
        grid = np.meshgrid(*(np.union1d(options, 0) for options in self.options[:4]), indexing="ij")
        self.tables.blocks(*grid, np.zeros_like(grid[0]))  # tabulates every attention the grid can reach, once
        self.attention, self.mlp = self.tables.attention[..., 0], self.tables.mlp[:, 0]
        self.attention_flops, self.mlp_flops = self.tables.attention[..., 1], self.tables.mlp[:, 1]
        dense = Architecture.dense(space.shape).as_array()[None]
        self.block = float(self.params(dense)[0] - self.tables.fixed_params) / L
        least = self._counts(~self.removable[None], np.ones((1, L, len(WIDTH_GENES))), np.ones(1))
        if self._over_limits(least)[0]:
            floor = Architecture.from_array(space.shape, least[0])
            raise BudgetError(f"limits {limits.describe()} are impossible in this space: the least it can keep "
                              f"(protected blocks {list(space.protected)} at their narrowest) breaks "
                              f"{', '.join(limits.excess(floor))}")

    def params(self, counts: np.ndarray) -> np.ndarray:
        """[n] parameter counts of count arrays [n, L, 6] (the cost model's figures, tabulated)."""
        _, kv, qpk, qk, v, mlp = np.moveaxis(counts, -1, 0)
        return self.tables.fixed_params + (self.attention[kv, qpk, qk, v] + self.mlp[mlp]).sum(-1)

    def _over_limits(self, counts: np.ndarray) -> np.ndarray:
        """[n] whether count arrays break a FLOPs or KV-cache limit (``Limits``: fractions of dense) or fall short of
        the speed floor."""
        over = np.zeros(len(counts), bool)
        if not self.limits:
            return over
        _, kv, qpk, qk, v, mlp = np.moveaxis(counts, -1, 0)
        t = self.tables
        if self.limits.flops is not None:
            flops = t.fixed_flops + (self.attention_flops[kv, qpk, qk, v] + self.mlp_flops[mlp]).sum(-1)
            over |= flops / t.dense_flops > self.limits.flops + TOLERANCE
        if self.limits.kv is not None:
            over |= (kv * (qk + v)).sum(-1) / t.dense_kv > self.limits.kv + TOLERANCE
        if self.limits.speedup is not None:
            over |= self.latency.speedup(counts) < self.limits.speedup - TOLERANCE
        return over

    def _over(self, counts: np.ndarray) -> np.ndarray:
        """[n] whether count arrays keep more parameters than the budget allows or break a limit."""
        return (self.params(counts) > self.high) | self._over_limits(counts)

    def _counts(self, keep: np.ndarray, cuts: np.ndarray, strength: np.ndarray) -> np.ndarray:
        widths = []
        for j, options in enumerate(self.options):
            kept = 1 - np.minimum(strength[:, None] * cuts[..., j], 1.0)
            widths.append(options[np.rint(kept * (len(options) - 1)).astype(np.intp)])
        kv, qpk, qk, v, mlp = widths
        smallest = self.options[4][min(1, len(self.options[4]) - 1)]
        mlp = np.where((kv == 0) & (mlp == 0) & ~self.removable, smallest, mlp)
        kept = keep & ((kv > 0) | (mlp > 0))
        attention = kept & (kv > 0)
        return np.stack([kept, kv * attention, qpk * attention, qk * attention, v * attention, mlp * kept],
                        axis=-1).astype(np.int64)

    def _restore(self, keep: np.ndarray, cuts: np.ndarray) -> np.ndarray:
        """Bring back removed blocks, least-cut first, where the kept ones at full width fall short of the band."""
        full = self.tables.fixed_params + keep.sum(1) * self.block
        missing = np.ceil((self.low - full) / self.block).clip(0)
        if not missing.any():
            return keep
        order = np.argsort(np.where(keep, np.inf, cuts.mean(-1)), axis=1, kind="stable")
        rank = np.empty_like(order)
        np.put_along_axis(rank, order, np.broadcast_to(np.arange(keep.shape[1]), keep.shape), axis=1)
        return keep | (rank < missing[:, None])

    def _fill(self, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Under the band after rounding (or a binding limit): one MLP grid step at a time to the narrowest kept MLP
        that can grow, while it stays within the budget and the limits. Also returns which rows a limit stopped
        (``decode`` leaves the others it cannot fix to ``SearchSpace.repair``)."""
        grid = self.options[4]
        limited = np.zeros(len(counts), bool)
        for _ in range(self.space.shape.num_layers * len(grid)):
            short = np.flatnonzero((self.params(counts) < self.low) & ~limited)
            mlp = counts[short, :, 5]
            room = counts[short, :, 0].astype(bool) & (mlp < grid[-1])
            layer = np.where(room, mlp, np.iinfo(np.int64).max).argmin(1)
            rows = np.arange(len(short))
            grown = counts[short].copy()
            grown[rows, layer, 5] = grid[np.searchsorted(grid, mlp[rows, layer], "right").clip(max=len(grid) - 1)]
            blocked = self._over_limits(grown)
            limited[short[room.any(1) & blocked]] = True
            accept = room.any(1) & ~blocked & (self.params(grown) <= self.high)
            if not accept.any():
                break
            counts[short[accept]] = grown[accept]
        return counts, limited

    def decode(self, keep: np.ndarray, cuts: np.ndarray) -> np.ndarray:
        """Count arrays [n, L, 6] of genomes (``keep`` [n, L], ``cuts`` [n, L, 5]): each removes at least the
        budget, meets every limit and, where the grid and the limits allow, removes at most budget + slack."""
        cuts = np.clip(cuts, MIN_CUT, 1.0)
        keep = self._restore(np.where(self.removable, keep, 1).astype(bool), cuts)
        n = len(keep)
        low, high = np.zeros(n), np.zeros(n)
        over = self._over(self._counts(keep, cuts, high))
        high[over] = 1.0
        for _ in range(64):
            rows = over & self._over(self._counts(keep, cuts, high))
            if not rows.any():
                break
            high[rows] *= 2
        else:
            raise BudgetError(f"cannot decode a genome onto budget {self.budget}")
        for _ in range(30):
            mid = (low + high) / 2
            above = self._over(self._counts(keep, cuts, mid))
            low, high = np.where(over & above, mid, low), np.where(over & ~above, mid, high)
        counts, limited = self._fill(self._counts(keep, cuts, high))
        for i in np.flatnonzero((self.params(counts) < self.low) & ~limited):
            arch = Architecture.from_array(self.space.shape, counts[i])
            repaired = self.space.repair(arch, self.budget, self.slack).as_array()
            if not self._over(repaired[None])[0]:
                counts[i] = repaired
        return counts

    def encode(self, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Genomes (``keep`` [n, L], ``cuts`` [n, L, 5]) that ``decode`` turns back into (about) ``counts``: each
        gene's propensity is how far down its choices the architecture sits."""
        keep = counts[..., 0].astype(bool)
        kv, qpk, qk, v, mlp = np.moveaxis(counts[..., 1:], -1, 0)
        values = (kv, np.maximum(qpk, 1), np.where(qk > 0, qk, self.options[2][-1]),
                  np.where(v > 0, v, self.options[3][-1]), mlp)
        cuts = []
        for options, value in zip(self.options, values):
            index = np.abs(options - value[..., None]).argmin(-1)
            index = np.where(keep, index, len(options) - 1)
            cuts.append(1 - index / max(len(options) - 1, 1))
        return keep, np.stack(cuts, axis=-1)

    def trial_params(self, keep: np.ndarray, cuts: np.ndarray) -> dict[str, float]:
        """One genome as Optuna trial parameters (``keep_<i>`` for unprotected layers, ``<gene>_<i>``)."""
        params: dict[str, float] = {f"keep_{i}": int(keep[i]) for i in np.flatnonzero(self.removable)}
        for i in range(len(keep)):
            params.update({f"{gene}_{i}": float(cuts[i, j]) for j, gene in enumerate(WIDTH_GENES)})
        return params

    def distributions(self) -> dict[str, optuna.distributions.BaseDistribution]:
        names = self.trial_params(np.ones(len(self.removable), int), np.zeros((len(self.removable), 5)))
        return {name: optuna.distributions.IntDistribution(0, 1) if name.startswith("keep_")
                else optuna.distributions.FloatDistribution(0.0, 1.0) for name in names}

    def suggest(self, trial: optuna.Trial) -> tuple[np.ndarray, np.ndarray]:
        """The genome an Optuna trial proposes."""
        L = len(self.removable)
        keep = np.array([trial.suggest_int(f"keep_{i}", 0, 1) if self.removable[i] else 1 for i in range(L)], bool)
        cuts = np.array([[trial.suggest_float(f"{g}_{i}", 0.0, 1.0) for g in WIDTH_GENES] for i in range(L)])
        return keep, cuts


@dataclass
class Candidate:
    arch: Architecture
    predicted: float


@dataclass
class SearchResult:
    """The best distinct architectures found (best first), with the search's own statistics."""

    candidates: list[Candidate]
    trials: int
    seconds: float
    study: optuna.Study

    @property
    def queries_per_second(self) -> float:
        return self.trials / max(self.seconds, 1e-9)


class _Archive:
    """Every distinct architecture scored, by its counts, with its best score."""

    def __init__(self) -> None:
        self.scores: dict[bytes, tuple[float, np.ndarray]] = {}
        self.lowest = float("inf")

    def add(self, counts: np.ndarray, values: np.ndarray) -> None:
        for row, value in zip(counts, values):
            key = row.tobytes()
            if key not in self.scores or value < self.scores[key][0]:
                self.scores[key] = (float(value), row)
        self.lowest = min(self.lowest, float(np.min(values, initial=np.inf)))

    def best(self, top: int) -> list[tuple[float, np.ndarray]]:
        return sorted(self.scores.values(), key=lambda item: item[0])[:top]


def search(space: SearchSpace, score: Scorer, budget: float, seeds: Sequence[Architecture] = (), trials: int = 20000,
           population: int = 256, seed: int = 0, slack: float = 0.005, top: int = 10,
           sampler: optuna.samplers.BaseSampler | None = None, progress: bool = True,
           limits: Limits = Limits()) -> SearchResult:
    """Minimise ``score`` (e.g. predicted log-ppl) over architectures removing ``budget`` (+ at most ``slack``
    unless a limit needs more) within ``limits``, starting from ``seeds`` (moved onto both); ``sampler``: an Optuna
    sampler instead of the evolution."""
    decoder = Decoder(space, budget, slack, limits)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize", sampler=sampler)
    genomes = decoder.encode(np.stack([a.as_array() for a in seeds])) if seeds else None
    archive = _Archive()
    start = time.perf_counter()
    with tqdm(total=trials, desc=f"search @ {budget:.0%}", disable=not progress, leave=False) as bar:
        if sampler is None:
            rng = np.random.default_rng(seed)
            done = _evolve(decoder, score, genomes, trials, population, rng, archive, study, bar)
        else:
            done = _ask_tell(decoder, score, genomes, trials, population, archive, study, bar)
    seconds = time.perf_counter() - start
    ranked = [Candidate(Architecture.from_array(space.shape, row), value) for value, row in archive.best(top)]
    if sampler is None:
        keep, cuts = decoder.encode(np.stack([c.arch.as_array() for c in ranked]))
        _record(study, decoder, keep, cuts, [c.predicted for c in ranked])
    return SearchResult(candidates=ranked, trials=done, seconds=seconds, study=study)


def _record(study: optuna.Study, decoder: Decoder, keep: np.ndarray, cuts: np.ndarray, values: Sequence[float]) -> None:
    distributions = decoder.distributions()
    study.add_trials([optuna.trial.create_trial(params=decoder.trial_params(k, c), distributions=distributions,
                                                value=float(v)) for k, c, v in zip(keep, cuts, values)])


def _progress(bar: tqdm, n: int, archive: _Archive) -> None:
    bar.update(n)
    bar.set_postfix(best=f"{archive.lowest:.3f}")


def _random_genomes(decoder: Decoder, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Structurally different mixes: per genome a share of blocks dropped and a weight per gene type."""
    L = len(decoder.removable)
    keep = rng.random((n, L)) >= rng.uniform(0, 0.25, (n, 1))
    cuts = rng.random((n, L, len(WIDTH_GENES))) * rng.uniform(0.1, 1.0, (n, 1, len(WIDTH_GENES)))
    return keep, cuts


def _mutate(decoder: Decoder, keep: np.ndarray, cuts: np.ndarray,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    step = (rng.random(cuts.shape) < MUTATE_CUT) * rng.normal(0, MUTATE_SIGMA, cuts.shape)
    flip = (rng.random(keep.shape) < MUTATE_KEEP) & decoder.removable
    return keep ^ flip, np.clip(cuts + step, 0.0, 1.0)


def _evolve(decoder: Decoder, score: Scorer, seeds: tuple[np.ndarray, np.ndarray] | None, trials: int,
            population: int, rng: np.random.Generator, archive: _Archive, study: optuna.Study, bar: tqdm) -> int:
    """The (mu + lambda) genetic algorithm; returns the number of predictor queries made."""
    keep, cuts = _random_genomes(decoder, population, rng)
    if seeds is not None:
        n = min(len(seeds[0]), population)
        copies = rng.integers(0, n, population // 2)
        mutated = _mutate(decoder, seeds[0][copies], seeds[1][copies], rng)
        keep = np.concatenate([seeds[0][:n], mutated[0], keep])[:population]
        cuts = np.concatenate([seeds[1][:n], mutated[1], cuts])[:population]
    counts = decoder.decode(keep, cuts)
    values = np.asarray(score(counts), dtype=np.float64)
    archive.add(counts, values)
    if seeds is not None:
        _record(study, decoder, keep[:n], cuts[:n], values[:n])
    done = len(values)
    _progress(bar, done, archive)
    while done < trials:
        n = min(population, trials - done)
        a, b = (_tournament(values, n, rng) for _ in range(2))
        mix = (rng.random((n, keep.shape[1])) < 0.5) & (rng.random((n, 1)) < CROSSOVER)
        child_keep, child_cuts = _mutate(decoder, np.where(mix, keep[b], keep[a]),
                                         np.where(mix[..., None], cuts[b], cuts[a]), rng)
        child_counts = decoder.decode(child_keep, child_cuts)
        child_values = np.asarray(score(child_counts), dtype=np.float64)
        archive.add(child_counts, child_values)
        keep, cuts, counts, values = _survivors(
            np.concatenate([keep, child_keep]), np.concatenate([cuts, child_cuts]),
            np.concatenate([counts, child_counts]), np.concatenate([values, child_values]), population)
        done += n
        _progress(bar, n, archive)
    return done


def _tournament(values: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    a, b = rng.integers(0, len(values), (2, n))
    return np.where(values[a] <= values[b], a, b)


def _survivors(keep: np.ndarray, cuts: np.ndarray, counts: np.ndarray, values: np.ndarray,
               population: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The ``population`` best distinct architectures (one genome each: duplicates would take over)."""
    _, first = np.unique(counts.reshape(len(counts), -1), axis=0, return_index=True)
    chosen = first[np.argsort(values[first], kind="stable")[:population]]
    return keep[chosen], cuts[chosen], counts[chosen], values[chosen]


def _ask_tell(decoder: Decoder, score: Scorer, seeds: tuple[np.ndarray, np.ndarray] | None, trials: int,
              population: int, archive: _Archive, study: optuna.Study, bar: tqdm) -> int:
    """Optuna's sampler proposes every genome (the seeds enqueued first); scored a generation at a time."""
    if seeds is not None:
        for k, c in zip(*seeds):
            study.enqueue_trial(decoder.trial_params(k, c), skip_if_exists=True)
    done = 0
    while done < trials:
        batch = [study.ask() for _ in range(min(population, trials - done))]
        keep, cuts = (np.stack(g) for g in zip(*(decoder.suggest(trial) for trial in batch)))
        counts = decoder.decode(keep, cuts)
        values = np.asarray(score(counts), dtype=np.float64)
        for trial, value in zip(batch, values):
            study.tell(trial, float(value))
        archive.add(counts, values)
        done += len(batch)
        _progress(bar, len(batch), archive)
    return done
