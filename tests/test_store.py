"""The campaign's pair store: persistence, resumption and dedupe in the Optuna storage (no model is loaded)."""

from __future__ import annotations

import math
import sqlite3
import time
from dataclasses import replace

import numpy as np
import optuna
import pytest
import torch

from prunesearch.errors import DataError, PrunesearchError
from prunesearch.evaluate import Fidelity, PairStore, default_storage
from prunesearch.evaluate.store import _open
from prunesearch.pruners import UnitScores, select_units
from prunesearch.space import Architecture, ModelShape, SearchSpace

TINY = ModelShape(4, 48, 6, 2, 16, 80, 23, False)
SPACE = SearchSpace(TINY, mlp_step=16, dim_step=4)
META = {"fingerprint": "e3d6c0ffee123456", "space": SPACE.to_dict(), "fidelity": Fidelity().to_dict()}


def indexed(arch: Architecture, seed: int) -> Architecture:
    """``arch`` with unit indices chosen from random scores."""
    g = torch.Generator().manual_seed(seed)
    s = arch.shape
    scores = UnitScores(
        mlp=torch.rand(s.num_layers, s.intermediate_size, generator=g),
        heads=torch.rand(s.num_layers, s.num_heads, generator=g),
        v_dims=torch.rand(s.num_layers, s.num_kv_heads, s.head_dim, generator=g),
        qk_pairs=torch.rand(s.num_layers, s.num_kv_heads, s.head_dim // 2, generator=g),
    )
    return select_units(arch, scores)


def archs(count: int) -> list[Architecture]:
    """``count`` distinct architectures; every other one names its units."""
    out: dict[str, Architecture] = {}
    seed = 0
    while len(out) < count:
        arch = SPACE.sample(seed)
        arch = indexed(arch, seed) if len(out) % 2 else arch
        out.setdefault(arch.key(), arch)
        seed += 1
    return list(out.values())


def record(ppl: float, **extra) -> dict:
    return {"ppl": ppl, "nll": math.log(ppl) if math.isfinite(ppl) else ppl, "params": 1000, **extra}


@pytest.fixture
def url(tmp_path) -> str:
    return default_storage(tmp_path / "run")


def test_default_storage_creates_the_run_folder(tmp_path):
    url = default_storage(tmp_path / "a" / "b")
    assert (tmp_path / "a" / "b").is_dir()
    assert url == f"sqlite:///{tmp_path / 'a' / 'b' / 'campaign.db'}"


def test_pairs_survive_reopening_in_order(url):
    store = PairStore(url, "c", META)
    made = archs(5)
    assert [a.has_indices for a in made] == [False, True, False, True, False]
    made = [replace(arch, meta={**arch.meta, "target": 0.1 * i}) for i, arch in enumerate(made)]
    for i, arch in enumerate(made):
        rec = record(10.0 + i, removed=np.float32(0.25), flops=np.int64(7), seconds=[np.float64(1.5)],
                     calibration={"count": 4})
        assert store.add(arch, "random" if i % 2 else "prior", rec) is not None

    reopened = PairStore(url, "c", META)
    pairs = reopened.pairs()
    assert [p.number for p in pairs] == list(range(5))
    for i, (pair, arch) in enumerate(zip(pairs, made)):
        assert pair.arch == arch and pair.arch.has_indices == arch.has_indices
        assert pair.arch.meta == arch.meta and arch.meta["target"] == 0.1 * i
        assert pair.sampler == ("random" if i % 2 else "prior")
        assert pair.record == record(10.0 + i, removed=0.25, flops=7, seconds=[1.5], calibration={"count": 4})
        assert pair.ppl == 10.0 + i and not pair.collapsed
    assert reopened.meta == META
    assert reopened.keys() == {a.key(units=True) for a in made}
    values = [t.value for t in optuna.load_study(study_name="c", storage=url).trials]
    assert values == pytest.approx([math.log(10.0 + i) for i in range(5)])


def test_duplicates_are_refused_across_store_objects(url):
    first, second = PairStore(url, "c", META), PairStore(url, "c", META)
    done, running = archs(2)
    first.add(done, "random", record(5.0))
    assert first.reserve(running, "search") is not None

    for store in (first, second):
        assert store.reserve(done, "search") is None
        assert store.reserve(running, "search") is None
        assert store.add(done, "seed", record(6.0)) is None
    other_units = indexed(done, 99)
    assert other_units.key() == done.key() and other_units.key(units=True) != done.key(units=True)
    assert second.reserve(other_units, "seed") is not None  # same widths, other units: another model
    assert [p.ppl for p in second.pairs()] == [5.0]


def test_fail_frees_the_key():
    storage = optuna.storages.InMemoryStorage()
    store = PairStore(storage, "c", META)
    (arch,) = archs(1)
    trial = store.reserve(arch, "random")
    store.fail(trial, "out of memory")
    assert store.keys() == set()
    again = store.reserve(arch, "random")
    assert again is not None and again.number == 1
    assert store.complete(again, record(9.0)).number == 1
    failed = optuna.load_study(study_name="c", storage=storage).get_trials(states=(optuna.trial.TrialState.FAIL,))
    assert [t.user_attrs["fail_reason"] for t in failed] == ["out of memory"]


def test_queued_work_is_claimed_once_and_a_dead_workers_trial_comes_back(tmp_path):
    url = default_storage(tmp_path)
    coordinator = PairStore(url, "c", {**META, "heartbeat": 1})
    made = [indexed(a, i) for i, a in enumerate(archs(3))]
    assert [coordinator.enqueue(a, "random") for a in made] == [True] * 3
    assert not coordinator.enqueue(made[0], "random")  # waiting counts as taken
    with pytest.raises(PrunesearchError, match="select its units"):
        coordinator.enqueue(SPACE.sample(123), "random")

    dead, alive = PairStore(url, "c"), PairStore(url, "c")
    trial, arch = dead.claim("dead")  # and then its process is killed: no more heartbeats
    assert arch == made[0]
    got = []
    while (claimed := alive.claim("alive")) is not None:
        with alive.heartbeat(claimed[0]):
            got.append(alive.complete(claimed[0], record(5.0 + len(got))).arch)
    assert got == made[1:] and alive.running() == 1 and alive.waiting() == 0
    time.sleep(3.5)  # past the grace period of two heartbeats
    retried = alive.claim("alive")
    assert retried is not None and retried[1] == made[0]
    alive.complete(retried[0], record(9.0))
    study = optuna.load_study(study_name="c", storage=url)
    states = [t.state for t in study.trials]
    assert states.count(optuna.trial.TrialState.COMPLETE) == 3 and states.count(optuna.trial.TrialState.FAIL) == 1
    assert sorted(p.arch.key(units=True) for p in coordinator.pairs()) == sorted(a.key(units=True) for a in made)


def test_a_sqlite_transaction_holds_the_write_lock_from_its_first_read(url):
    """Optuna reads a trial's state, then updates it: a claim (WAITING to RUNNING) or a completion must not
    interleave with another process's, or two workers claim one trial and a trial declared dead is completed
    after its retry was queued (an architecture evaluated twice)."""
    with _open(url).engine.connect() as connection:
        connection.exec_driver_sql("SELECT count(*) FROM trials").all()
        other = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=0)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("UPDATE trials SET state = state")
        other.close()


