"""Measured per-layer sensitivity: how much the loss rises when one layer alone is cut, at a few widths.

Importance scores say which units of a layer to keep; they do not say how many units each layer can spare,
because scores are not comparable across layers (the shared notes: keeping 75% of every MLP by score costs
10 ppl, but layers 0, 1, 28 and 29 alone cost most of it). A probe answers that directly: zero a layer's
lowest-scoring MLP channels (or KV groups, or the whole block) in the dense model and measure the calibration
loss. Probes of one layer change nothing before it, so the hidden states entering every block are cached once
and a probe of layer i runs only blocks i..L-1 and the head (as SLEB does).

The result is a table per module: loss increase as a function of units kept, measured at ``levels`` and
linearly interpolated to every count. Summed over layers it is a first-order (additive) estimate of an
architecture's loss: the greedy allocator spends the budget on it, and the predictor gets it as a feature.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import PreTrainedModel

from prunesearch.data import calibration_windows, token_ids
from prunesearch.errors import PrunesearchError
from prunesearch.paths import atomic_write_text, cache_dir
from prunesearch.pruners.masking import mask_layer, mask_model
from prunesearch.pruners.refit import Refit
from prunesearch.pruners.scores import UnitScores
from prunesearch.pruners.selection import select_layer, select_units
from prunesearch.pruners.sleb import BlockRunner
from prunesearch.space.architecture import Architecture, LayerArch
from prunesearch.space.shape import ModelShape

_CACHE_VERSION = "sensitivity-v1"
MEASURES = ("nll", "kl")
"""What a probe measures: the rise of the next-token loss on the text, or the KL divergence of the cut model's
next-token distribution from the uncut one's (every vocabulary entry scored, not only the token that follows)."""


