"""Scores, allocation rules and baselines on a tiny random GQA LLaMA (mechanics; real-model figures are in
BENCHMARKS.md)."""

from __future__ import annotations

import pytest
import torch

from conftest import SMALL, WINDOWS, tiny_model
from prunesearch.errors import ArchitectureError, BudgetError, PrunesearchError
from prunesearch.evaluate import with_units
from prunesearch.models import load_model
from prunesearch.predictor import FeatureContext, feature_names, featurize
from prunesearch.pruners import collect, materialize, select_units
from prunesearch.pruners.allocation import layerwise_width, protected_ends, remove_blocks, uniform_mlp_cut, target_params
from prunesearch.pruners.baselines import METHODS, baseline
from prunesearch.pruners.bip import bip_scores
from prunesearch.pruners.calibration import calibrate
from prunesearch.pruners.priors import compute_priors, unit_scores
from prunesearch.pruners.scores import activation_scores
from prunesearch.pruners.shortgpt import block_influence, shortgpt_order
from prunesearch.pruners.sleb import SlebSpec
from prunesearch.pruners.greedy import greedy_reference
from prunesearch.search.compare import baselines_at, greedy_beside, least_budget
from prunesearch.space import Architecture, Limits, ModelShape, SearchSpace, cost, param_count



def planted():
    """A tiny model with MLP channel 5 of layer 1, query head 4 of layer 2 and block 2 made useless."""
    model = tiny_model("llama")
    D = model.config.head_dim
    with torch.no_grad():
        model.model.layers[1].mlp.down_proj.weight[:, 5] = 0
        model.model.layers[2].self_attn.o_proj.weight[:, 4 * D:5 * D] = 0
        model.model.layers[2].self_attn.o_proj.weight[:, :] *= 1e-4
        model.model.layers[2].mlp.down_proj.weight[:, :] *= 1e-4
    return model


@pytest.fixture(scope="module")
def stats():
    return collect(planted(), WINDOWS, batch_size=4, progress=False, boundary_tokens=64, boundary_rank=8,
                   lipschitz_tokens=8)