def test_a_read_only_store_is_read_and_refused_to_writers_up_front(url):
    """Every SQLite transaction begins with BEGIN IMMEDIATE: that must not stop a read-only connection (a shared
    run folder, another user's campaign) from reading the pairs. A campaign or worker on it is refused at once
    with the storage's reason, not after its priors with Optuna's "exception during the commit"."""
    fine = archs(1)[0]
    PairStore(url, "c", META).add(fine, "random", record(3.0))
    read_only = f"sqlite:///file:{url.removeprefix('sqlite:///')}?mode=ro&uri=true"
    assert [p.arch for p in PairStore(read_only, "c", read_only=True).pairs()] == [fine]
    for writer in (lambda: PairStore(read_only, "c"), lambda: PairStore(read_only, "c", META)):
        with pytest.raises(PrunesearchError, match="cannot open storage .*readonly"):
            writer()


def test_joining_a_campaign_that_does_not_exist_is_a_user_error(url):
    with pytest.raises(PrunesearchError, match="no campaign 'nope'"):
        PairStore(url, "nope")


@pytest.mark.parametrize("bad", [float("inf"), float("nan")])
def test_a_collapse_is_recorded_excluded_and_never_reevaluated(url, bad):
    store = PairStore(url, "c", META)
    fine, broken = archs(2)
    store.add(fine, "random", record(3.0))
    pair = store.add(broken, "random", record(bad))
    assert pair is not None and pair.collapsed

    reopened = PairStore(url, "c", META)
    assert [p.arch for p in reopened.pairs()] == [fine]
    everything = reopened.pairs(include_collapsed=True)
    assert [p.arch for p in everything] == [fine, broken]
    got = everything[1].ppl
    assert everything[1].collapsed and (got == bad or math.isnan(got) and math.isnan(bad))
    assert reopened.reserve(broken, "search") is None
    assert optuna.load_study(study_name="c", storage=url).trials[1].value == math.inf


