"""Figures of a search campaign, each written as one PNG from plain data.

Figures are built on ``matplotlib.figure.Figure`` with the Agg canvas, never through pyplot, so they need no
display, leave no global figure state behind in a long campaign, and are freed once the function returns.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogFormatter, PercentFormatter

from prunesearch.predictor.metrics import kendall_tau, spearman
from prunesearch.space.architecture import Architecture

DPI = 120
GROUP_COLORS = {"random": "tab:gray", "prior": "tab:blue", "search": "tab:red"}
METRICS = {"kendall_tau": "Kendall tau", "spearman": "Spearman", "precision_at_top": "precision of the top 10%"}
TAU_TARGET, PRECISION_TARGET = 0.85, 0.7


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | Path) -> Path:
    """Write the PNG and drop the figure's artists (there is no pyplot registry to close it in)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    fig.clear()
    return path


def _log_scale(ax, which: str) -> None:
    """Log scale on ``which`` ("x" or "y") labelled 20, 50, 100 rather than 2x10^1: ppl reads as plain numbers."""
    getattr(ax, f"set_{which}scale")("log")
    axis = getattr(ax, f"{which}axis")
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(1.5, 0.5)))


def _plottable(x: float, y: float) -> bool:
    """A point whose y a log-scaled ppl axis can show: a collapsed model's inf/nan ppl is left out."""
    return math.isfinite(x) and math.isfinite(y) and y > 0


def rank_agreement(real: Sequence[float], predicted: Sequence[float]) -> tuple[float, float]:
    """Kendall tau and Spearman rho over the finite pairs (nan when fewer than two)."""
    pairs = [(r, p) for r, p in zip(real, predicted) if math.isfinite(r) and math.isfinite(p)]
    if len(pairs) < 2:
        return math.nan, math.nan
    r, p = (np.array(side) for side in zip(*pairs))
    return kendall_tau(r, p), spearman(r, p)


