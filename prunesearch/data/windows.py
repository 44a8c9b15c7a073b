"""Tokenized corpora (cached on disk) and the fixed-length windows perplexity and calibration run on."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from prunesearch.data.corpora import AVAILABLE, load_text
from prunesearch.errors import DataError
from prunesearch.paths import atomic_write_bytes, cache_dir

DATASETS: tuple[str, ...] = tuple(f"{corpus}-{split}" for corpus, split in AVAILABLE)
"""Every data set spec ``parse_dataset`` accepts, e.g. "ptb-test"."""

# Bump when the tokenization or the cache format changes, so old caches are never read as new ones.
_CACHE_VERSION = "whole-text-v1"
_PROBES = ("Hello world!", " the quick brown fox\n\n N <unk> 1234567", "Ünïcödé — naïve café 東京")


def parse_dataset(spec: str) -> tuple[str, str]:
    """Split a spec such as "ptb-test" into ("ptb", "test"), rejecting anything not served."""
    corpus, _, split = spec.rpartition("-")
    if (corpus, split) not in AVAILABLE:
        raise DataError(f"unknown data set {spec!r}; available: {', '.join(DATASETS)}")
    return corpus, split


def token_ids(tokenizer: Any, spec: str) -> torch.LongTensor:
    """All token ids of a split (no BOS, no special tokens), tokenized once and cached per tokenizer.

    The whole text goes through the tokenizer in one call (``verbose=False``: no too-long warning). Chunking
    by lines would be faster but is not exact: GPT-2-style pre-tokenizers split "\\n\\nThe" into "\\n",
    "\\n", "The" in running text but give "\\n\\n" at a chunk's end, and SentencePiece tokenizers add a
    prefix space per chunk. One call costs ~5 s for PTB train (1.1M tokens) with SmolLM2's tokenizer, once.
    The cache key covers the text itself, the tokenizer's identity and ``_CACHE_VERSION``.
    """
    corpus, split = parse_dataset(spec)
    text = load_text(corpus, split)
    text_hash = hashlib.sha256(text.encode()).hexdigest()
    key_parts = (_CACHE_VERSION, text_hash, tokenizer_fingerprint(tokenizer))
    key = hashlib.sha256("\0".join(key_parts).encode()).hexdigest()[:20]
    path = cache_dir("tokens") / f"{corpus}-{split}-{key}.npy"
    if path.is_file():
        return torch.from_numpy(np.load(path).astype(np.int64))
    ids = _tokenize(tokenizer, text)
    buffer = io.BytesIO()
    np.save(buffer, ids.numpy().astype(np.int32))
    atomic_write_bytes(path, buffer.getvalue())
    return ids


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A hash that changes whenever the tokenizer would give other ids: class, size, full definition."""
    parts = [type(tokenizer).__name__, str(len(tokenizer))]
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        parts.append(backend.to_str())
    parts.extend(str(tokenizer(probe, add_special_tokens=False)["input_ids"]) for probe in _PROBES)
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def _tokenize(tokenizer: Any, text: str) -> torch.LongTensor:
    encoded = tokenizer(text, add_special_tokens=False, return_attention_mask=False, verbose=False)
    return torch.tensor(encoded["input_ids"], dtype=torch.long)


def eval_windows(ids: torch.Tensor, window: int, max_tokens: int | None = None) -> torch.LongTensor:
    """Non-overlapping ``window``-token rows from the start of ``ids``: the standard perplexity protocol.

    ``max_tokens`` keeps only the first tokens (whole windows, at least one) for cheap search-time fidelity;
    the tail shorter than a window is dropped.
    """
    if window <= 0:
        raise DataError(f"window must be positive, got {window}")
    count = ids.numel() // window
    if count == 0:
        raise DataError(f"the data has {ids.numel()} tokens, fewer than one window of {window}")
    if max_tokens is not None:
        if max_tokens <= 0:
            raise DataError(f"max_tokens must be positive, got {max_tokens}")
        count = min(count, max(1, max_tokens // window))
    return ids[: count * window].reshape(count, window).long()


def spread_windows(ids: torch.Tensor, window: int, max_tokens: int,
                   taken: int | Sequence[int] = 0) -> torch.LongTensor:
    """``max_tokens // window`` windows (at least one) evenly spaced over all of ``ids``'s non-overlapping windows,
    leaving out those earlier spread reads of ``taken`` tokens take (one read, or several in the order taken).

    A few thousand tokens from the start of a split are one or two documents (the first 2,048 tokens of the wiki
    split are ~12 paragraphs of one article), so a search ranked on them learns what those documents favour; the same
    tokens spread over the split sample its documents. ``taken`` makes a read disjoint from the ones before it.
    Asking for more windows than are left keeps them all, as ``eval_windows`` keeps all a split has.
    """
    rows = eval_windows(ids, window)
    if max_tokens <= 0:
        raise DataError(f"max_tokens must be positive, got {max_tokens}")
    before = _reads(taken)
    counts = tuple(max(1, tokens // window) for tokens in before)
    if sum(counts) >= len(rows):
        raise DataError(f"the data has no {window}-token window left past the {sum(before)} tokens taken")
    return rows[torch.from_numpy(spread_indices(len(rows), max(1, max_tokens // window), counts))]


def spread_indices(total: int, count: int, taken: int | Sequence[int] = 0) -> np.ndarray:
    """Which of ``total`` windows a spread read of ``count`` takes (all that are left, if fewer), leaving out the
    windows earlier spread reads of ``taken`` windows took, each itself past the ones before it: ``spread_windows``
    in window numbers."""
    free = np.arange(total)
    before = _reads(taken)
    for i, earlier in enumerate(before):
        free = np.setdiff1d(free, spread_indices(total, earlier, before[:i]))
    return free[_spaced(len(free), min(len(free), count))]


def _reads(taken: int | Sequence[int]) -> tuple[int, ...]:
    """Earlier reads' sizes as a tuple: one number is one read, zero none."""
    reads = (taken,) if isinstance(taken, (int, np.integer)) else tuple(taken)
    if any(t < 0 for t in reads):
        raise DataError(f"a read cannot follow one of negative size, got {taken}")
    return tuple(int(t) for t in reads if t > 0)


def _spaced(n: int, k: int) -> np.ndarray:
    """``k`` of ``range(n)`` evenly spaced: the middles of ``k`` equal strata."""
    return (2 * np.arange(k) + 1) * n // (2 * k)


def calibration_windows(ids: torch.Tensor, count: int, length: int, seed: int) -> torch.LongTensor:
    """``count`` windows of ``length`` tokens at seeded random offsets (reproducible calibration sets)."""
    if count <= 0 or length <= 0:
        raise DataError(f"calibration count and length must be positive, got {count} x {length}")
    if ids.numel() < length:
        raise DataError(f"the data has {ids.numel()} tokens, fewer than one window of {length}")
    generator = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, ids.numel() - length + 1, (count,), generator=generator)
    return ids[starts[:, None] + torch.arange(length)].long()
