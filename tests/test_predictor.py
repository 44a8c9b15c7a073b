"""The predictor on synthetic priors of a small shape: features, metrics, fitting, persistence, validation.

No model is loaded: priors are random scores, and the target is a known additive function of the score mass the
architectures keep (computed through ``select_units``, independently of the feature code) plus noise.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch

from prunesearch.errors import PrunesearchError
from prunesearch.predictor.probe_index import ProbeIndex
from prunesearch.predictor import smooth as smooth_module
from prunesearch.predictor.smooth import SmoothModel
from prunesearch.predictor.model import MEMBERS
from prunesearch.predictor import (
    FeatureContext,
    Predictor,
    cross_validate,
    feature_names,
    featurize,
    held_out_by_group,
    kendall_tau,
    learning_curve,
    monotone_signs,
    out_of_fold,
    precision_at_top,
    rank_report,
    spearman,
)
from prunesearch.pruners import UnitScores, select_units
from prunesearch.pruners.priors import Priors
from prunesearch.space import Architecture, LayerArch, ModelShape, SearchSpace, cost

SHAPE = ModelShape(6, 48, 6, 2, 16, 80, 23, False)
SPACE = SearchSpace(SHAPE, mlp_step=8, dim_step=2)
FAST = {"n_estimators": 60}
"""Enough trees for the mechanics tests; the rank-quality test uses the defaults."""


def random_scores(seed: int) -> UnitScores:
    g = torch.Generator().manual_seed(seed)
    s = SHAPE
    heavy = lambda *dims: torch.exp(torch.randn(*dims, generator=g))  # noqa: E731
    return UnitScores(
        mlp=heavy(s.num_layers, s.intermediate_size),
        heads=heavy(s.num_layers, s.num_heads),
        v_dims=heavy(s.num_layers, s.num_kv_heads, s.head_dim),
        qk_pairs=heavy(s.num_layers, s.num_kv_heads, s.head_dim // 2),
    )


@pytest.fixture(scope="module")
def priors() -> Priors:
    g = torch.Generator().manual_seed(99)
    unit = {m: random_scores(j) for j, m in enumerate(("activation", "bip", "transact"))}
    return Priors(unit=unit, block={m: torch.rand(SHAPE.num_layers, generator=g) for m in ("mi", "shortgpt", "sleb")})


@pytest.fixture(scope="module")
def ctx(priors) -> FeatureContext:
    return FeatureContext.from_priors(priors, SHAPE)


@pytest.fixture(scope="module")
def archs() -> list[Architecture]:
    rng = np.random.default_rng(0)
    return [SPACE.sample_at_budget(float(rng.uniform(0.1, 0.4)), seed) for seed in range(300)]


def kept_mass(arch: Architecture, scores: UnitScores) -> tuple[np.ndarray, np.ndarray]:
    """Per layer, the activation score mass of the MLP channels and query heads ``select_units`` keeps."""
    chosen = select_units(arch, scores)
    heads = scores.heads.view(SHAPE.num_layers, SHAPE.num_kv_heads, SHAPE.group_size)
    mlp, att = np.zeros(SHAPE.num_layers), np.zeros(SHAPE.num_layers)
    for i, layer in enumerate(chosen.layers):
        if layer.has_mlp:
            mlp[i] = float(scores.mlp[i, list(layer.mlp_idx)].sum() / scores.mlp[i].sum())
        if layer.has_attention:
            kept = sum(float(heads[i, g, list(q)].sum()) for g, q in zip(layer.kv_idx, layer.q_idx))
            att[i] = kept / float(heads[i].sum())
    return mlp, att


@pytest.fixture(scope="module")
def target(archs, priors) -> np.ndarray:
    """log-ppl = 2 + sum over layers of weighted mass lost (MLP, heads) and removed blocks' cost, plus noise."""
    rng = np.random.default_rng(1)
    w_mlp, w_att, w_block = rng.uniform(0.2, 1.0, (3, SHAPE.num_layers))
    y = []
    for arch in archs:
        mlp, att = kept_mass(arch, priors.unit["activation"])
        removed = np.array([not layer.keep for layer in arch.layers])
        y.append(2 + w_mlp @ (1 - mlp) ** 1.5 + w_att @ (1 - att) + w_block @ removed)
    return np.array(y) + rng.normal(0, 0.02, len(y))


