"""The campaign's persistent, resumable store of architecture -> perplexity pairs, kept as Optuna trials.

Each evaluated architecture is one trial of the study named after the campaign, so a killed campaign resumes
from its storage (SQLite by default, any Optuna RDB URL, or an in-memory storage for tests) and never evaluates
an architecture twice: which keys are taken is asked of the storage every time, not remembered in memory. The key
covers the unit indices too: the same widths with other units is another model.

Work is shared through the storage, so any number of processes on any number of machines can evaluate one
campaign. ``enqueue`` adds an architecture as a WAITING trial (refused when its key is waiting, running or done);
``claim`` moves one WAITING trial to RUNNING with the storage's own atomic state change (an RDB row lock), so two
workers never get the same one. A claimed trial records heartbeats while it is evaluated; when a worker dies its
heartbeat goes stale, Optuna fails the trial and ``RetryHeartbeatStaleTrialCallback`` puts a copy back as WAITING for
another worker (``fail_stale``, called before every claim).

A trial's value is log(ppl). A collapsed model (ppl inf or nan) is COMPLETE with value +inf, which Optuna 5
accepts (it refuses only nan): it counts as evaluated, so it is never reserved again, and ``pairs`` leaves it out
unless asked. The architecture and the record are user attributes holding JSON text written by Python's ``json``
(non-finite floats as ``Infinity``/``NaN``, which ``json.loads`` reads back exactly); numpy or torch numbers in
a record are stored as plain Python numbers.
"""

from __future__ import annotations

import contextlib
import json
import math
import threading
import warnings
from datetime import datetime, timedelta
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial, Trial, TrialState
from sqlalchemy import event
from sqlalchemy.exc import SQLAlchemyError

from prunesearch.data import eval_windows, parse_dataset, spread_windows
from prunesearch.errors import PrunesearchError
from prunesearch.space import Architecture, SearchSpace

REQUIRED_META = ("fingerprint", "space", "fidelity")
LAYOUTS = ("spread", "head")
"""Where a fidelity's windows lie in each data set (``Fidelity.windows``)."""
TAKEN = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)
HEARTBEAT = 10
"""Seconds between a running trial's heartbeats; Optuna fails it after twice that without one."""
MAX_RETRY = 3
# This store records its trials' heartbeats itself (``heartbeat``), so Optuna's warning does not apply.
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")


@dataclass(frozen=True)
class Fidelity:
    """What text a search-time perplexity is measured on: ``tokens`` in all, split evenly over ``data``, in
    ``window``-token windows laid out by ``layout`` in each: ``head``, the first tokens past ``skip``; ``spread``,
    windows evenly spaced over the whole split, leaving out those earlier spread reads of ``skip`` tokens take (one
    read, or a tuple of them in the order they were taken; either way ``skip`` makes a read disjoint from other
    fidelities' text); with ``tasks``, also zero-shot accuracy on the
    first ``task_limit`` documents of each (lm-eval's validation or test documents: a campaign that targets
    accuracy ranks on them, so its reported accuracy is not held out unless compared on other documents)."""

    data: tuple[str, ...] = ("ptb-valid", "wiki-valid")
    tokens: int = 2048
    window: int = 512
    tasks: tuple[str, ...] = ()
    task_limit: int = 20
    skip: int | tuple[int, ...] = 0
    layout: str = "head"

    def __post_init__(self) -> None:
        if not self.data:
            raise PrunesearchError("a fidelity needs at least one data set")
        for spec in self.data:
            parse_dataset(spec)
        if self.window < 1 or self.tokens < self.window * len(self.data):
            raise PrunesearchError(
                f"a fidelity of {self.tokens} tokens cannot give each of its {len(self.data)} data set(s) "
                f"a {self.window}-token window"
            )
        skips = self.skip if isinstance(self.skip, tuple) else (self.skip,)
        if any(not isinstance(t, int) or isinstance(t, bool) or t < 0 for t in skips):
            raise PrunesearchError(f"a fidelity cannot skip {self.skip!r} tokens")
        if isinstance(self.skip, tuple) and self.layout != "spread":
            raise PrunesearchError("only a spread read can follow several earlier reads")
        if self.layout not in LAYOUTS:
            raise PrunesearchError(f"a fidelity's layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")

    @property
    def per_data(self) -> int:
        """Tokens read from each data set."""
        return self.tokens // len(self.data)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON; a perplexity-only fidelity omits the task fields, one read from the start its ``skip``, and
        one of the ``head`` layout its ``layout`` (as campaigns before them stored it)."""
        out = {**asdict(self), "data": list(self.data), "tasks": list(self.tasks)}
        if not self.tasks:
            del out["tasks"], out["task_limit"]
        if not self.skip:
            del out["skip"]
        elif isinstance(self.skip, tuple):
            out["skip"] = list(self.skip)
        if self.layout == "head":
            del out["layout"]
        return out

    def windows(self, ids: torch.Tensor) -> torch.LongTensor:
        """This read's windows of one data set's token ids."""
        if self.layout == "spread":
            return spread_windows(ids, self.window, self.per_data, self.skip)
        return eval_windows(ids[self.skip:], self.window, self.per_data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Fidelity":
        skip = data.get("skip", 0)
        return cls(**{**data, "data": tuple(data["data"]), "tasks": tuple(data.get("tasks", ())),
                      "skip": tuple(skip) if isinstance(skip, list) else skip})


@dataclass(frozen=True)
class Pair:
    """One evaluated architecture: its trial number, who proposed it, and its evaluation record."""

    number: int
    arch: Architecture
    sampler: str
    record: dict[str, Any] = field(hash=False)

    @property
    def ppl(self) -> float:
        return float(self.record["ppl"])

    @property
    def collapsed(self) -> bool:
        return not math.isfinite(self.ppl)

    def loss(self, objective: str = "ppl") -> float:
        """What a campaign minimises: log-ppl, or minus the mean zero-shot accuracy (objective ``accuracy``)."""
        if objective == "accuracy":
            return -float(self.record["accuracy"])
        return math.log(self.ppl)


def default_storage(run_dir: Path) -> str:
    """The campaign's SQLite database inside its run folder (created if missing)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{run_dir.resolve() / 'campaign.db'}"


