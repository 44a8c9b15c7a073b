"""An architecture: what every layer of the dense model keeps, as counts and (optionally) unit indices.

Counts are what the search space searches. Indices say *which* units are kept; a pruner fills them from its
importance scores so that an architecture file materializes reproducibly. Per layer:

- ``keep``: the block exists at all (False removes attention, MLP and both norms).
- ``kv_heads``: key/value groups kept (0 removes attention); ``q_per_kv``: query heads kept in each kept group.
- ``qk_dim``: per-head query/key dims kept, in rotary pairs (even); ``v_dim``: per-head value/output dims kept,
  the intra-attention transitional dimension of TransAct.
- ``mlp``: MLP channels kept (0 removes the MLP).

Index fields (all optional, all or none per layer): ``kv_idx`` (groups kept), and per kept group ``q_idx``
(query heads within the group, 0..group_size-1), ``qk_idx`` (rotary pair f keeps dims f and f + head_dim/2,
0..head_dim/2-1) and ``v_idx`` (value dims); ``mlp_idx`` (channels).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from prunesearch.errors import ArchitectureError
from prunesearch.paths import atomic_write_text
from prunesearch.space.shape import ModelShape

FORMAT = "prunesearch.architecture/1"
COUNT_FIELDS = ("kv_heads", "q_per_kv", "qk_dim", "v_dim", "mlp")
ARRAY_FIELDS = ("keep",) + COUNT_FIELDS
"""Columns of ``Architecture.as_array``: the counts a search works on in bulk."""
INDEX_FIELDS = ("kv_idx", "q_idx", "qk_idx", "v_idx", "mlp_idx")

Groups = tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class LayerArch:
    """One layer's choice. A layer with neither attention nor MLP is normalised to ``keep=False``."""

    keep: bool = True
    kv_heads: int = 0
    q_per_kv: int = 0
    qk_dim: int = 0
    v_dim: int = 0
    mlp: int = 0
    kv_idx: tuple[int, ...] | None = None
    q_idx: Groups | None = None
    qk_idx: Groups | None = None
    v_idx: Groups | None = None
    mlp_idx: tuple[int, ...] | None = None

    @property
    def has_attention(self) -> bool:
        return self.keep and self.kv_heads > 0

    @property
    def has_mlp(self) -> bool:
        return self.keep and self.mlp > 0

    @property
    def q_heads(self) -> int:
        return self.kv_heads * self.q_per_kv

    @property
    def has_indices(self) -> bool:
        return self.mlp_idx is not None or self.kv_idx is not None

    def counts(self) -> "LayerArch":
        """The same choice without unit indices."""
        return LayerArch(self.keep, self.kv_heads, self.q_per_kv, self.qk_dim, self.v_dim, self.mlp)

    def to_dict(self) -> dict[str, Any]:
        if not self.keep:
            return {"keep": False}
        out: dict[str, Any] = {"keep": True}
        for name in COUNT_FIELDS + INDEX_FIELDS:
            value = getattr(self, name)
            if value is not None:
                out[name] = [list(g) for g in value] if name in ("q_idx", "qk_idx", "v_idx") else (
                    list(value) if isinstance(value, tuple) else value
                )
        return out


def _int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArchitectureError(f"{where} must be an integer, got {value!r}")
    return value


def _index_list(value: Any, count: int, bound: int, where: str) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)):
        raise ArchitectureError(f"{where} must be a list of indices")
    items = tuple(sorted(_int(v, where) for v in value))
    if len(items) != count:
        raise ArchitectureError(f"{where} lists {len(items)} indices but the count is {count}")
    if len(set(items)) != len(items):
        raise ArchitectureError(f"{where} repeats an index")
    if items and (items[0] < 0 or items[-1] >= bound):
        raise ArchitectureError(f"{where} has an index outside 0..{bound - 1}")
    return items


def _groups(value: Any, groups: int, count: int, bound: int, where: str) -> Groups:
    if not isinstance(value, (list, tuple)) or len(value) != groups:
        raise ArchitectureError(f"{where} must hold one index list per kept key/value group ({groups})")
    return tuple(_index_list(v, count, bound, f"{where}[{i}]") for i, v in enumerate(value))


