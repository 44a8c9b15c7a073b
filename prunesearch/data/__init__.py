"""Offline corpora (PTB, Wikipedia prose) and the token windows used for perplexity and calibration."""

from prunesearch.data.corpora import AVAILABLE, load_text, wiki_paragraphs
from prunesearch.data.windows import (
    DATASETS,
    calibration_windows,
    eval_windows,
    parse_dataset,
    spread_indices,
    spread_windows,
    token_ids,
    tokenizer_fingerprint,
)

__all__ = [
    "AVAILABLE",
    "DATASETS",
    "calibration_windows",
    "eval_windows",
    "load_text",
    "parse_dataset",
    "spread_indices",
    "spread_windows",
    "token_ids",
    "tokenizer_fingerprint",
    "wiki_paragraphs",
]