def column(ctx: FeatureContext, X: np.ndarray, name: str) -> np.ndarray:
    return X[:, feature_names(ctx).index(name)]


# --------------------------------------------------------------------------------------------------------------
# features


def test_feature_names_match_columns_and_values_in_range(ctx, archs):
    X, names = featurize(archs[:50], ctx), feature_names(ctx)
    assert X.shape == (50, len(names)) and X.dtype == np.float32 and len(set(names)) == len(names)
    assert np.isfinite(X).all()
    per_layer = np.array(["[" in n for n in names])
    assert ((X[:, per_layer] >= 0) & (X[:, per_layer] <= 1 + 1e-6)).all()
    sums = np.array([n.startswith("sum:") for n in names])
    assert ((X[:, sums] >= 0) & (X[:, sums] <= SHAPE.num_layers + 1e-5)).all()
    for i, arch in enumerate(archs[:10]):
        assert column(ctx, X, "cost:removed")[i] == pytest.approx(cost(arch).removed, abs=1e-6)
        c = cost(arch)
        assert column(ctx, X, "cost:flops")[i] == pytest.approx(c.flops / c.dense_flops, rel=1e-6)
        assert column(ctx, X, "cost:kv_bytes")[i] == pytest.approx(c.kv_bytes / c.dense_kv_bytes, rel=1e-6)


def test_feature_families(ctx):
    names = feature_names(ctx)
    L = SHAPE.num_layers
    per_layer = 6 + 3 * 4 + 3  # counts, unit methods x modules, block methods
    assert len(names) == per_layer * L + per_layer + 3 + 5
    assert {"activation/mlp[0]", "bip/kv[5]", "transact/qk[2]", "block:sleb[3]", "sum:mlp", "lost:bip",
            "cost:no_mlp"} <= set(names)


def test_dense_keeps_everything(ctx):
    X = featurize([Architecture.dense(SHAPE)], ctx)[0]
    for name, value in zip(feature_names(ctx), X):
        if name.startswith(("lost:", "block:", "sum:block:", "cost:removed", "cost:no_")):
            assert value == pytest.approx(0, abs=1e-6), name
        elif name.startswith("sum:"):
            assert value == pytest.approx(SHAPE.num_layers), name
        else:
            assert value == pytest.approx(1), name


def test_mass_is_that_of_the_top_units(ctx, priors, archs):
    """The table lookup equals the mass ``select_units`` keeps (heads: group mass x q_per_kv/G, top heads
    within a group aside, so compare MLP exactly and heads for whole groups)."""
    X = featurize(archs[:20], ctx)
    for i, arch in enumerate(archs[:20]):
        mlp, _ = kept_mass(arch, priors.unit["activation"])
        got = [column(ctx, X, f"activation/mlp[{j}]")[i] for j in range(SHAPE.num_layers)]
        np.testing.assert_allclose(got, mlp, atol=1e-5)
    groups = priors.unit["bip"].kv_groups(SHAPE)
    one = LayerArch(True, 1, SHAPE.group_size, 16, 16, 80)
    arch = Architecture(SHAPE, (one,) + Architecture.dense(SHAPE).layers[1:])
    expected = float(groups[0].max() / groups[0].sum())
    assert column(ctx, featurize([arch], ctx), "bip/kv[0]")[0] == pytest.approx(expected, rel=1e-5)


def test_removed_block_charges_its_redundancy(ctx, priors):
    layers = list(Architecture.dense(SHAPE).layers)
    layers[2] = LayerArch(keep=False)
    layers[4] = LayerArch(True, 0, 0, 0, 0, 40)
    X = featurize([Architecture(SHAPE, tuple(layers))], ctx)
    assert column(ctx, X, "block:mi[2]")[0] == pytest.approx(float(priors.block["mi"][2]))
    assert column(ctx, X, "block:mi[4]")[0] == 0
    assert column(ctx, X, "keep[2]")[0] == 0 and column(ctx, X, "activation/mlp[2]")[0] == 0
    assert column(ctx, X, "cost:no_attention")[0] == 2 and column(ctx, X, "cost:no_mlp")[0] == 1
    assert column(ctx, X, "sum:keep")[0] == SHAPE.num_layers - 1


