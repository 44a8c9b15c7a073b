"""TransAct: prune the transitional dims inside each module by the L2 norm of their activations, iteratively.

TransAct (Shen et al., "Pruning Large Language Models to Intra-module Low-rank Architecture with Transitional
Activations", Findings ACL 2024, arXiv 2407.05690; code: github.com/XiaoMi/transact-pruning) keeps the hidden
size and every block and shrinks only the dims *inside* attention and MLP, whose activations never reach the
residual stream directly. Its metric, its allocation rule and its schedule, as this module reproduces them:

- **Channel score**: the L2 norm over all calibration tokens of a transitional activation: the MLP activation
  a = act(gate x) * up x (down_proj input) and, in attention, each head's output dims z before o_proj.
- **Head score**: mean of the head's dim scores plus (10 / head_dim) * their max (the released code's
  ``pruning_schedule``, with head_dim the head's *current* dim count): a head with one strong dim survives.
- **Allocation**: one sparsity ratio for the whole model: every layer keeps the same fraction of MLP channels
  and of attention transitional dims (heads x head dim); each layer picks its own units by score. Heads go first
  (as many as the kept dims need at the current head dim, rounded up), then dims within the kept heads. The code
  shrinks q/k/v/o together (one head_dim per head); so does this rule when the space prunes q/k dims.
- **Schedule**: several steps, each a linear share of the way to the target, re-scoring the pruned model
  before the next. The paper fine-tunes between steps (the released scripts: 8 steps over ~1B tokens, then 50B
  tokens of fine-tuning); we do not: each step re-calibrates the masked model on the same windows, training-free.

Adaptations to this project's space (the code handles only multi-head attention, "TODO: support GQA"):

- A key/value group's value dim d feeds dim d of every query head of the group, so its score is the L2 norm of
  z[h, d] over the calibration tokens *and* the group's kept query heads.
- Query heads per group must be uniform within a layer (``q_per_kv``), so the head count is rounded up to the
  nearest kv_heads x q_per_kv product (ties: the structure keeping the most head score, then fewer groups);
  groups rank by the summed score of the heads they would keep, heads within a group by the head score.
- Query/key dims are rotary pairs here. They are kept to the value dim count (TransAct's shared head_dim) and
  chosen by the same kind of norm: pair f of a group scores ||k_f|| * sum over its kept query heads of ||q_f||,
  the scale of that pair's share of the attention logits. With ``prune_qk=False`` in the space they stay whole.
- The single ratio is found by bisection so that the result removes ``budget`` of the total parameters.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import torch

from prunesearch.data import calibration_windows, token_ids
from prunesearch.errors import ArchitectureError, BudgetError, PrunesearchError
from prunesearch.models import LoadedModel
from prunesearch.pruners.calibration import CalibrationSpec, CalibrationStats, calibrate, collect
from prunesearch.pruners.masking import mask_model
from prunesearch.pruners.scores import UnitScores
from prunesearch.space import Architecture, LayerArch, ModelShape, SearchSpace, param_count
from prunesearch.space.cost import fixed_params, layer_params

HEAD_MAX_WEIGHT = 10.0
"""Head score = mean + (HEAD_MAX_WEIGHT / head_dim) * max of its dim scores (TransAct's released code)."""

TOLERANCE = 0.01
"""The result removes ``budget`` of the total parameters within this fraction of the total."""

_BISECTIONS = 40


@dataclass(frozen=True)
class _Kept:
    """Which units the model being scored still has: ``mlp`` [L, I], ``heads`` [L, H], ``v`` [L, KV, D],
    ``qk`` [L, KV, D/2]. A masked model still computes the activations of its pruned units (only their path into
    the residual stream is zeroed), so scores must be told which units are gone."""

    mlp: torch.Tensor
    heads: torch.Tensor
    v: torch.Tensor
    qk: torch.Tensor

    @classmethod
    def of(cls, shape: ModelShape, arch: Architecture | None = None) -> "_Kept":
        """Every unit (``arch`` None), else the units ``arch`` keeps (it must carry indices)."""
        L, H, KV, D, I = shape.num_layers, shape.num_heads, shape.num_kv_heads, shape.head_dim, shape.intermediate_size
        if arch is None:
            return cls(torch.ones(L, I, dtype=torch.bool), torch.ones(L, H, dtype=torch.bool),
                       torch.ones(L, KV, D, dtype=torch.bool), torch.ones(L, KV, D // 2, dtype=torch.bool))
        kept = cls(torch.zeros(L, I, dtype=torch.bool), torch.zeros(L, H, dtype=torch.bool),
                   torch.zeros(L, KV, D, dtype=torch.bool), torch.zeros(L, KV, D // 2, dtype=torch.bool))
        for i, layer in enumerate(arch.layers):
            if not layer.keep:
                continue
            kept.mlp[i, list(layer.mlp_idx)] = True
            for g, group in enumerate(layer.kv_idx):
                kept.heads[i, [group * shape.group_size + q for q in layer.q_idx[g]]] = True
                kept.v[i, group, list(layer.v_idx[g])] = True
                kept.qk[i, group, list(layer.qk_idx[g])] = True
        return kept


def _scores(stats: CalibrationStats, shape: ModelShape, kept: _Kept) -> UnitScores:
    """TransAct scores of the units in ``kept``; units outside it score -inf so no selection brings them back."""
    L, KV, G, D = shape.num_layers, shape.num_kv_heads, shape.group_size, shape.head_dim
    gone = float("-inf")
    mlp = stats.mlp_sq.sqrt().masked_fill(~kept.mlp, gone)
    z_sq = stats.attn_sq.view(L, KV, G, D)
    dim_norm = z_sq.sqrt()
    head_dims = kept.v.unsqueeze(2).expand(L, KV, G, D)
    count = head_dims.sum(-1).clamp_min(1)
    mean = (dim_norm * head_dims).sum(-1) / count
    peak = (dim_norm * head_dims).amax(-1)
    heads = (mean + HEAD_MAX_WEIGHT / count * peak).view(L, KV * G).masked_fill(~kept.heads, gone)
    in_group = kept.heads.view(L, KV, G, 1)
    v_dims = (z_sq * in_group).sum(2).sqrt().masked_fill(~kept.v, gone)
    q_norm = stats.q_pair_sq.sqrt().view(L, KV, G, D // 2)
    qk_pairs = ((q_norm * in_group).sum(2) * stats.k_pair_sq.sqrt()).masked_fill(~kept.qk, gone)
    return UnitScores(mlp=mlp, heads=heads, v_dims=v_dims, qk_pairs=qk_pairs)


def transact_scores(stats: CalibrationStats, shape: ModelShape) -> UnitScores:
    """TransAct's scores of every unit of a dense model (higher = more important).

    MLP channel: L2 norm of its activation over the calibration tokens. Query head: mean of its output dims'
    norms + (10 / head_dim) * their max. Value dim of a group: L2 norm over tokens and the group's query heads
    (the dim feeds them all). Rotary pair of a group: ||k pair|| * sum over the group's heads of ||q pair||.
    """
    return _scores(stats, shape, _Kept.of(shape))


def _best(scores: torch.Tensor, k: int) -> tuple[int, ...]:
    """Indices of the ``k`` highest scores, ascending; ties go to the lower index (deterministic)."""
    order = torch.sort(-scores, stable=True).indices[:k]
    return tuple(sorted(order.tolist()))


def _structure(head_scores: torch.Tensor, current: LayerArch, wanted: int) -> tuple[int, int]:
    """Groups and query heads per group to keep: the fewest heads >= ``wanted`` that uniform groups allow (within
    ``current``); ties go to the structure keeping the most head score, then to fewer groups."""
    ranked = head_scores.sort(dim=1, descending=True, stable=True).values
    options = []
    for q in range(1, current.q_per_kv + 1):
        per_group = ranked[:, :q].sum(1).sort(descending=True, stable=True).values
        for kv in range(1, current.kv_heads + 1):
            if kv * q >= wanted:
                options.append((kv * q, -float(per_group[:kv].sum()), kv, q))
    _, _, kv, q = min(options)
    return kv, q


def _widths(ratio: float, current: Architecture, scores: UnitScores, prune_qk: bool,
            mlp: int | None = None) -> tuple[LayerArch, ...]:
    """Every layer's counts at ``ratio`` (never above ``current``): ``1 - ratio`` of its attention transitional
    dims, heads first at the current head dim and then dims within the kept heads, as TransAct does; ``mlp``
    channels per layer (default ``1 - ratio`` of them)."""
    shape = current.shape
    mlp = max(1, int((1 - ratio) * shape.intermediate_size)) if mlp is None else mlp
    attn_dims = int((1 - ratio) * shape.num_heads * shape.head_dim)
    layers = []
    for i, layer in enumerate(current.layers):
        wanted = min(layer.q_heads, max(1, math.ceil(attn_dims / layer.v_dim)))
        head_scores = scores.heads[i].view(shape.num_kv_heads, shape.group_size)
        kv, q = _structure(head_scores, layer, wanted)
        per_head = attn_dims // (kv * q)
        v = min(layer.v_dim, max(2, per_head + per_head % 2))
        qk = min(layer.qk_dim, v) if prune_qk else layer.qk_dim
        layers.append(LayerArch(True, kv, q, qk, v, min(layer.mlp, mlp)))
    return tuple(layers)


def _select(shape: ModelShape, widths: tuple[LayerArch, ...], scores: UnitScores) -> Architecture:
    """Fill each layer's units by score: groups by the summed score of the heads they keep, then heads, dims."""
    layers = []
    for i, layer in enumerate(widths):
        if not layer.keep:
            layers.append(layer)
            continue
        head_scores = scores.heads[i].view(shape.num_kv_heads, shape.group_size)
        ranked = head_scores.sort(dim=1, descending=True, stable=True).values
        groups = _best(ranked[:, :layer.q_per_kv].sum(1), layer.kv_heads)
        layers.append(replace(
            layer,
            kv_idx=groups,
            q_idx=tuple(_best(head_scores[g], layer.q_per_kv) for g in groups),
            qk_idx=tuple(_best(scores.qk_pairs[i, g], layer.qk_dim // 2) for g in groups),
            v_idx=tuple(_best(scores.v_dims[i, g], layer.v_dim) for g in groups),
            mlp_idx=_best(scores.mlp[i], layer.mlp),
        ))
    return Architecture(shape, tuple(layers))


def _params(shape: ModelShape, widths: tuple[LayerArch, ...]) -> int:
    return fixed_params(shape) + sum(layer_params(shape, layer) for layer in widths)


def _solve(budget: float, current: Architecture, scores: UnitScores, prune_qk: bool) -> tuple[float, Architecture]:
    """The ratio whose result removes ``budget`` of the total (bisection), its MLP width then set to land.

    Head dims move in steps of two in every layer at once (over half a percent of the parameters here, several
    percent in a tiny model), so one ratio alone can miss the budget; the code takes the attention and MLP
    targets as separate settings, so the last step keeps the ratio's attention and sets the (still uniform) MLP
    width that lands on the budget.
    """
    shape = current.shape
    dense_params = param_count(Architecture.dense(shape))
    target = (1 - budget) * dense_params
    most = _params(shape, _widths(1.0, current, scores, prune_qk))
    if most > target + TOLERANCE * dense_params:
        raise BudgetError(
            f"TransAct keeps every block, one MLP channel and one head per layer, so it removes at most "
            f"{1 - most / dense_params:.3f} of the parameters, less than the budget {budget}"
        )
    lo, hi = 0.0, 1.0
    for _ in range(_BISECTIONS):
        mid = (lo + hi) / 2
        if _params(shape, _widths(mid, current, scores, prune_qk)) > target:
            lo = mid
        else:
            hi = mid
    ratio = min((lo, hi), key=lambda r: abs(_params(shape, _widths(r, current, scores, prune_qk)) - target))
    widths = _widths(ratio, current, scores, prune_qk)
    channel = len(widths) * (3 * shape.hidden_size + 2 * shape.mlp_bias)
    widest = min(layer.mlp for layer in current.layers)
    mlp = min(widest, max(1, widths[0].mlp + round((target - _params(shape, widths)) / channel)))
    widths = _widths(ratio, current, scores, prune_qk, mlp)
    if abs(_params(shape, widths) - target) > TOLERANCE * dense_params:
        raise BudgetError(f"TransAct's uniform widths cannot land within {TOLERANCE:.0%} of budget {budget}")
    return ratio, _select(shape, widths, scores)


def transact_baseline(loaded: LoadedModel, budget: float, space: SearchSpace,
                      calibration: CalibrationSpec = CalibrationSpec(), steps: int = 4,
                      progress: bool = True) -> Architecture:
    """TransAct's architecture removing ``budget`` of the total parameters (within 1%), with unit indices.

    Step k of ``steps`` prunes every layer to ``k / steps`` of the final uniform ratio (solved on the dense
    scores), scoring on the model as pruned so far; the last step re-solves the ratio on its own scores so the
    result lands on the budget. The released code defaults to 8 steps with fine-tuning between them; without
    fine-tuning each step costs only one calibration pass of the masked model over the same windows. ``meta``
    records the method, budget, steps, the final ratio of attention dims removed and the MLP channels kept.
    """
    model = loaded.model
    shape = ModelShape.from_config(model.config)
    if space.shape != shape:
        raise ArchitectureError("the search space was made for a model of another shape than this one")
    if steps < 1:
        raise PrunesearchError(f"steps must be at least 1, got {steps}")
    if not 0 <= budget < 1:
        raise BudgetError(f"budget {budget} must be in [0, 1): the fraction of total parameters removed")
    stats = calibrate(model, loaded.tokenizer, loaded.fingerprint, calibration, progress)
    current = Architecture.dense(shape)
    scores = transact_scores(stats, shape)
    ratio, _ = _solve(budget, current, scores, space.prune_qk)
    ids = token_ids(loaded.tokenizer, calibration.data)
    windows = calibration_windows(ids, calibration.count, calibration.length, calibration.seed)
    for step in range(1, steps + 1):
        if step > 1:
            stats = collect(mask_model(model, current), windows, calibration.batch_size, progress)
            scores = _scores(stats, shape, _Kept.of(shape, current))
        if step < steps:
            current = _select(shape, _widths(ratio * step / steps, current, scores, space.prune_qk), scores)
        else:
            ratio, current = _solve(budget, current, scores, space.prune_qk)
    meta = {"method": "transact", "units": "transact", "budget": budget, "steps": steps, "ratio": ratio,
            "mlp": current.layers[0].mlp, "removed": 1 - param_count(current) / param_count(Architecture.dense(shape)),
            "calibration": asdict(calibration)}
    return Architecture(shape, current.layers, meta)


def _toward(target: LayerArch, dense: LayerArch, fraction: float) -> LayerArch:
    """A layer ``fraction`` of the way from ``dense`` to ``target`` (never below it; removed blocks go at once)."""
    if not target.keep:
        return target

    def step(full: int, want: int, unit: int = 1) -> int:
        return full - unit * math.floor(fraction * (full - want) / unit + 1e-9)

    return LayerArch(True, step(dense.kv_heads, target.kv_heads), step(dense.q_per_kv, target.q_per_kv),
                     step(dense.qk_dim, target.qk_dim, 2), step(dense.v_dim, target.v_dim),
                     step(dense.mlp, target.mlp))


def transact_units(loaded: LoadedModel, arch: Architecture, calibration: CalibrationSpec = CalibrationSpec(),
                   steps: int = 4, progress: bool = True) -> Architecture:
    """The units ``arch``'s widths keep, chosen by TransAct's iterative schedule instead of one scoring pass.

    Step k of ``steps`` prunes every layer ``k / steps`` of the way from dense to ``arch``'s counts (removed
    blocks go at the first step), re-scoring the masked model on the calibration windows before the next step,
    as ``transact_baseline`` does for its uniform widths: units that only look weak while their neighbours are
    present go last. Costs ``steps - 1`` calibration passes of the masked model.
    """
    if steps < 1:
        raise PrunesearchError(f"steps must be at least 1, got {steps}")
    model = loaded.model
    shape = ModelShape.from_config(model.config)
    if arch.shape != shape:
        raise ArchitectureError("the architecture was made for a model of another shape than this one")
    dense = Architecture.dense(shape).layers[0]
    stats = calibrate(model, loaded.tokenizer, loaded.fingerprint, calibration, progress)
    scores = transact_scores(stats, shape)
    windows = calibration_windows(token_ids(loaded.tokenizer, calibration.data), calibration.count,
                                  calibration.length, calibration.seed)
    current = Architecture.dense(shape)
    for step in range(1, steps + 1):
        if step > 1:
            stats = collect(mask_model(model, current), windows, calibration.batch_size, progress)
            scores = _scores(stats, shape, _Kept.of(shape, current))
        widths = tuple(_toward(t, dense, step / steps) for t in arch.counts().layers)
        current = _select(shape, widths, scores)
    return Architecture(shape, current.layers, {**arch.meta, "units": "transact", "unit_steps": steps})
