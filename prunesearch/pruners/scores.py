"""Per-unit importance scores (higher = more important) and the activation-aware default.

Every pruning method produces a ``UnitScores``; ``select_units`` turns scores plus an architecture's counts into
the architecture's unit indices, which is how a method decides *which* heads, dims and channels a width keeps.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import PreTrainedModel

from prunesearch.pruners.calibration import CalibrationStats
from prunesearch.space.shape import ModelShape


@dataclass
class UnitScores:
    """Scores of every prunable unit: ``mlp`` [L, I], ``heads`` [L, H] (query heads), ``v_dims`` [L, KV, D]
    (value/output dims of each group), ``qk_pairs`` [L, KV, D/2] (rotary pairs of each group)."""

    mlp: torch.Tensor
    heads: torch.Tensor
    v_dims: torch.Tensor
    qk_pairs: torch.Tensor

    def kv_groups(self, shape: ModelShape) -> torch.Tensor:
        """A group's score: the summed score of its query heads, [L, KV]."""
        return self.heads.view(shape.num_layers, shape.num_kv_heads, shape.group_size).sum(-1)


@torch.no_grad()
def activation_scores(model: PreTrainedModel, stats: CalibrationStats) -> UnitScores:
    """Activation-aware scores: how much each unit writes into the residual stream on calibration text.

    MLP channel j: E|a_j| * ||W_down[:, j]||. Query head h: E||W_o[:, h] z_h||. Value dim d of a group: sum over
    its query heads of RMS(z_hd) * ||W_o[:, hD + d]||. Rotary pair f of a group: sum over its query heads of
    RMS(q_hf) * RMS(k_gf), the scale of that pair's share of the attention logits.
    """
    s = ModelShape.from_config(model.config)
    L, KV, G, D = s.num_layers, s.num_kv_heads, s.group_size, s.head_dim
    n = stats.tokens
    # weight norms come back to the CPU, where the calibration statistics (and every score) live
    w_down = torch.stack([b.mlp.down_proj.weight.float().norm(dim=0) for b in model.model.layers]).cpu()
    w_o = torch.stack([b.self_attn.o_proj.weight.float().norm(dim=0) for b in model.model.layers]).cpu()
    mlp = stats.mlp_abs / n * w_down
    heads = stats.head_out / n
    v_dims = ((stats.attn_sq / n).sqrt() * w_o).view(L, KV, G, D).sum(2)
    q_rms = (stats.q_pair_sq / (2 * n)).sqrt().view(L, KV, G, D // 2)
    k_rms = (stats.k_pair_sq / (2 * n)).sqrt().view(L, KV, 1, D // 2)
    qk_pairs = (q_rms * k_rms).sum(2)
    return UnitScores(mlp=mlp, heads=heads, v_dims=v_dims, qk_pairs=qk_pairs)