def test_new_tables_flow_through(ctx, archs):
    sensitivity = np.linspace(0, 1, SHAPE.intermediate_size + 1)[None].repeat(SHAPE.num_layers, 0)
    bigger = FeatureContext(SHAPE, {**ctx.tables, "measured/mlp": sensitivity}, ctx.block)
    names = feature_names(bigger)
    assert {"measured/mlp[0]", "sum:measured/mlp", "lost:measured"} <= set(names)
    X = featurize(archs[:5], bigger)
    expected = [archs[k].layers[0].mlp / SHAPE.intermediate_size for k in range(5)]
    np.testing.assert_allclose(X[:, names.index("measured/mlp[0]")], expected, atol=1e-6)


def test_kv_tables_scale_by_query_heads_toward_no_attention(ctx):
    """A loss-increase table (1 with no attention, 0 at dense) stays 0 at dense and rises as heads are dropped."""
    loss = np.array([[1.0, 0.4, 0.0]]).repeat(SHAPE.num_layers, 0)
    measured = FeatureContext(SHAPE, {**ctx.tables, "measured/kv": loss}, ctx.block)
    dense = Architecture.dense(SHAPE).layers[0]
    cases = {dense: 0.0, LayerArch(True, 1, 3, 16, 16, 80): 0.4, LayerArch(True, 1, 1, 16, 16, 80): 0.8,
             LayerArch(True, 0, 0, 0, 0, 80): 1.0}
    archs = [Architecture(SHAPE, (layer,) * SHAPE.num_layers) for layer in cases]
    got = column(measured, featurize(archs, measured), "measured/kv[0]")
    np.testing.assert_allclose(got, list(cases.values()), atol=1e-6)


def test_monotone_signs_follow_what_each_feature_means(ctx):
    """Down in what is kept, in score mass and in a loss source's "mass lost", up in measured loss and a removed
    block's measured loss; a prior's redundancy is free."""
    loss = np.linspace(1, 0, SHAPE.intermediate_size + 1)[None].repeat(SHAPE.num_layers, 0)
    measured = FeatureContext(SHAPE, {**ctx.tables, "measured/mlp": loss},
                              {**ctx.block, "measured": np.ones(SHAPE.num_layers)})
    signs = dict(zip(feature_names(measured), monotone_signs(measured)))
    assert len(signs) == len(monotone_signs(measured))
    expected = {"keep[0]": -1, "mlp[3]": -1, "sum:q_per_kv": -1, "bip/kv[1]": -1, "sum:transact/qk": -1,
                "measured/mlp[2]": 1, "sum:measured/mlp": 1, "block:measured[4]": 1, "block:sleb[4]": 0,
                "sum:block:mi": 0, "lost:bip": 1, "lost:measured": -1, "cost:removed": 1, "cost:flops": -1,
                "cost:kv_bytes": -1, "cost:no_mlp": 1}
    assert {name: signs[name] for name in expected} == expected


def test_context_validates_and_roundtrips(ctx, archs, tmp_path):
    with pytest.raises(PrunesearchError, match="shape"):
        FeatureContext(SHAPE, {"measured/mlp": np.zeros((SHAPE.num_layers, 9))})
    with pytest.raises(PrunesearchError, match="module"):
        FeatureContext(SHAPE, {"measured": np.zeros((SHAPE.num_layers, 81))})
    ctx.save(tmp_path / "ctx.npz")
    loaded = FeatureContext.load(tmp_path / "ctx.npz")
    assert loaded.shape == ctx.shape and feature_names(loaded) == feature_names(ctx)
    np.testing.assert_array_equal(featurize(archs[:20], loaded), featurize(archs[:20], ctx))
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(PrunesearchError, match="corrupt"):
        FeatureContext.load(tmp_path / "bad.npz")
    with pytest.raises(PrunesearchError, match="not found"):
        FeatureContext.load(tmp_path / "absent.npz")


def test_featurize_refuses_another_shape(ctx):
    with pytest.raises(PrunesearchError, match="shape"):
        featurize([Architecture.dense(ModelShape(4, 48, 6, 2, 16, 80, 23, False))], ctx)


# --------------------------------------------------------------------------------------------------------------
# metrics


