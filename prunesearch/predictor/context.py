"""What the predictor knows about one model without loading it: its shape and per-layer lookup tables.

A *table* ``"<source>/<module>"`` is an array [L, N + 1] giving, for each layer, a quantity as a function of how
many of that module's N units the layer keeps (k = 0..N). Priors give the cumulative fraction of score mass held
by the top-k units: the search keeps the top-k units of each method's score, so the count alone decides the mass
kept, one lookup. Measured sensitivity tables join the same way (interpolate a coarse grid to every count first,
e.g. with ``np.interp``) and flow through ``featurize`` unchanged, as do new *block* vectors [L]: a per-layer
quantity charged when the layer's block is removed (a method's redundancy).
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Mapping

import numpy as np

from prunesearch.errors import PrunesearchError
from prunesearch.paths import atomic_write_bytes
from prunesearch.space import ModelShape

if TYPE_CHECKING:
    from prunesearch.pruners.priors import Priors

MODULES = ("mlp", "kv", "v", "qk")
"""Modules a table may describe: MLP channels, key/value groups, value dims, rotary q/k pairs."""


def module_of(table: str) -> str:
    return table.rsplit("/", 1)[-1]


def module_size(shape: ModelShape, module: str) -> int:
    """The dense count of a module's units in one layer (a table has one column per count 0..size)."""
    return {
        "mlp": shape.intermediate_size,
        "kv": shape.num_kv_heads,
        "v": shape.head_dim,
        "qk": shape.head_dim // 2,
    }[module]


def cumulative_mass(scores: np.ndarray) -> np.ndarray:
    """[..., n] scores -> [..., n + 1]: the fraction of the total held by the k highest, k = 0..n.

    Negative scores count as 0; a layer whose scores sum to zero counts every unit as equally important.
    """
    ranked = -np.sort(-np.clip(scores, 0, None), axis=-1)
    mass = np.concatenate([np.zeros(ranked.shape[:-1] + (1,)), np.cumsum(ranked, axis=-1)], axis=-1)
    total = mass[..., -1:]
    uniform = np.linspace(0, 1, scores.shape[-1] + 1)
    return np.where(total > 0, mass / np.where(total > 0, total, 1), uniform)


def _frozen(arrays: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]:
    out = {}
    for name, array in arrays.items():
        out[name] = np.array(array, dtype=np.float64)
        out[name].setflags(write=False)
    return MappingProxyType(out)


@dataclass(frozen=True, eq=False)
class FeatureContext:
    """The model's shape, its per-layer tables (``"<source>/<module>"`` -> [L, N + 1]) and block vectors
    (name -> [L]). Immutable (read-only copies), so featurization may cache layouts per context; add an entry by
    building a new context: ``FeatureContext(ctx.shape, {**ctx.tables, name: table}, ctx.block)``."""

    shape: ModelShape
    tables: Mapping[str, np.ndarray] = field(default_factory=dict)
    block: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tables", _frozen(self.tables))
        object.__setattr__(self, "block", _frozen(self.block))
        L = self.shape.num_layers
        for name, table in self.tables.items():
            module = module_of(name)
            if "/" not in name or module not in MODULES:
                raise PrunesearchError(f"table '{name}' must be named '<source>/<module>', module one of {MODULES}")
            width = module_size(self.shape, module) + 1
            if table.shape != (L, width):
                raise PrunesearchError(f"table '{name}' must have shape [{L}, {width}], got {list(table.shape)}")
        for name, vector in self.block.items():
            if vector.shape != (L,):
                raise PrunesearchError(f"block vector '{name}' must have shape [{L}], got {list(vector.shape)}")

    @classmethod
    def from_priors(cls, priors: Priors, shape: ModelShape) -> "FeatureContext":
        """Cumulative score-mass tables of every unit method and the block methods' redundancy vectors."""
        tables: dict[str, np.ndarray] = {}
        for method, scores in priors.unit.items():
            tables[f"{method}/mlp"] = cumulative_mass(scores.mlp.double().numpy())
            tables[f"{method}/kv"] = cumulative_mass(scores.kv_groups(shape).double().numpy())
            tables[f"{method}/v"] = cumulative_mass(scores.v_dims.double().sum(1).numpy())
            tables[f"{method}/qk"] = cumulative_mass(scores.qk_pairs.double().sum(1).numpy())
        block = {method: vector.double().numpy() for method, vector in priors.block.items()}
        return cls(shape, tables, block)

    def save(self, path: str | Path) -> None:
        """One .npz: every table and block vector, and the shape as JSON (written atomically)."""
        arrays = {f"table:{k}": v for k, v in self.tables.items()}
        arrays.update({f"block:{k}": v for k, v in self.block.items()})
        buffer = io.BytesIO()
        np.savez(buffer, shape=np.array(json.dumps(self.shape.to_dict())), **arrays)
        atomic_write_bytes(Path(path), buffer.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> "FeatureContext":
        path = Path(path)
        if not path.is_file():
            raise PrunesearchError(f"feature context not found: {path}")
        try:
            with np.load(path, allow_pickle=False) as data:
                shape = ModelShape.from_dict(json.loads(str(data["shape"])))
                tables = {k.split(":", 1)[1]: data[k] for k in data.files if k.startswith("table:")}
                block = {k.split(":", 1)[1]: data[k] for k in data.files if k.startswith("block:")}
            return cls(shape, tables, block)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, PrunesearchError) as exc:
            raise PrunesearchError(f"feature context {path} is corrupt: {exc}") from None
