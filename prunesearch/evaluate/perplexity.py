"""Perplexity over fixed, non-overlapping windows: every window starts cold, every token after its first is scored."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import PreTrainedModel


@dataclass(frozen=True)
class Perplexity:
    ppl: float
    nll: float
    scored_tokens: int
    windows: int
    window: int


@torch.no_grad()
def perplexity(model: PreTrainedModel, windows: torch.Tensor, batch_size: int = 2, progress: bool = True,
               desc: str = "perplexity") -> Perplexity:
    """Mean next-token NLL over ``windows`` [n, window]; ``inf`` when the model has collapsed to NaN/inf."""
    total, count = 0.0, 0
    for start in tqdm(range(0, len(windows), batch_size), desc=desc, disable=not progress, leave=False):
        batch = windows[start:start + batch_size].to(model.device)
        logits = model(input_ids=batch, use_cache=False).logits[:, :-1].float()
        nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1), reduction="sum")
        total += nll.item()
        count += batch[:, 1:].numel()
    mean = total / count
    ppl = math.exp(mean) if math.isfinite(mean) and mean < 700 else math.inf
    return Perplexity(ppl=ppl, nll=mean, scored_tokens=count, windows=len(windows), window=windows.shape[1])
