"""The materializer: physically smaller models that match the masked dense model, save, load and generate."""

from __future__ import annotations

import inspect
import json
import logging

import pytest
import torch
from transformers import AutoModelForCausalLM

from conftest import tiny_model
from prunesearch.errors import ArchitectureError, UnsupportedModelError
from prunesearch.models import check_supported, load_model
from prunesearch.models.modeling_pruned_llama import CACHE_FIELD
from prunesearch.pruners import UnitScores, mask_model, materialize, select_units
from prunesearch.space import Architecture, ModelShape, SearchSpace, cost, param_count


def random_scores(shape: ModelShape, seed: int) -> UnitScores:
    g = torch.Generator().manual_seed(seed)
    L, KV, D = shape.num_layers, shape.num_kv_heads, shape.head_dim
    return UnitScores(
        mlp=torch.rand(L, shape.intermediate_size, generator=g),
        heads=torch.rand(L, shape.num_heads, generator=g),
        v_dims=torch.rand(L, KV, D, generator=g),
        qk_pairs=torch.rand(L, KV, D // 2, generator=g),
    )


def random_arch(shape: ModelShape, seed: int, budget: float | None = None) -> Architecture:
    space = SearchSpace(shape, mlp_step=8, dim_step=2)
    arch = space.sample(seed) if budget is None else space.sample_at_budget(budget, seed)
    return select_units(arch, random_scores(shape, seed))


KINDS = [
    ("llama", {}),
    ("llama", {"attention_bias": True, "mlp_bias": True, "tie_word_embeddings": False}),
    ("qwen2", {}),
    ("mistral", {"sliding_window": 12}),
    ("llama", {"num_key_value_heads": 6}),  # multi-head attention, no grouping
]


@pytest.mark.parametrize("kind,overrides", KINDS)
def test_materialized_matches_masked_and_cost_model(kind, overrides):
    dense = tiny_model(kind, **overrides)
    shape = ModelShape.from_config(dense.config)
    x = torch.randint(0, dense.config.vocab_size, (2, 24), generator=torch.Generator().manual_seed(1))
    for seed in range(12):
        arch = random_arch(shape, seed, budget=None if seed % 2 else 0.3)
        pruned = materialize(dense, arch)
        assert sum(p.numel() for p in pruned.parameters()) == param_count(arch)
        with torch.no_grad():
            got = pruned(x).logits
            want = mask_model(dense, arch)(x).logits
        torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-4)


def test_dense_architecture_reproduces_the_dense_model():
    dense = tiny_model("llama")
    shape = ModelShape.from_config(dense.config)
    arch = select_units(Architecture.dense(shape), random_scores(shape, 0))
    x = torch.randint(0, dense.config.vocab_size, (1, 16))
    with torch.no_grad():
        torch.testing.assert_close(materialize(dense, arch)(x).logits, dense(x).logits, atol=2e-5, rtol=1e-4)


def test_pruning_makes_the_model_smaller_and_cheaper():
    dense = tiny_model("llama")
    shape = ModelShape.from_config(dense.config)
    arch = random_arch(shape, 3, budget=0.4)
    c = cost(arch)
    assert c.params < c.dense_params and c.flops < c.dense_flops
    pruned = materialize(dense, arch)
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in dense.parameters())


def test_save_load_gives_identical_logits_and_generates(tmp_path):
    dense = tiny_model("llama")
    shape = ModelShape.from_config(dense.config)
    arch = random_arch(shape, 5, budget=0.3)
    pruned = materialize(dense, arch)
    pruned.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "prunesearch_llama"
    assert "AutoModelForCausalLM" in config["auto_map"]
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert type(loaded).__name__ == "PrunedLlamaForCausalLM"
    x = torch.randint(0, dense.config.vocab_size, (2, 20))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).logits, pruned(x).logits, atol=0, rtol=0)
    out = loaded.generate(x[:1, :5], max_new_tokens=8, do_sample=False)
    assert out.shape == (1, 13)


