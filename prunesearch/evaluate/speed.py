"""Forward throughput of a pruned model against its dense parent, timed side by side.

The two models run alternately on the same input so machine noise hits both alike; the ratio of medians is what
we report (absolute tokens/s on a shared CPU are noisy).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel


@dataclass(frozen=True)
class Speed:
    tokens_per_s: float
    dense_tokens_per_s: float
    seq_len: int
    batch_size: int
    repeats: int

    @property
    def ratio(self) -> float:
        """Pruned tokens/s over dense tokens/s (> 1 means faster)."""
        return self.tokens_per_s / self.dense_tokens_per_s


def time_forward(model: PreTrainedModel, batch: torch.Tensor) -> float:
    start = time.perf_counter()
    model(input_ids=batch, use_cache=False)
    return time.perf_counter() - start


@torch.no_grad()
def compare_speed(dense: PreTrainedModel, pruned: PreTrainedModel, seq_len: int = 512, batch_size: int = 1,
                  repeats: int = 5, seed: int = 0) -> Speed:
    """Median tokens/s of each model over ``repeats`` interleaved forwards of a [batch_size, seq_len] batch."""
    vocab = dense.config.vocab_size
    batch = torch.randint(0, vocab, (batch_size, seq_len), generator=torch.Generator().manual_seed(seed))
    batch = batch.to(dense.device)
    time_forward(dense, batch)
    time_forward(pruned, batch)
    dense_times, pruned_times = [], []
    for _ in range(repeats):
        dense_times.append(time_forward(dense, batch))
        pruned_times.append(time_forward(pruned, batch))
    tokens = batch.numel()
    return Speed(
        tokens_per_s=tokens / statistics.median(pruned_times),
        dense_tokens_per_s=tokens / statistics.median(dense_times),
        seq_len=seq_len,
        batch_size=batch_size,
        repeats=repeats,
    )