def predicted_vs_real(
    real: Sequence[float],
    predicted: Sequence[float],
    groups: Sequence[str],
    path: str | Path,
    title: str = "Predictor on held-out folds",
    quantity: str = "ppl",
) -> Path:
    """Out-of-fold predicted against measured search-fidelity ``quantity`` (ppl, log axes; or accuracy), one
    color per sampler that produced the pair."""
    if not len(real) == len(predicted) == len(groups):
        raise ValueError(f"real, predicted and groups differ in length ({len(real)}, {len(predicted)}, {len(groups)})")
    tau, rho = rank_agreement(real, predicted)
    fig = _figure(6, 5.5)
    ax = fig.add_subplot()
    shown: list[float] = []
    others = iter(f"C{i}" for i in range(3, 100))
    for group in dict.fromkeys(groups):
        pts = [(r, p) for r, p, g in zip(real, predicted, groups)
               if g == group and _plottable(p, r) and _plottable(r, p)]
        if not pts:
            continue
        xs, ys = zip(*pts)
        shown += xs + ys
        color = GROUP_COLORS.get(group) or next(others)
        ax.scatter(xs, ys, s=16, alpha=0.7, color=color, label=f"{group} ({len(pts)})")
    if shown:
        lo, hi = min(shown) / 1.1, max(shown) * 1.1
        ax.plot([lo, hi], [lo, hi], color="black", linestyle="--", linewidth=1, label="y = x")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
    log = quantity == "ppl"
    if log:
        _log_scale(ax, "x")
        _log_scale(ax, "y")
    ax.set_xlabel(f"measured {quantity} (search fidelity{', log' if log else ''})")
    ax.set_ylabel(f"predicted {quantity} (out-of-fold{', log' if log else ''})")
    plotted = len(shown) // 2
    count = f"n = {plotted}" + (f" of {len(real)} (non-finite left out)" if plotted < len(real) else "")
    ax.set_title(f"{title}\nKendall tau {tau:.3f}, Spearman {rho:.3f}, {count}")
    ax.legend(loc="upper left", fontsize="small")
    ax.grid(True, which="major", alpha=0.3)
    return _save(fig, path)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (removed, ppl) points no other point beats with at least as much removed, by increasing removal.

    Along the result both removal and ppl strictly increase; points with a non-finite coordinate are skipped.
    """
    front: list[tuple[float, float]] = []
    best = math.inf
    for removed, ppl in sorted(
        ((float(x), float(y)) for x, y in points if math.isfinite(x) and math.isfinite(y)),
        key=lambda p: (-p[0], p[1]),
    ):
        if ppl < best:
            front.append((removed, ppl))
            best = ppl
    return front[::-1]


def pareto(
    pairs: Sequence[tuple[float, float]],
    baselines: Mapping[str, tuple[float, float]],
    searched: Mapping[str, tuple[float, float]],
    path: str | Path,
    dense_ppl: float | None = None,
    title: str = "Perplexity against parameters removed",
) -> Path:
    """Every evaluated (removed, ppl) pair, its Pareto front, the baselines and the searched models on one plane.

    Collapsed models (inf/nan ppl) cannot sit on a log axis: they are skipped, and a named one says so in the legend.
    """
    fig = _figure(8, 5.5)
    ax = fig.add_subplot()
    dots = [(x, y) for x, y in pairs if _plottable(x, y)]
    if dots:
        ax.scatter(*zip(*dots), s=8, color="tab:blue", alpha=0.25, linewidths=0, label=f"evaluated ({len(dots)})")
    front = pareto_front(dots)
    if front:
        ax.step(*zip(*front), where="pre", color="tab:blue", linewidth=1.5, label="Pareto front")
    markers = iter("osD^vP<>hX*pd" * 4)
    for name, (x, y) in baselines.items():
        marker = next(markers)
        if not _plottable(x, y):
            ax.scatter([], [], marker=marker, color="gray", label=f"{name} (ppl {y}, not shown)")
            continue
        ax.scatter([x], [y], marker=marker, s=55, edgecolors="black", linewidths=0.6, zorder=3, label=name)
        ax.annotate(name, (x, y), xytext=(5, 4), textcoords="offset points", fontsize="small")
    for name, (x, y) in searched.items():
        if not _plottable(x, y):
            ax.scatter([], [], marker="*", color="gold", label=f"{name} (ppl {y}, not shown)")
            continue
        ax.scatter([x], [y], marker="*", s=260, color="gold", edgecolors="black", linewidths=0.8, zorder=4, label=name)
        ax.annotate(name, (x, y), xytext=(7, -12), textcoords="offset points", fontsize="small", weight="bold")
    if dense_ppl is not None and _plottable(0.0, dense_ppl):
        ax.axhline(dense_ppl, color="gray", linestyle=":", linewidth=1, label=f"dense ({dense_ppl:.1f})")
    _log_scale(ax, "y")
    ax.xaxis.set_major_formatter(PercentFormatter(xmax=1))
    ax.set_xlabel("parameters removed")
    ax.set_ylabel("perplexity (log)")
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")
    return _save(fig, path)


def kept_fractions(arch: Architecture) -> dict[str, np.ndarray]:
    """Per layer: query heads, value dims and MLP channels kept as fractions of the dense layer (nan: removed)."""
    s = arch.shape
    panels = {"query heads": [], "value dims": [], "MLP channels": []}
    for layer in arch.layers:
        if not layer.keep:
            for values in panels.values():
                values.append(math.nan)
            continue
        panels["query heads"].append(layer.q_heads / s.num_heads)
        panels["value dims"].append(layer.v_dim / s.head_dim if layer.has_attention else 0.0)
        panels["MLP channels"].append(layer.mlp / s.intermediate_size)
    return {name: np.array(values) for name, values in panels.items()}


def layer_heatmap(archs: Mapping[str, Architecture], path: str | Path, title: str = "What each layer keeps") -> Path:
    """One row per model, one column per layer, one panel per unit kind; removed blocks are gray cells with an x."""
    if not archs:
        raise ValueError("layer_heatmap needs at least one architecture")
    shapes = {arch.shape for arch in archs.values()}
    if len(shapes) != 1:
        raise ValueError("layer_heatmap compares architectures of one model; these have different shapes")
    names = list(archs)
    fractions = [kept_fractions(arch) for arch in archs.values()]
    layers = next(iter(shapes)).num_layers
    fig = _figure(max(6.0, 2.5 + 0.28 * layers), 1.2 + 3 * (0.6 + 0.3 * len(names)))
    axes = fig.subplots(3, 1, sharex=True)
    cmap = colormaps["viridis"].with_extremes(bad="lightgray")
    norm = Normalize(0, 1)
    for ax, panel in zip(axes, fractions[0]):
        grid = np.vstack([f[panel] for f in fractions])
        image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, norm=norm, aspect="auto", interpolation="nearest")
        rows, cols = np.nonzero(np.isnan(grid))
        ax.scatter(cols, rows, marker="x", color="black", s=22, linewidths=1)
        ax.set_yticks(range(len(names)), names)
        ax.set_title(f"{panel} kept", fontsize="medium", loc="left")
    step = max(1, math.ceil(layers / 30))
    axes[-1].set_xticks(range(0, layers, step))
    axes[-1].set_xlabel("layer")
    fig.colorbar(image, ax=list(axes), label="fraction of the dense layer kept", shrink=0.9)
    removed = Line2D([], [], marker="x", color="black", linestyle="none", markerfacecolor="lightgray",
                     markersize=7, label="block removed")
    fig.legend(handles=[removed], loc="outside lower right", fontsize="small")
    fig.suptitle(title)
    return _save(fig, path)


def learning_curve(points: Sequence[Mapping], path: str | Path, title: str = "Predictor learning curve") -> Path:
    """Rank agreement of the predictor against the number of training pairs, one panel per metric, with the targets
    it must reach.

    Each point is ``{"n": pairs, "all": {metric: value}, "bands": [{metric: value, "budget": b, "band": w}, ...]}``
    (``bands``: the pairs within ``w`` of each searched budget, optional). Solid lines are all pairs, dashed ones a
    band; a metric that is None at a point (too few pairs) is left out there.
    """
    ordered = sorted(points, key=lambda p: p["n"])
    fig = _figure(12, 4.2)
    axes = fig.subplots(1, len(METRICS), sharex=True)
    targets = {"kendall_tau": TAU_TARGET, "precision_at_top": PRECISION_TARGET}
    lines: dict[str, list[tuple[float, Mapping]]] = {"all pairs": [(p["n"], p["all"]) for p in ordered if "all" in p]}
    for p in ordered:
        for report in p.get("bands", ()):
            lines.setdefault(f"within ±{report['band']:.1%} of {report['budget']:.0%}", []).append((p["n"], report))
    for ax, (metric, label) in zip(axes, METRICS.items()):
        for k, (name, pts) in enumerate(lines.items()):
            xy = [(n, report[metric]) for n, report in pts if report.get(metric) is not None]
            if xy:
                ax.plot(*zip(*xy), linestyle="-" if k == 0 else "--", marker="o", markersize=4, color=f"C{k}",
                        label=name)
        if metric in targets:
            target = ax.axhline(targets[metric], color="black", linestyle=":", linewidth=1,
                                label=f"target {targets[metric]}")
            if ax is not axes[0]:
                ax.legend(handles=[target], loc="lower right", fontsize="small")
        ax.set_ylim(min(0.0, ax.get_ylim()[0]), 1.02)
        ax.set_xlabel("training pairs per fit")
        ax.set_title(label, fontsize="medium")
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("agreement with measured ppl (held out)")
    axes[0].legend(loc="lower right", fontsize="small")
    fig.suptitle(title)
    return _save(fig, path)


def _layer_rows(rows: Mapping[str, Sequence[float]], figure: str, what: str) -> list[np.ndarray]:
    """The rows of a per-layer figure as float arrays, refusing none, or rows of different lengths."""
    if not rows:
        raise ValueError(f"{figure} needs at least one {what}")
    arrays = [np.asarray(values, dtype=np.float64) for values in rows.values()]
    if len({a.shape for a in arrays}) != 1 or arrays[0].ndim != 1:
        raise ValueError(f"{figure} needs one value per layer, the same layers for every {what}")
    return arrays


def layer_losses(losses: Mapping[str, Sequence[float]], path: str | Path,
                 title: str = "Where each model loses (calibrated probe index)") -> Path:
    """One line per model: the log-perplexity each layer's cuts cost it, as the predictor's probe index estimates
    (``Predictor.layer_losses``). The first model is drawn boldest; the legend gives each model's total."""
    rows = dict(zip(losses, _layer_rows(losses, "layer_losses", "model")))
    layers = len(next(iter(rows.values())))
    fig = _figure(max(6.0, 2.5 + 0.25 * layers), 4.2)
    ax = fig.add_subplot()
    for k, (name, row) in enumerate(rows.items()):
        ax.plot(range(layers), row, marker="o", markersize=3 if k else 4, linewidth=2.2 if k == 0 else 1.1,
                alpha=1 if k == 0 else 0.8, zorder=3 if k == 0 else 2, label=f"{name} (sum {row.sum():.2f})")
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_xticks(range(0, layers, max(1, math.ceil(layers / 30))))
    ax.set_xlabel("layer")
    ax.set_ylabel("estimated log-ppl rise (nats)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", ncols=2)
    return _save(fig, path)


