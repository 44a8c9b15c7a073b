"""The search space: per-layer genes, their allowed values on a grid, and seeded sampling (also at a budget)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import lru_cache

import numpy as np

from prunesearch.errors import ArchitectureError, BudgetError
from prunesearch.space.architecture import Architecture, LayerArch
from prunesearch.space.cost import fixed_params, layer_params, param_count
from prunesearch.space.shape import ModelShape

GENES = ("keep", "kv_heads", "q_per_kv", "qk_dim", "v_dim", "mlp")


def _grid(maximum: int, step: int, minimum: int) -> list[int]:
    """``minimum``, the multiples of ``step`` above it, and ``maximum``."""
    return sorted({minimum, *(v for v in range(step, maximum, step) if v > minimum), maximum})


@dataclass(frozen=True)
class SearchSpace:
    """Per-layer genes: block kept, KV groups, query heads per group, q/k dims, v dims, MLP channels.

    ``mlp_step`` and ``dim_step`` set the granularity of channel and per-head dim choices (hardware-friendly
    multiples); ``protected`` layers can never be removed; ``prune_qk`` includes query/key dims as a gene.
    """

    shape: ModelShape
    mlp_step: int = 64
    dim_step: int = 8
    prune_qk: bool = True
    protected: tuple[int, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.mlp_step < 1 or self.dim_step < 2 or self.dim_step % 2:
            raise ArchitectureError("mlp_step must be >= 1 and dim_step an even number >= 2")
        bad = [i for i in self.protected if not 0 <= i < self.shape.num_layers]
        if bad:
            raise ArchitectureError(f"protected layer(s) {bad} outside 0..{self.shape.num_layers - 1}")

    def choices(self) -> dict[str, list[int]]:
        """Allowed values of each gene (the same for every layer; ``keep`` is 0/1)."""
        return _choices(self)

    def _choices(self) -> dict[str, list[int]]:
        s = self.shape
        return {
            "keep": [0, 1],
            "kv_heads": list(range(0, s.num_kv_heads + 1)),
            "q_per_kv": list(range(1, s.group_size + 1)),
            "qk_dim": _grid(s.head_dim, self.dim_step, self.dim_step) if self.prune_qk else [s.head_dim],
            "v_dim": _grid(s.head_dim, self.dim_step, self.dim_step),
            "mlp": _grid(s.intermediate_size, self.mlp_step, 0),
        }

    def contains(self, arch: Architecture) -> bool:
        """True when every gene of ``arch`` is one of this space's choices."""
        if arch.shape != self.shape:
            return False
        choices = self.choices()
        for i, layer in enumerate(arch.layers):
            if not layer.keep:
                if i in self.protected:
                    return False
                continue
            if layer.mlp not in choices["mlp"]:
                return False
            if layer.has_attention and not (
                layer.q_per_kv in choices["q_per_kv"]
                and layer.qk_dim in choices["qk_dim"]
                and layer.v_dim in choices["v_dim"]
            ):
                return False
        return True

    def layer_from_genes(self, genes: dict[str, int]) -> LayerArch:
        """Build a layer from gene values; a layer without attention ignores its head genes."""
        if not genes["keep"] or (genes["kv_heads"] == 0 and genes["mlp"] == 0):
            return LayerArch(keep=False)
        if genes["kv_heads"] == 0:
            return LayerArch(True, 0, 0, 0, 0, genes["mlp"])
        return LayerArch(
            True, genes["kv_heads"], genes["q_per_kv"], genes["qk_dim"], genes["v_dim"], genes["mlp"]
        )

    def max_removable(self) -> float:
        """The largest fraction of total parameters this space can remove (all unprotected blocks)."""
        dense = Architecture.dense(self.shape)
        total = param_count(dense)
        keepable = sum(layer_params(self.shape, dense.layers[i]) for i in self.protected)
        return 1 - (fixed_params(self.shape) + keepable) / total

    def sample(self, seed: int) -> Architecture:
        """A uniformly random architecture (every gene drawn independently from its choices)."""
        rng = np.random.default_rng(seed)
        choices = self.choices()
        layers = []
        for i in range(self.shape.num_layers):
            genes = {g: int(rng.choice(choices[g])) for g in GENES}
            if i in self.protected:
                genes["keep"] = 1
                genes["kv_heads"] = max(genes["kv_heads"], 1)
            layers.append(self.layer_from_genes(genes))
        return Architecture(self.shape, tuple(layers), {"sampler": "uniform", "seed": seed})

    def check_budget(self, budget: float) -> None:
        if not 0 <= budget < self.max_removable():
            raise BudgetError(
                f"budget {budget} is impossible: it must be in [0, {self.max_removable():.3f}) "
                "(the fraction of total parameters removed; embeddings and protected blocks stay)"
            )

    def sample_at_budget(self, budget: float, seed: int, tolerance: float = 0.01, tries: int = 200) -> Architecture:
        """A random architecture removing ``budget`` of the total parameters, within ``tolerance`` of the total.

        Draw some whole blocks to remove, give each (layer, gene) a random pruning propensity and each gene type a
        random weight, find by bisection the global strength that lands on the budget, then fix the rounding by
        single grid steps. Different seeds give structurally different mixes (deep vs wide, heads vs MLP).
        """
        self.check_budget(budget)
        rng = np.random.default_rng(seed)
        for _ in range(tries):
            arch = self._draw_at_budget(budget, tolerance, rng)
            if arch is not None:
                return Architecture(
                    arch.shape, arch.layers, {"sampler": "budget", "budget": budget, "seed": seed}
                )
        raise BudgetError(f"could not sample an architecture within {tolerance:.1%} of budget {budget}")

    def _draw_at_budget(self, budget: float, tolerance: float, rng: np.random.Generator) -> Architecture | None:
        s, choices = self.shape, self.choices()
        dense = Architecture.dense(s)
        total = param_count(dense)
        target = (1 - budget) * total
        block = layer_params(s, dense.layers[0])
        droppable = [i for i in range(s.num_layers) if i not in self.protected]
        max_drop = int(min(len(droppable), (total - target) // block))
        n_drop = int(rng.integers(0, max_drop + 1)) if rng.random() < 0.5 else 0
        dropped = set(rng.choice(droppable, size=n_drop, replace=False).tolist()) if n_drop else set()
        width_genes = ("kv_heads", "q_per_kv", "qk_dim", "v_dim", "mlp")
        weight = {g: rng.uniform(0.1, 1.0) for g in width_genes}
        propensity = rng.random((s.num_layers, len(width_genes)))

        def build(strength: float) -> list[dict[str, int]]:
            genes = []
            for i in range(s.num_layers):
                layer = {"keep": int(i not in dropped)}
                for j, g in enumerate(width_genes):
                    options = choices[g]
                    kept = 1 - min(1.0, strength * weight[g] * propensity[i, j])
                    layer[g] = options[int(round(kept * (len(options) - 1)))]
                if i in self.protected and layer["kv_heads"] == 0 and layer["mlp"] == 0:
                    layer["mlp"] = choices["mlp"][1]
                genes.append(layer)
            return genes

        def params(genes: list[dict[str, int]]) -> int:
            return fixed_params(s) + sum(layer_params(s, self.layer_from_genes(g)) for g in genes)

        lo, hi = 0.0, 1.0
        while params(build(hi)) > target and hi < 1e4:
            hi *= 2
        for _ in range(40):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if params(build(mid)) > target else (lo, mid)
        genes = build(hi)
        tol = tolerance * total
        for _ in range(10 * s.num_layers):
            gap = params(genes) - target
            if abs(gap) <= tol:
                layers = tuple(self.layer_from_genes(g) for g in genes)
                return Architecture(s, layers)
            i = int(rng.choice([i for i in range(s.num_layers) if i not in dropped]))
            g = width_genes[int(rng.integers(len(width_genes)))]
            options = choices[g]
            pos = options.index(genes[i][g]) + (-1 if gap > 0 else 1)
            if 0 <= pos < len(options):
                trial = [dict(x) for x in genes]
                trial[i][g] = options[pos]
                emptied = trial[i]["kv_heads"] == 0 and trial[i]["mlp"] == 0
                if not (emptied and i in self.protected) and abs(params(trial) - target) < abs(gap):
                    genes = trial
        return None

    def repair(self, arch: Architecture, budget: float, slack: float = 0.005) -> Architecture:
        """``arch`` moved onto the budget by single grid steps: afterwards it removes at least ``budget`` of the
        total parameters (a search must not win by spending more than it was given) and, where the grid allows,
        at most ``budget + slack``.

        Too large: cut one MLP step from the widest MLP, or once no MLP is left one attention step. Too small:
        add one MLP step to the narrowest MLP, else one attention step, else bring back a removed block as one
        MLP step. The most even change per step keeps the searched allocation's shape. Unit indices are dropped.
        """
        self.check_budget(budget)
        s = self.shape
        total = param_count(Architecture.dense(s))
        high, low = (1 - budget) * total, (1 - budget - slack) * total
        layers = [_genes(layer) for layer in arch.layers]
        for i in self.protected:
            layers[i]["keep"] = 1
        sizes: dict[tuple[int, ...], int] = {}

        def size(genes: dict[str, int]) -> int:
            key = tuple(genes.values())
            if key not in sizes:
                sizes[key] = layer_params(s, self.layer_from_genes(genes))
            return sizes[key]

        params = fixed_params(s) + sum(size(g) for g in layers)
        for _ in range(100 * s.num_layers):
            if params > high:
                move = self._shrink(layers)
                if move is None:
                    raise BudgetError(f"cannot repair the architecture onto budget {budget}")
            elif params < low:
                move = self._grow(layers)
                if move is None:
                    break
            else:
                break
            i, genes = move
            new = params + size(genes) - size(layers[i])
            if params <= high < new:
                break
            layers[i], params = genes, new
        return Architecture(s, tuple(self.layer_from_genes(g) for g in layers), arch.meta)

    def _attention_steps(self, genes: dict[str, int], direction: int) -> dict[str, int] | None:
        """One attention grid step (dims before heads before groups when shrinking, the reverse when growing)."""
        choices = self.choices()
        if direction > 0 and genes["kv_heads"] == 0:
            return {**genes, "kv_heads": 1, "q_per_kv": 1, "qk_dim": choices["qk_dim"][0], "v_dim": choices["v_dim"][0]}
        order = ("v_dim", "qk_dim", "q_per_kv", "kv_heads")
        for gene in order if direction < 0 else reversed(order):
            options = choices[gene]
            pos = options.index(genes[gene]) + direction
            if 0 <= pos < len(options) and (gene == "kv_heads" or pos > 0 or direction > 0 or len(options) == 1):
                if gene != "kv_heads" and options[pos] == genes[gene]:
                    continue
                return {**genes, gene: options[pos]}
        return None

    def _shrink(self, layers: list[dict[str, int]]) -> tuple[int, dict[str, int]] | None:
        grid = self.choices()["mlp"]
        live = [i for i, g in enumerate(layers) if _alive(g)]
        candidates = [i for i in live if layers[i]["mlp"] > 0
                      and (i not in self.protected or layers[i]["kv_heads"] > 0 or layers[i]["mlp"] > grid[1])]
        if candidates:
            i = max(candidates, key=lambda j: (layers[j]["mlp"], j))
            return i, {**layers[i], "mlp": grid[grid.index(layers[i]["mlp"]) - 1]}
        for i in sorted(live, key=lambda j: -layers[j]["kv_heads"]):
            genes = self._attention_steps(layers[i], -1)
            if genes is not None and (i not in self.protected or _alive(genes)):
                return i, genes
        return None

    def _grow(self, layers: list[dict[str, int]]) -> tuple[int, dict[str, int]] | None:
        s, grid = self.shape, self.choices()["mlp"]
        live = [i for i, g in enumerate(layers) if _alive(g)]
        candidates = [i for i in live if layers[i]["mlp"] < s.intermediate_size]
        if candidates:
            i = min(candidates, key=lambda j: (layers[j]["mlp"], j))
            return i, {**layers[i], "mlp": grid[grid.index(layers[i]["mlp"]) + 1]}
        for i in sorted(live, key=lambda j: layers[j]["kv_heads"]):
            genes = self._attention_steps(layers[i], +1)
            if genes is not None:
                return i, genes
        removed = [i for i in range(s.num_layers) if i not in live]
        if removed:
            i = removed[0]
            return i, {"keep": 1, "kv_heads": 0, "q_per_kv": 0, "qk_dim": 0, "v_dim": 0, "mlp": grid[1]}
        return None

    def to_dict(self) -> dict:
        return {**asdict(self), "shape": self.shape.to_dict(), "protected": list(self.protected)}

    @classmethod
    def from_dict(cls, data: dict) -> "SearchSpace":
        data = dict(data)
        data["shape"] = ModelShape.from_dict(data["shape"])
        data["protected"] = tuple(data.get("protected", ()))
        return cls(**data)


@lru_cache(maxsize=64)
def _choices(space: SearchSpace) -> dict[str, list[int]]:
    return space._choices()


def _alive(genes: dict[str, int]) -> bool:
    """Whether gene values describe a kept block (``layer_from_genes`` would not remove it)."""
    return bool(genes["keep"]) and (genes["kv_heads"] > 0 or genes["mlp"] > 0)


def _genes(layer: LayerArch) -> dict[str, int]:
    """A layer's gene values (the inverse of ``SearchSpace.layer_from_genes``)."""
    return {"keep": int(layer.keep), "kv_heads": layer.kv_heads, "q_per_kv": layer.q_per_kv,
            "qk_dim": layer.qk_dim, "v_dim": layer.v_dim, "mlp": layer.mlp}


MLP_STEP = 64
"""The MLP width grid step a search works on by default (on SmolLM2 one step of 64 channels is 0.08% of the
parameters, the finest move and so the landing tolerance past a budget)."""


def space_for(shape: ModelShape, mlp_step: int = MLP_STEP) -> SearchSpace:
    """The space a search and the greedy allocator work in: the first and last blocks never removed (the shared
    notes: removing either alone is catastrophic on SmolLM2; SLEB protects them too)."""
    return SearchSpace(shape, mlp_step=mlp_step, protected=(0, shape.num_layers - 1))
