"""Sensitivity probes and the greedy allocator on a tiny random GQA LLaMA (mechanics only)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import WINDOWS, tiny_model, word_tokenizer
from prunesearch.errors import PrunesearchError
from prunesearch.pruners import greedy as greedy_module
from prunesearch.pruners import collect
from prunesearch.pruners.greedy import greedy, greedy_allocation, mlp_step_params, remeasured_greedy
from prunesearch.pruners.masking import mask_model
from prunesearch.pruners.scores import activation_scores
from prunesearch.pruners.selection import select_units
from prunesearch.pruners.sensitivity import SensitivitySpec, probe
from prunesearch.space import Architecture, ModelShape, SearchSpace, cost

SPEC = SensitivitySpec(count=6, length=32, mlp_levels=(0.5, 0.0), batch_size=3)


@pytest.fixture(scope="module")
def setting():
    model = tiny_model("llama")
    shape = ModelShape.from_config(model.config)
    stats = collect(model, WINDOWS, batch_size=4, progress=False, boundary_tokens=64, boundary_rank=8,
                    lipschitz_tokens=8)
    return model, shape, activation_scores(model, stats)


@torch.no_grad()
def nll(model, arch: Architecture, scores) -> float:
    """Mean next-token loss over the calibration windows of the model with ``arch``'s units zeroed."""
    logits = mask_model(model, select_units(arch, scores))(WINDOWS).logits[:, :-1]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), WINDOWS[:, 1:].reshape(-1)).item()


def with_layer(arch: Architecture, i: int, **change) -> Architecture:
    layer = replace(arch.layers[i], **change) if change else replace(arch.layers[i], keep=False)
    return Architecture(arch.shape, arch.layers[:i] + (layer,) + arch.layers[i + 1:])


def test_probes_from_a_pruned_base_measure_the_cut_given_the_others(setting):
    """Every table entry equals the loss rise of that one further cut on the masked model, measured directly."""
    model, shape, scores = setting
    dense = Architecture.dense(shape)
    base = with_layer(with_layer(dense, 1), 2, mlp=40)
    sens = probe(model, scores, WINDOWS, SPEC, progress=False, base=base)
    start = nll(model, base, scores)
    assert sens.base == pytest.approx(start, abs=1e-4)
    assert sens.block[2] == pytest.approx(nll(model, with_layer(base, 2), scores) - start, abs=1e-4)
    assert sens.mlp[2, 0] == pytest.approx(nll(model, with_layer(base, 2, mlp=0), scores) - start, abs=1e-4)
    assert sens.mlp[3, 40] == pytest.approx(nll(model, with_layer(base, 3, mlp=40), scores) - start, abs=1e-4)
    assert sens.attn[0, 1] == pytest.approx(nll(model, with_layer(base, 0, kv_heads=1), scores) - start, abs=1e-4)
    assert sens.block[1] == 0 and not sens.mlp[1].any(), "a removed block has nothing left to probe"
    assert (sens.mlp[2, 40:] == 0).all(), "widths at or above the base's own cost nothing"
    assert probe(model, scores, WINDOWS, SPEC, progress=False).block[1] != 0, "from dense, block 1 is probed"


@torch.no_grad()
def kl(model, base: Architecture, arch: Architecture, scores) -> float:
    """Mean KL of the next-token distribution of ``arch``'s masked model from ``base``'s, over the windows."""
    ref, cut = (F.log_softmax(mask_model(model, select_units(a, scores))(WINDOWS).logits[:, :-1], -1)
                for a in (base, arch))
    return (ref.exp() * (ref - cut)).sum(-1).mean().item()


def test_kl_probes_measure_the_divergence_of_each_cut_and_refuse_an_unknown_measure(setting):
    model, shape, scores = setting
    base = with_layer(Architecture.dense(shape), 2, mlp=40)
    sens = probe(model, scores, WINDOWS, replace(SPEC, measure="kl"), progress=False, base=base)
    assert sens.block[1] == pytest.approx(kl(model, base, with_layer(base, 1), scores), abs=1e-5)
    assert sens.mlp[2, 0] == pytest.approx(kl(model, base, with_layer(base, 2, mlp=0), scores), abs=1e-5)
    assert sens.attn[3, 1] == pytest.approx(kl(model, base, with_layer(base, 3, kv_heads=1), scores), abs=1e-5)
    assert (sens.block[1:3] > 0).all() and (sens.mlp[2, 40:] == 0).all()
    assert SPEC.key("fp") != replace(SPEC, measure="kl").key("fp")
    with pytest.raises(PrunesearchError, match="measure"):
        SensitivitySpec(measure="mse")


def test_head_dim_probes_measure_every_head_thinned_and_keep_old_cache_keys(setting):
    """With ``dim_levels`` each layer is also cut to thinner q/k and v dims in every head (groups kept); entries equal
    the directly measured loss rise, no dims means no attention, and a spec without levels keeps its old key."""
    model, shape, scores = setting
    base = with_layer(Architecture.dense(shape), 2, mlp=40, qk_dim=12, v_dim=12)
    spec = replace(SPEC, dim_levels=(0.5,))
    sens = probe(model, scores, WINDOWS, spec, progress=False, base=base)
    start = nll(model, base, scores)
    assert sens.dims.shape == (shape.num_layers, shape.head_dim + 1)
    thinned = nll(model, with_layer(base, 1, qk_dim=8, v_dim=8), scores)
    assert sens.dims[1, 8] == pytest.approx(thinned - start, abs=1e-4)
    thinned = nll(model, with_layer(base, 2, qk_dim=8, v_dim=8), scores)
    assert sens.dims[2, 8] == pytest.approx(thinned - start, abs=1e-4)
    assert (sens.dims[2, 12:] == 0).all(), "dims at or above the base's own cost nothing"
    assert np.allclose(sens.dims[:, 0], sens.attn[:, 0]), "no dims is no attention"
    assert probe(model, scores, WINDOWS, SPEC, progress=False).dims is None
    assert type(sens).from_dict(sens.to_dict()).dims.tolist() == sens.dims.tolist()
    assert SPEC.key("fp") == "c0bfaea86d914060" != spec.key("fp"), "probes cached before dim_levels keep their key"


