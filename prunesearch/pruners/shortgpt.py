"""ShortGPT Block Influence (arXiv 2403.03853): BI_i = 1 - E cos(h_in, h_out); the lowest BI goes first."""

from __future__ import annotations

import torch

from prunesearch.pruners.calibration import CalibrationStats


def block_influence(stats: CalibrationStats) -> torch.Tensor:
    """[L] Block Influence: how much a block turns its input; near 0 means the block is almost an identity."""
    return 1 - stats.block_cos / stats.tokens


def shortgpt_order(stats: CalibrationStats) -> list[int]:
    """Blocks from least to most influential (ties broken by index): the removal order."""
    return torch.sort(block_influence(stats), stable=True).indices.tolist()