@dataclass(frozen=True)
class SensitivitySpec:
    """Probe text (``count`` windows of ``length`` tokens of ``data``, drawn with ``seed``) and the kept
    fractions of MLP channels probed per layer. Attention is probed at every number of KV groups kept and, with
    ``dim_levels``, at those kept fractions of every head's query/key and value dims (all groups kept): TransAct's
    intra-head cut, the one attention cut TransAct makes. ``PROBES`` names the two settings a campaign offers."""

    data: str = "ptb-train"
    count: int = 4
    length: int = 128
    seed: int = 1
    mlp_levels: tuple[float, ...] = (0.75, 0.5, 0.25, 0.0)
    batch_size: int = 4
    measure: str = "nll"
    dim_levels: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.measure not in MEASURES:
            raise PrunesearchError(f"sensitivity measure must be one of {', '.join(MEASURES)}, got {self.measure!r}")

    def key(self, fingerprint: str) -> str:
        defaults = {"measure": "nll", "dim_levels": ()}  # probes cached before these existed keep their key
        spec = {k: v for k, v in asdict(self).items() if k != "batch_size" and not (k in defaults and defaults[k] == v)}
        payload = json.dumps([_CACHE_VERSION, fingerprint, spec], sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


PROBES = {
    "loss": SensitivitySpec(),
    "kl-dims": SensitivitySpec(measure="kl", dim_levels=(0.75, 0.5, 0.25)),
}
"""Probe settings by name. ``loss``: the loss rise of MLP, group and block cuts (the default). ``kl-dims``: the KL
divergence of those cuts and of thinned head dims. On SmolLM2 its greedy allocation read 1.2-1.4% lower PTB-valid
and 4.3-4.5% lower wiki-valid ppl at 20% and 30% (16,384 tokens each), yet 2% higher PTB-test and 2% lower
wiki-test ppl at 20% (full test sets), at about twice the probing time; head dims probed by the loss rise made it
0.7-4.4% worse on validation text, the small cuts' noise drawing it into deep ones (``bench/head_dims.py``)."""


def probe_spec(name: str) -> SensitivitySpec:
    """The probe settings called ``name`` (``PROBES``)."""
    if name not in PROBES:
        raise PrunesearchError(f"unknown probes {name!r}: choose one of {', '.join(PROBES)}")
    return PROBES[name]


@dataclass
class Sensitivity:
    """Loss increase (nats/token over the dense loss) when only one layer is cut.

    ``mlp`` [L, I+1]: with k MLP channels kept (top-k by score); ``attn`` [L, KV+1]: with g KV groups kept (each
    with all its query heads); ``block`` [L]: with the block removed; ``dims`` [L, D+1] (when probed): with every
    head's query/key and value dims cut to d and the groups kept. ``base`` is the loss of the probed model.
    """

    base: float
    mlp: np.ndarray
    attn: np.ndarray
    block: np.ndarray
    dims: np.ndarray | None = None

    def to_dict(self) -> dict:
        out = {"base": self.base, "mlp": self.mlp.tolist(), "attn": self.attn.tolist(), "block": self.block.tolist()}
        return out if self.dims is None else {**out, "dims": self.dims.tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> "Sensitivity":
        dims = np.asarray(data["dims"]) if "dims" in data else None
        return cls(float(data["base"]), np.asarray(data["mlp"]), np.asarray(data["attn"]), np.asarray(data["block"]),
                   dims)


def _interpolate(levels: list[int], losses: list[float], current: int, size: int) -> np.ndarray:
    """Loss at every kept count 0..size from the probed ones: 0 at the ``current`` count and above (a probe only
    ever cuts further)."""
    points = sorted(zip([*levels, current], [*losses, 0.0]))
    xs, ys = zip(*points)
    return np.interp(np.arange(size + 1), xs, ys)


def refit_key(refit: Refit | None) -> str:
    """Names a refit in the keys of probe caches (empty for none, so plain probes keep their cache)."""
    return "" if refit is None else "/refit" + json.dumps(refit.spec.to_dict(), sort_keys=True)


@torch.no_grad()
def probe(model: PreTrainedModel, scores: UnitScores, windows: torch.Tensor, spec: SensitivitySpec = SensitivitySpec(),
          progress: bool = True, base: Architecture | None = None, refit: Refit | None = None) -> Sensitivity:
    """Measure every layer's sensitivity on ``windows``, each layer cut alone from ``base`` (unit counts; the
    dense model when None). A probe from a pruned base measures what a further cut costs given the cuts already
    made, which the dense probes cannot see. With ``refit``, every cut is measured refitted, as a refit campaign
    measures its pairs (a refit repairs MLP cuts far better than block removal). ``model`` is left unchanged."""
    shape = ModelShape.from_config(model.config)
    L, I, KV, D = shape.num_layers, shape.intermediate_size, shape.num_kv_heads, shape.head_dim
    base = select_units(base or Architecture.dense(shape), scores)
    dense_layers = model.model.layers
    if base.key() != Architecture.dense(shape).key():
        model = mask_model(model, base, refit)
    runner = BlockRunner(model, windows, spec.batch_size)
    inputs = [runner.embed()]
    for i in range(L):
        inputs.append(runner.block(i, inputs[-1]) if base.layers[i].keep else inputs[-1])
    base_loss = runner.nll(inputs[-1])
    reference = [F.log_softmax(runner.head(h)[:, :-1].float(), -1) for h in inputs[-1]] if spec.measure == "kl" else None
    levels = sorted({int(round(f * I)) for f in spec.mlp_levels} - {I})
    dim_levels = sorted({2 * round(f * D / 2) for f in spec.dim_levels} - {0, D})
    layers = model.model.layers
    mlp, attn, block = np.zeros((L, I + 1)), np.zeros((L, KV + 1)), np.zeros(L)
    dims = np.zeros((L, D + 1)) if spec.dim_levels else None
    kept_layers = [i for i in range(L) if base.layers[i].keep]

    def head_dim(layer: LayerArch) -> int:
        return min(layer.qk_dim, layer.v_dim) if layer.kv_heads else 0

    total = sum(1 + sum(k < base.layers[i].mlp for k in levels) + base.layers[i].kv_heads
                + (dims is not None) * sum(d < head_dim(base.layers[i]) for d in dim_levels) for i in kept_layers)
    with tqdm(total=total, desc="sensitivity probes", disable=not progress, leave=False) as bar:
        for i in kept_layers:
            now = base.layers[i].counts()
            after = [j for j in range(i + 1, L) if base.layers[j].keep]

            def loss(layer: LayerArch | None) -> float:
                original = layers[i]
                if layer is None:
                    states = inputs[i]
                else:
                    trial = Architecture(shape, base.layers[:i] + (layer,) + base.layers[i + 1:])
                    layers[i] = copy.deepcopy(dense_layers[i])
                    mask_layer(layers[i], shape, select_layer(trial, i, scores), refit, i)
                    try:
                        states = runner.block(i, inputs[i])
                    finally:
                        layers[i] = original
                bar.update()
                if reference is None:
                    return runner.nll(runner.run(after, states)) - base_loss
                return _kl(runner, reference, runner.run(after, states))

            block[i] = loss(None)
            counts = [k for k in levels if k < now.mlp]
            mlp[i] = _interpolate(counts, [loss(replace(now, mlp=k)) for k in counts], now.mlp, I)
            groups = range(now.kv_heads)
            cut = [replace(now, kv_heads=g) if g else replace(now, kv_heads=0, q_per_kv=0, qk_dim=0, v_dim=0)
                   for g in groups]
            attn[i] = _interpolate(list(groups), [loss(layer) for layer in cut], now.kv_heads, KV)
            if dims is not None and now.kv_heads:
                thinner = [d for d in dim_levels if d < head_dim(now)]
                losses = [loss(replace(now, qk_dim=min(now.qk_dim, d), v_dim=min(now.v_dim, d))) for d in thinner]
                dims[i] = _interpolate([0, *thinner], [attn[i, 0], *losses], head_dim(now), D)
    return Sensitivity(base=base_loss, mlp=mlp, attn=attn, block=block, dims=dims)


def _kl(runner: BlockRunner, reference: list[torch.Tensor], states: list[torch.Tensor]) -> float:
    """Mean KL(uncut || cut) over the scored positions of the windows, in nats per token."""
    total, count = 0.0, 0
    for ref, h in zip(reference, states, strict=True):
        cut = F.log_softmax(runner.head(h)[:, :-1].float(), -1)
        total += F.kl_div(cut, ref, log_target=True, reduction="sum").item()
        count += ref.shape[0] * ref.shape[1]
    return total / count


def sensitivity(model: PreTrainedModel, tokenizer, fingerprint: str, scores: UnitScores, scores_key: str,
                spec: SensitivitySpec = SensitivitySpec(), progress: bool = True,
                refit: Refit | None = None) -> Sensitivity:
    """``probe`` on the spec's calibration windows (refitted with ``refit``), cached on disk per model
    fingerprint, spec, the key of the scores that chose the probed units and the refit."""
    path = cache_dir("sensitivity") / f"{spec.key(fingerprint + scores_key + refit_key(refit))}.json"
    if path.exists():
        return Sensitivity.from_dict(json.loads(path.read_text()))
    windows = calibration_windows(token_ids(tokenizer, spec.data), spec.count, spec.length, spec.seed)
    result = probe(model, scores, windows, spec, progress, refit=refit)
    atomic_write_text(path, json.dumps({"fingerprint": fingerprint, "spec": asdict(spec), **result.to_dict()}))
    return result