def test_metrics_on_hand_examples():
    y = np.arange(20.0)
    assert kendall_tau(y, y) == pytest.approx(1) and spearman(y, -y) == pytest.approx(-1)
    assert precision_at_top(y, y) == 1 and precision_at_top(y, -y) == 0
    assert precision_at_top(y, y, frac=0.01) == 1  # at least one item
    pred = y.copy()
    pred[[0, 5]] = pred[[5, 0]]  # the predicted best two are items 1 and 5; the true best two are 0 and 1
    assert precision_at_top(y, pred, frac=0.1) == 0.5
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # constant predictions: undefined, said quietly (None in a report)
        assert np.isnan(kendall_tau(y, np.ones(20))) and np.isnan(spearman(np.ones(20), y))
        assert rank_report(y, np.ones(20), np.full(20, 0.2), 0.2)["band"]["spearman"] is None


def test_rank_report_filters_the_band():
    y = np.arange(10.0)
    removed = np.array([0.1, 0.2, 0.2, 0.225, 0.175, 0.3, 0.2, 0.26, 0.14, 0.2])
    report = rank_report(y, y, removed, budget=0.2, band=0.025)
    assert report["all"]["n"] == 10 and report["all"]["kendall_tau"] == pytest.approx(1)
    assert report["band"]["n"] == 6 and report["band"]["precision_at_top"] == 1
    assert "band" not in rank_report(y, y, removed)
    assert rank_report(y, y, removed, budget=0.9)["band"] == {
        "n": 0, "kendall_tau": None, "spearman": None, "precision_at_top": None, "budget": 0.9, "band": 0.025
    }


# --------------------------------------------------------------------------------------------------------------
# the predictor


@pytest.fixture(scope="module")
def probed(ctx) -> FeatureContext:
    """``ctx`` plus a loss-rise table as a sensitivity probe measures it: per layer, an MLP cut's unweighted cost in
    ``target`` (what a campaign's contexts hold, so the predictor fits its probe index on it)."""
    rise = (1 - ctx.tables["activation/mlp"]) ** 1.5
    return FeatureContext(SHAPE, {**ctx.tables, "sensitivity/mlp": rise}, ctx.block)


@pytest.fixture(scope="module")
def fitted(probed, archs, target) -> Predictor:
    return Predictor(probed).fit(archs[:200], target[:200], {"fingerprint": "model-a", "space": SPACE.to_dict()})


def test_the_predictor_fits_a_probe_index_on_the_loss_columns(fitted, probed, archs, target):
    index = fitted.index
    assert index.columns == tuple(f"sensitivity/mlp[{i}]" for i in range(SHAPE.num_layers))
    assert (index.weights >= 0).all()
    assert kendall_tau(target[200:], index.transform(featurize(archs[200:], probed))) > 0.2
    assert Predictor(probed, probe_index=False, **FAST).fit(archs[:50], target[:50]).index is None
    tables = index.weights_by_table(SHAPE.num_layers + 1)
    assert list(tables) == ["sensitivity/mlp"]
    np.testing.assert_array_equal(tables["sensitivity/mlp"][:-1], index.weights)
    assert np.isnan(tables["sensitivity/mlp"][-1]), "a layer without a column is nan, not a zero weight"


def test_layer_losses_split_the_probe_index_by_layer(fitted, probed, archs, target):
    """Per layer, the index's terms: they add up to the index less its intercept, and only a layer that loses MLP
    channels (the one loss table here) is charged."""
    losses = fitted.layer_losses(archs[:20])
    assert losses.shape == (20, SHAPE.num_layers)
    total = fitted.index.transform(featurize(archs[:20], probed)) - fitted.index.intercept
    np.testing.assert_allclose(losses.sum(1), total, rtol=1e-6, atol=1e-9)
    full = np.array([[layer.keep and layer.mlp == SHAPE.intermediate_size for layer in a.layers] for a in archs[:20]])
    assert (losses[full] == 0).all() and (losses[~full] > 0).any()
    with pytest.raises(PrunesearchError, match="no probe index"):
        Predictor(probed, probe_index=False, **FAST).fit(archs[:50], target[:50]).layer_losses(archs[:1])


