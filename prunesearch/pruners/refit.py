"""Training-free weight refit: a pruned layer's output projection refitted so the layer's output stays close.

When a layer loses MLP channels or attention value dims, the ``down_proj`` / ``o_proj`` columns it keeps (``K``)
are solved again by ridge least squares over calibration text:

    W_K' = argmin E||W x - W_K' x_K||^2 + lam ||W_K' - W_K||^2 = (W C[:, K] + lam W_K) (C[K, K] + lam I)^-1

with ``C`` the uncentred second moment of the projection's input in the dense model and ``lam`` = ``damp`` times
the mean diagonal of ``C[K, K]``. The ridge pulls toward the plain slice, not toward zero, so a layer whose
calibration text says little keeps its weights. No bias is added: the config and the parameter count stay those
of the plain pruned model. On SmolLM2-135M at 20% removed (PTB-valid / wiki-valid, 4,096 tokens each) this took
the searched model from 105.8 / 53.4 to 91.5 / 50.3 and TransAct's from 124.3 / 69.3 to 97.9 / 63.7; a centred
fit with a mean bias, pulled toward zero, over-fitted the PTB calibration text (wiki 53.4 -> 56.6 and 69.3 -> 79.8;
``bench/reconstruction.py``). Those figures used 128 windows of 256 tokens; the default's 256 windows of 512 tokens
(the evaluation's window length) lower both corpora by another 1-2.5% for every model (``bench/refit_tokens.py``).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel

from prunesearch.data import calibration_windows, token_ids
from prunesearch.errors import PrunesearchError
from prunesearch.models import LoadedModel
from prunesearch.paths import atomic_write_bytes, cache_dir
from prunesearch.space import Architecture


@dataclass(frozen=True)
class RefitSpec:
    """The text the second moments come from (``count`` windows of ``length`` tokens of ``data``, drawn with
    ``seed``: training text only) and the ridge's strength ``damp``."""

    data: str = "ptb-train"
    count: int = 256
    length: int = 512
    seed: int = 0
    damp: float = 0.05

    def __post_init__(self) -> None:
        if self.count < 1 or self.length < 1:
            raise PrunesearchError(f"a refit needs calibration windows, got {self.count} x {self.length} tokens")
        if not self.damp > 0:
            raise PrunesearchError(f"a refit's damp must be positive, got {self.damp}")

    def moments_key(self, fingerprint: str) -> str:
        """Names the cached moments (the ridge does not change them)."""
        spec = [fingerprint, self.data, self.count, self.length, self.seed]
        return hashlib.sha256(json.dumps(spec).encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RefitSpec":
        try:
            return cls(**data)
        except TypeError as exc:
            raise PrunesearchError(f"malformed refit spec {data}: {exc}") from None


@dataclass(frozen=True, eq=False)
class Refit:
    """A spec and the dense model's input moments: ``mlp`` [L, I, I] of each ``down_proj``, ``attn`` [L, H*D, H*D]
    of each ``o_proj`` (means over the calibration tokens)."""

    spec: RefitSpec
    mlp: torch.Tensor
    attn: torch.Tensor

    @torch.no_grad()
    def projection(self, weight: torch.Tensor, part: str, layer: int, keep: torch.Tensor) -> torch.Tensor:
        """The refitted [out, len(keep)] weight of layer ``layer``'s ``part`` ("mlp": down_proj, "attn": o_proj)
        whose dense weight is ``weight`` and which keeps the input columns ``keep`` (in that order)."""
        moments = (self.mlp if part == "mlp" else self.attn)[layer]
        if moments.shape[0] != weight.shape[1]:
            raise PrunesearchError("the refit's moments were collected on a model of another shape")
        w = weight.detach().float().cpu()
        columns = moments[:, keep]
        inner = columns[keep].double()
        lam = self.spec.damp * inner.diagonal().mean().clamp_min(1e-12)
        rhs = (w @ columns).double() + lam * w[:, keep].double()  # the product in fp32, the solve in fp64
        inner.diagonal().add_(lam)  # positive definite now: a Cholesky solve, half the cost of LU
        solved = torch.cholesky_solve(rhs.T, torch.linalg.cholesky(inner)).T
        return solved.to(dtype=weight.dtype, device=weight.device)

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        torch.save({"mlp": self.mlp, "attn": self.attn}, buffer)
        return buffer.getvalue()


@torch.no_grad()
def collect_moments(model: PreTrainedModel, windows: torch.Tensor, batch_size: int = 8,
                    progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean x x^T of every ``down_proj`` and ``o_proj`` input over ``windows`` [n, length] in one pass."""
    layers = model.model.layers
    sums: dict[tuple[str, int], torch.Tensor] = {}

    def hook(key: tuple[str, int]):
        def add(_module, args):
            x = args[0].reshape(-1, args[0].shape[-1]).float()
            product = (x.T @ x).cpu().double()  # fp64 on the CPU: some accelerators (MPS) have none
            sums[key] = sums[key] + product if key in sums else product
        return add

    handles = []
    for i, block in enumerate(layers):
        handles.append(block.mlp.down_proj.register_forward_pre_hook(hook(("mlp", i))))
        handles.append(block.self_attn.o_proj.register_forward_pre_hook(hook(("attn", i))))
    try:
        for start in tqdm(range(0, len(windows), batch_size), desc="refit moments", disable=not progress,
                          leave=False):
            model(input_ids=windows[start:start + batch_size].to(model.device), use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
    tokens = windows.numel()
    stack = lambda part: torch.stack([(sums[(part, i)] / tokens).float() for i in range(len(layers))])  # noqa: E731
    return stack("mlp"), stack("attn")


@lru_cache(maxsize=1)
def _moments(path: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One model's moments held once per process (~320 MB for SmolLM2-135M), shared by every spec's ridge."""
    data = torch.load(path, weights_only=True)
    return data["mlp"], data["attn"]


def load_refit(model: PreTrainedModel, tokenizer, fingerprint: str, spec: RefitSpec = RefitSpec(),
               progress: bool = True) -> Refit:
    """The refit for ``model`` and ``spec``: moments from the disk cache when present, else one pass over the
    spec's calibration windows (~7 min for SmolLM2-135M on 2 CPU cores), written to the cache."""
    path = cache_dir("refit") / f"{spec.moments_key(fingerprint)}.pt"
    if not path.exists():
        windows = calibration_windows(token_ids(tokenizer, spec.data), spec.count, spec.length, spec.seed)
        mlp, attn = collect_moments(model, windows, progress=progress)
        atomic_write_bytes(path, Refit(spec, mlp, attn).to_bytes())
    return Refit(spec, *_moments(str(path)))


def resolve_refit(loaded: LoadedModel, wanted: bool | None, archs: Iterable[Architecture] = (),
                  progress: bool = True) -> Refit | None:
    """The refit a command applies: ``wanted`` True or False decides; None follows the architectures, which
    record the refit they were searched with (``meta["refit"]``), so a campaign's winner is rebuilt as measured."""
    recorded = [a.meta["refit"] for a in archs if a.meta.get("refit")]
    if wanted is False or (wanted is None and not recorded):
        return None
    return recorded_refit(loaded, recorded[0] if recorded else RefitSpec().to_dict(), progress)


def recorded_refit(loaded: LoadedModel, spec: dict[str, Any] | None, progress: bool = True) -> Refit | None:
    """The refit a campaign, predictor or architecture recorded (``RefitSpec.to_dict``; None: plain)."""
    if not spec:
        return None
    return load_refit(loaded.model, loaded.tokenizer, loaded.fingerprint, RefitSpec.from_dict(spec), progress)
