"""TransAct scores and its iterative baseline on a tiny random GQA LLaMA (mechanics only)."""

from __future__ import annotations

import pytest
import torch

from conftest import SMALL, WINDOWS, tiny_model
from prunesearch.errors import BudgetError
from prunesearch.models import load_model
from prunesearch.pruners import collect, materialize
from prunesearch.pruners.transact import transact_baseline, transact_scores, transact_units
from prunesearch.space import Architecture, ModelShape, SearchSpace, cost, param_count



def planted():
    """A tiny model whose MLP channel 5 of layer 1 and value dim 3 of group 1 in layer 2 compute zero."""
    model = tiny_model("llama")
    D = model.config.head_dim
    with torch.no_grad():
        mlp = model.model.layers[1].mlp
        mlp.gate_proj.weight[5] = 0
        mlp.up_proj.weight[5] = 0
        mlp.down_proj.weight[:, 5] = 0
        model.model.layers[2].self_attn.v_proj.weight[1 * D + 3] = 0
    return model


def stats_of(model):
    return collect(model, WINDOWS, batch_size=4, progress=False, boundary_tokens=64, boundary_rank=8,
                   lipschitz_tokens=8)


def test_scores_have_unit_shapes_are_deterministic_and_rank_planted_units_last():
    model = planted()
    s = ModelShape.from_config(model.config)
    stats = stats_of(model)
    scores = transact_scores(stats, s)
    assert scores.mlp.shape == (s.num_layers, s.intermediate_size)
    assert scores.heads.shape == (s.num_layers, s.num_heads)
    assert scores.v_dims.shape == (s.num_layers, s.num_kv_heads, s.head_dim)
    assert scores.qk_pairs.shape == (s.num_layers, s.num_kv_heads, s.head_dim // 2)
    again = transact_scores(stats_of(planted()), s)
    for name in ("mlp", "heads", "v_dims", "qk_pairs"):
        assert torch.equal(getattr(scores, name), getattr(again, name))
    assert int(scores.mlp[1].argmin()) == 5
    assert int(scores.v_dims[2, 1].argmin()) == 3
    assert torch.isfinite(scores.heads).all() and (scores.qk_pairs >= 0).all()


def test_head_score_is_mean_plus_ten_over_head_dim_times_max():
    model = tiny_model("llama")
    s = ModelShape.from_config(model.config)
    stats = stats_of(model)
    norms = stats.attn_sq.sqrt().view(s.num_layers, s.num_heads, s.head_dim)
    want = norms.mean(-1) + 10 / s.head_dim * norms.amax(-1)
    torch.testing.assert_close(transact_scores(stats, s).heads, want)


@pytest.fixture(scope="module")
def tiny_loaded(tiny_dir):
    return load_model(str(tiny_dir))


@pytest.mark.parametrize("budget", [0.1, 0.2, 0.3])
def test_baseline_lands_on_the_budget_and_materializes(tiny_loaded, budget):
    shape = ModelShape.from_config(tiny_loaded.model.config)
    arch = transact_baseline(tiny_loaded, budget, SearchSpace(shape), SMALL, steps=2, progress=False)
    assert abs(cost(arch).removed - budget) <= 0.01
    assert arch.has_indices
    assert arch.meta["method"] == "transact" and arch.meta["budget"] == budget and arch.meta["steps"] == 2
    assert all(layer.keep for layer in arch.layers)
    assert len({layer.mlp for layer in arch.layers}) == 1  # one ratio for every layer
    assert all(layer.qk_dim == layer.v_dim for layer in arch.layers)  # TransAct's shared head dim
    assert sum(p.numel() for p in materialize(tiny_loaded.model, arch).parameters()) == param_count(arch)
    assert Architecture.from_json(arch.to_json(), shape) == arch


def test_baseline_keeps_query_key_dims_when_the_space_does_not_prune_them(tiny_loaded):
    shape = ModelShape.from_config(tiny_loaded.model.config)
    arch = transact_baseline(tiny_loaded, 0.2, SearchSpace(shape, prune_qk=False), SMALL, steps=2, progress=False)
    assert abs(cost(arch).removed - 0.2) <= 0.01
    assert all(layer.qk_dim == shape.head_dim for layer in arch.layers)


@pytest.mark.parametrize("budget", [-0.1, 0.999, 1.0])
def test_impossible_budgets_are_refused(tiny_loaded, budget):
    shape = ModelShape.from_config(tiny_loaded.model.config)
    with pytest.raises(BudgetError):
        transact_baseline(tiny_loaded, budget, SearchSpace(shape), SMALL, steps=1, progress=False)


def test_iterative_units_keep_the_given_widths_and_a_removed_block(tiny_loaded):
    shape = ModelShape.from_config(tiny_loaded.model.config)
    widths = SearchSpace(shape).sample_at_budget(0.3, seed=3).counts()
    layers = list(widths.layers)
    layers[2] = type(layers[2])(keep=False)
    target = Architecture(shape, tuple(layers))
    arch = transact_units(tiny_loaded, target, SMALL, steps=3, progress=False)
    assert arch.has_indices and arch.counts() == target.counts()
    assert arch == transact_units(tiny_loaded, target, SMALL, steps=3, progress=False)
    assert sum(p.numel() for p in materialize(tiny_loaded.model, arch).parameters()) == param_count(arch)
    one_pass = transact_units(tiny_loaded, target, SMALL, steps=1, progress=False)
    assert one_pass.counts() == target.counts()
