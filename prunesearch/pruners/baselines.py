"""Each method's own rule for an architecture at a budget: the heuristic baselines and the search's priors.

Width methods: LLM-BIP follows the LLM-Pruner protocol its paper is evaluated under (``layerwise_width``: the
same head and channel ratio in every layer but the first and last few, its scores choosing the units; a single
global ranking of its scores across layers collapsed SmolLM2 to PTB ppl ~1,900 at 20%); TransAct uses its
iterative schedule. Block methods (MI-PRUN, SLEB, ShortGPT) remove as many
whole blocks as fit in the budget, then land on it with the least width cut: the same number of MLP channels
(lowest activation-aware score) removed in every kept block. ``uniform`` cuts the same MLP fraction everywhere.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict

from prunesearch.errors import BudgetError, PrunesearchError
from prunesearch.models import LoadedModel
from prunesearch.paths import cache_dir
from prunesearch.pruners.allocation import layerwise_width, remove_blocks, target_params, uniform_mlp_cut
from prunesearch.pruners.bip import bip_scores
from prunesearch.pruners.calibration import CalibrationSpec, calibrate
from prunesearch.pruners.mi_prun import fast_block_select
from prunesearch.pruners.scores import activation_scores
from prunesearch.pruners.shortgpt import shortgpt_order
from prunesearch.pruners.sleb import SlebSpec, sleb
from prunesearch.pruners.transact import transact_baseline
from prunesearch.space import Architecture, ModelShape, SearchSpace, cost

_CACHE_VERSION = "baseline-v1"
_METHOD_VERSIONS = {"bip": "layerwise-v2"}  # bumped when a method's rule changes: only its cache is redone
METHODS = ("bip", "transact", "mi", "sleb", "shortgpt", "uniform")
TOLERANCE = 0.01


def _blocks_for(method: str, loaded: LoadedModel, stats, sleb_spec: SlebSpec, progress: bool) -> Callable[[int], list[int]]:
    """A function giving the ``n`` blocks the method removes."""
    L = loaded.model.config.num_hidden_layers
    if method == "shortgpt":
        order = shortgpt_order(stats)
        return lambda n: order[:n]
    if method == "mi":
        return lambda n: fast_block_select(stats.boundary, n, protected=(0, L - 1)) if n else []
    return lambda n: sleb(loaded.model, loaded.tokenizer, loaded.fingerprint, n, sleb_spec, progress=progress) if n else []


def baseline(
    method: str,
    loaded: LoadedModel,
    budget: float,
    calibration: CalibrationSpec = CalibrationSpec(),
    sleb_spec: SlebSpec = SlebSpec(),
    progress: bool = True,
) -> Architecture:
    """The architecture ``method`` picks for removing ``budget`` of the total parameters (within 1%), with unit
    indices so it materializes reproducibly; cached on disk per model fingerprint, method, budget and specs."""
    if method not in METHODS:
        raise PrunesearchError(f"unknown method '{method}' (choose from {', '.join(METHODS)})")
    model = loaded.model
    shape = ModelShape.from_config(model.config)
    space = SearchSpace(shape)
    space.check_budget(budget)
    version = [_CACHE_VERSION] + ([_METHOD_VERSIONS[method]] if method in _METHOD_VERSIONS else [])
    key = json.dumps([*version, loaded.fingerprint, method, budget, asdict(calibration), asdict(sleb_spec)],
                     sort_keys=True)
    path = cache_dir("baselines") / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"
    if path.exists():
        return Architecture.load(path, shape)
    target = target_params(shape, budget)
    stats = calibrate(model, loaded.tokenizer, loaded.fingerprint, calibration, progress)
    activation = activation_scores(model, stats)
    if method == "uniform":
        arch = uniform_mlp_cut(Architecture.dense(shape), target, activation)
    elif method == "bip":
        arch = layerwise_width(shape, bip_scores(model, stats), budget)
    elif method == "transact":
        arch = transact_baseline(loaded, budget, space, calibration, progress=progress)
    else:
        blocks = _blocks_for(method, loaded, stats, sleb_spec, progress)
        arch = remove_blocks(shape, blocks, budget, activation)
    removed = cost(arch).removed
    if abs(removed - budget) > TOLERANCE:
        raise BudgetError(f"{method} removed {removed:.2%} of parameters, not {budget:.2%} (within 1%)")
    meta = {"method": method, "budget": budget, "removed": removed, "model": loaded.name,
            "fingerprint": loaded.fingerprint, "calibration": asdict(calibration)}
    if method == "sleb":
        meta["sleb"] = asdict(sleb_spec)
    result = Architecture(arch.shape, arch.layers, {**arch.meta, **meta})
    result.save(path)
    return result
