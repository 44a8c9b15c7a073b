"""LLM-BIP (arXiv 2412.06419): score a unit by how much removing it changes its block's output.

MLP channel j writes a_j * W_down[:, j] straight into the block output, so its score is E|a_j| * ||W_down[:, j]||.
A query head's contribution c_h = W_o[:, h] z_h enters the residual H and then also passes through the MLP;
the change it causes at the block output is bounded by (1 + L_mlp) * E||c_h||, with L_mlp the MLP sublayer's
Lipschitz constant. We estimate L_mlp per block empirically in the calibration pass: the mean, over sampled
tokens and heads, of ||MLP(n(H)) - MLP(n(H - c_h))|| / ||c_h||, i.e. the amplification actually seen for head
removals (a spectral-norm bound would be far looser and would not rank blocks better). Per-head dims get the
same propagation factor on their activation-aware score. All scores live on one scale (norm of the change of
the block output), so they rank units across blocks, which is how the budget is allocated.
"""

from __future__ import annotations

import torch
from transformers import PreTrainedModel

from prunesearch.pruners.calibration import CalibrationStats
from prunesearch.pruners.scores import UnitScores, activation_scores
from prunesearch.space.shape import ModelShape


@torch.no_grad()
def bip_scores(model: PreTrainedModel, stats: CalibrationStats) -> UnitScores:
    shape = ModelShape.from_config(model.config)
    base = activation_scores(model, stats)
    amplification = 1 + stats.mlp_lipschitz
    per_group = amplification.view(shape.num_layers, 1, 1)
    return UnitScores(
        mlp=base.mlp,
        heads=base.heads * amplification.view(-1, 1),
        v_dims=base.v_dims * per_group,
        qk_pairs=base.qk_pairs * per_group,
    )
