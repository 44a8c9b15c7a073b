"""A measured latency model: the seconds of one step of a pruned model on one device, from its counts.

A step is what the speed is taken on. ``prefill``: one forward of a whole prompt, compute-bound on a CPU.
``decode``: one generated token against the KV cache of a prompt, where every weight is read for one token's work,
so the fixed LM head and each block's overheads weigh far more than their FLOPs say.

FLOPs and KV bytes are exact, but they do not say how fast a model runs on a given device. A removed block also
saves its norms, residual adds and kernel launches. A thinned attention still pays for its fused kernel at the wider
of its q/k and v widths. A ``LatencyModel`` is linear in five per-block terms: whether an attention is present,
its projection multiply-adds, its score and value work at that padded width, whether an MLP is present, and its
channels. It adds the fixed time of the embeddings and the LM head. The coefficients are fitted to timed steps
of architectures sampled from the space on the device itself (``prunesearch.evaluate.latency``). It is what
once-for-all NAS calls a latency predictor: the search reads it in bulk and keeps thousands of queries per second
under a speed floor.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from prunesearch.errors import PrunesearchError
from prunesearch.paths import atomic_write_text
from prunesearch.space.architecture import Architecture
from prunesearch.space.shape import ModelShape

TERMS = ("attention", "attention_macs", "attention_scores", "mlp", "mlp_channels")
"""Per-block terms the model is linear in (summed over blocks), in the order of ``LatencyModel.coef``."""
FORMAT = "prunesearch.latency/3"
FLOOR = 0.01
"""The least a predicted step may take, as a fraction of the dense parent's step. Non-negative least squares may put
all the time on the per-block terms and none on the fixed one; a model that keeps no attention, or no block at all,
would then read as taking no time: an infinite speedup that meets every floor. Its LM head alone keeps any real
step far above this."""
MODES = ("prefill", "decode")
"""What a speed is taken on: a forward of a [batch, seq_len] prompt, or one greedy token per row against the KV
cache of such a prompt."""


def check_mode(mode: str) -> str:
    """``mode`` itself when it is one of ``MODES``; a clear error before any timing when it is not."""
    if mode not in MODES:
        raise PrunesearchError(f"speed mode must be one of {', '.join(MODES)}, got {mode!r}")
    return mode


@dataclass(frozen=True)
class Workload:
    """What a speed is taken on: ``mode`` steps (``MODES``) of a [``batch``, ``context``] prompt. A speedup holds
    for one workload only: batching reads each weight once for more tokens, and a longer context makes attention and
    its KV cache weigh more, so the same model is faster or slower against its dense parent as either grows
    (BENCHMARKS.md, session 20)."""

    mode: str = "prefill"
    batch: int = 1
    context: int = 512

    def __post_init__(self) -> None:
        check_mode(self.mode)
        for name, value, unit in (("batch", self.batch, "sequences"), ("context", self.context, "tokens")):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise PrunesearchError(f"speed {name} must be a whole number of {unit} >= 1, got {value!r}")

    def describe(self) -> str:
        """'decode' at the default batch and context, else e.g. 'decode (batch 8, 2,048-token context)'."""
        if (self.batch, self.context) == (Workload.batch, Workload.context):
            return self.mode
        return f"{self.mode} (batch {self.batch}, {self.context:,}-token context)"

    def to_dict(self) -> dict[str, Any]:
        return {"speed_mode": self.mode, "speed_batch": self.batch, "speed_context": self.context}


def block_terms(shape: ModelShape, counts: np.ndarray, seq_len: int) -> np.ndarray:
    """[..., len(TERMS)] terms of count arrays [..., L, 6] (``Architecture.as_array``), summed over blocks. The
    score work is per query over ``seq_len`` + 1 keys: a prefill's total is that times a constant, which the fit
    absorbs, and a decode step attends to the cached ``seq_len`` keys and its own."""
    counts = np.asarray(counts, dtype=np.float64)
    kv, qpk, qk, v, mlp = np.moveaxis(counts[..., 1:], -1, 0)
    q = kv * qpk
    terms = np.stack([
        kv > 0,
        shape.hidden_size * (q * qk + kv * qk + kv * v + q * v),
        q * np.maximum(qk, v) * (seq_len + 1),  # scores and the weighted sum of values, padded to one width
        mlp > 0,
        mlp,
    ], axis=-1).astype(np.float64)
    return terms.sum(-2)


@dataclass(frozen=True)
class LatencyModel:
    """Seconds of one ``mode`` step of a [``batch_size``, ``seq_len``] prompt on ``device`` (``MODES``): ``fixed``
    plus ``coef`` times the ``TERMS`` of the architecture. ``parent``: the measured seconds of the dense model's own
    step in its own class (``LlamaForCausalLM``, not the pruned model class), which every speedup divides: "× dense"
    means the model a user would otherwise serve, and the two classes differ by up to 3% (BENCHMARKS.md, session
    20). ``fit`` records how it was measured and how well it predicts."""

    shape: ModelShape
    seq_len: int
    batch_size: int
    device: str
    fixed: float
    coef: tuple[float, ...]
    parent: float
    mode: str = "prefill"
    fit: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if len(self.coef) != len(TERMS) or self.fixed < 0 or min(self.coef) < 0 or not self.parent > 0:
            raise PrunesearchError(f"a latency model needs a fixed time >= 0, {len(TERMS)} coefficients >= 0 and "
                                   "the dense parent's time > 0")
        check_mode(self.mode)

    @property
    def workload(self) -> Workload:
        return Workload(self.mode, self.batch_size, self.seq_len)

    def seconds(self, counts: np.ndarray) -> np.ndarray:
        """[n] predicted seconds of count arrays [n, L, 6], at least ``FLOOR`` of the parent's."""
        linear = self.fixed + block_terms(self.shape, counts, self.seq_len) @ np.asarray(self.coef)
        return np.maximum(linear, FLOOR * self.parent)

    def speedup(self, counts: np.ndarray) -> np.ndarray:
        """[n] predicted tokens/s of count arrays [n, L, 6] over the dense parent's (> 1: faster)."""
        return self.parent / self.seconds(counts)

    def speedup_of(self, arch: Architecture) -> float:
        self.check_shape(arch.shape)
        return float(self.speedup(arch.as_array()[None])[0])

    def check_shape(self, shape: ModelShape) -> None:
        if shape != self.shape:
            raise PrunesearchError("this latency model was measured for a model of another shape")

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, **asdict(self), "shape": self.shape.to_dict(), "coef": list(self.coef),
                "terms": list(TERMS)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LatencyModel":
        if data.get("format") != FORMAT or data.get("terms") != list(TERMS):
            raise PrunesearchError(f"not a latency model of this version ({FORMAT}, terms {list(TERMS)})")
        return cls(ModelShape.from_dict(data["shape"]), int(data["seq_len"]), int(data["batch_size"]),
                   str(data["device"]), float(data["fixed"]), tuple(float(c) for c in data["coef"]),
                   float(data["parent"]), str(data["mode"]), dict(data.get("fit", {})))

    def save(self, path: Path) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: Path) -> "LatencyModel":
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise PrunesearchError(f"cannot read latency model {path}: {exc}") from exc
