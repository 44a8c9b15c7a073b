"""prunesearch.search.report and .plots: the campaign report from plain data (no model is loaded)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread
from rich.console import Console

from prunesearch.search import plots
from prunesearch.search.report import Row, comparison_markdown, comparison_table, rows_to_json, write_report
from prunesearch.space import Architecture, LayerArch, ModelShape

TINY = ModelShape(4, 48, 6, 2, 16, 80, 23, False)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path, inches: tuple[float, float]) -> None:
    """A real, non-blank PNG of the figure's size at the plots' dpi."""
    assert path.read_bytes()[:8] == PNG_MAGIC
    pixels = imread(path)
    width, height = (round(x * plots.DPI) for x in inches)
    assert pixels.shape[:2] == (height, width)
    assert pixels.std() > 0


def mixed_archs() -> dict[str, Architecture]:
    """A dense model, one with a removed block, one with an attention-free and an MLP-free layer."""
    dense = Architecture.dense(TINY)
    full = dense.layers[0]
    half = LayerArch(True, kv_heads=1, q_per_kv=2, qk_dim=8, v_dim=4, mlp=40)
    return {
        "dense": dense,
        "sleb": Architecture(TINY, (full, LayerArch(keep=False), full, full)),
        "searched": Architecture(TINY, (half, LayerArch(True, mlp=20), LayerArch(True, 2, 3, 16, 16, 0), full)),
    }


def test_predicted_vs_real_writes_png(tmp_path):
    rng = np.random.default_rng(0)
    real = list(np.exp(rng.uniform(3, 6, 60)))
    predicted = [r * math.exp(rng.normal(0, 0.2)) for r in real]
    groups = ["random"] * 20 + ["prior"] * 20 + ["search"] * 20
    real[0], predicted[1] = math.inf, math.nan
    path = plots.predicted_vs_real(real, predicted, groups, tmp_path / "figs" / "pred.png")
    assert path == tmp_path / "figs" / "pred.png"
    assert_png(path, (6, 5.5))
    tau, rho = plots.rank_agreement(real, predicted)
    assert 0.5 < tau < rho <= 1


def test_predicted_vs_real_rejects_ragged_input(tmp_path):
    with pytest.raises(ValueError, match="differ in length"):
        plots.predicted_vs_real([1.0, 2.0], [1.0], ["random", "random"], tmp_path / "x.png")


def test_pareto_front_skips_non_finite_and_is_monotone():
    points = [(0.1, 30.0), (0.1, 25.0), (0.2, 40.0), (0.2, 35.0), (0.3, math.inf), (0.3, 90.0),
              (0.25, math.nan), (0.15, 50.0), (math.nan, 10.0), (0.4, 80.0)]
    front = plots.pareto_front(points)
    assert front == [(0.1, 25.0), (0.2, 35.0), (0.4, 80.0)]
    assert all(a[0] < b[0] and a[1] < b[1] for a, b in zip(front, front[1:]))
    assert plots.pareto_front([(0.1, math.inf)]) == []


def test_pareto_plot_with_collapsed_points(tmp_path):
    rng = np.random.default_rng(1)
    pairs = [(x, 20 * math.exp(5 * x) * rng.uniform(1, 2)) for x in rng.uniform(0.05, 0.4, 80)]
    pairs += [(0.45, math.inf), (0.5, math.nan)]
    baselines = {"uniform": (0.2, 300.0), "sleb": (0.21, 90.0), "shortgpt": (0.3, math.inf)}
    searched = {"searched": (0.2, 60.0), "greedy": (0.2, math.nan)}
    path = plots.pareto(pairs, baselines, searched, tmp_path / "pareto.png", dense_ppl=20.0)
    assert_png(path, (8, 5.5))


def test_kept_fractions_mark_removed_and_attention_free_layers():
    fractions = plots.kept_fractions(mixed_archs()["searched"])
    assert fractions["query heads"].tolist() == [2 / 6, 0.0, 1.0, 1.0]
    assert fractions["value dims"].tolist() == [4 / 16, 0.0, 1.0, 1.0]
    assert fractions["MLP channels"].tolist() == [0.5, 0.25, 0.0, 1.0]
    removed = plots.kept_fractions(mixed_archs()["sleb"])
    assert all(np.isnan(values[1]) and not np.isnan(values[0]) for values in removed.values())


def test_layer_heatmap_writes_png(tmp_path):
    path = plots.layer_heatmap(mixed_archs(), tmp_path / "layers.png")
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert imread(path).shape[0] > 0 and imread(path).std() > 0


def test_layer_heatmap_refuses_mixed_models(tmp_path):
    other = ModelShape(2, 32, 4, 2, 8, 48, 50, True)
    with pytest.raises(ValueError, match="different shapes"):
        plots.layer_heatmap({"a": Architecture.dense(TINY), "b": Architecture.dense(other)}, tmp_path / "x.png")


def test_layer_losses_writes_png_and_refuses_ragged_input(tmp_path):
    path = plots.layer_losses({"searched": [0.0, 0.02, 0.1], "sleb": [0.0, 0.4, -0.01]}, tmp_path / "losses.png")
    assert path.read_bytes()[:8] == PNG_MAGIC and imread(path).std() > 0
    with pytest.raises(ValueError, match="same layers"):
        plots.layer_losses({"a": [0.1, 0.2], "b": [0.1]}, tmp_path / "x.png")


def test_index_weights_writes_png_and_refuses_ragged_input(tmp_path):
    tables = {"sensitivity/mlp": [0.0, 0.3, 0.1], "block:sensitivity": [np.nan, 0.2, 0.05]}
    assert_png(plots.index_weights(tables, tmp_path / "weights.png"), (6.0, 3.0))
    with pytest.raises(ValueError, match="same layers"):
        plots.index_weights({"a": [0.1, 0.2], "b": [0.1]}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="at least one"):
        plots.index_weights({}, tmp_path / "x.png")


def test_learning_curve_writes_png(tmp_path):
    def metrics(t: float) -> dict:
        return {"kendall_tau": t, "spearman": t + 0.1, "precision_at_top": t - 0.1}

    points = [{"n": n, "all": metrics(t), "bands": [{**metrics(t - 0.1), "budget": 0.2, "band": 0.025},
                                                  {**metrics(t - 0.05), "budget": 0.3, "band": 0.025}]}
              for n, t in ((400, 0.8), (100, 0.6), (200, 0.7))]
    points.append({"n": 25, "all": metrics(0.5), "bands": [{"n": 1, "kendall_tau": None, "spearman": None,
                                                            "precision_at_top": None, "budget": 0.2, "band": 0.025}]})
    assert_png(plots.learning_curve(points, tmp_path / "curve.png"), (12, 4.2))


def hand_rows() -> list[Row]:
    """Baseline b1 is best on PTB (80), b0 on wiki (40); b2 collapsed and must not count as best."""
    return [
        Row("dense", "dense", 0.0, 134_515_008, {"ptb-test": 50.0, "wiki-test": 25.0}, 1.0),
        Row("b0", "baseline", 0.2, 107_612_006, {"ptb-test": 100.0, "wiki-test": 40.0}, 1.1),
        Row("b1", "baseline", 0.2, 107_612_006, {"ptb-test": 80.0, "wiki-test": 50.0}, 1.2),
        Row("b2", "baseline", 0.2, 107_612_006, {"ptb-test": math.inf, "wiki-test": math.inf}, 1.3),
        Row("searched", "searched", 0.2, 107_600_000, {"ptb-test": 60.0, "wiki-test": 44.0}, 1.25,
            flops_ratio=0.801, kv_ratio=0.5, accuracy={"piqa": 0.6, "arc_easy": 0.4}),
        Row("greedy", "greedy", 0.2, 107_600_000, {"ptb-test": math.inf, "wiki-test": 50.0}, None,
            accuracy={"piqa": 0.55}),
    ]


def parse_markdown(text: str) -> tuple[list[str], dict[str, dict[str, str]]]:
    lines = [[cell.strip() for cell in line.strip()[1:-1].split(" | ")] for line in text.strip().splitlines()]
    headers = lines[0]
    assert set(lines[1]) <= {"---", "---:"} and all(len(cells) == len(headers) for cells in lines)
    return headers, {cells[0]: dict(zip(headers, cells)) for cells in lines[2:]}


def test_comparison_markdown_ratios_against_best_baseline_per_split():
    headers, table = parse_markdown(comparison_markdown(hand_rows()))
    assert headers[:6] == ["model", "kind", "removed", "params (M)", "FLOPs × dense", "KV × dense"]
    searched, greedy = table["searched"], table["greedy"]
    assert searched["ptb-test ppl"] == "60.0" and searched["wiki-test ppl"] == "44.0"
    assert searched["ptb-test × best baseline"] == "0.75×"  # 60 / 80 (b1)
    assert searched["wiki-test × best baseline"] == "1.10×"  # 44 / 40 (b0)
    assert greedy["ptb-test ppl"] == "inf" and greedy["ptb-test × best baseline"] == "inf"
    assert greedy["wiki-test × best baseline"] == "1.25×"
    assert table["b0"]["ptb-test × best baseline"] == "-" and table["dense"]["wiki-test × best baseline"] == "-"
    assert searched["removed"] == "20.0%" and searched["params (M)"] == "107.6"
    assert searched["tokens/s × dense"] == "1.25×" and greedy["tokens/s × dense"] == "-"
    assert searched["FLOPs × dense"] == "0.80×" and searched["KV × dense"] == "0.50×" and greedy["KV × dense"] == "-"
    assert searched["piqa acc %"] == "60.0" and searched["avg acc %"] == "50.0"
    assert greedy["arc_easy acc %"] == "-" and greedy["avg acc %"] == "-"


def test_each_budget_is_compared_with_its_own_baselines():
    """A 30% model is divided by the best 30% baseline, never by a (better) 20% one."""
    rows = [Row("dense", "dense", 0.0, 100, {"ptb-test": 50.0})]
    rows += [Row(f"{name} {b}", kind, b / 100, 80, {"ptb-test": ppl}, budget=b / 100)
             for b, name, kind, ppl in ((20, "base", "baseline", 100.0), (20, "searched", "searched", 90.0),
                                        (30, "base", "baseline", 200.0), (30, "searched", "searched", 130.0))]
    _, table = parse_markdown(comparison_markdown(rows))
    assert table["searched 20"]["ptb-test × best baseline"] == "0.90×"
    assert table["searched 30"]["ptb-test × best baseline"] == "0.65×"


def test_comparison_markdown_against_named_reference():
    _, table = parse_markdown(comparison_markdown(hand_rows(), reference="b0"))
    assert table["searched"]["ptb-test × b0"] == "0.60×"
    with pytest.raises(ValueError, match="not among"):
        comparison_markdown(hand_rows(), reference="missing")


def test_comparison_without_accuracy_has_no_accuracy_columns():
    rows = [row for row in hand_rows() if not row.accuracy]
    headers, _ = parse_markdown(comparison_markdown(rows))
    assert not any("acc" in h for h in headers)


def test_comparison_table_renders_same_cells():
    console = Console(record=True, width=250)
    console.print(comparison_table(hand_rows()))
    text = console.export_text()
    assert "× best baseline" in text and "0.75×" in text and "1.10×" in text and "inf" in text


def test_row_rejects_unknown_kind():
    with pytest.raises(ValueError, match="kind"):
        Row("x", "pruned", 0.1, 1, {})


def test_write_report_links_figures_relatively(tmp_path):
    directory = tmp_path / "campaign"
    figure = plots.pareto([(0.1, 30.0), (0.2, 40.0)], {"sleb": (0.2, 50.0)}, {"searched": (0.2, 35.0)},
                          directory / "figures" / "pareto.png")
    path = write_report(
        directory, "Search on smollm2-135m",
        {"model": "smollm2-135m", "fingerprint": "abc123", "budget": 0.2, "pairs": 400,
         "timings (s)": {"pairs": 3600.0, "search": 12.5}},
        hand_rows(), {"Pareto front": figure}, {"Predictor": "Kendall tau 0.88 on held-out folds."},
    )
    assert path == directory / "report.md"
    text = path.read_text()
    assert text.startswith("# Search on smollm2-135m\n")
    assert "- **fingerprint**: abc123" in text and "- **timings (s)**: pairs: 3600, search: 12.5" in text
    assert comparison_markdown(hand_rows()) in text
    assert "## Predictor\n\nKendall tau 0.88 on held-out folds." in text
    assert "![Pareto front](figures/pareto.png)" in text
    assert sorted(p.name for p in directory.iterdir()) == ["figures", "report.md"]


def test_rows_to_json_is_strict_json():
    data = rows_to_json(hand_rows())
    assert data[3]["ppl"] == {"ptb-test": None, "wiki-test": None}
    assert data[4]["accuracy"] == {"piqa": 0.6, "arc_easy": 0.4} and data[5]["speed_ratio"] is None
    assert json.loads(json.dumps(data, allow_nan=False)) == data