@pytest.mark.parametrize(
    "change, message",
    [
        ({"fingerprint": "1234567890abcdef"}, "was run for model e3d6c0ffee123456, not 1234567890abcdef"),
        (
            {"space": SearchSpace(TINY, mlp_step=32, dim_step=4).to_dict()},
            "was run with another search space: mlp_step 16, not 32",
        ),
        ({"fidelity": Fidelity(tokens=4096).to_dict()}, "was run with another fidelity: tokens 2048, not 4096"),
        ({"fidelity": Fidelity(layout="spread").to_dict()}, 'was run with another fidelity: layout "head", not "spread"'),
        ({"units": "transact"}, "chose units by activation scores, not transact"),
        ({"refit": {"damp": 0.05}}, "materialized its pairs with refit null, not"),
        ({"dtype": "bfloat16", "fingerprint": "1234567890abcdef"}, "ran its model in float32, not bfloat16"),
    ],
)
def test_reopening_for_another_campaign_setup_is_refused(change, message):
    storage = optuna.storages.InMemoryStorage()
    PairStore(storage, "c", META).add(archs(1)[0], "random", record(3.0))
    with pytest.raises(PrunesearchError, match=f"campaign 'c' {message}"):
        PairStore(storage, "c", {**META, **change})
    assert PairStore(storage, "other", {**META, **change}).pairs() == []


@pytest.mark.parametrize("bad", ["postgresql://nobody@127.0.0.1:1/x", "sqlite:////nonexistent/dir/x.db", "nonsense"])
def test_a_storage_that_cannot_be_opened_is_a_user_error(bad):
    start = time.monotonic()
    with pytest.raises(PrunesearchError, match=f"cannot open storage '{bad}': ."):
        PairStore(bad, "c", META)
    assert time.monotonic() - start < 5


def test_an_architecture_of_another_model_is_refused():
    store = PairStore(optuna.storages.InMemoryStorage(), "c", META)
    other = ModelShape(2, 48, 6, 2, 16, 80, 23, False)
    with pytest.raises(PrunesearchError, match="model shape"):
        store.reserve(Architecture.dense(other), "seed")


def test_fidelity_roundtrip_and_validation():
    fidelity = Fidelity(("ptb-valid",), tokens=1024, window=256)
    assert Fidelity.from_dict(fidelity.to_dict()) == fidelity
    with pytest.raises(DataError):
        Fidelity(("nope-valid",))
    with pytest.raises(PrunesearchError, match="window"):
        Fidelity(tokens=512, window=512)
    skipped = Fidelity(("ptb-valid",), tokens=1024, window=256, skip=1024)
    assert Fidelity.from_dict(skipped.to_dict()) == skipped and skipped != fidelity
    assert "skip" not in fidelity.to_dict()  # stores written before ``skip`` still match a fidelity read from the start
    with pytest.raises(PrunesearchError, match="skip"):
        Fidelity(skip=-1)
    spread = Fidelity(("ptb-valid",), tokens=1024, window=256, layout="spread")
    assert Fidelity.from_dict(spread.to_dict()) == spread and spread != fidelity
    assert "layout" not in fidelity.to_dict()  # stores written before ``layout`` read their first tokens
    with pytest.raises(PrunesearchError, match="layout"):
        Fidelity(layout="middle")


def test_a_fidelity_reads_its_layouts_windows():
    ids = torch.arange(40 * 16)
    head, spread = (Fidelity(("ptb-valid", "wiki-valid"), 64, 16, layout=layout) for layout in ("head", "spread"))
    assert (head.windows(ids)[:, 0] // 16).tolist() == [0, 1]
    assert (spread.windows(ids)[:, 0] // 16).tolist() == [10, 30]
    later = Fidelity(("ptb-valid",), 64, 16, skip=32, layout="spread")
    assert not set(later.windows(ids)[:, 0].tolist()) & set(spread.windows(ids)[:, 0].tolist())
    assert (Fidelity(("ptb-valid",), 32, 16, skip=32).windows(ids)[:, 0] // 16).tolist() == [2, 3]


def test_training_data_counts_an_architecture_measured_twice_once(url):
    """A legacy store (or a race) may hold two trials of one architecture: the predictor sees it once, so no
    copy lands in both a training and a held-out fold."""
    from prunesearch.search.campaign import training_data

    store = PairStore(url, "c", META)
    twice, other = indexed(SPACE.sample(1), 1), indexed(SPACE.sample(2), 2)
    store.add(twice, "prior", record(5.0, removed=0.2))
    store.add(other, "random", record(7.0, removed=0.2))
    study = optuna.load_study(study_name="c", storage=url)
    copy = study.trials[0]
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.COMPLETE, value=copy.value,
                                              user_attrs=copy.user_attrs))
    assert len(PairStore(url, "c").pairs()) == 3
    chosen, y, _, _ = training_data(PairStore(url, "c"))
    assert sorted(a.key(units=True) for a in chosen) == sorted([twice.key(units=True), other.key(units=True)])
    assert sorted(np.exp(y).round(6)) == [5.0, 7.0]
