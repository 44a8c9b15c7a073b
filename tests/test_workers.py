"""Many workers on one campaign (SQLite and PostgreSQL): each architecture evaluated once, a killed worker's
trial retried and finished by another. Workers are real ``prunesearch worker`` processes on the tiny model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch

from postgres import postgres_server
from prunesearch.evaluate import Fidelity, PairStore, default_storage
from prunesearch.models import load_model
from prunesearch.pruners import UnitScores, select_units
from prunesearch.space import ModelShape, SearchSpace

PRUNESEARCH = Path(sys.executable).parent / "prunesearch"
WORKERS, ARCHS = 4, 12


@pytest.fixture(scope="module")
def postgres():
    with postgres_server() as server:
        yield server


def _storage(kind: str, postgres, tmp_path: Path) -> str:
    if kind == "sqlite":
        return default_storage(tmp_path)
    url, why = postgres
    if url is None:
        pytest.skip(f"no PostgreSQL server: {why}")
    return url


def _queue(url: str, campaign: str, tiny_dir: Path) -> list[str]:
    """A campaign whose queue holds ARCHS distinct architectures; returns their keys."""
    loaded = load_model(str(tiny_dir))
    shape = ModelShape.from_config(loaded.model.config)
    space = SearchSpace(shape, mlp_step=8)
    # Enough text that one evaluation lasts a while: a worker is then caught holding a trial.
    fidelity = Fidelity(("ptb-valid",), tokens=24576, window=64)
    store = PairStore(url, campaign, {"fingerprint": loaded.fingerprint, "space": space.to_dict(),
                                      "fidelity": fidelity.to_dict(), "model": str(tiny_dir), "heartbeat": 2})
    g = torch.Generator().manual_seed(0)
    scores = UnitScores(mlp=torch.rand(shape.num_layers, shape.intermediate_size, generator=g),
                        heads=torch.rand(shape.num_layers, shape.num_heads, generator=g),
                        v_dims=torch.rand(shape.num_layers, shape.num_kv_heads, shape.head_dim, generator=g),
                        qk_pairs=torch.rand(shape.num_layers, shape.num_kv_heads, shape.head_dim // 2, generator=g))
    keys, seed = [], 0
    while len(keys) < ARCHS:
        arch = select_units(space.sample(seed), scores)
        if store.enqueue(arch, "random"):
            keys.append(arch.key(units=True))
        seed += 1
    return keys


def _dead(workers: dict[int, subprocess.Popen]) -> list[int]:
    return [pid for pid, p in workers.items() if p.returncode == -signal.SIGKILL]


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_workers_evaluate_each_architecture_once_and_retry_a_killed_workers_trial(kind, postgres, tiny_dir,
                                                                                  tmp_path):
    url = _storage(kind, postgres, tmp_path)
    campaign = f"workers-{kind}-{os.getpid()}-{time.time_ns()}"
    keys = _queue(url, campaign, tiny_dir)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
           "PRUNESEARCH_CACHE": str(tmp_path / "cache")}
    command = [str(PRUNESEARCH), "worker", "--storage", url, "--campaign", campaign, "--idle", "8", "--json"]
    workers = {p.pid: p for p in (subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                                   stderr=subprocess.PIPE, text=True) for _ in range(WORKERS))}
    study = optuna.load_study(study_name=campaign, storage=url)
    victim, deadline = None, time.monotonic() + 300
    while victim is None and time.monotonic() < deadline and len(_dead(workers)) < WORKERS - 1:
        for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            pid = int(trial.user_attrs.get("worker", ":0").rsplit(":", 1)[1])
            if pid in workers and workers[pid].poll() is None:
                os.kill(pid, signal.SIGKILL)
                workers[pid].wait()
                # The trial may have finished between the read and the kill: only a trial still running once its
                # worker is dead tests the retry.
                now = {t.number: t.state for t in study.get_trials(deepcopy=False)}
                if now[trial.number] == optuna.trial.TrialState.RUNNING:
                    victim = trial.number
                break
        time.sleep(0.05)
    assert victim is not None, "no worker was ever caught evaluating"
    outputs = {pid: p.communicate(timeout=600) for pid, p in workers.items()}
    killed = _dead(workers)
    for pid, (stdout, stderr) in outputs.items():
        if pid not in killed:
            assert workers[pid].returncode == 0, stderr[-2000:]
            assert json.loads(stdout)["campaign"] == campaign

    trials = optuna.load_study(study_name=campaign, storage=url).get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    table = [(t.number, t.state.name, t.user_attrs.get("arch_key"), t.user_attrs.get("worker"),
              t.system_attrs.get("failed_trial")) for t in trials]
    assert sorted(t.user_attrs["arch_key"] for t in complete) == sorted(keys), (killed, table)  # each once
    failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    assert victim in [t.number for t in failed]
    for trial in failed:  # only a killed worker's trials fail, and each is retried once by a live worker
        assert int(trial.user_attrs["worker"].rsplit(":", 1)[1]) in killed
        retry = [t for t in complete if t.system_attrs.get("failed_trial") == trial.number]
        assert len(retry) == 1 and retry[0].user_attrs["arch_key"] == trial.user_attrs["arch_key"]
        assert int(retry[0].user_attrs["worker"].rsplit(":", 1)[1]) not in killed
    assert not [t for t in trials if t.state in (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING)]
