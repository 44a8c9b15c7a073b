"""Evaluate one architecture end to end: pick its units, materialize it, measure perplexity, cost and speed."""

from __future__ import annotations

import hashlib
import json
import math
import platform
import time
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import torch

from prunesearch.data import eval_windows, parse_dataset, token_ids
from prunesearch.evaluate.perplexity import Perplexity, perplexity
from prunesearch.evaluate.speed import check_workload, compare_speed
from prunesearch.evaluate.store import Fidelity
from prunesearch.errors import ArchitectureError
from prunesearch.models import LoadedModel, describe_device, dtype_name
from prunesearch.paths import atomic_write_text, cache_dir
from prunesearch.pruners import (CalibrationSpec, Refit, UnitScores, calibrate, materialize,
                                 select_units)
from prunesearch.pruners.priors import UNIT_METHODS, unit_scores
from prunesearch.space import Architecture, Workload, cost


def environment() -> dict[str, str]:
    """Package versions every result records."""
    out = {"python": platform.python_version()}
    for name in ("prunesearch", "torch", "transformers"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


@dataclass(frozen=True)
class EvalSpec:
    """What text a perplexity is measured on: ``data`` split, ``window`` length, first ``max_tokens`` tokens."""

    data: str = "ptb-test"
    window: int = 512
    max_tokens: int | None = None
    batch_size: int = 2


def with_units(loaded: LoadedModel, arch: Architecture, calibration: CalibrationSpec = CalibrationSpec(),
               progress: bool = True) -> Architecture:
    """``arch`` itself when it already names its units, else units chosen by the scores its ``units`` meta names
    (what a reused predictor was trained with), activation-aware scores when it names none."""
    if arch.has_indices:
        return arch
    units = arch.meta.get("units", "activation")
    if units not in UNIT_METHODS:
        raise ArchitectureError(f"the architecture's units {units!r} name no unit method ({', '.join(UNIT_METHODS)})")
    stats = calibrate(loaded.model, loaded.tokenizer, loaded.fingerprint, calibration, progress)
    return select_units(arch, unit_scores(loaded.model, stats, units))


def dense_perplexity(loaded: LoadedModel, spec: EvalSpec, windows: torch.Tensor, progress: bool = True) -> Perplexity:
    """The dense model's perplexity on ``windows``, cached per model fingerprint and evaluation spec."""
    key = json.dumps([loaded.fingerprint, asdict(spec) | {"batch_size": None}], sort_keys=True)
    path = cache_dir("dense_ppl") / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"
    if path.exists():
        return Perplexity(**json.loads(path.read_text()))
    result = perplexity(loaded.model, windows, spec.batch_size, progress, desc="dense perplexity")
    atomic_write_text(path, json.dumps(asdict(result)))
    return result


def evaluate_architecture(
    loaded: LoadedModel,
    arch: Architecture,
    spec: EvalSpec = EvalSpec(),
    calibration: CalibrationSpec = CalibrationSpec(),
    with_dense: bool = True,
    speed_repeats: int = 5,
    progress: bool = True,
    refit: Refit | None = None,
    speed: Workload = Workload(),
) -> dict[str, Any]:
    """Measure ``arch`` (materialized with ``refit``, if given) on held-out text and return one flat record (the
    CLI's ``--json`` object); its speed is taken on the ``speed`` workload."""
    parse_dataset(spec.data)
    if speed_repeats > 0:
        check_workload(loaded.model.config, speed)
    arch = with_units(loaded, arch, calibration, progress)
    pruned = materialize(loaded.model, arch, refit)
    windows = eval_windows(token_ids(loaded.tokenizer, spec.data), spec.window, spec.max_tokens)
    result = perplexity(pruned, windows, spec.batch_size, progress, desc="pruned perplexity")
    costs = cost(arch, seq_len=spec.window)
    real_params = sum(p.numel() for p in pruned.parameters())
    record: dict[str, Any] = {
        "ppl": result.ppl,
        "nll": result.nll,
        "params": real_params,
        "dense_params": costs.dense_params,
        "removed": 1 - real_params / costs.dense_params,
        "flops": costs.flops,
        "dense_flops": costs.dense_flops,
        "kv_bytes": costs.kv_bytes,
        "dense_kv_bytes": costs.dense_kv_bytes,
        "blocks_removed": sum(not layer.keep for layer in arch.layers),
        "split": spec.data,
        "window": spec.window,
        "tokens": int(windows.numel()),
        "scored_tokens": result.scored_tokens,
        "fingerprint": loaded.fingerprint,
        "model": loaded.name,
        "arch_key": arch.key(),
        "calibration": asdict(calibration),
        "refit": refit.spec.to_dict() if refit else None,
        "device": describe_device(loaded.model.device),
        "dtype": dtype_name(loaded.model.dtype),
        "versions": environment(),
    }
    if with_dense:
        record["dense_ppl"] = dense_perplexity(loaded, spec, windows, progress).ppl
        record["ppl_ratio"] = record["ppl"] / record["dense_ppl"]
    if speed_repeats > 0:
        timed = compare_speed(loaded.model, pruned, speed, repeats=speed_repeats)
        record.update(
            **speed.to_dict(),
            speed_ratio=timed.ratio,
            tokens_per_s=timed.tokens_per_s,
            dense_tokens_per_s=timed.dense_tokens_per_s,
        )
    return record


def measure(loaded: LoadedModel, arch: Architecture, fidelity: Fidelity, scores: UnitScores | None = None,
            progress: bool = False, refit: Refit | None = None) -> dict[str, Any]:
    """One search-time pair: ``arch`` (units chosen by ``scores`` unless it names them) materialized (with
    ``refit``, if given) and measured on the fidelity's text; ``ppl`` pools every scored token of every data set."""
    start = time.perf_counter()
    if not arch.has_indices:
        if scores is None:
            raise ArchitectureError("the architecture lacks unit indices and no scores were given to choose them")
        arch = select_units(arch, scores)
    pruned = materialize(loaded.model, arch, refit)
    total, count, per_split = 0.0, 0, {}
    for data in fidelity.data:
        windows = fidelity.windows(token_ids(loaded.tokenizer, data))
        result = perplexity(pruned, windows, progress=progress, desc=f"pair on {data}")
        per_split[f"ppl_{data}"] = result.ppl
        total += result.nll * result.scored_tokens
        count += result.scored_tokens
    nll = total / count
    accuracy = _accuracy(loaded, pruned, fidelity) if fidelity.tasks else {}
    costs = cost(arch, seq_len=fidelity.window)
    return {
        "ppl": math.exp(nll) if math.isfinite(nll) and nll < 700 else math.inf,
        "nll": nll,
        **per_split,
        "params": costs.params,
        "removed": costs.removed,
        "flops_ratio": costs.flops / costs.dense_flops,
        "kv_ratio": costs.kv_bytes / costs.dense_kv_bytes,
        "blocks_removed": sum(not layer.keep for layer in arch.layers),
        "scored_tokens": count,
        "seconds": time.perf_counter() - start,
        "device": describe_device(loaded.model.device),
        "fingerprint": loaded.fingerprint,
        **accuracy,
    }


def _accuracy(loaded: LoadedModel, pruned, fidelity: Fidelity) -> dict[str, float]:
    """Mean zero-shot accuracy over the fidelity's tasks (and each task's), for an accuracy objective."""
    from prunesearch.evaluate.zeroshot import evaluate_tasks

    scores = evaluate_tasks(pruned, loaded.tokenizer, fidelity.tasks, fidelity.task_limit, progress=False)
    per_task = {f"acc_{task}": entry["value"] for task, entry in scores["tasks"].items()}
    return {"accuracy": sum(per_task.values()) / len(per_task), **per_task}