def index_weights(tables: Mapping[str, Sequence[float]], path: str | Path,
                  title: str = "Which probes the pairs trust (calibrated probe index)") -> Path:
    """One row per probe table, one column per layer: the weight the probe index fitted to that layer's measured
    loss rise (``ProbeIndex.weights_by_table``). Nan (no such column) is a gray cell."""
    names = list(tables)
    grid = np.vstack(_layer_rows(tables, "index_weights", "probe table"))
    layers = grid.shape[1]
    fig = _figure(max(6.0, 3.0 + 0.28 * layers), max(3.0, 1.6 + 0.3 * len(names)))
    ax = fig.add_subplot()
    finite = grid[np.isfinite(grid)]
    norm = Normalize(0, max(1e-9, float(finite.max())) if finite.size else 1.0)
    image = ax.imshow(np.ma.masked_invalid(grid), cmap=colormaps["magma_r"].with_extremes(bad="lightgray"),
                      norm=norm, aspect="auto", interpolation="nearest")
    ax.set_yticks(range(len(names)), names)
    ax.set_xticks(range(0, layers, max(1, math.ceil(layers / 30))))
    ax.set_xlabel("layer")
    fig.colorbar(image, ax=ax, label="weight on its measured loss rise", shrink=0.9)
    ax.set_title(title)
    return _save(fig, path)
