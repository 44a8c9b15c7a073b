"""Architectures -> a fixed-width float32 feature matrix, vectorised over the batch for a search's inner loop.

Only counts matter: every unit method keeps the top-k units of its own score, so a layer's kept score mass is a
lookup in the context's cumulative tables (unit indices an architecture may carry are ignored). Families:

- per layer ``i`` (``name[i]``): ``keep``; ``kv``, ``q_per_kv``, ``qk``, ``v``, ``mlp`` as fractions of dense
  (0 for a removed block or an absent module); every context table at the layer's count; every block vector
  ``block:<name>`` where the block is removed (0 where kept). A ``<source>/kv`` table is read at the kept groups
  and moved toward its no-attention value by the query heads dropped: ``t(0) + (t(kv) - t(0)) * q_per_kv / G``,
  which for a score-mass table is the head mass (group mass times ``q_per_kv / G``) and for a loss-increase table
  stays 0 at dense;
- ``sum:<family>``: each per-layer family summed over layers (``sum:keep`` = blocks kept), so trees fitted on a
  few hundred rows see additive structure in one split;
- ``lost:<source>``: 1 - table value (the mass lost) over all layers and that source's modules, each weighted by
  the share of the dense parameters its units own (MLP channels: the MLP; KV groups: the attention; v dims and
  q/k pairs: half the attention each);
- ``cost:removed``, ``cost:flops``, ``cost:kv_bytes``: fraction of parameters removed, FLOPs and KV-cache ratios
  to dense (``prunesearch.space.cost``); ``cost:no_attention``, ``cost:no_mlp``: layers without them.

``monotone_signs`` says which way each column must move the perplexity, for the trees' monotone constraints.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np

from prunesearch.errors import PrunesearchError
from prunesearch.predictor.context import MODULES, FeatureContext, module_of
from prunesearch.predictor.costs import COST, cost_features, param_shares
from prunesearch.space import Architecture, ModelShape

STRUCTURE = ("keep", "kv", "q_per_kv", "qk", "v", "mlp")
"""Per-layer count families, in the row order of the count array."""
COST_SIGNS = {"cost:removed": 1, "cost:flops": -1, "cost:kv_bytes": -1, "cost:no_attention": 1, "cost:no_mlp": 1}


@dataclass(frozen=True)
class _Layout:
    """A context's tables flattened so that one gather looks up every table at every layer of a batch."""

    names: tuple[str, ...]
    values: np.ndarray
    offsets: np.ndarray
    module: np.ndarray
    heads: np.ndarray
    block_names: tuple[str, ...]
    block: np.ndarray
    sources: tuple[str, ...]
    lost: np.ndarray


@lru_cache(maxsize=16)
def _layout(ctx: FeatureContext) -> _Layout:
    """Cached per context (contexts are immutable and hash by identity)."""
    names = tuple(sorted(ctx.tables))
    tables = [ctx.tables[n] for n in names]
    starts = np.cumsum([0] + [t.size for t in tables])[:-1]
    offsets = np.array([start + np.arange(t.shape[0]) * t.shape[1] for start, t in zip(starts, tables)], np.intp)
    modules = [module_of(n) for n in names]
    sources = tuple(sorted({n.rsplit("/", 1)[0] for n in names}))
    share = param_shares(ctx.shape)
    lost = np.array([[share[m] * (n.rsplit("/", 1)[0] == s) for s in sources] for n, m in zip(names, modules)])
    block_names = tuple(sorted(ctx.block))
    return _Layout(
        names=names,
        values=np.concatenate([t.ravel() for t in tables]) if tables else np.zeros(0),
        offsets=offsets.reshape(len(names), ctx.shape.num_layers),
        module=np.array([MODULES.index(m) for m in modules], np.intp),
        heads=np.array([m == "kv" for m in modules], bool),
        block_names=block_names,
        block=np.array([ctx.block[n] for n in block_names]).reshape(len(block_names), ctx.shape.num_layers),
        sources=sources,
        lost=lost.reshape(len(names), len(sources)),
    )


def _families(ctx: FeatureContext) -> list[str]:
    layout = _layout(ctx)
    return list(STRUCTURE) + list(layout.names) + [f"block:{n}" for n in layout.block_names]


