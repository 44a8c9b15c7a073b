"""Searched, greedy and heuristic models side by side on held-out test text, in one run."""

from __future__ import annotations

from collections.abc import Mapping

from tqdm.auto import tqdm

from prunesearch.evaluate import EvalSpec, evaluate_architecture
from prunesearch.models import LoadedModel
from prunesearch.search.report import Row
from prunesearch.space import Architecture, cost

TEST_SPLITS = ("ptb-test", "wiki-test")


def compare(loaded: LoadedModel, models: Mapping[str, tuple[str, Architecture]], max_tokens: int | None,
            splits: tuple[str, ...] = TEST_SPLITS, speed_repeats: int = 2, progress: bool = True) -> list[Row]:
    """One row for the dense model and one per ``name -> (kind, architecture)``: perplexity on every test split
    (first ``max_tokens`` tokens each) and tokens/s against dense, measured interleaved."""
    rows: list[Row] = []
    dense: dict[str, float] = {}
    for name, (kind, arch) in tqdm(models.items(), desc="compare", disable=not progress, leave=False):
        ppl, record = {}, {}
        for i, split in enumerate(splits):
            record = evaluate_architecture(loaded, arch, EvalSpec(data=split, max_tokens=max_tokens),
                                           speed_repeats=speed_repeats if i == 0 else 0, progress=False)
            ppl[split] = record["ppl"]
            dense[split] = record["dense_ppl"]
            if i == 0:
                speed = record.get("speed_ratio")
        rows.append(Row(name=name, kind=kind, removed=record["removed"], params=record["params"], ppl=ppl,
                        speed_ratio=speed, extra={"arch_key": arch.key(), "tokens": record["tokens"]}))
    first = next(iter(models.values()))[1]
    rows.insert(0, Row(name="dense", kind="dense", removed=0.0, params=cost(first).dense_params, ppl=dense,
                       speed_ratio=1.0))
    return rows
