"""All methods' scores for one model, computed once and cached: the search's priors and the predictor's features.

Unit scores (activation, LLM-BIP, TransAct) and block redundancies (MI-PRUN, ShortGPT) come from the single
calibration pass; SLEB's removal order needs its own passes. ``prunesearch.predictor.FeatureContext`` turns them
into the predictor's lookup tables.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from transformers import PreTrainedModel

from prunesearch.errors import ArchitectureError
from prunesearch.models import LoadedModel
from prunesearch.pruners.bip import bip_scores
from prunesearch.pruners.calibration import CalibrationSpec, CalibrationStats, calibrate
from prunesearch.pruners.mi_prun import block_mi
from prunesearch.pruners.scores import UnitScores, activation_scores
from prunesearch.pruners.shortgpt import block_influence
from prunesearch.pruners.sleb import SlebSpec, sleb
from prunesearch.pruners.transact import transact_scores
from prunesearch.space import ModelShape

UNIT_METHODS = ("activation", "bip", "transact")
BLOCK_METHODS = ("mi", "shortgpt", "sleb")


@dataclass
class Priors:
    """``unit[m]``: per-unit scores (higher = keep); ``block[m]``: per-block redundancy in [0, 1] (higher = the
    method would remove it sooner); ``seconds``: wall time of each step when it was computed (0 if cached)."""

    unit: dict[str, UnitScores]
    block: dict[str, torch.Tensor]
    seconds: dict[str, float] = field(default_factory=dict)


def scores_key(calibration: CalibrationSpec, fingerprint: str, units: str) -> str:
    """Names the scores that choose units, for the caches of what was measured with them."""
    return calibration.key(fingerprint) + ("" if units == "activation" else f"/{units}")


def _rank_redundancy(order: list[int], n_layers: int) -> torch.Tensor:
    """1 for the first block a method removes, falling linearly; 0 for blocks it never removes."""
    out = torch.zeros(n_layers)
    for rank, block in enumerate(order):
        out[block] = 1 - rank / n_layers
    return out


def _minmax(x: torch.Tensor) -> torch.Tensor:
    return (x - x.min()) / (x.max() - x.min()).clamp_min(1e-12)


def unit_scores(model: PreTrainedModel, stats: CalibrationStats, method: str) -> UnitScores:
    """One unit method's scores (``UNIT_METHODS``) from a calibration pass's statistics."""
    if method not in UNIT_METHODS:
        raise ArchitectureError(f"units {method!r} name no unit method ({', '.join(UNIT_METHODS)})")
    if method == "transact":
        return transact_scores(stats, ModelShape.from_config(model.config))
    return (activation_scores if method == "activation" else bip_scores)(model, stats)


def compute_priors(loaded: LoadedModel, calibration: CalibrationSpec = CalibrationSpec(),
                   sleb_spec: SlebSpec = SlebSpec(), sleb_blocks: int = 8, progress: bool = True) -> Priors:
    """Every method's scores for ``loaded`` (cached on disk by the steps themselves)."""
    model, shape = loaded.model, ModelShape.from_config(loaded.model.config)
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    stats = calibrate(model, loaded.tokenizer, loaded.fingerprint, calibration, progress)
    seconds["calibration pass"] = time.perf_counter() - start
    unit: dict[str, UnitScores] = {}
    for name in UNIT_METHODS:
        start = time.perf_counter()
        unit[name] = unit_scores(model, stats, name)
        seconds[name] = time.perf_counter() - start
    start = time.perf_counter()
    block = {"mi": _minmax(block_mi(stats.boundary)), "shortgpt": 1 - _minmax(block_influence(stats))}
    seconds["mi + shortgpt"] = time.perf_counter() - start
    start = time.perf_counter()
    blocks = min(sleb_blocks, shape.num_layers - 2)
    order = sleb(model, loaded.tokenizer, loaded.fingerprint, blocks, sleb_spec, progress=progress)
    block["sleb"] = _rank_redundancy(order, shape.num_layers)
    seconds["sleb"] = time.perf_counter() - start
    return Priors(unit=unit, block=block, seconds=seconds)