def test_probe_index_weighs_each_layer_as_the_pairs_say():
    """Per-layer weights recover each layer's true cost from clean pairs, ignore the broken tail past the 80th
    percentile, are clipped at zero where the pairs say a column lowers the loss, and fall back to flat with too few
    rows or no loss column."""
    rng = np.random.default_rng(0)
    names, signs = [f"rise[{i}]" for i in range(8)] + ["keep[0]", "sum:rise"], [1] * 8 + [-1, 1]
    X = np.column_stack([rng.uniform(0, 0.3, (300, 8)), rng.uniform(0, 1, (300, 2))])
    w = np.array([0.5, 1, 1.5, 2, 2.5, 3, 0.2, -0.5])
    y = 2 + X[:, :8] @ w + rng.normal(0, 0.01, 300)
    y[y > np.quantile(y, 0.8)] += 50
    index = ProbeIndex.fit(X, y, names, signs)
    assert index.columns == tuple(names[:8]) and index.weights[7] == 0
    np.testing.assert_allclose(index.weights[:7], w[:7], atol=0.1)
    clean = y <= np.quantile(y, 0.8)
    assert abs(np.median(index.transform(X[clean]) - y[clean])) < 0.1
    assert (ProbeIndex.fit(X[:2], y[:2], names, signs).weights == 0).all()
    assert ProbeIndex.fit(X, y, names, [0] * 10).columns == ()


def test_predictor_ranks_held_out_architectures(fitted, archs, target):
    predicted = fitted.predict(archs[200:])
    assert predicted.shape == (100,)
    assert kendall_tau(target[200:], predicted) > 0.6
    counts = np.stack([a.as_array() for a in archs[200:]])
    np.testing.assert_array_equal(fitted.predict_arrays(counts), predicted)


def test_the_prediction_averages_the_trees_and_the_smooth_model(fitted, probed, archs, target):
    """The trees' mean and a Gaussian process on the aggregate columns, half and half; the members' spread (the
    search's pessimism) stays the trees'; without ``smooth`` the trees alone."""
    X = fitted._with_index(featurize(archs[200:], probed))
    trees, smooth = fitted._members(X), fitted.smooth_model.predict(X)
    np.testing.assert_allclose(fitted.predict(archs[200:]), (trees.mean(0) + smooth) / 2, rtol=1e-12)
    counts = np.stack([a.as_array() for a in archs[200:]])
    np.testing.assert_allclose(fitted.predict_arrays(counts, pessimism=2.0) - fitted.predict_arrays(counts),
                               2 * trees.std(0), rtol=1e-9, atol=1e-12)
    names = [fitted.names[j] if j < len(fitted.names) else "probe_index" for j in fitted.smooth_model.positions]
    assert "probe_index" in names and "sum:mlp" in names and not any(n.endswith("]") for n in names)
    assert kendall_tau(target[200:], smooth) > 0.5
    plain = Predictor(probed, smooth=False, **FAST).fit(archs[:100], target[:100])
    assert plain.smooth_model is None
    X = plain._with_index(featurize(archs[200:], probed))
    np.testing.assert_array_equal(plain.predict(archs[200:]), plain._members(X).mean(0))


def test_the_smooth_model_needs_a_varying_aggregate_column():
    X = np.column_stack([np.arange(10.0), np.ones(10)])
    with pytest.raises(PrunesearchError, match="no aggregate feature varies"):
        SmoothModel.fit(X, np.arange(10.0), ["keep[0]", "sum:keep"])


def test_the_smooth_model_tunes_and_conditions_on_capped_rows(monkeypatch):
    """Many pairs: the kernel parameters from a fixed draw of at most ``TUNE_ROWS`` rows, the process on at most
    ``ROWS``, the same rows at each refit, and still a model of the target."""
    monkeypatch.setattr(smooth_module, "TUNE_ROWS", 40)
    monkeypatch.setattr(smooth_module, "ROWS", 150)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 3))
    y = X[:, 0] + np.sin(X[:, 1]) + 0.05 * rng.normal(size=400)
    model = SmoothModel.fit(X[:300], y[:300], ["sum:a", "sum:b", "c"])
    assert model.rows.shape == (150, 3) and len(np.unique(model.rows, axis=0)) == 150
    again = SmoothModel.fit(X[:300], y[:300], ["sum:a", "sum:b", "c"])
    np.testing.assert_array_equal(model.rows, again.rows)
    np.testing.assert_array_equal(model.theta, again.theta)
    assert np.corrcoef(model.predict(X[300:]), y[300:])[0, 1] > 0.9
    assert SmoothModel.fit(X[:100], y[:100], ["a", "b", "c"]).rows.shape == (100, 3), "under the cap: every row"


