"""All methods' scores for one model, computed once and cached: the search's priors and the predictor's features.

Unit scores (activation, LLM-BIP, TransAct) and block redundancies (MI-PRUN, ShortGPT) come from the single
calibration pass; SLEB's removal order needs its own passes. ``layer_features`` summarises what an
architecture keeps in each method's eyes, per layer, for the predictor.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from prunesearch.models import LoadedModel
from prunesearch.pruners.bip import bip_scores
from prunesearch.pruners.calibration import CalibrationSpec, calibrate
from prunesearch.pruners.mi_prun import block_mi
from prunesearch.pruners.scores import UnitScores, activation_scores
from prunesearch.pruners.shortgpt import block_influence
from prunesearch.pruners.sleb import SlebSpec, sleb
from prunesearch.pruners.transact import transact_scores
from prunesearch.space import Architecture, ModelShape

UNIT_METHODS = ("activation", "bip", "transact")
BLOCK_METHODS = ("mi", "shortgpt", "sleb")


@dataclass
class Priors:
    """``unit[m]``: per-unit scores (higher = keep); ``block[m]``: per-block redundancy in [0, 1] (higher = the
    method would remove it sooner); ``seconds``: wall time of each step when it was computed (0 if cached)."""

    unit: dict[str, UnitScores]
    block: dict[str, torch.Tensor]
    seconds: dict[str, float] = field(default_factory=dict)


def _rank_redundancy(order: list[int], n_layers: int) -> torch.Tensor:
    """1 for the first block a method removes, falling linearly; 0 for blocks it never removes."""
    out = torch.zeros(n_layers)
    for rank, block in enumerate(order):
        out[block] = 1 - rank / n_layers
    return out


def _minmax(x: torch.Tensor) -> torch.Tensor:
    return (x - x.min()) / (x.max() - x.min()).clamp_min(1e-12)


def compute_priors(loaded: LoadedModel, calibration: CalibrationSpec = CalibrationSpec(),
                   sleb_spec: SlebSpec = SlebSpec(), sleb_blocks: int = 8, progress: bool = True) -> Priors:
    """Every method's scores for ``loaded`` (cached on disk by the steps themselves)."""
    model, shape = loaded.model, ModelShape.from_config(loaded.model.config)
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    stats = calibrate(model, loaded.tokenizer, loaded.fingerprint, calibration, progress)
    seconds["calibration pass"] = time.perf_counter() - start
    unit: dict[str, UnitScores] = {}
    for name, fn in (("activation", activation_scores), ("bip", bip_scores)):
        start = time.perf_counter()
        unit[name] = fn(model, stats)
        seconds[name] = time.perf_counter() - start
    start = time.perf_counter()
    unit["transact"] = transact_scores(stats, shape)
    seconds["transact"] = time.perf_counter() - start
    start = time.perf_counter()
    block = {"mi": _minmax(block_mi(stats.boundary)), "shortgpt": 1 - _minmax(block_influence(stats))}
    seconds["mi + shortgpt"] = time.perf_counter() - start
    start = time.perf_counter()
    order = sleb(model, loaded.tokenizer, loaded.fingerprint, sleb_blocks, sleb_spec, progress=progress)
    block["sleb"] = _rank_redundancy(order, shape.num_layers)
    seconds["sleb"] = time.perf_counter() - start
    return Priors(unit=unit, block=block, seconds=seconds)


def _kept_mass(scores: torch.Tensor, kept: tuple[int, ...] | None, count: int) -> float:
    """Fraction of a layer's score mass the kept units hold (top ``count`` when indices are absent)."""
    total = float(scores.sum())
    if total <= 0:
        return count / max(1, len(scores))
    if kept is None:
        kept = tuple(torch.topk(scores, count).indices.tolist()) if count else ()
    return float(scores[list(kept)].sum()) / total


def layer_features(priors: Priors, arch: Architecture) -> dict[str, np.ndarray]:
    """Per-layer prior features of ``arch``: MLP and head score mass kept under each unit method, and each
    block method's redundancy for the blocks ``arch`` removes (0 for kept blocks)."""
    shape = arch.shape
    out: dict[str, np.ndarray] = {}
    for name, scores in priors.unit.items():
        groups = scores.kv_groups(shape)
        mlp, heads = np.zeros(shape.num_layers), np.zeros(shape.num_layers)
        for i, layer in enumerate(arch.layers):
            if layer.has_mlp:
                mlp[i] = _kept_mass(scores.mlp[i], layer.mlp_idx, layer.mlp)
            if layer.has_attention:
                share = _kept_mass(groups[i], layer.kv_idx, layer.kv_heads)
                heads[i] = share * layer.q_per_kv / shape.group_size
        out[f"{name}_mlp_mass"] = mlp
        out[f"{name}_head_mass"] = heads
    removed = np.array([not layer.keep for layer in arch.layers], dtype=float)
    for name, redundancy in priors.block.items():
        out[f"{name}_removed_redundancy"] = removed * redundancy.numpy()
    return out
