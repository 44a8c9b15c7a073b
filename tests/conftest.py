"""Shared fixtures: tiny random LLaMA-family checkpoints (mechanics only; correctness claims use the real model)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

import prunesearch.models  # noqa: F401  (registers the pruned model with the Auto classes)
from prunesearch.pruners.calibration import CalibrationSpec

TINY = dict(
    hidden_size=48, intermediate_size=80, num_hidden_layers=4, num_attention_heads=6, num_key_value_heads=2,
    head_dim=16, max_position_embeddings=1024,
)


def word_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer over a small PTB-like vocabulary (unknown words map to [UNK])."""
    words = "the of to a in and 's that for is N <unk> $ it said on by at as from with".split()
    vocab = {"[UNK]": 0, "[EOS]": 1, **{w: i + 2 for i, w in enumerate(words)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", eos_token="[EOS]")


def tiny_model(kind: str = "llama", seed: int = 0, **overrides):
    torch.manual_seed(seed)
    config_cls, model_cls = {
        "llama": (LlamaConfig, LlamaForCausalLM),
        "qwen2": (Qwen2Config, Qwen2ForCausalLM),
        "mistral": (MistralConfig, MistralForCausalLM),
    }[kind]
    config = config_cls(vocab_size=len(word_tokenizer()), **{**TINY, **overrides})
    model = model_cls(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.2) if p.dim() > 1 else p.uniform_(0.5, 1.5)
    return model


WINDOWS = torch.randint(0, 23, (6, 32), generator=torch.Generator().manual_seed(0))
"""Calibration windows over the tiny vocabulary, for scoring tests that need no data set."""

SMALL = CalibrationSpec(count=4, length=32, boundary_tokens=64, boundary_rank=8, lipschitz_tokens=8)
"""A calibration spec small enough for the tiny checkpoint's tests."""


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """One intra-op thread, as the CLI tests give their subprocesses: the tiny models gain nothing from more, and
    a timing test with two threads on a CPU another job keeps busy measures OpenMP's waiting, not the model."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Caches go to a per-session temporary folder, never the user's (session-wide, so that module fixtures which
    run a campaign are covered too)."""
    patch = pytest.MonkeyPatch()
    patch.setenv("PRUNESEARCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    yield
    patch.undo()


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    """A saved tiny GQA LLaMA checkpoint with a tokenizer, loadable by ``--model PATH``."""
    path = tmp_path_factory.mktemp("tiny-llama")
    tiny_model("llama").save_pretrained(path)
    word_tokenizer().save_pretrained(path)
    return path
