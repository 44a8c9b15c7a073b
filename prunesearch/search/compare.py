"""Searched, greedy and heuristic models side by side on held-out test text (and zero-shot tasks), in one run."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from tqdm.auto import tqdm

from prunesearch.errors import ArchitectureError, BudgetError
from prunesearch.evaluate import EvalSpec, evaluate_architecture, with_units
from prunesearch.models import LoadedModel
from prunesearch.pruners import CalibrationSpec, Refit, materialize
from prunesearch.pruners.baselines import METHODS, baseline
from prunesearch.search.report import Row
from prunesearch.space import Architecture, Limits, Workload, cost

TEST_SPLITS = ("ptb-test", "wiki-test")
HIGHEST_BUDGET = 0.5


def least_budget(meets: Callable[[float], bool], start: float, coarse: float = 0.05,
                 highest: float = HIGHEST_BUDGET) -> float | None:
    """The least budget on a 0.01 grid from ``start`` at which ``meets(budget)`` holds: up a ``coarse`` grid first,
    then 0.01 steps back down (a heuristic's FLOPs and KV cache fall as its budget grows); None where even
    ``highest`` fails."""
    budget = round(start, 2)
    while not meets(budget):
        if budget >= highest:
            return None
        budget = round(min(budget + coarse, highest), 2)
    while budget - 0.01 >= start - 1e-9 and meets(round(budget - 0.01, 2)):
        budget = round(budget - 0.01, 2)
    return budget


def baseline_budget(loaded: LoadedModel, method: str, budget: float, limits: Limits = Limits(),
                    calibration: CalibrationSpec = CalibrationSpec(), progress: bool = True) -> float | None:
    """The budget at which ``method`` stands beside a search at ``budget`` under ``limits``: ``budget`` itself, or
    with limits the least budget whose architecture meets them (a heuristic has no notion of a ceiling, so this is
    what a user without a search would do). None: no budget up to ``HIGHEST_BUDGET`` meets them (LLM-BIP and the
    uniform MLP cut keep every KV head, so they never meet a KV ceiling)."""
    if not limits:
        return budget

    def meets(b: float) -> bool:
        try:
            return limits.met_by(baseline(method, loaded, b, calibration, progress=progress))
        except BudgetError:
            return False

    return least_budget(meets, budget)


def baselines_at(loaded: LoadedModel, budget: float, methods: Sequence[str] = METHODS, progress: bool = True,
                 limits: Limits = Limits(), calibration: CalibrationSpec = CalibrationSpec(),
                 ) -> tuple[dict[str, tuple[str, Architecture]], list[str]]:
    """Every heuristic baseline beside a search at ``budget``, named ``"<method> <pct>%"`` (cached per model and
    budget): at ``budget``, or with ``limits`` at the least budget that meets them. Also returns the methods that
    no budget lets meet the limits."""
    models, unmet = {}, []
    for method in methods:
        found = baseline_budget(loaded, method, budget, limits, calibration, progress)
        if found is None:
            unmet.append(method)
        else:
            models[f"{method} {found:.0%}"] = ("baseline", baseline(method, loaded, found, calibration,
                                                                    progress=progress))
    return models, unmet


def greedy_beside(at: Callable[[float, int], Architecture], budget: float, stages: int = 3,
                  limits: Limits = Limits()) -> dict[str, tuple[str, Architecture]]:
    """The greedy allocator ``at(budget, stages)`` (``pruners.greedy.greedy_reference``, or a campaign's own) beside
    a search at ``budget``, as ``{"greedy <pct>%": ("greedy", arch)}``: at ``budget``, or with ``limits`` at the
    least budget whose allocation meets them, as for the baselines. That budget is found on the one-stage
    allocation (table lookups, free), then raised 0.01 at a time while the re-probed one (each new budget costs its
    probes) still breaks them. Empty where no budget up to ``HIGHEST_BUDGET`` meets them."""

    def meets(b: float, n: int) -> bool:
        try:
            return limits.met_by(at(b, n))
        except BudgetError:
            return False

    found = least_budget(lambda b: meets(b, 1), budget) if limits else budget
    while found is not None and limits and not meets(found, stages):
        found = round(found + 0.01, 2) if found < HIGHEST_BUDGET else None
    return {} if found is None else {f"greedy {found:.0%}": ("greedy", at(found, stages))}


def check_model(loaded: LoadedModel, arch: Architecture, where: str) -> None:
    """Refuse an architecture whose recorded model fingerprint is not the loaded model's."""
    fingerprint = arch.meta.get("fingerprint")
    if fingerprint and fingerprint != loaded.fingerprint:
        raise ArchitectureError(f"{where} was made for model {fingerprint}, not {loaded.name} ({loaded.fingerprint})")


def _accuracy(loaded: LoadedModel, arch: Architecture | None, tasks: Sequence[str], limit: int | None,
              refit: Refit | None = None) -> dict[str, float]:
    from prunesearch.evaluate.zeroshot import evaluate_tasks

    model = loaded.model if arch is None else materialize(loaded.model, arch, refit)
    scores = evaluate_tasks(model, loaded.tokenizer, tasks, limit, fingerprint=loaded.fingerprint, progress=False)
    return {task: entry["value"] for task, entry in scores["tasks"].items()}


def compare(loaded: LoadedModel, models: Mapping[str, tuple[str, Architecture]], max_tokens: int | None,
            splits: tuple[str, ...] = TEST_SPLITS, speed_repeats: int = 5, tasks: Sequence[str] = (),
            limit: int | None = None, progress: bool = True, refit: Refit | None = None,
            speed: Workload = Workload()) -> list[Row]:
    """One row for the dense model and one per ``name -> (kind, architecture)``: perplexity on every test split
    (first ``max_tokens`` tokens each), tokens/s on the ``speed`` workload against dense measured interleaved, and
    with ``tasks`` the zero-shot accuracy of each (first ``limit`` documents per task). A ``refit`` applies to every
    pruned model alike, searched and heuristic, so the table compares allocations, not materializers. An
    architecture met twice (a search whose winner is its greedy seed) is measured once and its row names the first
    (``extra["same_as"]``): one model must not read two speeds."""
    rows: list[Row] = []
    dense: dict[str, float] = {}
    first_of: dict[str, Row] = {}
    for name, (kind, arch) in tqdm(models.items(), desc="compare", disable=not progress, leave=False):
        arch = with_units(loaded, arch, progress=False)
        key = arch.key()
        if (seen := first_of.get(key)) is not None:
            rows.append(replace(seen, name=name, kind=kind, ppl=dict(seen.ppl), accuracy=dict(seen.accuracy),
                                extra={**seen.extra, "same_as": seen.name}))
            continue
        ppl, record = {}, {}
        for i, split in enumerate(splits):
            record = evaluate_architecture(loaded, arch, EvalSpec(data=split, max_tokens=max_tokens),
                                           speed_repeats=speed_repeats if i == 0 else 0, progress=False,
                                           refit=refit, speed=speed)
            ppl[split] = record["ppl"]
            dense[split] = record["dense_ppl"]
            if i == 0:
                speed_ratio = record.get("speed_ratio")
        accuracy = _accuracy(loaded, arch, tasks, limit, refit) if tasks else {}
        rows.append(Row(name=name, kind=kind, removed=record["removed"], params=record["params"], ppl=ppl,
                        speed_ratio=speed_ratio, speed_mode=speed.describe(),
                        flops_ratio=record["flops"] / record["dense_flops"],
                        kv_ratio=record["kv_bytes"] / record["dense_kv_bytes"], accuracy=accuracy,
                        extra={"arch_key": key, "tokens": record["tokens"]}))
        first_of[key] = rows[-1]
    first = next(iter(models.values()))[1]
    rows.insert(0, Row(name="dense", kind="dense", removed=0.0, params=cost(first).dense_params, ppl=dense,
                       speed_ratio=1.0, speed_mode=speed.describe(), flops_ratio=1.0, kv_ratio=1.0,
                       accuracy=_accuracy(loaded, None, tasks, limit) if tasks else {}))
    return rows
