"""Choose which units an architecture keeps: the top-scoring ones for each of its counts."""

from __future__ import annotations

from dataclasses import replace

import torch

from prunesearch.pruners.scores import UnitScores
from prunesearch.space.architecture import Architecture, LayerArch


def _top(scores: torch.Tensor, k: int) -> tuple[int, ...]:
    """Indices of the ``k`` highest scores, ascending; ties go to the lower index (deterministic)."""
    order = torch.sort(-scores.float(), stable=True).indices[:k]
    return tuple(sorted(order.tolist()))


def select_layer(arch: Architecture, i: int, scores: UnitScores) -> LayerArch:
    layer, shape = arch.layers[i], arch.shape
    if not layer.keep:
        return layer
    kv_idx: tuple[int, ...] = ()
    q_idx, qk_idx, v_idx = [], [], []
    if layer.has_attention:
        kv_idx = _top(scores.kv_groups(shape)[i], layer.kv_heads)
        heads = scores.heads[i].view(shape.num_kv_heads, shape.group_size)
        for g in kv_idx:
            q_idx.append(_top(heads[g], layer.q_per_kv))
            qk_idx.append(_top(scores.qk_pairs[i, g], layer.qk_dim // 2))
            v_idx.append(_top(scores.v_dims[i, g], layer.v_dim))
    return replace(
        layer,
        kv_idx=kv_idx,
        q_idx=tuple(q_idx),
        qk_idx=tuple(qk_idx),
        v_idx=tuple(v_idx),
        mlp_idx=_top(scores.mlp[i], layer.mlp),
    )


def select_units(arch: Architecture, scores: UnitScores, method: str = "activation") -> Architecture:
    """``arch`` with unit indices filled from ``scores`` (existing indices are replaced)."""
    layers = tuple(select_layer(arch, i, scores) for i in range(len(arch.layers)))
    return Architecture(arch.shape, layers, {**arch.meta, "units": method})