def _plain(value: Any) -> Any:
    """numpy/torch scalars and arrays as Python numbers and lists, for ``json.dumps``."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"a {type(value).__name__} cannot be stored in a record")


def _dumps(value: Any) -> str:
    return json.dumps(value, default=_plain, separators=(",", ":"))


def _open(storage: str | optuna.storages.BaseStorage, heartbeat: int = HEARTBEAT,
          writable: bool = True) -> optuna.storages.BaseStorage:
    """An RDB storage for a URL, with heartbeats and retry of dead workers' trials; connection failures, and a
    storage that refuses writes where ``writable`` is asked for, are one-line user errors."""
    if not isinstance(storage, str):
        return storage
    try:
        with warnings.catch_warnings():  # heartbeats are "experimental" and "meant for Study.optimize"
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            warnings.simplefilter("ignore", FutureWarning)
            # SQLite serialises writers with a file lock: wait for it instead of failing ("database is locked").
            # The driver's own transactions start at the first write, so Optuna's read-check-write updates (claim a
            # WAITING trial, complete a RUNNING one) could interleave between processes and both succeed; the
            # driver's are turned off, and every transaction takes the write lock at its start instead.
            sqlite = storage.startswith("sqlite")
            engine = {"connect_args": {"timeout": 60, "isolation_level": None}} if sqlite else None
            rdb = optuna.storages.RDBStorage(
                storage, engine_kwargs=engine, heartbeat_interval=heartbeat,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY))
            if sqlite:
                event.listen(rdb.engine, "begin", lambda connection: connection.exec_driver_sql("BEGIN IMMEDIATE"))
            if writable:
                # An update of no row still needs write access (a read-only file, a SELECT-only role); checked
                # here, before a campaign or a worker spends minutes on work it could not store.
                with rdb.engine.begin() as connection:
                    connection.exec_driver_sql("UPDATE studies SET study_name = study_name WHERE 0 = 1")
            return rdb
    except (ImportError, RuntimeError, SQLAlchemyError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise PrunesearchError(f"cannot open storage '{storage}': {reason}") from None


def _differences(old: dict[str, Any], new: dict[str, Any]) -> str:
    keys = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    return "; ".join(f"{k} {json.dumps(old.get(k))}, not {json.dumps(new.get(k))}" for k in keys)


class PairStore:
    """Architecture -> perplexity pairs of one campaign, each an Optuna trial of the study ``campaign``."""

    def __init__(self, storage: str | optuna.storages.BaseStorage, campaign: str,
                 meta: dict[str, Any] | None = None, read_only: bool = False) -> None:
        """Open (or with ``meta``, create) the campaign; ``meta`` None joins an existing one as a worker. The
        heartbeat interval is the campaign's (``meta["heartbeat"]``, default 10 s), so all its workers agree.
        ``read_only`` opens a storage that refuses writes, to read its pairs."""
        if meta is not None:
            missing = [k for k in REQUIRED_META if k not in meta]
            if missing:
                raise ValueError(f"campaign meta lacks {', '.join(missing)}")
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.campaign = campaign
        if meta is None:
            self._study = self._load(_open(storage, writable=not read_only))
            heartbeat = self._study.user_attrs.get("heartbeat", HEARTBEAT)
            if heartbeat != HEARTBEAT and isinstance(storage, str):
                self._study = self._load(_open(storage, heartbeat, writable=not read_only))
            given = stored = self._study.user_attrs
        else:
            self._study = optuna.create_study(storage=_open(storage, meta.get("heartbeat", HEARTBEAT)),
                                              study_name=campaign, direction="minimize", load_if_exists=True)
            given = json.loads(json.dumps(meta))
            stored = self._study.user_attrs
            if "fingerprint" not in stored:
                if self._study.get_trials(deepcopy=False):
                    raise PrunesearchError(f"study '{campaign}' in this storage is not a prunesearch campaign")
                # The fingerprint goes last: its presence says the whole meta was written.
                for key, value in sorted(given.items(), key=lambda item: item[0] == "fingerprint"):
                    self._study.set_user_attr(key, value)
                stored = given
        self._check(stored, given)
        self._shape = SearchSpace.from_dict(stored["space"]).shape
        self._parsed: dict[int, Pair] = {}

    def _load(self, storage: optuna.storages.BaseStorage) -> optuna.Study:
        try:
            study = optuna.load_study(storage=storage, study_name=self.campaign)
        except KeyError:
            raise PrunesearchError(f"no campaign '{self.campaign}' in this storage") from None
        if "fingerprint" not in study.user_attrs:
            raise PrunesearchError(f"study '{self.campaign}' in this storage is not a prunesearch campaign")
        return study

    def _check(self, stored: dict[str, Any], given: dict[str, Any]) -> None:
        name = f"campaign '{self.campaign}'"
        dtype = stored.get("dtype", "float32"), given.get("dtype", "float32")
        if dtype[0] != dtype[1]:
            raise PrunesearchError(f"{name} ran its model in {dtype[0]}, not {dtype[1]}")
        if stored["fingerprint"] != given["fingerprint"]:
            raise PrunesearchError(f"{name} was run for model {stored['fingerprint']}, not {given['fingerprint']}")
        if stored["space"] != given["space"]:
            raise PrunesearchError(f"{name} was run with another search space: "
                                   f"{_differences(stored['space'], given['space'])}")
        if stored["fidelity"] != given["fidelity"]:
            old, new = (asdict(Fidelity.from_dict(meta["fidelity"])) for meta in (stored, given))
            raise PrunesearchError(f"{name} was run with another fidelity: {_differences(old, new)}")
        refit = stored.get("refit"), given.get("refit")
        if refit[0] != refit[1]:
            raise PrunesearchError(f"{name} materialized its pairs with refit {json.dumps(refit[0])}, "
                                   f"not {json.dumps(refit[1])}")
        units = stored.get("units", "activation"), given.get("units", "activation")
        if units[0] != units[1]:
            raise PrunesearchError(f"{name} chose units by {units[0]} scores, not {units[1]}")

    @property
    def meta(self) -> dict[str, Any]:
        """The campaign's meta as stored when it was created."""
        return self._study.user_attrs

    def keys(self) -> set[str]:
        """Unit-level keys of the architectures evaluated (collapsed ones included), being evaluated or waiting."""
        trials = self._study.get_trials(deepcopy=False, states=TAKEN)
        return {t.user_attrs["arch_key"] for t in trials if "arch_key" in t.user_attrs}

    def _check_shape(self, arch: Architecture) -> None:
        if arch.shape != self._shape:
            raise PrunesearchError(f"the architecture is not of the model shape of campaign '{self.campaign}'")

    def _attrs(self, arch: Architecture, sampler: str) -> dict[str, str]:
        # arch_key last: a claim counts once its architecture is stored.
        return {"arch": _dumps(arch.to_dict()), "sampler": sampler, "arch_key": arch.key(units=True)}

    def enqueue(self, arch: Architecture, sampler: str) -> bool:
        """Add ``arch`` (with unit indices) as work for any worker; False when its key is already taken."""
        self._check_shape(arch)
        if not arch.has_indices:
            raise PrunesearchError("an architecture is queued with its unit indices; select its units first")
        if arch.key(units=True) in self.keys():
            return False
        self._study.enqueue_trial({}, user_attrs=self._attrs(arch, sampler))
        return True

    def reserve(self, arch: Architecture, sampler: str) -> Trial | None:
        """A RUNNING trial claiming ``arch`` for this process, or None when its key is already taken."""
        self._check_shape(arch)
        if arch.key(units=True) in self.keys():
            return None
        trial = self._study.ask()
        self._beat(trial._trial_id)
        for key, value in {**self._attrs(arch, sampler), "worker": "local"}.items():
            trial.set_user_attr(key, value)
        return trial

    def claim(self, worker: str = "") -> tuple[Trial, Architecture] | None:
        """Move one WAITING trial to RUNNING for this process (atomic in the storage) and return it with its
        architecture; None when nothing waits. A waiting copy of an architecture already done is dropped."""
        self.fail_stale()
        storage = self._study._storage
        for frozen in self._study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            if not storage.set_trial_state_values(frozen._trial_id, TrialState.RUNNING):
                continue
            trial = Trial(self._study, frozen._trial_id)
            self._beat(frozen._trial_id)
            key = frozen.user_attrs["arch_key"]
            if any(t.user_attrs.get("arch_key") == key for t in self._study.get_trials(
                    deepcopy=False, states=(TrialState.COMPLETE,))):
                self.fail(trial, "duplicate: this architecture was evaluated already")
                continue
            trial.set_user_attr("worker", worker or "local")
            return trial, Architecture.from_json(frozen.user_attrs["arch"], self._shape)
        return None

    def _interval(self) -> int | None:
        """The storage's heartbeat interval (RDB storages, wrapped in Optuna's cache, have one; memory none)."""
        interval = getattr(self._study._storage, "get_heartbeat_interval", None)
        return interval() if interval else None

    def _beat(self, trial_id: int) -> None:
        if self._interval():
            self._study._storage.record_heartbeat(trial_id)

    @contextlib.contextmanager
    def heartbeat(self, trial: Trial) -> Iterator[None]:
        """Record heartbeats for ``trial`` while the block runs (so a dead process's trial is retried)."""
        storage, interval = self._study._storage, self._interval()
        if not interval:
            yield
            return
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(interval):
                storage.record_heartbeat(trial._trial_id)

        thread = threading.Thread(target=beat, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def complete(self, trial: Trial, record: dict[str, Any]) -> Pair:
        """Store the evaluation of a reserved trial; a non-finite ppl is a collapse, stored with value +inf."""
        ppl = float(record["ppl"])
        trial.set_user_attr("record", _dumps(record))
        value = math.log(ppl) if math.isfinite(ppl) else math.inf
        return self._pair(self._study.tell(trial, value))

    def fail(self, trial: Trial, reason: str) -> None:
        """An evaluation error (not a collapse): the trial FAILs and its key may be taken again."""
        trial.set_user_attr("fail_reason", reason)
        self._study.tell(trial, state=TrialState.FAIL)

    def fail_stale(self) -> None:
        """FAIL the RUNNING trials whose worker stopped beating; each comes back as WAITING (up to 3 retries).

        A process killed between claiming a trial and its first heartbeat leaves a RUNNING trial Optuna never
        calls stale (it has no heartbeat); one that has no ``worker`` yet ten heartbeats after it started is
        such an orphan, and is failed and queued again the same way."""
        interval = self._interval()
        if not interval:
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(self._study)
        cutoff = datetime.now() - timedelta(seconds=10 * interval)
        for trial in self._study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if "worker" in trial.user_attrs or trial.datetime_start is None or trial.datetime_start > cutoff:
                continue
            try:
                if not self._study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL):
                    continue
            except optuna.exceptions.UpdateFinishedTrialError:
                continue
            if "arch_key" in trial.user_attrs:
                self._study.enqueue_trial({}, user_attrs=dict(trial.user_attrs))

    def running(self) -> int:
        """Trials being evaluated now, by any process."""
        return len(self._study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))

    def waiting(self) -> int:
        return len(self._study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))

    def entries(self) -> list[tuple[Architecture, str]]:
        """Architecture and sampler of every trial holding a key (done, running or waiting), in trial order."""
        trials = self._study.get_trials(deepcopy=False, states=TAKEN)
        return [(Architecture.from_json(t.user_attrs["arch"], self._shape), t.user_attrs["sampler"])
                for t in sorted(trials, key=lambda t: t.number) if "arch_key" in t.user_attrs]

    def pairs(self, include_collapsed: bool = False) -> list[Pair]:
        """Evaluated pairs in trial order; collapsed models only with ``include_collapsed``."""
        pairs = [self._pair(t) for t in self._study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
        return [p for p in pairs if include_collapsed or not p.collapsed]

    def add(self, arch: Architecture, sampler: str, record: dict[str, Any]) -> Pair | None:
        """Store an architecture evaluated elsewhere; None when its key is already taken."""
        trial = self.reserve(arch, sampler)
        return None if trial is None else self.complete(trial, record)

    def _pair(self, trial: FrozenTrial) -> Pair:
        """The pair of a COMPLETE trial, parsed once per store (finished trials never change)."""
        if trial.number not in self._parsed:
            attrs = trial.user_attrs
            self._parsed[trial.number] = Pair(
                trial.number,
                Architecture.from_json(attrs["arch"], self._shape),
                attrs["sampler"],
                json.loads(attrs["record"]),
            )
        return self._parsed[trial.number]