def test_fitting_is_deterministic(ctx, archs, target):
    a = Predictor(ctx, **FAST).fit(archs[:100], target[:100]).predict(archs[200:])
    b = Predictor(ctx, **FAST).fit(archs[:100], target[:100]).predict(archs[200:])
    np.testing.assert_array_equal(a, b)


def test_a_bigger_architecture_is_never_predicted_worse(fitted, ctx, archs, target):
    """The monotone constraints: adding MLP channels to one layer of a held-out architecture never raises its
    predicted log-perplexity (an unconstrained fit on the same pairs is free to)."""
    grown, base = [], []
    for arch in archs[200:]:
        for i, layer in enumerate(arch.layers):
            if layer.has_mlp and layer.mlp < SHAPE.intermediate_size:
                layers = list(arch.layers)
                layers[i] = replace(layer.counts(), mlp=min(SHAPE.intermediate_size, layer.mlp + 16))
                grown.append(Architecture(SHAPE, tuple(layers)))
                base.append(arch)
    assert len(grown) > 300
    assert (fitted.predict(grown) <= fitted.predict(base) + 1e-6).all()
    assert "monotone_constraints" not in Predictor(ctx, monotone=False).params


def test_ranking_objectives_are_refused(ctx):
    with pytest.raises(ValueError, match="objective"):
        Predictor(ctx, objective="rank:pairwise")


def test_save_load_roundtrip(fitted, archs, tmp_path):
    fitted.save(tmp_path / "p")
    loaded = Predictor.load(tmp_path / "p", fingerprint="model-a", space=SPACE.to_dict())
    np.testing.assert_array_equal(loaded.predict(archs[200:]), fitted.predict(archs[200:]))
    assert loaded.meta["fingerprint"] == "model-a" and loaded.params == fitted.params
    info = json.loads((tmp_path / "p" / "predictor.json").read_text())
    assert info["features"] == feature_names(fitted.ctx) and info["shape"] == SHAPE.to_dict()


def test_ensemble_members_spread_where_nothing_was_measured(fitted, ctx, archs):
    """The members agree on what they were fitted on and disagree far from it: pessimism ranks by mean + k * std."""
    assert len(fitted.boosters) == MEMBERS

    def spread(batch) -> np.ndarray:
        counts = np.stack([a.as_array() for a in batch])
        return fitted.predict_arrays(counts, pessimism=1.0) - fitted.predict_arrays(counts)

    far = [SPACE.sample(seed) for seed in range(30)]
    assert (spread(archs[:200]) >= 0).all()
    assert np.median(spread(far)) > np.median(spread(archs[:200]))


def test_a_single_booster_predictor_of_the_first_format_still_loads(ctx, archs, target, tmp_path):
    single = Predictor(ctx, members=1, smooth=False, **FAST).fit(archs[:100], target[:100], {"fingerprint": "model-a"})
    single.save(tmp_path / "p")
    info = json.loads((tmp_path / "p" / "predictor.json").read_text())
    (tmp_path / "p" / "model-0.json").rename(tmp_path / "p" / "model.json")
    info.pop("members")
    info.pop("smooth")
    (tmp_path / "p" / "predictor.json").write_text(json.dumps({**info, "format": "prunesearch.predictor/1"}))
    loaded = Predictor.load(tmp_path / "p")
    np.testing.assert_array_equal(loaded.predict(archs[200:]), single.predict(archs[200:]))


def test_an_ensemble_of_the_second_format_loads_without_an_index(probed, archs, target, tmp_path):
    plain = Predictor(probed, probe_index=False, smooth=False, **FAST).fit(archs[:100], target[:100])
    plain.save(tmp_path / "p")
    info = json.loads((tmp_path / "p" / "predictor.json").read_text())
    info.pop("index")
    info.pop("smooth")
    (tmp_path / "p" / "predictor.json").write_text(json.dumps({**info, "format": "prunesearch.predictor/2"}))
    loaded = Predictor.load(tmp_path / "p")
    assert loaded.index is None and loaded.smooth_model is None
    np.testing.assert_array_equal(loaded.predict(archs[200:]), plain.predict(archs[200:]))


def test_load_refuses_another_model_or_space(fitted, tmp_path):
    fitted.save(tmp_path / "p")
    with pytest.raises(PrunesearchError, match="trained for model model-a, not model-b"):
        Predictor.load(tmp_path / "p", fingerprint="model-b")
    other = SearchSpace(SHAPE, mlp_step=16, dim_step=2).to_dict()
    with pytest.raises(PrunesearchError, match="another search space .*mlp_step"):
        Predictor.load(tmp_path / "p", space=other)


