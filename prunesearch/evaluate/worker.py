"""Evaluate a campaign's queued architectures: the loop every worker runs, the campaign's own process included.

A worker claims one WAITING trial at a time from the campaign's storage, measures it on the campaign's fidelity
while recording heartbeats, and completes it. Any number of workers on any number of machines can share one
storage: claims are atomic in the database, a dead worker's trial is retried by another once its heartbeat goes
stale, and an architecture already evaluated is never measured again.
"""

from __future__ import annotations

import os
import socket
import time

import optuna
from tqdm.auto import tqdm

from prunesearch.errors import PrunesearchError
from prunesearch.evaluate.run import measure
from prunesearch.evaluate.store import Fidelity, Pair, PairStore
from prunesearch.models import LoadedModel, load_model
from prunesearch.pruners import Refit
from prunesearch.pruners.refit import recorded_refit

POLL = 2.0
"""Seconds between looks at the storage while others' trials run and nothing waits."""


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def work(store: PairStore, loaded: LoadedModel, fidelity: Fidelity, idle: float | None = None,
         progress: bool = False, desc: str = "evaluating", refit: Refit | None = None) -> list[Pair]:
    """Claim, measure and complete queued trials until none waits and none runs anywhere (``idle`` None), or
    until nothing was claimable for ``idle`` seconds (a standing worker). Returns the pairs this call measured.
    Every model is materialized with the campaign's ``refit`` (None: plain).

    An evaluation error FAILs the trial with its reason and is raised; a collapse (ppl inf/nan) is a result."""
    name, done, quiet_since = worker_name(), [], time.monotonic()
    with tqdm(desc=desc, disable=not progress, leave=False) as bar:
        while True:
            claimed = store.claim(name)
            if claimed is None:
                if idle is None and not store.running() and not store.waiting():
                    return done
                if idle is not None and time.monotonic() - quiet_since > idle:
                    return done
                time.sleep(POLL)
                continue
            trial, arch = claimed
            try:
                with store.heartbeat(trial):
                    record = measure(loaded, arch, fidelity, refit=refit)
            except BaseException as exc:
                store.fail(trial, f"{type(exc).__name__}: {exc}")
                raise
            try:
                done.append(store.complete(trial, record))
            except optuna.exceptions.UpdateFinishedTrialError:
                # Our heartbeats came too late (an overloaded machine): the trial was declared dead and queued
                # again, so this result is dropped and the retry's is the one kept.
                continue
            quiet_since = time.monotonic()
            bar.update(1)
            bar.set_postfix(ppl=f"{done[-1].ppl:.1f}")


def join(storage: str, campaign: str, model: str | None = None, device: str = "cpu"
         ) -> tuple[PairStore, LoadedModel, Fidelity, Refit | None]:
    """Open a running campaign as a worker: its store, its model (the campaign's, or ``model`` where the same
    checkpoint lies at another path on this machine) on ``device``, checked by fingerprint, its fidelity and its
    refit."""
    store = PairStore(storage, campaign)
    meta = store.meta
    loaded = load_model(model or meta["model"], dtype=meta.get("dtype", "float32"), device=device)
    if loaded.fingerprint != meta["fingerprint"]:
        raise PrunesearchError(f"campaign '{campaign}' is for model {meta['fingerprint']}; "
                               f"{model or meta['model']} is {loaded.fingerprint}")
    return store, loaded, Fidelity.from_dict(meta["fidelity"]), recorded_refit(loaded, meta.get("refit"))
