"""Throughput of a pruned model against its dense parent, timed side by side, of a prompt's forward (prefill) or of
generated tokens (decode).

The two models run alternately on the same input so machine noise hits both alike, and each model's fastest repeat
is what we report, as ``timeit`` takes it: another process on the cores only ever adds time (absolute tokens/s on a
shared CPU are noisy, their ratio much less). Prefill and decode are different workloads: a forward of
512 tokens is compute-bound, while a generated token reads every weight for one token's work, so a pruned model's
decode speedup is its own figure, not its prefill speedup.
"""

from __future__ import annotations

import copy
import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from transformers import DynamicCache, PreTrainedModel

from prunesearch.errors import PrunesearchError
from prunesearch.models.device import synchronize
from prunesearch.space import Workload

DECODE_STEPS = 16
"""Tokens generated per decode timing: enough that one timing outlasts the clock's noise on a ~40 ms step."""


@dataclass(frozen=True)
class Speed:
    tokens_per_s: float
    dense_tokens_per_s: float
    workload: Workload
    repeats: int

    @property
    def ratio(self) -> float:
        """Pruned tokens/s over dense tokens/s (> 1 means faster)."""
        return self.tokens_per_s / self.dense_tokens_per_s


def time_forward(model: PreTrainedModel, batch: torch.Tensor) -> float:
    synchronize(model.device)
    start = time.perf_counter()
    model(input_ids=batch, use_cache=False)
    synchronize(model.device)
    return time.perf_counter() - start


class DecodeTimer:
    """Seconds per greedy step (one new token per row) against the KV cache of ``prompt``. The prompt runs once;
    every call decodes ``steps`` tokens from a copy of its cache, so each timing sees the same context."""

    def __init__(self, model: PreTrainedModel, prompt: torch.Tensor, steps: int = DECODE_STEPS) -> None:
        # transformers 5.24 renamed the forward's ``past_key_values`` to ``cache``; pass the name this model takes
        self.name = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        # the cache generate would make: its config gives sliding-window layers their own kind
        self.model, self.steps, self.cache = model, steps, DynamicCache(config=model.config)
        logits = model(input_ids=prompt, use_cache=True, **{self.name: self.cache}).logits
        self.first = logits[:, -1:].argmax(-1)

    def _steps(self, cache: DynamicCache) -> torch.Tensor:
        tokens = [self.first]
        for _ in range(self.steps):
            logits = self.model(input_ids=tokens[-1], use_cache=True, **{self.name: cache}).logits
            tokens.append(logits[:, -1:].argmax(-1))
        return torch.cat(tokens[1:], dim=1)

    def decode(self) -> torch.Tensor:
        """[batch, steps] the greedy tokens after the prompt's own next token, from a copy of its cache."""
        return self._steps(copy.deepcopy(self.cache))

    def __call__(self) -> float:
        cache = copy.deepcopy(self.cache)  # copied before the clock starts: a dense cache is tens of MB
        synchronize(self.model.device)
        start = time.perf_counter()
        self._steps(cache)
        synchronize(self.model.device)
        return (time.perf_counter() - start) / self.steps


def check_workload(config, workload: Workload) -> Workload:
    """``workload`` itself when the model takes its prompt (and, decoding, its generated tokens); a clear error
    before any work when the context is longer than the model's positions."""
    positions = getattr(config, "max_position_embeddings", None)
    needed = workload.context + (DECODE_STEPS + 1 if workload.mode == "decode" else 0)
    if positions is not None and needed > positions:
        raise PrunesearchError(f"speed context {workload.context:,} ({workload.describe()}) needs {needed:,} "
                               f"positions; the model has {positions:,}")
    return workload


def prompt(config, workload: Workload, seed: int = 0) -> torch.Tensor:
    """[batch, context] random token ids: a step takes as long whatever the tokens are."""
    check_workload(config, workload)
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, config.vocab_size, (workload.batch, workload.context), generator=generator)


def step_timer(model: PreTrainedModel, batch: torch.Tensor, mode: str) -> Callable[[], float]:
    """A call that times one step of ``model`` on ``batch``: its forward (``"prefill"``) or one generated token per
    row against its KV cache (``"decode"``)."""
    if mode == "decode":
        return DecodeTimer(model, batch)
    return lambda: time_forward(model, batch)


@torch.no_grad()
def interleaved_steps(dense: PreTrainedModel, pruned: PreTrainedModel, workload: Workload = Workload(),
                      repeats: int = 5, seed: int = 0) -> tuple[list[float], list[float]]:
    """Seconds of ``repeats`` steps of each model on ``workload``, alternating between them (after one warm-up step
    each), so that whatever else the machine does falls on both alike."""
    batch = prompt(dense.config, workload, seed).to(dense.device)
    timers = step_timer(dense, batch, workload.mode), step_timer(pruned, batch, workload.mode)
    for timer in timers:
        timer()
    dense_times, pruned_times = [], []
    for _ in range(repeats):
        dense_times.append(timers[0]())
        pruned_times.append(timers[1]())
    return dense_times, pruned_times


def compare_speed(dense: PreTrainedModel, pruned: PreTrainedModel, workload: Workload = Workload(),
                  repeats: int = 5, seed: int = 0) -> Speed:
    """Tokens/s of each model, its fastest of ``repeats`` steps interleaved with the other's, on ``workload``: a
    prompt's forward, or tokens generated against its KV cache."""
    dense_times, pruned_times = interleaved_steps(dense, pruned, workload, repeats, seed)
    tokens = workload.batch * (workload.context if workload.mode == "prefill" else 1)
    return Speed(tokens_per_s=tokens / min(pruned_times), dense_tokens_per_s=tokens / min(dense_times),
                 workload=workload, repeats=repeats)