def test_greedy_thins_head_dims_where_the_probes_say_they_are_cheapest(setting):
    """Tables that rate thinning dims far cheapest lead the greedy there (and only further from its start); without
    a dims table, or in a space without q/k dims, it never thins them."""
    model, shape, scores = setting
    space = SearchSpace(shape, mlp_step=8, protected=(0, shape.num_layers - 1))
    sens = probe(model, scores, WINDOWS, replace(SPEC, dim_levels=(0.5, 0.25)), progress=False)
    free = replace(sens, dims=np.where(np.arange(shape.head_dim + 1) < shape.head_dim, -1.0, 0.0) + 0 * sens.dims)
    arch = greedy_allocation(space, free, 0.2)
    assert all(layer.v_dim == layer.qk_dim for layer in arch.layers if layer.kv_heads)
    assert any(0 < layer.v_dim < shape.head_dim for layer in arch.layers)
    further = greedy_allocation(space, free, 0.3, start=arch)
    for before, after in zip(arch.layers, further.layers):
        assert after.kv_heads == 0 or after.v_dim <= before.v_dim
    for plain in (greedy_allocation(space, replace(free, dims=None), 0.2),
                  greedy_allocation(replace(space, prune_qk=False), free, 0.2)):
        assert all(layer.v_dim in (0, shape.head_dim) for layer in plain.layers)


@pytest.mark.parametrize("budget", [0.1, 0.3])
def test_greedy_lands_on_the_budget_and_only_cuts_further_from_its_start(setting, budget):
    model, shape, scores = setting
    space = SearchSpace(shape, mlp_step=8, protected=(0, shape.num_layers - 1))
    sens = probe(model, scores, WINDOWS, SPEC, progress=False)
    plain = greedy_allocation(space, sens, budget)
    step = mlp_step_params(space) / cost(plain).dense_params
    assert budget <= cost(plain).removed <= budget + step
    start = greedy_allocation(space, sens, budget / 2)
    further = greedy_allocation(space, probe(model, scores, WINDOWS, SPEC, progress=False, base=start), budget, start)
    assert budget <= cost(further).removed <= budget + step
    for before, after in zip(start.layers, further.layers):
        assert after.mlp <= before.mlp and after.kv_heads <= before.kv_heads and (before.keep or not after.keep)


def test_remeasured_greedy_keeps_protected_blocks_and_names_its_units(setting):
    model, shape, scores = setting
    space = SearchSpace(shape, mlp_step=8, protected=(0, shape.num_layers - 1))
    dense = probe(model, scores, WINDOWS, SPEC, progress=False)
    arch, last = remeasured_greedy(model, scores, WINDOWS, space, 0.3, dense, stages=2, spec=SPEC, progress=False)
    assert arch.has_indices and arch.meta["stages"] == 2
    assert arch.layers[0].keep and arch.layers[-1].keep
    assert cost(arch).removed >= 0.3
    again, probed = remeasured_greedy(model, scores, WINDOWS, space, 0.3, dense, 2, SPEC, False)
    assert again.to_dict() == arch.to_dict()
    half = select_units(greedy_allocation(space, dense, 0.15), scores)
    assert np.array_equal(probed.mlp, last.mlp)
    assert np.allclose(last.mlp, probe(model, scores, WINDOWS, SPEC, progress=False, base=half).mlp)
    assert not np.allclose(last.mlp, dense.mlp)


def test_greedy_caches_its_architecture_and_last_probe(setting, monkeypatch):
    model, shape, scores = setting
    space = SearchSpace(shape, mlp_step=8, protected=(0, shape.num_layers - 1))
    dense = probe(model, scores, WINDOWS, SPEC, progress=False)
    monkeypatch.setattr(greedy_module, "token_ids", lambda _tok, _data: WINDOWS.reshape(-1))
    runs = []
    real = greedy_module.remeasured_greedy
    monkeypatch.setattr(greedy_module, "remeasured_greedy", lambda *a, **k: runs.append(1) or real(*a, **k))
    first = greedy(model, word_tokenizer(), "fp", scores, "scores", space, 0.3, dense, 2, SPEC, progress=False)
    again = greedy(model, word_tokenizer(), "fp", scores, "scores", space, 0.3, dense, 2, SPEC, progress=False)
    assert runs == [1]
    assert again[0].to_dict() == first[0].to_dict()
    assert np.array_equal(again[1].mlp, first[1].mlp) and np.array_equal(again[1].block, first[1].block)
    one_stage = greedy(model, word_tokenizer(), "fp", scores, "scores", space, 0.3, dense, 1, SPEC, progress=False)
    assert one_stage[1] is dense
