"""Side-by-side speed of a pruned model and its dense parent, of a prompt's forward and of generated tokens."""

from __future__ import annotations

import pytest
import torch

from conftest import tiny_model
from test_materialize import random_scores
from prunesearch.errors import PrunesearchError
from prunesearch.evaluate.speed import DecodeTimer, compare_speed
from prunesearch.pruners import materialize, select_units
from prunesearch.space import Architecture, ModelShape, Workload


def thinned(dense) -> torch.nn.Module:
    """The tiny model with block 2 removed, block 1's attention removed and block 3's MLP halved: every kind of
    layer a KV cache must skip or keep."""
    shape = ModelShape.from_config(dense.config)
    counts = Architecture.dense(shape).as_array()
    counts[2] = 0
    counts[1, 1:5] = 0
    counts[3, 5] //= 2
    return materialize(dense, select_units(Architecture.from_array(shape, counts), random_scores(shape, 0)))


@pytest.mark.parametrize("kind,overrides", [("llama", {}), ("qwen2", {}), ("mistral", {"sliding_window": 12})])
@pytest.mark.parametrize("which", ["dense", "pruned"])
def test_the_decode_timer_decodes_what_full_forwards_pick(which, kind, overrides):
    """Its cached steps are true greedy decoding (past a sliding window too): each token is the one a forward over
    the whole sequence, with no cache, picks."""
    dense = tiny_model(kind, **overrides)
    model = dense if which == "dense" else thinned(dense)
    sequence = torch.randint(0, dense.config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        timer = DecodeTimer(model, sequence, steps=5)
        for _ in range(6):
            token = model(input_ids=sequence, use_cache=False).logits[:, -1:].argmax(-1)
            sequence = torch.cat([sequence, token], dim=1)
        expected = sequence[:, 13:]
        assert torch.equal(timer.decode(), expected)
        assert torch.equal(timer.decode(), expected), "each timing starts from the prompt's cache, unchanged"
        assert timer() > 0


@pytest.mark.parametrize("mode", ["prefill", "decode"])
def test_compare_speed_times_both_models_in_either_mode(mode):
    dense = tiny_model("llama")
    speed = compare_speed(dense, thinned(dense), Workload(mode, batch=2, context=16), repeats=2)
    assert speed.workload == Workload(mode, 2, 16) and speed.tokens_per_s > 0 and speed.dense_tokens_per_s > 0


@pytest.mark.parametrize("args, message", [
    (("sideways",), "speed mode must be one of prefill, decode, got 'sideways'"),
    (("decode", 0), "speed batch must be a whole number of sequences >= 1, got 0"),
    (("decode", 1, 0), "speed context must be a whole number of tokens >= 1, got 0"),
    (("prefill", 1.5), "speed batch must be a whole number"),
])
def test_a_malformed_workload_is_refused(args, message):
    with pytest.raises(PrunesearchError, match=message):
        Workload(*args)


def test_a_workload_describes_itself_by_what_differs_from_the_default():
    assert Workload().describe() == "prefill" and Workload("decode").describe() == "decode"
    assert Workload("decode", 8, 2048).describe() == "decode (batch 8, 2,048-token context)"
