"""The latency model: timed on this device, fitted, cached, and read by the search as a speed floor."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest
from transformers import LlamaConfig

from prunesearch.errors import PrunesearchError
from prunesearch.evaluate import latency as latency_module
from prunesearch.evaluate.latency import latency_model, with_latency
from prunesearch.space import Architecture, Limits, ModelShape, Workload, space_for
from prunesearch.space.latency import FLOOR, LatencyModel


SMALL_LLAMA = LlamaConfig(vocab_size=512, hidden_size=256, intermediate_size=1024, num_hidden_layers=4,
                          num_attention_heads=8, num_key_value_heads=4, head_dim=32)
"""Small, but large enough that its matrix products, not Python overhead, set its speed (the 48-wide test checkpoint
runs its pruned models slower than dense, on extra gathers): a latency model needs only a config."""


def test_a_latency_model_is_fitted_to_timed_forwards_and_cached(tmp_path, monkeypatch):
    config = SMALL_LLAMA
    space = space_for(ModelShape.from_config(config))
    model = latency_model(config, space, Workload(context=128), samples=8, repeats=2, progress=False)
    assert model.fit["timed"] == 9 and model.shape == space.shape and model.device.startswith("cpu: ")
    assert model.fixed >= 0 and min(model.coef) >= 0
    dense = Architecture.dense(space.shape)
    measured = np.array(model.fit["measured_speedups"])
    assert 0.5 < measured[0] < 2, "the dense architecture in the pruned class runs near its parent's speed"
    assert model.speedup_of(dense) == pytest.approx(measured[0], rel=0.25)
    assert measured[-3:].max() > 1.2 * np.median(measured[:3]), "the most pruned samples run measurably faster"
    assert model.speedup_of(space.sample_at_budget(0.4, 0)) > 1.0

    floor = with_latency(Limits(speedup=1.1), config, space, progress=False)
    assert floor.latency is not None and floor.latency.seq_len == 512, "a search's floor is timed at the defaults"

    model.save(tmp_path / "latency.json")
    assert LatencyModel.load(tmp_path / "latency.json") == model

    def untimed(*args, **kwargs):
        raise AssertionError("a cached latency model is not timed again")

    monkeypatch.setattr(latency_module, "measure_latency", untimed)
    assert latency_model(config, space, Workload(context=128), samples=8, repeats=2, progress=False) == model

    assert with_latency(Limits(kv=0.5), config, space).latency is None, "no speed floor, nothing to time"

    other = ModelShape(**{**space.shape.to_dict(), "num_layers": 3})
    with pytest.raises(PrunesearchError, match="another shape"):
        model.speedup_of(Architecture.dense(other))
    with pytest.raises(PrunesearchError, match="not a latency model"):
        LatencyModel.from_dict({**model.to_dict(), "terms": ["flops"]})
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(PrunesearchError, match="cannot read latency model"):
        LatencyModel.load(tmp_path / "bad.json")


def test_speedups_are_over_the_dense_parent_in_its_own_class(monkeypatch):
    """Every timing divides by the parent's: a parent that sleeps 100 ms a step makes every model read far faster,
    the dense architecture in the pruned class too (by 2x or more as long as a step of this small model takes under
    100 ms, which holds on a CPU that another job keeps busy; 30 ms did not)."""
    parent = latency_module._random_parent(SMALL_LLAMA)
    assert type(parent).__name__ == "LlamaForCausalLM"
    forward = parent.forward

    def sleepy(*args, **kwargs):
        time.sleep(0.1)
        return forward(*args, **kwargs)

    monkeypatch.setattr(parent, "forward", sleepy)
    monkeypatch.setattr(latency_module, "_random_parent", lambda config, device, dtype: parent)
    space = space_for(ModelShape.from_config(SMALL_LLAMA))
    model = latency_module.measure_latency(SMALL_LLAMA, space, Workload(context=16), samples=8, repeats=1,
                                           progress=False)
    assert model.parent >= 0.1 and min(model.fit["measured_speedups"]) > 2
    assert model.speedup_of(Architecture.dense(space.shape)) > 2


def test_a_decode_latency_model_times_generated_tokens_and_serves_only_a_floor_on_its_workload(tmp_path):
    space = space_for(ModelShape.from_config(SMALL_LLAMA))
    serving = Workload("decode", batch=2, context=64)
    decode = latency_model(SMALL_LLAMA, space, serving, samples=8, repeats=2, progress=False)
    assert decode.workload == serving and decode.fit["timed"] == 9 and decode.parent > 0
    # No claim on speed here: this model's decode steps take a millisecond, and on a busy CPU their ratios are
    # noise. The decode model's accuracy is measured on SmolLM2 (bench/latency.py --mode decode).
    decode.save(tmp_path / "decode.json")
    assert LatencyModel.load(tmp_path / "decode.json").workload == serving

    pruned = space.sample_at_budget(0.4, 0)
    floor = Limits(speedup=1.05, speed=serving, latency=decode)
    assert floor.predicted_speedup(pruned) == decode.speedup_of(pruned)
    assert "decode (batch 2, 64-token context) speed ≥ 1.05× dense" in floor.describe()
    assert floor.to_dict() | serving.to_dict() == floor.to_dict() and floor.to_dict()["speed_batch"] == 2
    for other in (Workload(), Workload("decode"), Workload("decode", 2, 128)):
        message = f"floor is on {other.describe()} but the latency model times {serving.describe()}"
        with pytest.raises(PrunesearchError, match=re.escape(message)):
            Limits(speedup=1.05, speed=other, latency=decode).predicted_speedup(pruned)
    with pytest.raises(PrunesearchError, match="speed mode must be one of prefill, decode"):
        LatencyModel(decode.shape, 64, 1, "cpu", 0.0, decode.coef, 0.1, "sideways")
    with pytest.raises(PrunesearchError, match="the dense parent's time > 0"):
        LatencyModel(decode.shape, 64, 1, "cpu", 0.0, decode.coef, 0.0)


def test_a_fit_with_no_fixed_time_still_reads_a_finite_speedup_when_nothing_is_kept():
    """Non-negative least squares may give the fixed time 0; an architecture with every block removed then costs
    nothing by the linear terms, and must still read a finite speedup, not infinity."""
    shape = ModelShape.from_config(SMALL_LLAMA)
    model = LatencyModel(shape, 128, 1, "cpu", 0.0, (0.01, 0.0, 0.0, 0.01, 0.0), 0.1)
    empty = np.zeros((1, shape.num_layers, 6), dtype=np.int64)
    dense = Architecture.dense(shape).as_array()[None]
    with np.errstate(all="raise"):
        speedups = model.speedup(np.concatenate([empty, dense]))
    assert speedups[0] == pytest.approx(1 / FLOOR) and speedups[1] == pytest.approx(0.1 / (0.02 * shape.num_layers))


def test_a_bf16_latency_model_times_bf16_models_and_is_cached_apart(monkeypatch):
    import torch

    timed: list[torch.dtype] = []
    monkeypatch.setattr(latency_module, "step_timer",
                        lambda model, batch, mode: (timed.append(model.dtype), lambda: 1e-3)[1])
    space = space_for(ModelShape.from_config(SMALL_LLAMA))
    half = latency_model(SMALL_LLAMA, space, Workload(context=16), samples=8, repeats=1, progress=False,
                         dtype=torch.bfloat16)
    assert timed and set(timed) == {torch.bfloat16}, "the parent and every sample run in the precision asked for"
    timed.clear()
    latency_model(SMALL_LLAMA, space, Workload(context=16), samples=8, repeats=1, progress=False)
    assert set(timed) == {torch.float32}, "an fp32 model is timed again, not read from the bf16 one's cache"
    assert half.parent == pytest.approx(1e-3)
