"""A campaign's settings: defaults, a TOML file, command-line overrides; unknown keys are refused."""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from prunesearch.errors import PrunesearchError
from prunesearch.evaluate.store import LAYOUTS, Fidelity
from prunesearch.models import resolve_device, resolve_dtype
from prunesearch.predictor.model import MEMBERS
from prunesearch.pruners.priors import UNIT_METHODS
from prunesearch.pruners.refit import RefitSpec
from prunesearch.pruners.sensitivity import probe_spec
from prunesearch.search.optimize import SAMPLERS
from prunesearch.space import Limits, Workload
from prunesearch.space.search_space import MLP_STEP

OBJECTIVES = ("ppl", "accuracy")
_NUMBER_TYPES = {"int": (int,), "int | None": (int,), "float": (int, float), "float | None": (int, float)}
"""Settings checked by type before their ranges: a TOML ``members = 2.5`` or ``pairs = "ten"`` is refused up front,
not after an hour of measured pairs."""


@dataclass(frozen=True)
class CampaignConfig:
    """Everything a campaign does, so that a rerun with the same config resumes the same campaign.

    ``pairs``: architectures measured before the first predictor fit (the baselines included); ``tokens``,
    ``window``, ``data``, ``layout``: the search-time fidelity (validation text only; ``spread``: its windows evenly
    spaced over each split, ``head``: its first tokens, as campaigns before session 33 read; ``Fidelity``). 4,096
    tokens (four 512-token windows per split) rank the pairs within a budget band better on average than 2,048 on
    more pairs for the same campaign time, because the pairs there are near-ties that measurement noise reorders;
    ``rounds`` of search, each verifying
    ``verify`` new candidates per budget by real measurement; ``trials``: predictor queries per search,
    ``population`` its generation size, ``sampler`` its engine (``evolution``, or an Optuna sampler: ``nsga2``, ``tpe``,
    ``random``), ``pessimism`` the weight of the predictor ensemble's spread added to its mean (0: the mean alone),
    ``members`` the ensemble's size (every fit, the report's held-out checks included, trains that many boosters),
    ``smooth`` whether the predictor averages its trees with a Gaussian process (``prunesearch.predictor.smooth``;
    false: the trees alone, ~0.01 worse in Kendall tau within the budget band and 2-3x more queries per second).
    ``units``: whose scores choose which heads, dims and channels a searched width keeps (TransAct's activation
    norms pick markedly better units than the weight-scaled activation score: ppl 98.9 vs 111.3 for the same
    20% counts on SmolLM2 validation text). ``refine_steps``: with TransAct units, the ``refine_top`` best measured
    widths per budget get their units re-chosen by TransAct's iterative schedule and measured (0: off).
    ``greedy_stages``: the greedy allocator seed re-probes its sensitivity after each equal share of the budget
    (1: the dense probes only). ``probes``: the probe settings by name (``prunesearch.pruners.sensitivity.PROBES``):
    ``loss`` (default) or ``kl-dims`` (also thinned head dims, measured by KL; on SmolLM2 a greedy seed better on
    validation text and wiki-test, 2% worse on PTB-test, at twice the probing time).
    ``final_top``/``final_tokens``: the winner per budget is picked among the ``final_top`` best pairs measured again
    on ``final_tokens`` of the same validation splits that the search fidelity did not read (0: the best pair at the
    search fidelity wins). ``deep_top``/``deep_tokens``: the ``deep_top`` best of them on that read are read again on
    ``deep_tokens`` more validation tokens that neither earlier read took, and the winner is the best on both fresh
    reads pooled (0: off; perplexity objective only, since an accuracy read has no more documents to take). The
    finalists are near-ties: among fifteen campaigns' 20% winners a 32-window read per split ranked them against the
    full test sets at Kendall tau 0.76, an 8-window PTB read at 0.49 (BENCHMARKS.md, session 35).
    ``tasks``/``task_limit``: zero-shot columns in the final comparison; with ``objective = "accuracy"`` also
    measured for every pair (first ``task_limit`` documents, 20 if unset), and the predictor and the search
    then target mean accuracy instead of perplexity. ``heartbeat``: seconds between a running
    evaluation's heartbeats; a trial silent for twice that is retried by another worker. ``max_flops``/``max_kv``:
    ceilings on FLOPs and KV-cache bytes per token as fractions of dense, for every budget (``Limits``); the
    search then removes more than the budget wherever a ceiling needs it, and only pairs within them can win.
    ``min_speedup``: a floor on the speedup over dense that a latency model timed on this device predicts
    (``prunesearch.evaluate.latency``), held the same way; ``speed_mode``: what it is a speedup of, a prompt's
    forward (``"prefill"``) or one generated token against its KV cache (``"decode"``), with ``speed_batch``
    sequences of ``speed_context`` tokens (default 1 x 512): the workload (``Workload``) the latency model is timed
    on and the comparison measures.
    ``refit``: materialize every pruned model with the least-squares refit of its output projections
    (``prunesearch.pruners.refit``), the pairs and the comparison's baselines alike: true for the default
    ``RefitSpec``, or a table of its fields (e.g. ``refit = {count = 64}`` for fewer calibration windows).
    ``device``: where the model runs (``prunesearch.models.resolve_device``: ``auto`` takes the first CUDA GPU when
    there is one); not part of the campaign's identity, so a campaign may resume, or take workers, on another.
    ``dtype``: the weights' precision (``float32``, ``bfloat16`` or ``float16``); part of the model's fingerprint,
    so a campaign resumes, and its workers join, only in its own.
    """

    model: str = "smollm2-135m"
    budgets: tuple[float, ...] = (0.2,)
    name: str | None = None
    pairs: int = 160
    tokens: int = 4096
    window: int = 512
    data: tuple[str, ...] = ("ptb-valid", "wiki-valid")
    layout: str = "spread"
    rounds: int = 9
    verify: int = 6
    trials: int = 20000
    population: int = 256
    sampler: str = "evolution"
    pessimism: float = 1.0
    members: int = MEMBERS
    smooth: bool = True
    seed: int = 0
    mlp_step: int = MLP_STEP
    slack: float = 0.005
    band: float = 0.025
    methods: tuple[str, ...] = ("bip", "transact", "mi", "sleb", "shortgpt", "uniform")
    compare_tokens: int = 8192
    objective: str = "ppl"
    units: str = "transact"
    refine_steps: int = 4
    refine_top: int = 2
    greedy_stages: int = 3
    probes: str = "loss"
    final_top: int = 6
    final_tokens: int = 8192
    deep_top: int = 3
    deep_tokens: int = 16384
    tasks: tuple[str, ...] = ()
    task_limit: int | None = None
    storage: str | None = None
    heartbeat: int = 10
    max_flops: float | None = None
    max_kv: float | None = None
    min_speedup: float | None = None
    speed_mode: str = "prefill"
    speed_batch: int = 1
    speed_context: int = 512
    refit: bool | dict[str, Any] = False
    device: str = "auto"
    dtype: str = "float32"
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        for f in fields(self):
            value, kinds = getattr(self, f.name), _NUMBER_TYPES.get(str(f.type))
            if kinds and not (value is None and "None" in str(f.type)) and (
                    isinstance(value, bool) or not isinstance(value, kinds)):
                kind = "a whole number" if kinds == (int,) else "a number"
                raise PrunesearchError(f"campaign setting '{f.name}' must be {kind}, got {value!r}")
        if not self.budgets:
            raise PrunesearchError("a campaign needs at least one budget")
        for name in ("pairs", "tokens", "window", "trials", "population", "members", "mlp_step", "heartbeat",
                     "final_tokens", "deep_tokens", "greedy_stages"):
            if getattr(self, name) < 1:
                raise PrunesearchError(f"campaign setting '{name}' must be positive, got {getattr(self, name)}")
        if self.objective not in OBJECTIVES:
            raise PrunesearchError(f"campaign setting 'objective' must be one of {', '.join(OBJECTIVES)}, "
                                   f"got {self.objective!r}")
        if self.objective == "accuracy" and not self.tasks:
            raise PrunesearchError("objective 'accuracy' needs zero-shot tasks: set 'tasks' (e.g. --tasks paper7)")
        if self.pessimism < 0:
            raise PrunesearchError(f"campaign setting 'pessimism' must not be negative, got {self.pessimism}")
        if self.sampler not in SAMPLERS:
            raise PrunesearchError(f"campaign setting 'sampler' must be one of {', '.join(SAMPLERS)}, "
                                   f"got {self.sampler!r}")
        if self.units not in UNIT_METHODS:
            raise PrunesearchError(f"campaign setting 'units' must be one of {', '.join(UNIT_METHODS)}, "
                                   f"got {self.units!r}")
        probe_spec(self.probes)
        if self.layout not in LAYOUTS:
            raise PrunesearchError(f"campaign setting 'layout' must be one of {', '.join(LAYOUTS)}, "
                                   f"got {self.layout!r}")
        for name in ("rounds", "verify", "refine_steps", "refine_top", "final_top", "deep_top"):
            if getattr(self, name) < 0:
                raise PrunesearchError(f"campaign setting '{name}' must not be negative, got {getattr(self, name)}")
        self.limits()
        self.refit_spec()
        if not isinstance(self.smooth, bool):
            raise PrunesearchError(f"campaign setting 'smooth' must be true or false, got {self.smooth!r}")
        for name in ("device", "dtype"):
            if not isinstance(getattr(self, name), str):
                raise PrunesearchError(f"campaign setting '{name}' must be a name, got {getattr(self, name)!r}")
        resolve_device(self.device)
        resolve_dtype(self.dtype)

    def refit_spec(self) -> RefitSpec | None:
        """The refit every pruned model gets (None: plain)."""
        if isinstance(self.refit, dict):
            return RefitSpec.from_dict(self.refit)
        if not isinstance(self.refit, bool):
            raise PrunesearchError(f"campaign setting 'refit' must be true, false or a table of refit settings, "
                                   f"got {self.refit!r}")
        return RefitSpec() if self.refit else None

    def limits(self) -> Limits:
        """The FLOPs and KV-cache ceilings and the speed floor every budget's search and winner must meet (the floor
        without its latency model, which ``prepare`` measures on this device)."""
        return Limits(self.max_flops, self.max_kv, self.min_speedup,
                      Workload(self.speed_mode, self.speed_batch, self.speed_context))

    def final_fidelity(self) -> Fidelity | None:
        """The finalists' read: windows of the validation splits that the search fidelity did not read, so that no
        pair is favoured by the tokens it was picked on (None when off or no longer than the search fidelity)."""
        if self.final_top == 0 or self.final_tokens <= self.tokens:
            return None
        return Fidelity(tuple(self.data), self.final_tokens, self.window, **self.fidelity_tasks(),
                        skip=self.fidelity().per_data, layout=self.layout)

    def deep_fidelity(self) -> Fidelity | None:
        """The best finalists' second fresh read: windows neither the search fidelity nor the finalists' read took
        (None when off, with no finalists' read, or for an accuracy objective)."""
        final = self.final_fidelity()
        if final is None or self.deep_top == 0 or self.objective != "ppl":
            return None
        before = (self.fidelity().per_data, final.per_data)
        return Fidelity(tuple(self.data), self.deep_tokens, self.window,
                        skip=before if self.layout == "spread" else sum(before), layout=self.layout)

    def fidelity(self) -> Fidelity:
        """The search-time fidelity every pair is measured at."""
        return Fidelity(tuple(self.data), self.tokens, self.window, **self.fidelity_tasks(), layout=self.layout)

    def fidelity_tasks(self) -> dict[str, Any]:
        """The task part of the search-time fidelity: none unless the objective is accuracy."""
        if self.objective != "accuracy":
            return {}
        return {"tasks": tuple(self.tasks), "task_limit": self.task_limit or 20}

    @property
    def campaign(self) -> str:
        """The campaign's name (its folder under runs/ and its Optuna study name)."""
        if self.name:
            return self.name
        model = Path(self.model).name.replace("/", "-")
        return f"{model}-" + "-".join(f"{round(b * 100)}" for b in self.budgets)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("extra")
        return out

    def replace(self, **changes: Any) -> "CampaignConfig":
        """A copy with ``changes`` (None values mean 'not given' and keep the current setting)."""
        given = {k: v for k, v in changes.items() if v is not None}
        return CampaignConfig(**{**self.to_dict(), **given})

    @classmethod
    def from_toml(cls, path: str | Path) -> "CampaignConfig":
        path = Path(path)
        if not path.is_file():
            raise PrunesearchError(f"campaign config not found: {path}")
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise PrunesearchError(f"campaign config {path} is not valid TOML: {exc}") from None
        return cls.from_dict(data, str(path))

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "campaign config") -> "CampaignConfig":
        known = {f.name for f in fields(cls)} - {"extra"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise PrunesearchError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        data = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        try:
            return cls(**data)
        except TypeError as exc:
            raise PrunesearchError(f"{where}: {exc}") from None
