"""The cost model (``prunesearch.space.cost``) vectorised over a batch of count arrays, for featurization.

A block's parameters and FLOPs are its attention's (by kv, q_per_kv, qk, v) plus its MLP's (by channels); both
come from the cost model's own per-layer functions, tabulated once per shape (attention entries on first use:
that grid is large and sparse), so the figures match ``cost()`` exactly. A removed block's counts are all 0,
which costs 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from prunesearch.space import Architecture, LayerArch, ModelShape, flops_per_token, kv_bytes_per_token, param_count
from prunesearch.space.cost import fixed_params, layer_flops, layer_params

SEQ_LEN = 512
"""Context length of the FLOPs ratio (the cost model's default)."""

COST = ("cost:removed", "cost:flops", "cost:kv_bytes", "cost:no_attention", "cost:no_mlp")
"""Columns of ``cost_features``: parameters removed, FLOPs and KV-cache ratios to dense, layers without them."""


def _layer_cost(shape: ModelShape, layer: LayerArch) -> tuple[int, float]:
    return layer_params(shape, layer), layer_flops(shape, layer, SEQ_LEN)


@dataclass(frozen=True)
class _Tables:
    shape: ModelShape
    attention: np.ndarray
    mlp: np.ndarray
    dense_params: int
    dense_flops: float
    dense_kv: int
    fixed_params: int
    fixed_flops: float

    def blocks(self, kv: np.ndarray, qpk: np.ndarray, qk: np.ndarray, v: np.ndarray, mlp: np.ndarray) -> np.ndarray:
        """[..., 2] parameters and FLOPs of the blocks given by the count arrays."""
        missing = np.isnan(self.attention[kv, qpk, qk, v, 0])
        for combo in set(zip(*(a[missing].tolist() for a in (kv, qpk, qk, v)))):
            self.attention[combo] = _layer_cost(self.shape, LayerArch(True, *combo, 0))
        return self.attention[kv, qpk, qk, v] + self.mlp[mlp]


@lru_cache(maxsize=None)
def cost_tables(shape: ModelShape) -> _Tables:
    s = shape
    dense = Architecture.dense(s)
    empty = Architecture(s, (LayerArch(keep=False),) * s.num_layers)
    mlp = [_layer_cost(s, LayerArch(True, 0, 0, 0, 0, m)) for m in range(s.intermediate_size + 1)]
    return _Tables(
        shape=s,
        attention=np.full((s.num_kv_heads + 1, s.group_size + 1, s.head_dim + 1, s.head_dim + 1, 2), np.nan),
        mlp=np.array(mlp, dtype=np.float64),
        dense_params=param_count(dense),
        dense_flops=flops_per_token(dense, SEQ_LEN),
        dense_kv=kv_bytes_per_token(dense, dtype_bytes=1),
        fixed_params=fixed_params(s),
        fixed_flops=flops_per_token(empty, SEQ_LEN),
    )


def cost_features(kv: np.ndarray, qpk: np.ndarray, qk: np.ndarray, v: np.ndarray, mlp: np.ndarray,
                  shape: ModelShape) -> np.ndarray:
    """[n, 5] ``COST`` columns from per-layer count arrays [n, L]."""
    t = cost_tables(shape)
    params, flops = np.moveaxis(t.blocks(kv, qpk, qk, v, mlp).sum(1), -1, 0)
    return np.stack([
        1 - (t.fixed_params + params) / t.dense_params,
        (t.fixed_flops + flops) / t.dense_flops,
        (kv * (qk + v)).sum(1) / t.dense_kv,
        (kv == 0).sum(1),
        (mlp == 0).sum(1),
    ], axis=1)


@lru_cache(maxsize=None)
def param_shares(shape: ModelShape) -> dict[str, float]:
    """Share of the dense parameters each module's units own, per layer: MLP channels the MLP, KV groups the
    attention, v dims (v, o) and rotary q/k pairs (q, k) half the attention each."""
    s = shape
    total = param_count(Architecture.dense(s))
    attention = layer_params(s, LayerArch(True, s.num_kv_heads, s.group_size, s.head_dim, s.head_dim, 0)) / total
    mlp = layer_params(s, LayerArch(True, 0, 0, 0, 0, s.intermediate_size)) / total
    return {"mlp": mlp, "kv": attention, "v": attention / 2, "qk": attention / 2}