@pytest.mark.parametrize("score_fn", [activation_scores, bip_scores])
def test_unit_scores_shapes_determinism_and_planted_units(stats, score_fn):
    model = planted()
    s = ModelShape.from_config(model.config)
    scores = score_fn(model, stats)
    assert scores.mlp.shape == (s.num_layers, s.intermediate_size)
    assert scores.heads.shape == (s.num_layers, s.num_heads)
    assert scores.v_dims.shape == (s.num_layers, s.num_kv_heads, s.head_dim)
    assert scores.qk_pairs.shape == (s.num_layers, s.num_kv_heads, s.head_dim // 2)
    again = score_fn(model, collect(planted(), WINDOWS, batch_size=4, progress=False, boundary_tokens=64,
                                    boundary_rank=8, lipschitz_tokens=8))
    assert torch.equal(scores.mlp, again.mlp) and torch.equal(scores.heads, again.heads)
    assert int(scores.mlp[1].argmin()) == 5
    assert int(scores.heads[2].argmin()) == 4


def test_bip_amplifies_heads_by_the_measured_mlp_lipschitz_constant(stats):
    model = planted()
    assert (stats.mlp_lipschitz > 0).all()
    ratio = bip_scores(model, stats).heads / activation_scores(model, stats).heads
    torch.testing.assert_close(ratio[:, 0], 1 + stats.mlp_lipschitz)


def test_shortgpt_ranks_the_near_identity_block_first(stats):
    assert shortgpt_order(stats)[0] == 2
    assert block_influence(stats).shape == (4,)


@pytest.mark.parametrize("budget", [0.1, 0.2, 0.3])
def test_allocation_rules_land_on_the_budget(stats, budget):
    model = planted()
    shape = ModelShape.from_config(model.config)
    scores = activation_scores(model, stats)
    results = [
        uniform_mlp_cut(Architecture.dense(shape), target_params(shape, budget), scores),
        layerwise_width(shape, bip_scores(model, stats), budget),
        remove_blocks(shape, lambda n: shortgpt_order(stats)[:n], budget, scores),
    ]
    for arch in results:
        assert arch.has_indices
        assert abs(cost(arch).removed - budget) <= 0.01
        assert sum(p.numel() for p in materialize(model, arch).parameters()) == param_count(arch)


def test_layerwise_width_keeps_the_ends_dense_and_drops_planted_units_first(stats):
    model = planted()
    shape = ModelShape.from_config(model.config)
    arch = layerwise_width(shape, bip_scores(model, stats), 0.2)
    first, last = protected_ends(shape.num_layers)
    dense = Architecture.dense(shape).layers[0]
    assert all(arch.layers[i].counts() == dense for i in [*range(first), *range(shape.num_layers - last, shape.num_layers)])
    assert arch.layers[1].mlp < shape.intermediate_size and 5 not in arch.layers[1].mlp_idx
    assert protected_ends(32) == (4, 2) and protected_ends(30) == (4, 2)


def test_impossible_budgets_are_refused(stats):
    model = planted()
    shape = ModelShape.from_config(model.config)
    with pytest.raises(BudgetError):
        target_params(shape, 1.2)
    with pytest.raises(BudgetError):
        uniform_mlp_cut(Architecture.dense(shape), 0, activation_scores(model, stats))


@pytest.fixture(scope="module")
def tiny_loaded(tiny_dir):
    return load_model(str(tiny_dir))


@pytest.mark.parametrize("method", METHODS)
def test_every_baseline_lands_within_one_percent(tiny_loaded, method):
    for budget in (0.1, 0.2, 0.3):
        arch = baseline(method, tiny_loaded, budget, SMALL, SlebSpec(count=2, length=32), progress=False)
        assert abs(cost(arch).removed - budget) <= 0.01
        assert arch.has_indices and arch.meta["method"] == method
        again = Architecture.from_json(arch.to_json(), arch.shape)
        assert again == arch


def test_block_baselines_never_remove_protected_blocks(tiny_loaded):
    for method in ("mi", "sleb"):
        arch = baseline(method, tiny_loaded, 0.3, SMALL, SlebSpec(count=2, length=32), progress=False)
        assert arch.layers[0].keep and arch.layers[-1].keep


def test_unknown_method_and_impossible_budget(tiny_loaded):
    with pytest.raises(PrunesearchError, match="unknown method"):
        baseline("magnitude", tiny_loaded, 0.2)
    with pytest.raises(BudgetError):
        baseline("uniform", tiny_loaded, 0.95, SMALL)


def test_least_budget_is_the_first_grid_budget_that_meets_a_ceiling():
    assert least_budget(lambda b: b >= 0.237, 0.1) == 0.24
    assert least_budget(lambda b: b >= 0.237, 0.3) == 0.3
    assert least_budget(lambda b: False, 0.2) is None


def test_baselines_under_a_kv_ceiling_stand_at_the_least_budget_that_meets_it(tiny_loaded):
    limits = Limits(kv=0.8)

    def meets(method: str, budget: float) -> bool:
        try:
            return limits.met_by(baseline(method, tiny_loaded, budget, SMALL, progress=False))
        except BudgetError:  # a rule that cannot land on this budget at all
            return False

    models, unmet = baselines_at(tiny_loaded, 0.1, ("bip", "shortgpt", "uniform"), False, limits, SMALL)
    assert unmet == ["uniform"]  # the uniform MLP cut never removes a KV head
    assert {name.split()[0] for name in models} == {"bip", "shortgpt"}
    for name, (kind, arch) in models.items():
        method, budget = arch.meta["method"], arch.meta["budget"]
        assert kind == "baseline" and name == f"{method} {budget:.0%}" and budget > 0.1
        assert limits.met_by(arch) and not meets(method, round(budget - 0.01, 2))
    plain, none = baselines_at(tiny_loaded, 0.1, ("uniform",), False, Limits(), SMALL)
    assert list(plain) == ["uniform 10%"] and none == []


def test_the_greedy_beside_a_search_stands_at_the_least_budget_whose_allocation_meets_a_ceiling(tiny_loaded):
    limits = Limits(kv=0.8)
    at = greedy_reference(tiny_loaded, calibration=SMALL, progress=False)
    ((name, (kind, arch)),) = greedy_beside(at, 0.1, 2, limits).items()
    budget = arch.meta["budget"]
    assert kind == "greedy" and name == f"greedy {budget:.0%}" and budget > 0.1 and arch.meta["stages"] == 2
    assert limits.met_by(arch) and arch.key(units=True) == at(budget, 2).key(units=True)
    below = round(budget - 0.01, 2)
    assert not (limits.met_by(at(below, 1)) and limits.met_by(at(below, 2)))
    assert list(greedy_beside(at, 0.1, 1, Limits())) == ["greedy 10%"]
    assert greedy_beside(at, 0.1, 2, Limits(flops=0.1)) == {}


def test_priors_give_per_layer_features(tiny_loaded):
    priors = compute_priors(tiny_loaded, SMALL, SlebSpec(count=2, length=32), sleb_blocks=2, progress=False)
    shape = ModelShape.from_config(tiny_loaded.model.config)
    ctx = FeatureContext.from_priors(priors, shape)
    arch = SearchSpace(shape, mlp_step=8, dim_step=2).sample_at_budget(0.3, 0)
    names = feature_names(ctx)
    per_layer = [j for j, name in enumerate(names) if "[" in name]
    features = featurize([arch], ctx)[0, per_layer]
    assert set(priors.block) == {"mi", "shortgpt", "sleb"}
    assert ((features >= 0) & (features <= 1 + 1e-6)).all()
    dense = featurize([Architecture.dense(shape)], ctx)[0]
    assert all(dense[names.index(f"bip/mlp[{i}]")] == pytest.approx(1.0) for i in range(shape.num_layers))


def test_an_architecture_without_units_gets_the_units_its_meta_names(tiny_loaded):
    """A reused pick holds counts only: its units must come from the method its predictor's pairs used."""
    shape = ModelShape.from_config(tiny_loaded.model.config)
    counts = SearchSpace(shape, mlp_step=8, dim_step=2).sample_at_budget(0.3, 0)
    stats = calibrate(tiny_loaded.model, tiny_loaded.tokenizer, tiny_loaded.fingerprint, SMALL, progress=False)
    chosen = {m: select_units(counts, unit_scores(tiny_loaded.model, stats, m)) for m in ("activation", "transact")}
    assert chosen["activation"].key(units=True) != chosen["transact"].key(units=True)
    for method, expected in chosen.items():
        arch = Architecture(shape, counts.layers, {"units": method})
        assert with_units(tiny_loaded, arch, SMALL, progress=False).key(units=True) == expected.key(units=True)
    assert with_units(tiny_loaded, counts, SMALL, progress=False).key(units=True) == chosen["activation"].key(units=True)
    assert with_units(tiny_loaded, chosen["transact"], SMALL, progress=False) is chosen["transact"]
    with pytest.raises(ArchitectureError, match="'magic' name no unit method"):
        with_units(tiny_loaded, Architecture(shape, counts.layers, {"units": "magic"}), SMALL, progress=False)
