"""Ceilings beside the parameter budget: forward FLOPs per token and KV-cache bytes per token.

A deployment is often bound by compute or by cache memory as much as by its weights. Twenty percent of the
parameters taken from the MLPs leaves every key/value head, so the KV cache does not shrink at all; the same
twenty percent taken as whole blocks shrinks it by a fifth. ``Limits`` caps each figure as a fraction of the
dense model's (FLOPs at the cost model's 512-token context). A search spends at least its parameter budget and
then cuts further wherever a limit still binds, so every architecture it returns meets all of them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from prunesearch.errors import BudgetError
from prunesearch.space.cost import Cost

TOLERANCE = 1e-9


@dataclass(frozen=True)
class Limits:
    """``flops``: the most forward FLOPs per token a pruned model may keep, ``kv``: the most KV-cache bytes per
    token, each a fraction of the dense model's in (0, 1]; None: no ceiling."""

    flops: float | None = None
    kv: float | None = None

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if value is not None and not 0 < value <= 1:
                raise BudgetError(f"limit max_{name} must be a fraction of the dense model's in (0, 1], got {value}")

    def __bool__(self) -> bool:
        return self.flops is not None or self.kv is not None

    def excess(self, cost: Cost) -> dict[str, float]:
        """Each limit ``cost`` breaks, by how much (as a fraction of dense); empty when it meets them all."""
        ratios = {"flops": cost.flops / cost.dense_flops, "kv": cost.kv_bytes / max(cost.dense_kv_bytes, 1)}
        return {name: ratios[name] - cap for name, cap in asdict(self).items()
                if cap is not None and ratios[name] > cap + TOLERANCE}

    def met_by(self, cost: Cost) -> bool:
        return not self.excess(cost)

    def describe(self) -> str:
        """'FLOPs ≤ 80% of dense, KV cache ≤ 60% of dense', or 'none'."""
        parts = [f"{label} ≤ {cap:.0%} of dense" for label, cap in (("FLOPs", self.flops), ("KV cache", self.kv))
                 if cap is not None]
        return ", ".join(parts) or "none"

    def to_dict(self) -> dict[str, float | None]:
        return asdict(self)
