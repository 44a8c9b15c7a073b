"""A campaign's settings: defaults, a TOML file, command-line overrides; unknown keys are refused."""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from prunesearch.errors import PrunesearchError


@dataclass(frozen=True)
class CampaignConfig:
    """Everything a campaign does, so that a rerun with the same config resumes the same campaign.

    ``pairs``: architectures measured before the first predictor fit (the baselines included); ``tokens``,
    ``window``, ``data``: the search-time fidelity (validation text only); ``rounds`` of search, each verifying
    ``verify`` new candidates per budget by real measurement; ``trials``: predictor queries per search.
    """

    model: str = "smollm2-135m"
    budgets: tuple[float, ...] = (0.2,)
    name: str | None = None
    pairs: int = 160
    tokens: int = 2048
    window: int = 512
    data: tuple[str, ...] = ("ptb-valid", "wiki-valid")
    rounds: int = 3
    verify: int = 6
    trials: int = 2048
    population: int = 64
    seed: int = 0
    mlp_step: int = 64
    slack: float = 0.005
    band: float = 0.025
    methods: tuple[str, ...] = ("bip", "transact", "mi", "sleb", "shortgpt", "uniform")
    compare_tokens: int = 8192
    storage: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not self.budgets:
            raise PrunesearchError("a campaign needs at least one budget")
        for name in ("pairs", "tokens", "window", "trials", "population", "mlp_step"):
            if getattr(self, name) < 1:
                raise PrunesearchError(f"campaign setting '{name}' must be positive, got {getattr(self, name)}")
        if self.rounds < 0 or self.verify < 0:
            raise PrunesearchError("campaign settings 'rounds' and 'verify' must not be negative")

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
