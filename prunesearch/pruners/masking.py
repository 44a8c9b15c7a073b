"""Zero the pruned units of a dense model in place of removing them: the reference the materializer must match.

A removed unit is zeroed where its contribution enters the residual stream (o_proj columns of a removed query
head or value dim, down_proj columns of a removed channel) and, for query/key dims, in both q and k rows so that
pair's share of every attention score vanishes. A removed block is all of these at once: an identity. With a
``Refit``, the kept o_proj and down_proj columns take their refitted values, as ``materialize`` gives them.
"""

from __future__ import annotations

import copy

import torch
from transformers import PreTrainedModel

from prunesearch.errors import ArchitectureError
from prunesearch.pruners.materialize import unit_rows
from prunesearch.pruners.refit import Refit
from prunesearch.space.architecture import Architecture, LayerArch
from prunesearch.space.shape import ModelShape


def _zero_outside(tensor: torch.Tensor, keep: torch.Tensor, dim: int) -> None:
    mask = torch.ones(tensor.shape[dim], dtype=torch.bool, device=tensor.device)
    mask[keep] = False
    tensor.index_fill_(dim, mask.nonzero().squeeze(1), 0.0)


def _refit_columns(proj: torch.nn.Linear, refit: Refit | None, part: str, index: int, keep: torch.Tensor) -> None:
    """Give the kept columns of ``proj`` (still dense) their refitted values; the caller zeroes the rest."""
    if refit is not None and len(keep) < proj.in_features:
        proj.weight[:, keep] = refit.projection(proj.weight, part, index, keep)


@torch.no_grad()
def mask_layer(block: torch.nn.Module, shape: ModelShape, layer: LayerArch, refit: Refit | None = None,
               index: int = 0) -> None:
    """Zero, in place, every unit of one decoder ``block`` that ``layer`` removes (``layer`` carries indices);
    with ``refit``, refit the kept output columns of the dense model's layer ``index`` (``block`` must be dense)."""
    attn, mlp = block.self_attn, block.mlp
    kept = layer if layer.keep else LayerArch(keep=False)
    if kept.has_attention:
        rows = unit_rows(shape, kept)
        _refit_columns(attn.o_proj, refit, "attn", index, rows["o"])
        _zero_outside(attn.q_proj.weight, rows["q"], 0)
        _zero_outside(attn.k_proj.weight, rows["k"], 0)
        _zero_outside(attn.o_proj.weight, rows["o"], 1)
        for proj, key in ((attn.q_proj, "q"), (attn.k_proj, "k")):
            if proj.bias is not None:
                _zero_outside(proj.bias, rows[key], 0)
    else:
        attn.o_proj.weight.zero_()
        if attn.o_proj.bias is not None:
            attn.o_proj.bias.zero_()
    if kept.has_mlp:
        channels = torch.tensor(kept.mlp_idx, dtype=torch.long)
        _refit_columns(mlp.down_proj, refit, "mlp", index, channels)
        _zero_outside(mlp.down_proj.weight, channels, 1)
    else:
        mlp.down_proj.weight.zero_()
        if mlp.down_proj.bias is not None:
            mlp.down_proj.bias.zero_()


@torch.no_grad()
def mask_model(dense: PreTrainedModel, arch: Architecture, refit: Refit | None = None) -> PreTrainedModel:
    """A copy of ``dense`` with every unit ``arch`` removes zeroed (``arch`` must carry unit indices), and with
    ``refit`` the kept output columns refitted."""
    shape = ModelShape.from_config(dense.config)
    if not arch.has_indices:
        raise ArchitectureError("the architecture lacks unit indices: select units from importance scores first")
    masked = copy.deepcopy(dense)
    for i, (block, layer) in enumerate(zip(masked.model.layers, arch.layers)):
        mask_layer(block, shape, layer, refit, i)
    return masked