def feature_names(ctx: FeatureContext) -> list[str]:
    """Column names of ``featurize``'s matrix, in order."""
    families = _families(ctx)
    per_layer = [f"{family}[{i}]" for family in families for i in range(ctx.shape.num_layers)]
    lost = [f"lost:{s}" for s in _layout(ctx).sources]
    return per_layer + [f"sum:{f}" for f in families] + lost + list(COST)


def monotone_signs(ctx: FeatureContext) -> list[int]:
    """Per column of ``featurize``: +1 where perplexity may only rise with the value, -1 where it may only fall,
    0 where neither holds. Keeping more of anything never makes a pruned model worse: so down in the fractions kept
    and in every table that grows with the units kept (score mass), up in every table that shrinks with them
    (a measured loss increase) and in a score source's mass lost, down in a loss source's "mass lost" (one minus
    its loss rises), up in a removed block's value from a source with loss tables; costs by their meaning. Free: a
    prior's block redundancy (0 where the block is kept, so neither direction is right). Leaving a loss source's
    "mass lost" free, as before session 22, let the trees predict a bigger architecture worse by up to 0.04 in
    log-perplexity on the tests' pairs."""
    table = {name: int(np.sign((t[:, 0] - t[:, -1]).sum())) for name, t in ctx.tables.items()}
    by_source: dict[str, set[int]] = {}
    for name, value in table.items():
        by_source.setdefault(name.rsplit("/", 1)[0], set()).add(value)
    source = {name: min(values) if len(values) == 1 else 0 for name, values in by_source.items()}

    def family_sign(family: str) -> int:
        if family in STRUCTURE:
            return -1
        if family.startswith("block:"):
            return max(source.get(family[6:], 0), 0)
        return table[family]

    families = [family_sign(f) for f in _families(ctx)]
    per_layer = [sign for sign in families for _ in range(ctx.shape.num_layers)]
    lost = [-source[s] for s in _layout(ctx).sources]
    return per_layer + families + lost + [COST_SIGNS[c] for c in COST]


def arrays(archs: Sequence[Architecture], shape: ModelShape) -> np.ndarray:
    """[n, L, 6] counts of ``archs`` (``Architecture.as_array`` stacked), refusing another model's."""
    if any(arch.shape != shape for arch in archs):
        raise PrunesearchError("an architecture was made for another model shape than the predictor's")
    return np.stack([a.as_array() for a in archs]) if archs else np.zeros((0, shape.num_layers, 6), np.int64)


def featurize(archs: Sequence[Architecture], ctx: FeatureContext) -> np.ndarray:
    """[n, F] float32 features of ``archs`` (see the module docstring), columns named by ``feature_names``."""
    return featurize_arrays(arrays(archs, ctx.shape), ctx)


def featurize_arrays(counts: np.ndarray, ctx: FeatureContext) -> np.ndarray:
    """``featurize`` of count arrays [n, L, 6] (``Architecture.as_array`` rows), the search's inner loop."""
    s, layout, n = ctx.shape, _layout(ctx), len(counts)
    if counts.shape[1:] != (s.num_layers, len(STRUCTURE)):
        raise PrunesearchError(f"count arrays of shape {counts.shape[1:]}, the predictor's model has "
                               f"{(s.num_layers, len(STRUCTURE))}")
    counts = counts.astype(np.intp).transpose(2, 0, 1)
    keep, kv, qpk, qk, v, mlp = counts
    sizes = np.array([1, s.num_kv_heads, s.group_size, s.head_dim, s.head_dim, s.intermediate_size])
    structure = counts / sizes[:, None, None]
    by_module = {"mlp": mlp, "kv": kv, "v": v, "qk": qk // 2}
    module_counts = np.stack([by_module[m] for m in MODULES])
    table_values = layout.values[layout.offsets[:, None, :] + module_counts[layout.module]]
    no_attention = layout.values[layout.offsets[layout.heads]][:, None, :]
    table_values[layout.heads] = no_attention + (table_values[layout.heads] - no_attention) * structure[2]
    block = (1 - keep) * layout.block[:, None, :]
    per_layer = np.concatenate([structure, table_values, block])
    columns = [
        per_layer.transpose(1, 0, 2).reshape(n, -1),
        per_layer.sum(2).T,
        (1 - table_values).sum(2).T @ layout.lost,
        cost_features(kv, qpk, qk, v, mlp, s),
    ]
    return np.concatenate(columns, axis=1).astype(np.float32)
