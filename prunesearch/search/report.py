"""The campaign report: the searched model against the baselines, as markdown, a terminal table and JSON.

Pure functions over plain rows; the campaign gathers the measurements. Ratios compare each searched (or greedy)
model with the *best* baseline on each data split, since a search only earns its cost if it beats them all.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table

from prunesearch.paths import atomic_write_text

KINDS = ("dense", "searched", "baseline", "greedy")
COMPARED = ("searched", "greedy")


@dataclass
class Row:
    """One model of the comparison. ``ppl`` maps a data split (e.g. ``"ptb-test"``) to perplexity; ``speed_ratio``
    is its tokens/s over the dense model's on the workload ``speed_mode`` describes (``Workload.describe``: a
    prompt's forward or decoding, and a batch and context other than the default); ``flops_ratio`` and
    ``kv_ratio`` its FLOPs and KV-cache bytes per token over the dense model's (the cost model's exact figures);
    ``accuracy`` maps a zero-shot task to accuracy in 0..1; ``budget`` groups the rows of one target, so that a
    model is only compared with the baselines of its own budget."""

    name: str
    kind: str
    removed: float
    params: int
    ppl: dict[str, float]
    speed_ratio: float | None = None
    speed_mode: str = "prefill"
    flops_ratio: float | None = None
    kv_ratio: float | None = None
    accuracy: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    budget: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"row {self.name!r}: kind must be one of {', '.join(KINDS)}, got {self.kind!r}")


def _num(value: float | None, digits: int, suffix: str = "") -> str:
    if value is None:
        return "-"
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:,.{digits}f}{suffix}"


def _keys(mappings: Sequence[Mapping[str, Any]]) -> list[str]:
    """Union of the keys, in first-seen order, so columns follow the order the campaign measured them in."""
    return list(dict.fromkeys(key for mapping in mappings for key in mapping))


def references(rows: Sequence[Row], reference: str | None = None) -> dict[str, float]:
    """Per split, the ppl the ratio columns divide by: the named row's, or the lowest finite one of any baseline
    (pass the rows of one budget)."""
    if reference is not None:
        named = [row for row in rows if row.name == reference]
        if not named:
            raise ValueError(f"reference row {reference!r} is not among the rows")
        return {split: ppl for split, ppl in named[0].ppl.items() if math.isfinite(ppl) and ppl > 0}
    best: dict[str, float] = {}
    for row in rows:
        if row.kind != "baseline":
            continue
        for split, ppl in row.ppl.items():
            if math.isfinite(ppl) and 0 < ppl < best.get(split, math.inf):
                best[split] = ppl
    return best


def _cells(rows: Sequence[Row], reference: str | None) -> tuple[list[str], list[list[str]]]:
    """Headers and formatted cells shared by the markdown and the terminal table (right-aligned from column 3)."""
    splits = _keys([row.ppl for row in rows])
    tasks = _keys([row.accuracy for row in rows])
    budgets = {row.budget for row in rows}
    against = {b: references(rows, reference) if reference is not None else
               references([row for row in rows if row.budget == b]) for b in budgets}
    versus = f"× {reference}" if reference is not None else "× best baseline"
    headers = ["model", "kind", "removed", "params (M)", "FLOPs × dense", "KV × dense"]
    headers += [f"{split} ppl" for split in splits]
    headers += [f"{split} {versus}" for split in splits]
    modes = {row.speed_mode for row in rows if row.speed_ratio is not None}
    headers += ["tokens/s × dense" if modes <= {"prefill"} else f"{'/'.join(sorted(modes))} tokens/s × dense"]
    if tasks:
        headers += [f"{task} acc %" for task in tasks] + ["avg acc %"]
    body = []
    for row in rows:
        same = row.extra.get("same_as")
        name = row.name if same is None else f"{row.name} (= {same})"
        cells = [name, row.kind, _num(100 * row.removed, 1, "%"), _num(row.params / 1e6, 1),
                 _num(row.flops_ratio, 2, "×"), _num(row.kv_ratio, 2, "×")]
        cells += [_num(row.ppl.get(split), 1) for split in splits]
        for split in splits:
            ppl, base = row.ppl.get(split), against[row.budget].get(split)
            shown = row.kind in COMPARED and ppl is not None and base is not None and row.name != reference
            cells.append(_num(ppl / base, 2, "×") if shown else "-")
        cells.append(_num(row.speed_ratio, 2, "×"))
        if tasks:
            cells += [_num(None if task not in row.accuracy else 100 * row.accuracy[task], 1) for task in tasks]
            complete = all(task in row.accuracy for task in tasks)
            cells.append(_num(100 * sum(row.accuracy[task] for task in tasks) / len(tasks), 1) if complete else "-")
        body.append(cells)
    return headers, body


def comparison_markdown(rows: Sequence[Row], reference: str | None = None) -> str:
    """A GitHub markdown table of ``rows``; ratio columns divide by the best baseline per split, or by the
    ppl of the row named ``reference``."""
    headers, body = _cells(rows, reference)

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    rule = ["---", "---"] + ["---:"] * (len(headers) - 2)
    return "\n".join([line(headers), line(rule)] + [line(cells) for cells in body])


def comparison_table(rows: Sequence[Row], reference: str | None = None, title: str | None = None) -> Table:
    """The same comparison as ``comparison_markdown`` for a rich console: every cell on one line (a narrow terminal
    wraps the headers, never a number)."""
    headers, body = _cells(rows, reference)
    table = Table(title=title)
    for i, header in enumerate(headers):
        widest = max((len(cells[i]) for cells in body), default=0)
        table.add_column(header, justify="left" if i < 2 else "right", min_width=widest, overflow="fold")
    for cells in body:
        table.add_row(*cells)
    return table


def _value(value: object) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return _num(value, 0)
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {_value(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(_value(v) for v in value)
    return str(value)


def write_report(
    directory: Path,
    title: str,
    summary: Mapping[str, object],
    rows: Sequence[Row],
    figures: Mapping[str, Path],
    sections: Mapping[str, str] | None = None,
) -> Path:
    """Write ``directory/report.md`` atomically and return its path.

    Figures are linked relative to ``directory`` (a figure path is read like any path: relative to the working
    directory unless absolute), so the report folder can be moved or published as a whole.
    """
    directory = Path(directory)
    parts = [f"# {title}", ""]
    parts += [f"- **{key}**: {_value(value)}" for key, value in summary.items()]
    parts += ["", "## Comparison", "", comparison_markdown(rows), ""]
    for heading, text in (sections or {}).items():
        parts += [f"## {heading}", "", text.strip(), ""]
    if figures:
        parts += ["## Figures", ""]
        for name, figure in figures.items():
            link = Path(os.path.relpath(Path(figure).absolute(), directory.absolute())).as_posix()
            parts += [f"### {name}", "", f"![{name}]({link})", ""]
    path = directory / "report.md"
    atomic_write_text(path, "\n".join(parts))
    return path


def _strict(value: Any) -> Any:
    """Non-finite floats (a collapsed model's ppl) become None so that ``--json`` prints strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    return value


def rows_to_json(rows: Sequence[Row]) -> list[dict[str, Any]]:
    """The rows as JSON-ready dicts, inf/nan as null."""
    return [_strict(asdict(row)) for row in rows]