def make_layer(data: dict[str, Any], shape: ModelShape, where: str) -> LayerArch:
    """Validate one layer's JSON object against the dense shape and return it normalised."""
    if not isinstance(data, dict):
        raise ArchitectureError(f"{where} must be an object")
    unknown = set(data) - {"keep", *COUNT_FIELDS, *INDEX_FIELDS}
    if unknown:
        raise ArchitectureError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    keep = data.get("keep", True)
    if not isinstance(keep, bool):
        raise ArchitectureError(f"{where}.keep must be true or false")
    if not keep:
        extra = [k for k in COUNT_FIELDS + INDEX_FIELDS if data.get(k)]
        if extra:
            raise ArchitectureError(f"{where} is removed (keep=false) but sets {', '.join(extra)}")
        return LayerArch(keep=False)
    missing = [k for k in COUNT_FIELDS if k not in data]
    if missing:
        raise ArchitectureError(f"{where}: missing {', '.join(missing)}")
    kv, qpk, qk, v, mlp = (_int(data[k], f"{where}.{k}") for k in COUNT_FIELDS)
    if not 0 <= kv <= shape.num_kv_heads:
        raise ArchitectureError(f"{where}.kv_heads={kv} outside 0..{shape.num_kv_heads}")
    if not 0 <= mlp <= shape.intermediate_size:
        raise ArchitectureError(f"{where}.mlp={mlp} outside 0..{shape.intermediate_size}")
    if kv == 0:
        if qpk or qk or v:
            raise ArchitectureError(f"{where} removes attention (kv_heads=0) but keeps heads or dims")
    else:
        if not 1 <= qpk <= shape.group_size:
            raise ArchitectureError(f"{where}.q_per_kv={qpk} outside 1..{shape.group_size}")
        if not 2 <= qk <= shape.head_dim or qk % 2:
            raise ArchitectureError(f"{where}.qk_dim={qk} must be even, in 2..{shape.head_dim}")
        if not 1 <= v <= shape.head_dim:
            raise ArchitectureError(f"{where}.v_dim={v} outside 1..{shape.head_dim}")
    if kv == 0 and mlp == 0:
        if any(data.get(k) for k in INDEX_FIELDS):
            raise ArchitectureError(f"{where} keeps nothing but lists indices")
        return LayerArch(keep=False)
    present = [k for k in INDEX_FIELDS if data.get(k) is not None]
    if not present:
        return LayerArch(True, kv, qpk, qk, v, mlp)
    if len(present) != len(INDEX_FIELDS):
        absent = sorted(set(INDEX_FIELDS) - set(present))
        raise ArchitectureError(f"{where} lists some unit indices but not {', '.join(absent)}")
    return LayerArch(
        True, kv, qpk, qk, v, mlp,
        kv_idx=_index_list(data["kv_idx"], kv, shape.num_kv_heads, f"{where}.kv_idx"),
        q_idx=_groups(data["q_idx"], kv, qpk, shape.group_size, f"{where}.q_idx"),
        qk_idx=_groups(data["qk_idx"], kv, qk // 2, shape.head_dim // 2, f"{where}.qk_idx"),
        v_idx=_groups(data["v_idx"], kv, v, shape.head_dim, f"{where}.v_idx"),
        mlp_idx=_index_list(data["mlp_idx"], mlp, shape.intermediate_size, f"{where}.mlp_idx"),
    )


@dataclass(frozen=True)
class Architecture:
    """A pruned architecture of one dense model: its shape, one ``LayerArch`` per dense layer, free metadata."""

    shape: ModelShape
    layers: tuple[LayerArch, ...]
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if len(self.layers) != self.shape.num_layers:
            raise ArchitectureError(
                f"architecture has {len(self.layers)} layers, the model has {self.shape.num_layers}"
            )
        layers = tuple(make_layer(layer.to_dict(), self.shape, f"layers[{i}]") for i, layer in enumerate(self.layers))
        object.__setattr__(self, "layers", layers)

    @classmethod
    def dense(cls, shape: ModelShape) -> "Architecture":
        s = shape
        layer = LayerArch(True, s.num_kv_heads, s.group_size, s.head_dim, s.head_dim, s.intermediate_size)
        return cls(shape, (layer,) * s.num_layers)

    @property
    def has_indices(self) -> bool:
        """True when every kept layer says which units it keeps (ready to materialize reproducibly)."""
        return all(layer.has_indices for layer in self.layers if layer.keep)

    def counts(self) -> "Architecture":
        return replace(self, layers=tuple(layer.counts() for layer in self.layers))

    def as_array(self) -> np.ndarray:
        """[L, 6] int64 counts in ``ARRAY_FIELDS`` order (all 0 for a removed block): how searches and predictors
        handle thousands of architectures at once without building objects."""
        return np.array([[int(layer.keep)] + [getattr(layer, f) for f in COUNT_FIELDS] for layer in self.layers],
                        dtype=np.int64).reshape(self.shape.num_layers, len(ARRAY_FIELDS))

    @classmethod
    def from_array(cls, shape: ModelShape, counts: np.ndarray, meta: dict[str, Any] | None = None) -> "Architecture":
        """The architecture of one ``as_array`` row block (validated like any other)."""
        if counts.shape != (shape.num_layers, len(ARRAY_FIELDS)):
            raise ArchitectureError(f"counts of shape {counts.shape}, expected {(shape.num_layers, len(ARRAY_FIELDS))}")
        layers = tuple(LayerArch(bool(row[0]), *map(int, row[1:])) if row[0] else LayerArch(keep=False)
                       for row in counts.tolist())
        return cls(shape, layers, dict(meta or {}))

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "model": self.shape.to_dict(),
            "layers": [layer.to_dict() for layer in self.layers],
            "meta": self.meta,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def key(self, units: bool = False) -> str:
        """Canonical hash of the counts alone (two architectures with the same widths share it), or with
        ``units`` of the counts and the unit indices (the same physical model)."""
        layers = [(layer if units else layer.counts()).to_dict() for layer in self.layers]
        data = {"model": self.shape.to_dict(), "layers": layers}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, data: Any, shape: ModelShape | None = None) -> "Architecture":
        """Validate and build; with ``shape``, also refuse an architecture made for another model."""
        if not isinstance(data, dict):
            raise ArchitectureError("an architecture must be a JSON object")
        if data.get("format") != FORMAT:
            raise ArchitectureError(f"not a prunesearch architecture (expected format '{FORMAT}')")
        unknown = set(data) - {"format", "model", "layers", "meta"}
        if unknown:
            raise ArchitectureError(f"unknown top-level field(s): {', '.join(sorted(unknown))}")
        own = ModelShape.from_dict(data.get("model"))
        if shape is not None and own != shape:
            raise ArchitectureError("the architecture was made for a model of another shape than this one")
        layers = data.get("layers")
        if not isinstance(layers, list) or len(layers) != own.num_layers:
            raise ArchitectureError(f"'layers' must be a list of {own.num_layers} layer objects")
        meta = data.get("meta", {})
        if not isinstance(meta, dict):
            raise ArchitectureError("'meta' must be an object")
        built = tuple(make_layer(layer, own, f"layers[{i}]") for i, layer in enumerate(layers))
        return cls(own, built, meta)

    @classmethod
    def from_json(cls, text: str, shape: ModelShape | None = None) -> "Architecture":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ArchitectureError(f"not valid JSON: {exc}") from None
        return cls.from_dict(data, shape)

    @classmethod
    def load(cls, path: str | Path, shape: ModelShape | None = None) -> "Architecture":
        path = Path(path)
        if not path.is_file():
            raise ArchitectureError(f"architecture file not found: {path}")
        return cls.from_json(path.read_text(), shape)

    def save(self, path: str | Path) -> None:
        atomic_write_text(Path(path), self.to_json() + "\n")
