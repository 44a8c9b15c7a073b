"""Optuna over the predictor: per-layer genes, repaired onto the budget, scored in batches.

Every trial suggests the six genes of every layer (as grid indices, so samplers see their order), the
architecture is moved onto the budget by ``SearchSpace.repair`` (the search can never return one over budget)
and the predictor scores a whole generation at once. The baselines and other priors are enqueued as the
first trials, so the evolutionary sampler starts from them and recombines them; the default sampler is
Optuna's NSGA-II, which for one objective is a plain genetic algorithm with uniform crossover.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import optuna
from tqdm.auto import tqdm

from prunesearch.predictor.costs import cost_tables
from prunesearch.space import Architecture, SearchSpace

Scorer = Callable[[Sequence[Architecture]], np.ndarray]


WIDTH_GENES = ("kv_heads", "q_per_kv", "qk_dim", "v_dim", "mlp")


class Decoder:
    """Turns a trial's genes into an architecture on the budget.

    Per layer a trial holds ``keep`` (unprotected layers only) and one cut propensity in [0, 1] per width gene.
    A single strength ``s``, found by bisection, scales every propensity so that the kept grid values
    (``1 - s * c`` of the way down each gene's choices) just fit the budget; ``SearchSpace.repair`` then lands
    within its slack by single grid steps. The search thus explores the *shape* of an allocation (where to cut,
    how deep relative to elsewhere) while every candidate spends the same budget.
    """

    def __init__(self, space: SearchSpace, budget: float, slack: float = 0.005) -> None:
        space.check_budget(budget)
        self.space, self.budget, self.slack = space, budget, slack
        choices = space.choices()
        self.options = [np.asarray(choices[g]) for g in WIDTH_GENES]
        self.tables = cost_tables(space.shape)
        self.target = (1 - budget) * self.tables.dense_params
        self.removable = [i for i in range(space.shape.num_layers) if i not in space.protected]

    def _genes(self, keep: np.ndarray, cuts: np.ndarray, strength: float) -> np.ndarray:
        """[L, 5] width gene values at ``strength``; 0 everywhere in removed layers."""
        values = []
        for j, options in enumerate(self.options):
            index = np.rint((1 - np.clip(strength * cuts[:, j], 0, 1)) * (len(options) - 1)).astype(int)
            values.append(options[index])
        genes = np.stack(values, axis=1) * keep[:, None]
        empty = (genes[:, 0] == 0) & (genes[:, 4] == 0)
        for i in self.space.protected:
            if empty[i]:
                genes[i, 4] = self.options[4][1]
        return genes

    def _params(self, genes: np.ndarray) -> float:
        kv, qpk, qk, v, mlp = genes.T
        return self.tables.fixed_params + float(self.tables.blocks(kv, qpk, qk, v, mlp)[:, 0].sum())

    def decode(self, keep: np.ndarray, cuts: np.ndarray) -> Architecture:
        low, high = 0.0, 1.0
        while self._params(self._genes(keep, cuts, high)) > self.target and high < 1e4:
            high *= 2
        if self._params(self._genes(keep, cuts, low)) > self.target:
            for _ in range(30):
                mid = (low + high) / 2
                low, high = (mid, high) if self._params(self._genes(keep, cuts, mid)) > self.target else (low, mid)
        else:
            high = 0.0
        genes = self._genes(keep, cuts, high)
        layers = tuple(
            self.space.layer_from_genes({"keep": int(keep[i]), **dict(zip(WIDTH_GENES, map(int, genes[i])))})
            for i in range(len(genes))
        )
        return self.space.repair(Architecture(self.space.shape, layers), self.budget, self.slack)

    def suggest(self, trial: optuna.Trial) -> Architecture:
        """The architecture a trial describes, on the budget."""
        L = self.space.shape.num_layers
        keep = np.ones(L, dtype=int)
        for i in self.removable:
            keep[i] = trial.suggest_int(f"keep_{i}", 0, 1)
        cuts = np.array([[trial.suggest_float(f"{g}_{i}", 0.0, 1.0) for g in WIDTH_GENES] for i in range(L)])
        return self.decode(keep, cuts)

    def genes_of(self, arch: Architecture) -> tuple[np.ndarray, np.ndarray]:
        """``keep`` [L] and ``cuts`` [L, 5] that ``decode`` turns back into (about) ``arch``."""
        params = self.encode(arch)
        L = self.space.shape.num_layers
        keep = np.array([params.get(f"keep_{i}", 1) for i in range(L)])
        cuts = np.array([[params[f"{g}_{i}"] for g in WIDTH_GENES] for i in range(L)])
        return keep, cuts

    def encode(self, arch: Architecture) -> dict[str, float]:
        """Trial parameters that decode back to (about) ``arch``, for ``enqueue_trial``: each gene's cut is how
        far down its choices ``arch`` sits."""
        params: dict[str, float] = {}
        for i, layer in enumerate(arch.layers):
            if i in self.removable:
                params[f"keep_{i}"] = int(layer.keep)
            values = (layer.kv_heads, max(layer.q_per_kv, 1), layer.qk_dim or self.options[2][-1],
                      layer.v_dim or self.options[3][-1], layer.mlp)
            for gene, options, value in zip(WIDTH_GENES, self.options, values):
                index = int(np.abs(options - value).argmin()) if layer.keep else len(options) - 1
                params[f"{gene}_{i}"] = 1 - index / (len(options) - 1)
        return params


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


def search(space: SearchSpace, score: Scorer, budget: float, seeds: Sequence[Architecture] = (), trials: int = 3000,
           population: int = 64, seed: int = 0, slack: float = 0.005, top: int = 10,
           sampler: optuna.samplers.BaseSampler | None = None, progress: bool = True) -> SearchResult:
    """Minimise ``score`` (predicted log-ppl) over architectures removing ``budget`` (+ at most ``slack``)."""
    decoder = Decoder(space, budget, slack)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = sampler or optuna.samplers.NSGAIISampler(population_size=population, seed=seed)
    study = optuna.create_study(direction="minimize", sampler=sampler)
    for arch in seeds:
        study.enqueue_trial(decoder.encode(arch), skip_if_exists=True)
    best: dict[str, Candidate] = {}
    start = time.perf_counter()
    done = 0
    with tqdm(total=trials, desc=f"search @ {budget:.0%}", disable=not progress, leave=False) as bar:
        while done < trials:
            batch = [study.ask() for _ in range(min(population, trials - done))]
            archs = [decoder.suggest(trial) for trial in batch]
            values = score(archs)
            for trial, arch, value in zip(batch, archs, values):
                study.tell(trial, float(value))
                key = arch.key()
                if key not in best or value < best[key].predicted:
                    best[key] = Candidate(arch, float(value))
            done += len(batch)
            bar.update(len(batch))
            bar.set_postfix(best=f"{min(c.predicted for c in best.values()):.3f}")
    ranked = sorted(best.values(), key=lambda c: c.predicted)[:top]
    return SearchResult(candidates=ranked, trials=done, seconds=time.perf_counter() - start, study=study)