def test_load_refuses_missing_or_corrupt_files(fitted, tmp_path):
    with pytest.raises(PrunesearchError, match="no predictor"):
        Predictor.load(tmp_path / "absent")

    def broken(name: str, edit) -> None:
        path = tmp_path / name
        fitted.save(path)
        edit(path)

    broken("missing", lambda p: (p / "model-3.json").unlink())
    broken("json", lambda p: (p / "predictor.json").write_text("{not json"))
    broken("trees", lambda p: (p / "model-0.json").write_text('{"learner": 3}'))
    broken("context", lambda p: (p / "context.npz").write_bytes(b"\0" * 10))

    def edit_info(path, **changes) -> None:
        info = json.loads((path / "predictor.json").read_text())
        (path / "predictor.json").write_text(json.dumps({**info, **changes}))

    broken("format", lambda p: edit_info(p, format="prunesearch.predictor/99"))
    broken("features", lambda p: edit_info(p, features=["keep[0]"]))
    broken("index", lambda p: edit_info(p, index={"columns": ["nope[0]"], "weights": [1.0], "intercept": 0.0}))
    broken("index_missing", lambda p: edit_info(p, index=None))
    broken("smooth_missing", lambda p: (p / "smooth.npz").unlink())
    broken("smooth", lambda p: (p / "smooth.npz").write_bytes(b"\0" * 10))
    messages = {
        "missing": "incomplete: missing model-3.json", "json": "corrupt", "trees": "corrupt", "context": "corrupt",
        "format": "unknown format", "features": "other features", "index": "corrupt: bad probe index",
        "index_missing": "corrupt: its trees expect another feature count",
        "smooth_missing": "incomplete: missing smooth.npz", "smooth": "corrupt: smooth.npz",
    }
    for name, message in messages.items():
        with pytest.raises(PrunesearchError, match=message):
            Predictor.load(tmp_path / name)


# --------------------------------------------------------------------------------------------------------------
# validation


def test_validation_reports(ctx, archs, target):
    archs, y = archs[:120], target[:120]
    removed = column(ctx, featurize(archs, ctx), "cost:removed")
    report = cross_validate(archs, y, removed, ctx, budget=0.25, folds=3, **FAST)
    assert report["all"]["n"] == 120 and report["band"]["n"] == int((np.abs(removed - 0.25) <= 0.025).sum())
    assert report["all"]["kendall_tau"] > 0.3
    wide = cross_validate(archs, y, removed, ctx, budget=0.25, folds=3, band=0.05, **FAST)
    assert wide["band"]["n"] == int((np.abs(removed - 0.25) <= 0.05).sum()) > report["band"]["n"]
    held_out = out_of_fold(archs, y, ctx, folds=3, **FAST)
    in_sample = Predictor(ctx, **FAST).fit(archs, y).predict(archs)
    assert np.abs(held_out - y).mean() > np.abs(in_sample - y).mean(), "each pair predicted by a fit without it"
    curve = learning_curve(archs, y, removed, ctx, [0.25, 0.3], sizes=[20, 80], folds=3, n_jobs=2, **FAST)
    assert [c["n_train"] for c in curve] == [20, 80] and all(c["all"]["n"] == 120 for c in curve)
    assert [b["budget"] for b in curve[0]["bands"]] == [0.25, 0.3]
    assert curve[0]["bands"][0]["n"] == report["band"]["n"], "every band pair is scored at every size"
    small, large = (out_of_fold(archs, y, ctx, folds=3, n_train=n, **FAST) for n in (20, 80))
    assert np.abs(small - y).mean() > np.abs(large - y).mean(), "fits on fewer pairs predict worse"
    assert np.array_equal(out_of_fold(archs, y, ctx, folds=3, n_train=80, n_jobs=2, **FAST), large)
    with pytest.raises(ValueError, match="trains on 1 to 80"):
        learning_curve(archs, y, removed, ctx, [0.25], sizes=[81], folds=3)
    groups = ["random", "prior", "search"] * 40
    by_group = held_out_by_group(archs, y, removed, groups, ctx, 0.25, **FAST)
    assert set(by_group) == {"random", "prior", "search"} and by_group["prior"]["all"]["n"] == 40
