"""Honest measurement of pruned models: perplexity on held-out windows, cost, and side-by-side speed."""

from prunesearch.evaluate.perplexity import Perplexity, perplexity
from prunesearch.evaluate.run import EvalSpec, environment, evaluate_architecture, with_units
from prunesearch.evaluate.speed import Speed, compare_speed

__all__ = [
    "EvalSpec",
    "Perplexity",
    "Speed",
    "compare_speed",
    "environment",
    "evaluate_architecture",
    "perplexity",
    "with_units",
]
