"""prunesearch.space: the architecture JSON format and its validation, the search space, and the cost model.

Pure arithmetic on model shapes: no model is loaded. (That the cost model equals the materialized model's real
parameter count is tested with the materializer.)
"""

from __future__ import annotations

import copy
import json
from dataclasses import replace

import pytest
import torch

from prunesearch.errors import ArchitectureError, BudgetError, PrunesearchError
from prunesearch.pruners import UnitScores, select_units
from prunesearch.space import (
    Architecture,
    LayerArch,
    ModelShape,
    SearchSpace,
    cost,
    flops_per_token,
    kv_bytes_per_token,
    param_count,
)

SMOLLM2 = ModelShape(30, 576, 9, 3, 64, 1536, 49152, True)
# The shape of tests/conftest.py's tiny GQA LLaMA (23-word vocabulary, untied embeddings).
TINY = ModelShape(4, 48, 6, 2, 16, 80, 23, False)
# A Qwen2-like shape with q/k/v biases, to exercise the bias terms.
BIASED = ModelShape(3, 32, 4, 2, 8, 48, 50, True, qkv_bias=True)

SHAPES = pytest.mark.parametrize("shape", [SMOLLM2, TINY, BIASED], ids=["smollm2", "tiny", "biased"])
BUDGETS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6)


