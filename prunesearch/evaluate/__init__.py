"""Honest measurement of pruned models: perplexity on held-out windows, cost, and side-by-side speed."""

from prunesearch.evaluate.perplexity import Perplexity, perplexity
from prunesearch.evaluate.run import EvalSpec, environment, evaluate_architecture, measure, with_units
from prunesearch.evaluate.speed import Speed, compare_speed
from prunesearch.evaluate.store import Fidelity, Pair, PairStore, default_storage

__all__ = [
    "EvalSpec",
    "Fidelity",
    "Pair",
    "PairStore",
    "Perplexity",
    "Speed",
    "compare_speed",
    "default_storage",
    "environment",
    "evaluate_architecture",
    "measure",
    "perplexity",
    "with_units",
]
