"""The architecture space: what a pruned model keeps, what it costs, and how to sample it."""

from prunesearch.space.architecture import Architecture, LayerArch
from prunesearch.space.cost import Cost, cost, flops_per_token, kv_bytes_per_token, param_count
from prunesearch.space.latency import Workload
from prunesearch.space.limits import Limits
from prunesearch.space.search_space import SearchSpace, space_for
from prunesearch.space.shape import ModelShape

__all__ = [
    "Architecture",
    "Cost",
    "LayerArch",
    "Limits",
    "ModelShape",
    "SearchSpace",
    "Workload",
    "cost",
    "flops_per_token",
    "kv_bytes_per_token",
    "param_count",
    "space_for",
]
