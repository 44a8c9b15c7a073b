"""Turning scores into an architecture at a parameter budget: the allocation rules the baselines share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import torch

from prunesearch.errors import BudgetError
from prunesearch.pruners.scores import UnitScores
from prunesearch.pruners.selection import select_units
from prunesearch.space.architecture import Architecture, LayerArch
from prunesearch.space.cost import layer_params, param_count
from prunesearch.space.shape import ModelShape


def target_params(shape: ModelShape, budget: float) -> int:
    """Parameters left after removing ``budget`` of the dense total."""
    if not 0 <= budget < 1:
        raise BudgetError(f"budget {budget} must be in [0, 1): the fraction of total parameters removed")
    return round((1 - budget) * param_count(Architecture.dense(shape)))


def uniform_mlp_cut(arch: Architecture, target: int, scores: UnitScores) -> Architecture:
    """Cut the same number of MLP channels in every kept layer (the top-scoring channels stay) to reach
    ``target`` parameters; the least width cut that lands a block-removal result on its budget."""
    shape = arch.shape
    kept = [i for i, layer in enumerate(arch.layers) if layer.has_mlp]
    excess = param_count(arch) - target
    if excess <= 0 or not kept:
        return select_units(arch, scores)
    per_channel = 3 * shape.hidden_size + (2 if shape.mlp_bias else 0)
    cut = round(excess / (len(kept) * per_channel))
    if any(arch.layers[i].mlp - cut < 1 for i in kept):
        raise BudgetError("the budget cannot be met by cutting MLP channels evenly in the kept layers")
    layers = [replace(layer, mlp=layer.mlp - cut) if i in kept else layer for i, layer in enumerate(arch.layers)]
    return select_units(Architecture(shape, tuple(layers), arch.meta), scores)


def remove_blocks(shape: ModelShape, blocks: Callable[[int], list[int]], budget: float,
                  scores: UnitScores) -> Architecture:
    """Remove as many whole blocks as fit in the budget (``blocks(n)`` says which ``n``), then land on it with
    ``uniform_mlp_cut`` over the remaining blocks."""
    target = target_params(shape, budget)
    dense = Architecture.dense(shape)
    block = layer_params(shape, dense.layers[0])
    removed = set(blocks(int((param_count(dense) - target) // block)))
    layers = tuple(LayerArch(keep=False) if i in removed else layer for i, layer in enumerate(dense.layers))
    return uniform_mlp_cut(Architecture(shape, layers), target, scores)


def global_width(shape: ModelShape, scores: UnitScores, budget: float) -> Architecture:
    """Remove the MLP channels and key/value groups (with their query heads) of lowest score per parameter,
    across all layers, until the budget is met: a single global ranking decides the per-layer widths. A group
    that would overshoot the budget by more than half a percent is skipped so channels can land it."""
    target = target_params(shape, budget)
    dense = Architecture.dense(shape)
    full = dense.layers[0]
    h, D, G = shape.hidden_size, shape.head_dim, shape.group_size
    channel_cost = 3 * h + (2 if shape.mlp_bias else 0)
    group_cost = h * (G * D + 2 * D) + G * D * h + ((G + 2) * D if shape.qkv_bias else 0)
    groups = scores.kv_groups(shape)
    values = torch.cat([(scores.mlp / channel_cost).flatten(), (groups / group_cost).flatten()])
    kinds = torch.cat([torch.zeros(scores.mlp.numel()), torch.ones(groups.numel())]).long()
    layer_of = torch.cat([
        torch.arange(shape.num_layers).repeat_interleave(shape.intermediate_size),
        torch.arange(shape.num_layers).repeat_interleave(shape.num_kv_heads),
    ])
    mlp = [full.mlp] * shape.num_layers
    kv = [full.kv_heads] * shape.num_layers
    excess = param_count(dense) - target
    slack = 0.005 * param_count(dense)
    for j in torch.sort(values, stable=True).indices.tolist():
        if excess <= 0:
            break
        layer = int(layer_of[j])
        if kinds[j] == 0 and mlp[layer] > 0:
            mlp[layer] -= 1
            excess -= channel_cost
        elif kinds[j] == 1 and kv[layer] > 0 and group_cost <= excess + slack:
            kv[layer] -= 1
            excess -= group_cost
    layers = tuple(
        LayerArch(True, kv[i], G if kv[i] else 0, D if kv[i] else 0, D if kv[i] else 0, mlp[i])
        for i in range(shape.num_layers)
    )
    return select_units(Architecture(shape, layers), scores)
