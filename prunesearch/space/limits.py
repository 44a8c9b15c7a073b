"""Ceilings beside the parameter budget: forward FLOPs per token and KV-cache bytes per token, and a floor on the
speedup a measured latency model predicts, of a prompt's forward or of a generated token.

A deployment is often bound by compute or by cache memory as much as by its weights. Twenty percent of the
parameters taken from the MLPs leaves every key/value head, so the KV cache does not shrink at all; the same
twenty percent taken as whole blocks shrinks it by a fifth. ``Limits`` caps each figure as a fraction of the
dense model's (FLOPs at the cost model's 512-token context). A search spends at least its parameter budget and
then cuts further wherever a limit still binds, so every architecture it returns meets all of them. The speed floor
is read from a ``LatencyModel`` timed on the device the pruned model is for.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prunesearch.errors import BudgetError
from prunesearch.space.architecture import Architecture
from prunesearch.space.cost import cost
from prunesearch.space.latency import LatencyModel, Workload
from prunesearch.space.shape import ModelShape

TOLERANCE = 1e-9


@dataclass(frozen=True)
class Limits:
    """``flops``: the most forward FLOPs per token a pruned model may keep, ``kv``: the most KV-cache bytes per
    token, each a fraction of the dense model's in (0, 1]; ``speedup``: the least speedup over the dense model
    (>= 1) on ``speed`` (a prompt's forward or generated tokens, at a batch and context) that ``latency`` predicts.
    None: no limit."""

    flops: float | None = None
    kv: float | None = None
    speedup: float | None = None
    speed: Workload = Workload()
    latency: LatencyModel | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        for name, value in (("flops", self.flops), ("kv", self.kv)):
            if value is not None and not 0 < value <= 1:
                raise BudgetError(f"limit max_{name} must be a fraction of the dense model's in (0, 1], got {value}")
        if self.speedup is not None and not 1 <= self.speedup < float("inf"):
            raise BudgetError("limit min_speedup must be a finite speedup over the dense model >= 1, "
                              f"got {self.speedup}")

    def __bool__(self) -> bool:
        return self.flops is not None or self.kv is not None or self.speedup is not None

    def latency_for(self, shape: ModelShape) -> LatencyModel:
        """The latency model the speed floor is read from, checked against ``shape``."""
        if self.latency is None:
            raise BudgetError("a speed floor needs a latency model measured on the target device")
        self.latency.check_shape(shape)
        if self.latency.workload != self.speed:
            raise BudgetError(f"the speed floor is on {self.speed.describe()} but the latency model times "
                              f"{self.latency.workload.describe()}")
        return self.latency

    def predicted_speedup(self, arch: Architecture) -> float:
        """The latency model's speedup of ``arch`` over the dense model."""
        return self.latency_for(arch.shape).speedup_of(arch)

    def excess(self, arch: Architecture) -> dict[str, float]:
        """Each limit ``arch`` breaks, by how much (FLOPs and KV as a fraction of dense, speed as a speedup);
        empty when it meets them all."""
        figures = cost(arch)
        over = {}
        for name, cap, ratio in (("flops", self.flops, figures.flops / figures.dense_flops),
                                 ("kv", self.kv, figures.kv_bytes / max(figures.dense_kv_bytes, 1))):
            if cap is not None and ratio > cap + TOLERANCE:
                over[name] = ratio - cap
        if self.speedup is not None and (speedup := self.predicted_speedup(arch)) < self.speedup - TOLERANCE:
            over["speedup"] = self.speedup - speedup
        return over

    def met_by(self, arch: Architecture) -> bool:
        return not self.excess(arch)

    def describe(self) -> str:
        """'FLOPs ≤ 80% of dense, KV cache ≤ 60% of dense, decode speed ≥ 1.30× dense (cpu)', or 'none'."""
        parts = [f"{label} ≤ {cap:.0%} of dense" for label, cap in (("FLOPs", self.flops), ("KV cache", self.kv))
                 if cap is not None]
        if self.speedup is not None:
            parts.append(f"{self.speed.describe()} speed ≥ {self.speedup:.2f}× dense"
                         + (f" ({self.latency.device})" if self.latency is not None else ""))
        return ", ".join(parts) or "none"

    def to_dict(self) -> dict[str, float | int | str | None]:
        return {"flops": self.flops, "kv": self.kv, "speedup": self.speedup, **self.speed.to_dict()}
