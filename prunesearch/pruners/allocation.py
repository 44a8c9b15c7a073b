"""Turning scores into an architecture at a parameter budget: the allocation rules the baselines share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

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


def protected_ends(num_layers: int) -> tuple[int, int]:
    """Layers left dense at each end under the LLM-Pruner protocol (LLaMA-7B: the first 4 and the last 2 of 32),
    scaled to the model's depth."""
    return max(1, round(num_layers * 4 / 32)), max(1, round(num_layers * 2 / 32))


def layerwise_width(shape: ModelShape, scores: UnitScores, budget: float) -> Architecture:
    """The LLM-Pruner protocol that LLM-BIP is evaluated under: the middle layers (``protected_ends`` stay dense)
    all lose the same fraction of query heads and MLP channels, and the scores decide which units go within each
    layer. Heads come in whole heads per key/value group, so the head cut is the per-layer ratio rounded to heads
    (a group goes only when all its heads do); the MLP cut, equal in every pruned layer, then lands the budget."""
    target = target_params(shape, budget)
    first, last = protected_ends(shape.num_layers)
    pruned = range(first, shape.num_layers - last)
    full = Architecture.dense(shape).layers[0]
    G, D = shape.group_size, shape.head_dim
    ratio = (param_count(Architecture.dense(shape)) - target) / (len(pruned) * layer_params(shape, full))
    if ratio >= 1:
        raise BudgetError(f"budget {budget} needs more than the {len(pruned)} unprotected layers hold")
    q = G - min(G, round(ratio * G))

    def build(mlp: int) -> Architecture:
        cut = LayerArch(True, shape.num_kv_heads if q else 0, q, D if q else 0, D if q else 0, mlp)
        return Architecture(shape, tuple(cut if i in pruned else full for i in range(shape.num_layers)))

    low, high = 0, shape.intermediate_size
    if param_count(build(low)) > target:
        raise BudgetError(f"budget {budget} cannot be met by cutting heads and channels in layers "
                          f"{first}..{shape.num_layers - last - 1}")
    while low < high:
        mid = (low + high + 1) // 2
        if param_count(build(mid)) <= target:
            low = mid
        else:
            high = mid - 1
    return select_units(build(low), scores)