def test_generation_with_cache_matches_full_forward():
    """Greedy decoding with the KV cache must pick the tokens a full forward over the prefix would pick."""
    dense = tiny_model("llama")
    shape = ModelShape.from_config(dense.config)
    for seed in range(4):
        pruned = materialize(dense, random_arch(shape, seed, budget=0.3))
        prompt = torch.randint(0, dense.config.vocab_size, (1, 6), generator=torch.Generator().manual_seed(seed))
        out = pruned.generate(prompt, max_new_tokens=6, do_sample=False)
        with torch.no_grad():
            for t in range(prompt.shape[1], out.shape[1]):
                expected = pruned(out[:, :t], use_cache=False).logits[0, -1].argmax()
                assert out[0, t] == expected


def test_cached_forward_names_its_cache_as_this_transformers_does(monkeypatch):
    """Outputs carry the cache under this version's own field name: transformers 5.24 renamed ``past_key_values``
    to ``cache`` and warns on every process that still uses the old one."""
    warned = []
    monkeypatch.setattr(logging.Logger, "warning_once", lambda self, *args, **kwargs: warned.append(args))
    dense = tiny_model("llama")
    pruned = materialize(dense, random_arch(ModelShape.from_config(dense.config), 3, budget=0.2))
    with torch.no_grad():
        out = pruned(torch.tensor([[1, 2, 3]]), use_cache=True)
    assert getattr(out, CACHE_FIELD).get_seq_length() == 3
    assert pruned.generate(torch.tensor([[1, 2, 3]]), max_new_tokens=3, do_sample=False).shape == (1, 6)
    assert not [args for args in warned if "deprecated" in str(args)]
    assert CACHE_FIELD == ("cache" if "cache" in inspect.signature(dense.forward).parameters else "past_key_values")


def test_batched_generation_with_left_padding():
    dense = tiny_model("llama")
    pruned = materialize(dense, random_arch(ModelShape.from_config(dense.config), 7, budget=0.2))
    ids = torch.randint(2, dense.config.vocab_size, (2, 6))
    mask = torch.ones_like(ids)
    mask[1, :2] = 0
    out = pruned.generate(ids, attention_mask=mask, max_new_tokens=4, do_sample=False, pad_token_id=0)
    alone = pruned.generate(ids[1:, 2:], max_new_tokens=4, do_sample=False, pad_token_id=0)
    assert torch.equal(out[1, -4:], alone[0, -4:])


def test_materialize_refuses_counts_only_or_foreign_architectures():
    dense = tiny_model("llama")
    shape = ModelShape.from_config(dense.config)
    with pytest.raises(ArchitectureError, match="unit indices"):
        materialize(dense, SearchSpace(shape).sample(0))
    other = tiny_model("llama", num_hidden_layers=3)
    with pytest.raises(ArchitectureError, match="another shape"):
        materialize(other, random_arch(shape, 0))


def test_unsupported_models_are_refused_by_name(tmp_path):
    from transformers import GPT2Config, Qwen2Config

    with pytest.raises(UnsupportedModelError, match="gpt2"):
        check_supported(GPT2Config())
    with pytest.raises(UnsupportedModelError, match="sliding"):
        check_supported(Qwen2Config(use_sliding_window=True))
    GPT2Config(n_layer=1, n_embd=8, n_head=2).save_pretrained(tmp_path)
    with pytest.raises(UnsupportedModelError, match="'gpt2' is not supported"):
        load_model(str(tmp_path))
    with pytest.raises(UnsupportedModelError, match="neither a built-in model"):
        load_model(str(tmp_path / "missing"))


def test_load_model_by_path_fingerprints_weights(tiny_dir):
    first = load_model(str(tiny_dir))
    second = load_model(str(tiny_dir))
    assert first.fingerprint == second.fingerprint
    with torch.no_grad():
        first.model.model.norm.weight[0] += 1
    from prunesearch.models import fingerprint

    assert fingerprint(first.model) != second.fingerprint
