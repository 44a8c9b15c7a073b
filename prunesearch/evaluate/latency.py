"""Timing pruned models on this device to fit a ``LatencyModel`` (``prunesearch.space.latency``).

A forward, or a generated token, takes as long whatever the weights hold. So the timed models are built from the
config with random weights and random unit choices: a latency model needs the model's config, not its checkpoint.
Architectures are sampled across the space's budgets, the dense one first, each built in the pruned model class.
Each one is timed interleaved with the dense parent in its own class (``LlamaForCausalLM`` and the like: the model a
speedup is over, up to 3% slower than its pruned-class twin at batch 8 or a 2,048-token context), and its time is
taken as its ratio to the parent's beside it, times the parent's time. That way drift on a shared machine hits both
alike. Each time is the fastest of its repeats, as ``timeit`` takes it: another process on the
cores only ever adds time, so the minimum is what the device itself does. On this 2-core CPU, beside a campaign
using both cores, four fits of one thread each read the most pruned sample at 0.91x-2.80x by medians of two
repeats and at 1.71x-1.72x by minima of three. (Two threads against a busy core measure OpenMP's waiting, not the
model: pin ``OMP_NUM_THREADS`` to the free cores.) Non-negative least squares (scikit-learn's
``LinearRegression(positive=True)``) gives the fixed time and the coefficients. Five-fold out-of-fold predictions
show how far its speedups are from the measured ones.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import numpy as np
import torch
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import KFold, cross_val_predict
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM, PreTrainedModel

from prunesearch.models.device import describe_device
from prunesearch.models.modeling_pruned_llama import PrunedLlamaForCausalLM
from prunesearch.paths import cache_dir
from prunesearch.pruners.materialize import pruned_config
from prunesearch.pruners.scores import UnitScores
from prunesearch.pruners.selection import select_units
from prunesearch.evaluate.speed import check_workload, prompt, step_timer
from prunesearch.space import Architecture, Limits, SearchSpace, Workload
from prunesearch.space.latency import FLOOR, LatencyModel, block_terms


TIMING = "fastest of the interleaved repeats, beside the dense parent's own class; decode cache copied off the clock"
"""How a model is timed (part of the cache key: a model fitted otherwise is timed again)."""


def latency_archs(space: SearchSpace, samples: int, seed: int = 0) -> list[Architecture]:
    """The dense model, then ``samples`` random architectures on budgets spread evenly over what the space can
    remove (each a random mix of removed blocks, heads, dims and channels)."""
    budgets = np.linspace(0.05, 0.9 * space.max_removable(), samples)
    return [Architecture.dense(space.shape)] + [space.sample_at_budget(float(b), seed + i)
                                                for i, b in enumerate(budgets)]


def _random_scores(space: SearchSpace, seed: int) -> UnitScores:
    s, g = space.shape, torch.Generator().manual_seed(seed)
    return UnitScores(torch.rand(s.num_layers, s.intermediate_size, generator=g),
                      torch.rand(s.num_layers, s.num_heads, generator=g),
                      torch.rand(s.num_layers, s.num_kv_heads, s.head_dim, generator=g),
                      torch.rand(s.num_layers, s.num_kv_heads, s.head_dim // 2, generator=g))


def _random_model(dense_config, arch: Architecture, scores: UnitScores, device: torch.device = torch.device("cpu"),
                  dtype: torch.dtype = torch.float32) -> PrunedLlamaForCausalLM:
    config = pruned_config(dense_config, select_units(arch, scores, "random"))
    torch.manual_seed(0)
    with device:  # built where it is timed; the units were chosen on the CPU, where the scores are
        return PrunedLlamaForCausalLM(config).to(dtype).eval()


def _random_parent(dense_config, device: torch.device = torch.device("cpu"),
                   dtype: torch.dtype = torch.float32) -> PreTrainedModel:
    """The dense model in its own class (e.g. ``LlamaForCausalLM``): what a speedup is over."""
    torch.manual_seed(0)
    with device:
        return AutoModelForCausalLM.from_config(dense_config).to(dtype).eval()


@torch.no_grad()
def measure_latency(dense_config, space: SearchSpace, workload: Workload = Workload(), samples: int = 24,
                    repeats: int = 3, seed: int = 0, progress: bool = True,
                    device: torch.device = torch.device("cpu"), dtype: torch.dtype = torch.float32) -> LatencyModel:
    """Time ``samples`` sampled architectures (the dense one first) beside the dense parent in its own class
    (``repeats`` interleaved steps of ``workload`` each on ``device`` in ``dtype``, after a warm-up) and fit the
    latency model to them."""
    if samples < 8 or repeats < 1:
        raise ValueError("a latency fit needs at least 8 sampled architectures and 1 timed step each")
    archs = latency_archs(space, samples, seed)
    scores = _random_scores(space, seed)
    batch, mode = prompt(dense_config, workload, seed).to(device), workload.mode
    dense = step_timer(_random_parent(dense_config, device, dtype), batch, mode)
    dense()
    ratios, dense_times = [], []
    for arch in tqdm(archs, desc=f"latency ({workload.describe()})", disable=not progress):
        timer = step_timer(_random_model(dense_config, arch, scores, device, dtype), batch, mode)
        timer()
        times, beside = [], []
        for _ in range(repeats):
            beside.append(dense())
            times.append(timer())
        ratios.append(min(times) / min(beside))
        dense_times += beside
    seconds = np.array(ratios) * min(dense_times)
    terms = block_terms(space.shape, np.stack([a.as_array() for a in archs]), workload.context)
    x = np.hstack([np.ones((len(archs), 1)), terms])
    regression = LinearRegression(positive=True, fit_intercept=False)
    coef = regression.fit(x, seconds).coef_
    parent = min(dense_times)
    held_out = np.maximum(cross_val_predict(regression, x, seconds, cv=KFold(5, shuffle=True, random_state=seed)),
                          FLOOR * parent)
    measured_speedup = parent / seconds
    error = np.abs(seconds / held_out - 1)
    fit = {"timed": len(archs), "repeats": repeats, "timing": TIMING, "seed": seed,
           "measured_speedups": [round(float(v), 4) for v in measured_speedup],
           "held_out_speedup_error_mean": float(error.mean()), "held_out_speedup_error_max": float(error.max())}
    return LatencyModel(space.shape, workload.context, workload.batch, describe_device(device), float(coef[0]),
                        tuple(float(c) for c in coef[1:]), parent, mode, fit)


def latency_model(dense_config, space: SearchSpace, workload: Workload = Workload(), samples: int = 24,
                  repeats: int = 3, seed: int = 0, progress: bool = True,
                  device: torch.device = torch.device("cpu"), dtype: torch.dtype = torch.float32) -> LatencyModel:
    """``measure_latency``, cached per model shape, workload, settings, device and precision (timing takes
    minutes)."""
    key = json.dumps({"shape": space.shape.to_dict(), "mode": workload.mode, "seq_len": workload.context,
                      "batch_size": workload.batch, "samples": samples, "repeats": repeats, "timing": TIMING,
                      "seed": seed, "device": describe_device(device), "mlp_step": space.mlp_step,
                      **({} if dtype == torch.float32 else {"dtype": str(dtype)})}, sort_keys=True)
    path = cache_dir("latency") / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"
    if path.exists():
        return LatencyModel.load(path)
    model = measure_latency(dense_config, space, workload, samples, repeats, seed, progress, device, dtype)
    model.save(path)
    return model


def with_latency(limits: Limits, dense_config, space: SearchSpace, progress: bool = True,
                 device: torch.device = torch.device("cpu"), dtype: torch.dtype = torch.float32) -> Limits:
    """``limits`` with the latency model of its speed workload on ``device`` in ``dtype`` attached when it has a
    speed floor and none yet; a workload the model cannot take is refused here, before a campaign, comparison or
    search starts."""
    check_workload(dense_config, limits.speed)
    if limits.speedup is None or limits.latency is not None:
        return limits
    return replace(limits, latency=latency_model(dense_config, space, limits.speed, progress=progress, device=device,
                                                 dtype=dtype))