def random_scores(shape: ModelShape, seed: int) -> UnitScores:
    g = torch.Generator().manual_seed(seed)
    L, H, KV, D, I = shape.num_layers, shape.num_heads, shape.num_kv_heads, shape.head_dim, shape.intermediate_size
    return UnitScores(
        mlp=torch.rand(L, I, generator=g),
        heads=torch.rand(L, H, generator=g),
        v_dims=torch.rand(L, KV, D, generator=g),
        qk_pairs=torch.rand(L, KV, D // 2, generator=g),
    )


def roundtrip(arch: Architecture, shape: ModelShape | None = None) -> Architecture:
    return Architecture.from_json(arch.to_json(), shape)


def tiny_dict() -> dict:
    """A valid dense architecture of TINY as plain JSON data, to mutate."""
    return json.loads(Architecture.dense(TINY).to_json())


def indexed_dict() -> dict:
    """A valid TINY architecture with unit indices; layer 1 keeps kv=1, q_per_kv=2, qk=8, v=8, mlp=64."""
    dense = Architecture.dense(TINY)
    layers = list(dense.layers)
    layers[1] = LayerArch(True, 1, 2, 8, 8, 64)
    layers[2] = LayerArch(True, 0, 0, 0, 0, 64)  # attention removed, MLP kept
    layers[3] = LayerArch(keep=False)
    arch = select_units(Architecture(TINY, tuple(layers)), random_scores(TINY, 0))
    return json.loads(arch.to_json())


def text(data: dict) -> str:
    return json.dumps(data)


# --------------------------------------------------------------------------------------------------------------
# JSON round trip


@SHAPES
@pytest.mark.parametrize("seed", range(12))
def test_sample_roundtrip(shape, seed):
    arch = SearchSpace(shape).sample(seed)
    back = roundtrip(arch, shape)
    assert back == arch
    assert back.key() == arch.key()
    assert back.meta == arch.meta == {"sampler": "uniform", "seed": seed}
    assert back.to_json() == arch.to_json()


@SHAPES
@pytest.mark.parametrize("seed", range(6))
def test_count_arrays_roundtrip(shape, seed):
    arch = SearchSpace(shape).sample(seed)
    array = arch.as_array()
    assert array.shape == (shape.num_layers, 6)
    assert Architecture.from_array(shape, array) == arch.counts()
    assert (array[[not layer.keep for layer in arch.layers]] == 0).all()
    with pytest.raises(ArchitectureError, match="counts of shape"):
        Architecture.from_array(shape, array[1:])


@SHAPES
@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("budget", [0.1, 0.3, 0.5])
def test_sample_at_budget_roundtrip(shape, seed, budget):
    arch = SearchSpace(shape).sample_at_budget(budget, seed)
    back = roundtrip(arch)
    assert back == arch
    assert back.key() == arch.key()
    assert back.meta["budget"] == budget and back.meta["seed"] == seed


@SHAPES
@pytest.mark.parametrize("seed", range(6))
def test_unit_indices_survive_roundtrip(shape, seed):
    space = SearchSpace(shape)
    for arch in (space.sample(seed), space.sample_at_budget(0.4, seed), Architecture.dense(shape)):
        assert not arch.has_indices or all(not layer.keep for layer in arch.layers)
        indexed = select_units(arch, random_scores(shape, seed))
        assert indexed.has_indices
        back = roundtrip(indexed, shape)
        assert back == indexed  # dataclass equality covers every index field
        for ours, theirs in zip(indexed.layers, back.layers):
            for name in ("kv_idx", "q_idx", "qk_idx", "v_idx", "mlp_idx"):
                assert getattr(ours, name) == getattr(theirs, name)
        assert back.has_indices
        # The key is that of the counts alone: indices and metadata do not change it.
        assert back.key() == indexed.key() == arch.key()
        assert back.counts() == arch.counts()


def test_indices_have_the_declared_sizes():
    data = indexed_dict()
    layer = data["layers"][1]
    assert len(layer["kv_idx"]) == 1
    assert [len(g) for g in layer["q_idx"]] == [2]
    assert [len(g) for g in layer["qk_idx"]] == [4]  # rotary pairs: qk_dim / 2
    assert [len(g) for g in layer["v_idx"]] == [8]
    assert len(layer["mlp_idx"]) == 64
    assert data["layers"][2]["kv_idx"] == [] and data["layers"][2]["q_idx"] == []
    assert data["layers"][3] == {"keep": False}
    arch = Architecture.from_json(text(data), TINY)
    assert arch.has_indices
    assert roundtrip(arch) == arch


def test_indices_are_stored_sorted():
    data = indexed_dict()
    data["layers"][1]["mlp_idx"] = list(reversed(data["layers"][1]["mlp_idx"]))
    arch = Architecture.from_json(text(data))
    assert list(arch.layers[1].mlp_idx) == sorted(arch.layers[1].mlp_idx)


def test_save_and_load(tmp_path):
    arch = select_units(SearchSpace(TINY).sample_at_budget(0.3, 1), random_scores(TINY, 1))
    path = tmp_path / "sub" / "arch.json"
    arch.save(path)
    loaded = Architecture.load(path, TINY)
    assert loaded == arch
    assert loaded.meta == arch.meta
    assert Architecture.load(str(path)) == arch


def test_meta_does_not_affect_equality_or_key():
    a = Architecture(TINY, Architecture.dense(TINY).layers, {"a": 1})
    b = Architecture(TINY, Architecture.dense(TINY).layers, {"b": 2})
    assert a == b and a.key() == b.key()


def test_keys_differ_for_different_choices():
    dense = Architecture.dense(TINY)
    layers = list(dense.layers)
    layers[0] = replace(layers[0], mlp=64)
    assert Architecture(TINY, tuple(layers)).key() != dense.key()
    other_shape = Architecture.dense(replace(TINY, vocab_size=24))
    assert other_shape.key() != dense.key()


# --------------------------------------------------------------------------------------------------------------
# Validation: every malformed input is an ArchitectureError naming the problem


def _set(path, value):
    def mutate(d):
        target = d
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


def _del(path):
    def mutate(d):
        target = d
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return mutate


L0 = ("layers", 0)

DENSE_CASES = {
    "wrong format": (_set(("format",), "prunesearch.architecture/2"), r"not a prunesearch architecture"),
    "missing format": (_del(("format",)), r"not a prunesearch architecture"),
    "unknown top-level": (_set(("extra",), 1), r"unknown top-level field\(s\): extra"),
    "unknown layer field": (_set((*L0, "heads"), 3), r"layers\[0\]: unknown field\(s\) heads"),
    "layer not an object": (_set(L0, 3), r"layers\[0\] must be an object"),
    "missing count": (_del((*L0, "mlp")), r"layers\[0\]: missing mlp"),
    "too few layers": (lambda d: d["layers"].pop(), r"'layers' must be a list of 4 layer objects"),
    "too many layers": (lambda d: d["layers"].append(d["layers"][0]), r"'layers' must be a list of 4"),
    "layers not a list": (_set(("layers",), {"0": {}}), r"'layers' must be a list"),
    "meta not an object": (_set(("meta",), [1]), r"'meta' must be an object"),
    "model not an object": (_set(("model",), "tiny"), r"'model' must be an object"),
    "unknown model dim": (_set(("model", "rope_theta"), 1e4), r"unknown model dimension\(s\): rope_theta"),
    "missing model dim": (_del(("model", "vocab_size")), r"incomplete model dimensions"),
    "kv_heads too many": (_set((*L0, "kv_heads"), 3), r"layers\[0\]\.kv_heads=3 outside 0\.\.2"),
    "kv_heads negative": (_set((*L0, "kv_heads"), -1), r"layers\[0\]\.kv_heads=-1 outside 0\.\.2"),
    "q_per_kv zero": (_set((*L0, "q_per_kv"), 0), r"layers\[0\]\.q_per_kv=0 outside 1\.\.3"),
    "q_per_kv above group": (_set((*L0, "q_per_kv"), 4), r"layers\[0\]\.q_per_kv=4 outside 1\.\.3"),
    "qk_dim odd": (_set((*L0, "qk_dim"), 15), r"layers\[0\]\.qk_dim=15 must be even, in 2\.\.16"),
    "qk_dim zero": (_set((*L0, "qk_dim"), 0), r"layers\[0\]\.qk_dim=0 must be even"),
    "qk_dim too big": (_set((*L0, "qk_dim"), 18), r"layers\[0\]\.qk_dim=18 must be even, in 2\.\.16"),
    "v_dim zero": (_set((*L0, "v_dim"), 0), r"layers\[0\]\.v_dim=0 outside 1\.\.16"),
    "v_dim too big": (_set((*L0, "v_dim"), 17), r"layers\[0\]\.v_dim=17 outside 1\.\.16"),
    "mlp negative": (_set((*L0, "mlp"), -1), r"layers\[0\]\.mlp=-1 outside 0\.\.80"),
    "mlp too big": (_set((*L0, "mlp"), 81), r"layers\[0\]\.mlp=81 outside 0\.\.80"),
    "bool count": (_set((*L0, "kv_heads"), True), r"layers\[0\]\.kv_heads must be an integer, got True"),
    "float count": (_set((*L0, "mlp"), 64.0), r"layers\[0\]\.mlp must be an integer, got 64\.0"),
    "string count": (_set((*L0, "v_dim"), "16"), r"layers\[0\]\.v_dim must be an integer, got '16'"),
    "null count": (_set((*L0, "qk_dim"), None), r"layers\[0\]\.qk_dim must be an integer, got None"),
    "keep not bool": (_set((*L0, "keep"), "yes"), r"layers\[0\]\.keep must be true or false"),
    "keep as int": (_set((*L0, "keep"), 1), r"layers\[0\]\.keep must be true or false"),
    "removed with counts": (_set(L0, {"keep": False, "mlp": 64}), r"layers\[0\] is removed \(keep=false\) but sets mlp"),
    "removed with heads": (
        _set(L0, {"keep": False, "kv_heads": 1, "q_per_kv": 2}),
        r"is removed \(keep=false\) but sets kv_heads, q_per_kv",
    ),
    "no attention but heads": (
        _set(L0, {"kv_heads": 0, "q_per_kv": 3, "qk_dim": 0, "v_dim": 0, "mlp": 80}),
        r"layers\[0\] removes attention \(kv_heads=0\) but keeps heads or dims",
    ),
    "no attention but dims": (
        _set(L0, {"kv_heads": 0, "q_per_kv": 0, "qk_dim": 0, "v_dim": 8, "mlp": 80}),
        r"removes attention \(kv_heads=0\) but keeps heads or dims",
    ),
}


@pytest.mark.parametrize("mutate, match", DENSE_CASES.values(), ids=DENSE_CASES.keys())
def test_invalid_architecture(mutate, match):
    data = tiny_dict()
    mutate(data)
    with pytest.raises(ArchitectureError, match=match):
        Architecture.from_json(text(data))
    with pytest.raises(ArchitectureError, match=match):
        Architecture.from_dict(copy.deepcopy(data), TINY)


L1 = ("layers", 1)

INDEX_CASES = {
    "kv_idx too long": (_set((*L1, "kv_idx"), [0, 1]), r"layers\[1\]\.kv_idx lists 2 indices but the count is 1"),
    "kv_idx too short": (_set((*L1, "kv_idx"), []), r"layers\[1\]\.kv_idx lists 0 indices but the count is 1"),
    "kv_idx out of range": (_set((*L1, "kv_idx"), [2]), r"layers\[1\]\.kv_idx has an index outside 0\.\.1"),
    "kv_idx not a list": (_set((*L1, "kv_idx"), 0), r"layers\[1\]\.kv_idx must be a list of indices"),
    "mlp_idx repeated": (
        lambda d: d["layers"][1]["mlp_idx"].__setitem__(-1, d["layers"][1]["mlp_idx"][0]),
        r"layers\[1\]\.mlp_idx repeats an index",
    ),
    "mlp_idx out of range": (
        lambda d: d["layers"][1]["mlp_idx"].__setitem__(-1, 80),
        r"layers\[1\]\.mlp_idx has an index outside 0\.\.79",
    ),
    "mlp_idx negative": (
        _set((*L1, "mlp_idx"), [-1, *range(1, 64)]),
        r"layers\[1\]\.mlp_idx has an index outside 0\.\.79",
    ),
    "mlp_idx wrong length": (
        lambda d: d["layers"][1]["mlp_idx"].pop(),
        r"layers\[1\]\.mlp_idx lists 63 indices but the count is 64",
    ),
    "mlp_idx bool": (
        lambda d: d["layers"][1]["mlp_idx"].__setitem__(0, True),
        r"layers\[1\]\.mlp_idx must be an integer, got True",
    ),
    "q_idx out of group": (_set((*L1, "q_idx"), [[0, 3]]), r"layers\[1\]\.q_idx\[0\] has an index outside 0\.\.2"),
    "q_idx repeated": (_set((*L1, "q_idx"), [[1, 1]]), r"layers\[1\]\.q_idx\[0\] repeats an index"),
    "q_idx wrong length": (_set((*L1, "q_idx"), [[0, 1, 2]]), r"q_idx\[0\] lists 3 indices but the count is 2"),
    "q_idx two groups": (
        _set((*L1, "q_idx"), [[0, 1], [0, 1]]),
        r"layers\[1\]\.q_idx must hold one index list per kept key/value group \(1\)",
    ),
    "qk_idx beyond pairs": (
        _set((*L1, "qk_idx"), [[0, 1, 2, 8]]),
        r"layers\[1\]\.qk_idx\[0\] has an index outside 0\.\.7",
    ),
    "qk_idx counted in dims": (
        _set((*L1, "qk_idx"), [list(range(8))]),
        r"layers\[1\]\.qk_idx\[0\] lists 8 indices but the count is 4",
    ),
    "v_idx out of range": (
        _set((*L1, "v_idx"), [[*range(7), 16]]),
        r"layers\[1\]\.v_idx\[0\] has an index outside 0\.\.15",
    ),
    "v_idx not nested": (_set((*L1, "v_idx"), list(range(8))), r"layers\[1\]\.v_idx must hold one index list"),
    "only some indices": (_del((*L1, "mlp_idx")), r"layers\[1\] lists some unit indices but not mlp_idx"),
    "only mlp indices": (
        lambda d: [d["layers"][1].pop(k) for k in ("kv_idx", "q_idx", "qk_idx", "v_idx")],
        r"layers\[1\] lists some unit indices but not kv_idx, q_idx, qk_idx, v_idx",
    ),
    "nothing kept but indices": (
        _set(("layers", 2), {"kv_heads": 0, "q_per_kv": 0, "qk_dim": 0, "v_dim": 0, "mlp": 0, "mlp_idx": [3]}),
        r"layers\[2\] keeps nothing but lists indices",
    ),
    "removed with indices": (
        _set(("layers", 3), {"keep": False, "mlp_idx": [1, 2]}),
        r"layers\[3\] is removed \(keep=false\) but sets mlp_idx",
    ),
}


@pytest.mark.parametrize("mutate, match", INDEX_CASES.values(), ids=INDEX_CASES.keys())
def test_invalid_indices(mutate, match):
    data = indexed_dict()
    Architecture.from_json(text(data), TINY)  # the unmutated base is valid
    mutate(data)
    with pytest.raises(ArchitectureError, match=match):
        Architecture.from_json(text(data), TINY)


@pytest.mark.parametrize("bad", ["", "{not json", "{'format': 1}", "[1, 2", "nul"])
def test_not_json(bad):
    with pytest.raises(ArchitectureError, match=r"not valid JSON"):
        Architecture.from_json(bad)


@pytest.mark.parametrize("data", [[], "architecture", 3, None])
def test_not_an_object(data):
    with pytest.raises(ArchitectureError, match=r"an architecture must be a JSON object"):
        Architecture.from_json(json.dumps(data))


def test_architecture_errors_are_user_errors():
    assert issubclass(ArchitectureError, PrunesearchError)
    assert issubclass(BudgetError, PrunesearchError)


def test_architecture_for_another_model():
    other = replace(TINY, intermediate_size=96)
    good = Architecture.dense(TINY).to_json()
    assert Architecture.from_json(good, TINY) == Architecture.dense(TINY)
    with pytest.raises(ArchitectureError, match=r"made for a model of another shape"):
        Architecture.from_json(good, shape=other)
    with pytest.raises(ArchitectureError, match=r"another shape"):
        Architecture.from_json(SearchSpace(SMOLLM2).sample(0).to_json(), shape=TINY)
    with pytest.raises(ArchitectureError, match=r"another shape"):
        Architecture.from_json(good, shape=replace(TINY, tie_embeddings=True))


def test_load_missing_file(tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(ArchitectureError, match=r"architecture file not found: .*nope\.json"):
        Architecture.load(missing)
    with pytest.raises(ArchitectureError, match=r"architecture file not found"):
        Architecture.load(tmp_path)  # a directory is not an architecture file


def test_load_malformed_file(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"format": "prunesearch.architecture/1", ')
    with pytest.raises(ArchitectureError, match=r"not valid JSON"):
        Architecture.load(path)


def test_constructor_validates():
    dense = Architecture.dense(TINY)
    with pytest.raises(ArchitectureError, match=r"architecture has 3 layers, the model has 4"):
        Architecture(TINY, dense.layers[:3])
    with pytest.raises(ArchitectureError, match=r"kv_heads=3 outside"):
        Architecture(TINY, (LayerArch(True, 3, 3, 16, 16, 80),) + dense.layers[1:])
    with pytest.raises(ArchitectureError, match=r"qk_dim=7 must be even"):
        Architecture(TINY, (LayerArch(True, 2, 3, 7, 16, 80),) + dense.layers[1:])


@pytest.mark.parametrize("value", ["2", 2.0, None])
def test_model_dimensions_must_be_integers(value):
    data = tiny_dict()
    data["model"]["num_kv_heads"] = value
    with pytest.raises(ArchitectureError, match=r"num_kv_heads"):
        Architecture.from_json(text(data))


# --------------------------------------------------------------------------------------------------------------
# Normalisation


def test_nothing_kept_becomes_removed():
    data = tiny_dict()
    data["layers"][2] = {"keep": True, "kv_heads": 0, "q_per_kv": 0, "qk_dim": 0, "v_dim": 0, "mlp": 0}
    arch = Architecture.from_json(text(data), TINY)
    assert arch.layers[2] == LayerArch(keep=False)
    assert not arch.layers[2].keep and not arch.layers[2].has_attention and not arch.layers[2].has_mlp
    assert arch.to_dict()["layers"][2] == {"keep": False}
    data["layers"][2] = {"keep": False}
    assert Architecture.from_json(text(data)).key() == arch.key()


def test_keep_defaults_to_true_and_removed_layers_accept_zeros():
    data = tiny_dict()
    del data["layers"][0]["keep"]
    data["layers"][1] = {"keep": False, "kv_heads": 0, "mlp": 0, "kv_idx": None}
    arch = Architecture.from_json(text(data))
    assert arch.layers[0] == Architecture.dense(TINY).layers[0]
    assert arch.layers[1] == LayerArch(keep=False)


def test_attention_only_and_mlp_only_layers():
    data = tiny_dict()
    data["layers"][0] = {"kv_heads": 0, "q_per_kv": 0, "qk_dim": 0, "v_dim": 0, "mlp": 32}
    data["layers"][1] = {"kv_heads": 1, "q_per_kv": 1, "qk_dim": 2, "v_dim": 1, "mlp": 0}
    arch = Architecture.from_json(text(data))
    assert arch.layers[0].has_mlp and not arch.layers[0].has_attention
    assert arch.layers[1].has_attention and not arch.layers[1].has_mlp
    assert arch.layers[1].q_heads == 1
    assert roundtrip(arch) == arch


def test_constructed_empty_layer_is_normalised():
    layers = (LayerArch(True, 0, 0, 0, 0, 0),) + Architecture.dense(TINY).layers[1:]
    arch = Architecture(TINY, layers)
    assert roundtrip(arch) == arch
    assert arch.key() == Architecture(TINY, (LayerArch(keep=False),) + layers[1:]).key()


# --------------------------------------------------------------------------------------------------------------
# SearchSpace


@pytest.mark.parametrize("shape", [SMOLLM2, TINY], ids=["smollm2", "tiny"])
@pytest.mark.parametrize("budget", BUDGETS)
def test_sample_at_budget_within_tolerance(shape, budget):
    space = SearchSpace(shape)
    for seed in range(4):
        arch = space.sample_at_budget(budget, seed)
        c = cost(arch)
        assert abs(c.removed - budget) <= 0.01 + 1e-12, (seed, c.removed)
        assert abs(c.params - (1 - budget) * c.dense_params) <= 0.01 * c.dense_params
        assert space.contains(arch)
        assert arch.meta == {"sampler": "budget", "budget": budget, "seed": seed}


def test_sample_at_budget_tighter_tolerance():
    space = SearchSpace(SMOLLM2)
    for seed in range(3):
        arch = space.sample_at_budget(0.35, seed, tolerance=0.002)
        assert abs(cost(arch).removed - 0.35) <= 0.002


@pytest.mark.parametrize("shape", [SMOLLM2, TINY], ids=["smollm2", "tiny"])
def test_sampling_is_deterministic_per_seed(shape):
    space = SearchSpace(shape)
    for seed in (0, 7, 123):
        assert space.sample(seed) == space.sample(seed)
        assert space.sample(seed).to_json() == space.sample(seed).to_json()
        a, b = space.sample_at_budget(0.3, seed), space.sample_at_budget(0.3, seed)
        assert a == b and a.to_json() == b.to_json()
    # A fresh but equal space gives the same architectures.
    assert SearchSpace(shape).sample_at_budget(0.25, 5) == space.sample_at_budget(0.25, 5)


@pytest.mark.parametrize("shape", [SMOLLM2, TINY], ids=["smollm2", "tiny"])
def test_sampling_differs_across_seeds(shape):
    space = SearchSpace(shape)
    assert len({space.sample(seed).key() for seed in range(10)}) >= 9
    assert len({space.sample_at_budget(0.3, seed).key() for seed in range(10)}) >= 9


@SHAPES
def test_sampled_architectures_are_contained(shape):
    space = SearchSpace(shape)
    for seed in range(20):
        arch = space.sample(seed)
        assert space.contains(arch)
        assert arch.shape == shape
    assert space.contains(Architecture.dense(shape))


def test_contains_rejects_off_grid_and_other_shapes():
    space = SearchSpace(TINY, mlp_step=32, dim_step=4)
    dense = Architecture.dense(TINY)
    assert space.contains(dense)
    off_grid = Architecture(TINY, (replace(dense.layers[0], mlp=33),) + dense.layers[1:])
    assert not space.contains(off_grid)
    odd_v = Architecture(TINY, (replace(dense.layers[0], v_dim=5),) + dense.layers[1:])
    assert not space.contains(odd_v)
    assert not space.contains(Architecture.dense(SMOLLM2))
    no_qk = SearchSpace(TINY, prune_qk=False)
    assert no_qk.choices()["qk_dim"] == [TINY.head_dim]
    assert not no_qk.contains(Architecture(TINY, (replace(dense.layers[0], qk_dim=8),) + dense.layers[1:]))
    for seed in range(10):
        assert all(layer.qk_dim in (0, TINY.head_dim) for layer in no_qk.sample(seed).layers)


def test_choices_of_smollm2():
    choices = SearchSpace(SMOLLM2).choices()
    assert choices["keep"] == [0, 1]
    assert choices["kv_heads"] == [0, 1, 2, 3]
    assert choices["q_per_kv"] == [1, 2, 3]
    assert choices["qk_dim"] == list(range(8, 65, 8))
    assert choices["v_dim"] == list(range(8, 65, 8))
    assert choices["mlp"][-1] == 1536 and 64 in choices["mlp"] and 1472 in choices["mlp"]
    assert all(v % 64 == 0 for v in choices["mlp"])


def test_mlp_gene_can_remove_the_mlp():
    space = SearchSpace(TINY)
    assert space.choices()["mlp"][0] == 0
    data = tiny_dict()
    data["layers"][0]["mlp"] = 0
    assert space.contains(Architecture.from_json(text(data)))


@pytest.mark.parametrize("shape", [SMOLLM2, TINY], ids=["smollm2", "tiny"])
def test_protected_layers_are_never_removed(shape):
    last = shape.num_layers - 1
    space = SearchSpace(shape, protected=(0, last))
    for seed in range(15):
        arch = space.sample(seed)
        assert arch.layers[0].keep and arch.layers[last].keep
        assert arch.layers[0].has_attention and arch.layers[last].has_attention
        assert space.contains(arch)
    budgets = [0.1, 0.3, 0.45] if shape is TINY else [0.1, 0.3, 0.5, 0.7]
    for budget in budgets:
        for seed in range(5):
            arch = space.sample_at_budget(budget, seed)
            assert arch.layers[0].keep and arch.layers[last].keep, (budget, seed)
            assert abs(cost(arch).removed - budget) <= 0.01
            assert space.contains(arch)
    # An architecture removing a protected layer is outside the space.
    dense = Architecture.dense(shape)
    removed = Architecture(shape, (LayerArch(keep=False),) + dense.layers[1:])
    assert not space.contains(removed)
    assert SearchSpace(shape).contains(removed)


def test_max_removable():
    space = SearchSpace(SMOLLM2)
    dense = param_count(Architecture.dense(SMOLLM2))
    fixed = SMOLLM2.vocab_size * SMOLLM2.hidden_size + SMOLLM2.hidden_size
    assert space.max_removable() == pytest.approx(1 - fixed / dense)
    nothing_kept = Architecture(SMOLLM2, (LayerArch(keep=False),) * SMOLLM2.num_layers)
    assert cost(nothing_kept).removed == pytest.approx(space.max_removable())
    protected = SearchSpace(SMOLLM2, protected=(0, 1))
    assert protected.max_removable() < space.max_removable()


@pytest.mark.parametrize("shape", [SMOLLM2, TINY], ids=["smollm2", "tiny"])
def test_impossible_budgets(shape):
    space = SearchSpace(shape)
    top = space.max_removable()
    for budget in (-0.1, -1e-9, top, top + 1e-9, 0.99 if top < 0.99 else 1.0, 1.0, 1.5, float("nan")):
        with pytest.raises(BudgetError, match=r"budget .* is impossible"):
            space.sample_at_budget(budget, 0)
        with pytest.raises(BudgetError):
            space.check_budget(budget)
    protected = SearchSpace(shape, protected=tuple(range(shape.num_layers)))
    assert protected.max_removable() == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(BudgetError):
        protected.sample_at_budget(0.05, 0)


def test_zero_budget_is_dense_within_tolerance():
    space = SearchSpace(SMOLLM2)
    arch = space.sample_at_budget(0.0, 0)
    assert cost(arch).removed <= 0.01


def test_invalid_space_settings():
    with pytest.raises(ArchitectureError, match=r"dim_step an even number"):
        SearchSpace(TINY, dim_step=3)
    with pytest.raises(ArchitectureError, match=r"mlp_step must be >= 1"):
        SearchSpace(TINY, mlp_step=0)
    with pytest.raises(ArchitectureError, match=r"protected layer\(s\) \[4\] outside 0\.\.3"):
        SearchSpace(TINY, protected=(0, 4))


def test_space_dict_roundtrip():
    space = SearchSpace(SMOLLM2, mlp_step=128, dim_step=16, prune_qk=False, protected=(0, 29))
    data = json.loads(json.dumps(space.to_dict()))
    assert SearchSpace.from_dict(data) == space


def test_layer_from_genes():
    space = SearchSpace(TINY)
    base = {"keep": 1, "kv_heads": 2, "q_per_kv": 3, "qk_dim": 16, "v_dim": 16, "mlp": 80}
    assert space.layer_from_genes(base) == Architecture.dense(TINY).layers[0]
    assert space.layer_from_genes({**base, "keep": 0}) == LayerArch(keep=False)
    assert space.layer_from_genes({**base, "kv_heads": 0}) == LayerArch(True, 0, 0, 0, 0, 80)
    assert space.layer_from_genes({**base, "kv_heads": 0, "mlp": 0}) == LayerArch(keep=False)


# --------------------------------------------------------------------------------------------------------------
# Cost model


def test_smollm2_dense_params():
    dense = Architecture.dense(SMOLLM2)
    assert param_count(dense) == 134_515_008
    c = cost(dense)
    assert c.params == c.dense_params == 134_515_008
    assert c.removed == 0
    assert c.kv_bytes == c.dense_kv_bytes == 30 * 3 * (64 + 64) * 2


def test_tiny_costs_by_hand():
    dense = Architecture.dense(TINY)
    h, V = 48, 23
    attn = h + h * 6 * 16 + h * 2 * 16 + h * 2 * 16 + 6 * 16 * h
    mlp = h + 3 * h * 80
    assert param_count(dense) == 2 * V * h + h + 4 * (attn + mlp)  # untied embeddings
    seq = 512
    layer_flops = 2 * h * (6 * 16 + 2 * 16 + 2 * 16 + 6 * 16) + 2 * 6 * 32 * (seq + 1) / 2 + 6 * h * 80
    assert flops_per_token(dense, seq) == pytest.approx(2 * h * V + 4 * layer_flops)
    assert kv_bytes_per_token(dense) == 4 * 2 * 32 * 2
    assert kv_bytes_per_token(dense, dtype_bytes=4) == 4 * 2 * 32 * 4
    # A pruned layer: kv=1, q_per_kv=2, qk=8, v=4, mlp=40; the others removed.
    layer = LayerArch(True, 1, 2, 8, 4, 40)
    arch = Architecture(TINY, (layer,) + (LayerArch(keep=False),) * 3)
    expect = 2 * V * h + h + (h + h * 2 * 8 + h * 1 * 8 + h * 1 * 4 + 2 * 4 * h) + (h + 3 * h * 40)
    assert param_count(arch) == expect
    assert kv_bytes_per_token(arch) == 1 * (8 + 4) * 2


def test_biases_are_counted():
    dense = Architecture.dense(BIASED)
    unbiased = Architecture.dense(replace(BIASED, qkv_bias=False))
    # q: 4 heads * 8, k: 2 * 8, v: 2 * 8 per layer, 3 layers
    assert param_count(dense) - param_count(unbiased) == 3 * (32 + 16 + 16)
    with_o = Architecture.dense(replace(BIASED, o_bias=True))
    assert param_count(with_o) - param_count(dense) == 3 * 32
    with_mlp = Architecture.dense(replace(BIASED, mlp_bias=True))
    assert param_count(with_mlp) - param_count(dense) == 3 * (2 * 48 + 32)


REDUCTIONS = {
    "kv_heads": dict(kv_heads=1),
    "q_per_kv": dict(q_per_kv=2),
    "qk_dim": dict(qk_dim=48),
    "v_dim": dict(v_dim=32),
    "mlp": dict(mlp=1024),
    "no attention": dict(kv_heads=0, q_per_kv=0, qk_dim=0, v_dim=0),
    "no mlp": dict(mlp=0),
}
REDUCES_KV = {"kv_heads", "qk_dim", "v_dim", "no attention"}


@pytest.mark.parametrize("name", REDUCTIONS)
def test_removing_units_lowers_costs(name):
    dense = Architecture.dense(SMOLLM2)
    layers = list(dense.layers)
    layers[5] = replace(layers[5], **REDUCTIONS[name])
    arch = Architecture(SMOLLM2, tuple(layers))
    c, d = cost(arch), cost(dense)
    assert c.params < d.params
    assert c.flops < d.flops
    assert c.dense_flops == d.flops and c.dense_params == d.params and c.dense_kv_bytes == d.kv_bytes
    if name in REDUCES_KV:
        assert c.kv_bytes < d.kv_bytes
    else:
        assert c.kv_bytes == d.kv_bytes
    # Removing the whole block costs less still.
    layers[5] = LayerArch(keep=False)
    whole = cost(Architecture(SMOLLM2, tuple(layers)))
    assert whole.params < c.params and whole.flops < c.flops and whole.kv_bytes <= c.kv_bytes


def test_costs_monotone_along_budgets():
    space = SearchSpace(SMOLLM2)
    dense = cost(Architecture.dense(SMOLLM2))
    for seed in range(5):
        arch = space.sample_at_budget(0.4, seed)
        c = cost(arch)
        assert c.params < dense.params
        assert c.flops < dense.flops
        assert c.kv_bytes <= dense.kv_bytes
    # Nested architectures: every count of b <= every count of a gives lower or equal cost.
    a = space.sample(3)
    b = Architecture(SMOLLM2, tuple(
        layer if not layer.keep else replace(layer, mlp=max(64, layer.mlp - 64)) for layer in a.layers
    ))
    assert cost(b).params <= cost(a).params and cost(b).flops <= cost(a).flops


def test_kv_bytes_zero_without_attention():
    layer = LayerArch(True, 0, 0, 0, 0, 512)
    arch = Architecture(SMOLLM2, (layer,) * SMOLLM2.num_layers)
    c = cost(arch)
    assert c.kv_bytes == 0 and kv_bytes_per_token(arch, dtype_bytes=4) == 0
    assert c.dense_kv_bytes > 0
    # Without attention the FLOPs do not depend on the context length; with it they grow with it.
    assert flops_per_token(arch, 128) == flops_per_token(arch, 4096)
    dense = Architecture.dense(SMOLLM2)
    assert flops_per_token(dense, 128) < flops_per_token(dense, 4096)
    removed = Architecture(SMOLLM2, (LayerArch(keep=False),) * SMOLLM2.num_layers)
    assert cost(removed).kv_bytes == 0
    assert cost(removed).flops == 2 * SMOLLM2.hidden_size * SMOLLM2.vocab_size  # the LM head alone


@SHAPES
def test_removed_consistent_with_params(shape):
    space = SearchSpace(shape)
    for seed in range(10):
        arch = space.sample(seed)
        c = cost(arch, seq_len=256)
        assert c.params == param_count(arch)
        assert c.dense_params == param_count(Architecture.dense(shape))
        assert c.removed == pytest.approx(1 - c.params / c.dense_params)
        assert 0 <= c.removed < 1
        assert c.seq_len == 256
        assert c.flops == flops_per_token(arch, 256)
        data = c.to_dict()
        assert data["removed"] == c.removed and data["params"] == c.params
        # Indices do not change any cost.
        assert cost(select_units(arch, random_scores(shape, seed)), seq_len=256) == c
