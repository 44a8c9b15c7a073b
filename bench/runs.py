"""A finished campaign read back for the benches that refit or re-probe on its pairs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np


@dataclass
class RunPairs:
    """The run's config, its saved predictor, its pair store, and its distinct pairs (architectures, targets,
    fraction removed, sampler)."""

    config: dict[str, Any]
    predictor: Any
    store: Any
    archs: list
    y: np.ndarray
    removed: np.ndarray
    samplers: list[str]


def run_config(run: Path) -> dict[str, Any]:
    """The run's saved config; a run from before the ``layout`` setting read the head of each split."""
    return {"layout": "head", **json.loads((run / "config.json").read_text())}


def run_pairs(run: Path) -> RunPairs:
    from prunesearch.evaluate.store import PairStore, default_storage
    from prunesearch.predictor import Predictor
    from prunesearch.search.campaign import training_data

    config = run_config(run)
    saved = Predictor.load(run / "predictor")
    store = PairStore(default_storage(run), config["name"] or run.name, read_only=True)
    archs, y, removed, samplers = training_data(store, config["objective"])
    return RunPairs(config, saved, store, archs, y, removed, samplers)


@dataclass
class RunModel:
    """What the run's predictor was built from on the model side: the model, its priors, space, unit scores (and
    their cache key) and the dense sensitivity tables."""

    loaded: Any
    priors: Any
    space: Any
    dense: Any
    scores: Any
    scores_key: str


def run_model(pairs: RunPairs) -> RunModel:
    from prunesearch.models import load_model
    from prunesearch.pruners import CalibrationSpec
    from prunesearch.pruners.priors import compute_priors
    from prunesearch.pruners.priors import scores_key
    from prunesearch.search.campaign import sensitivity_of
    from prunesearch.space import SearchSpace

    meta = pairs.predictor.meta
    loaded = load_model(meta["model"])
    calibration = CalibrationSpec(**meta["calibration"])
    priors = compute_priors(loaded, calibration)
    return RunModel(loaded, priors, SearchSpace.from_dict(meta["space"]), sensitivity_of(pairs.predictor.ctx),
                    priors.unit[meta["units"]], scores_key(calibration, loaded.fingerprint, meta["units"]))


def out_of_fold(pairs: RunPairs, fit_predict: Callable[[np.ndarray, np.ndarray], np.ndarray], seeds: tuple[int, ...],
                metrics: tuple[str, ...] = ("kendall_tau", "spearman", "precision_at_top"),
                folds: int = 5, size: int | None = None, by_sampler: bool = False) -> dict[str, float]:
    """``folds``-fold rank quality of ``fit_predict(train_rows, test_rows) -> predictions``, over all pairs and
    within the run's band around each budget, averaged over the fold ``seeds``. With ``size``, each seed draws a
    random subset of that many pairs and the folds split it. With ``by_sampler``, also the band Kendall tau among
    the pairs of each sampler alone (where the band holds at least 8 of them)."""
    from prunesearch.predictor import kendall_tau, rank_report

    config, y = pairs.config, pairs.y
    samplers = np.array(pairs.samplers)
    runs, kinds = [], {}
    for seed in seeds:
        rows = np.arange(len(y)) if size is None else np.random.default_rng(seed).permutation(len(y))[:size]
        predicted = out_of_fold_predictions(rows, fit_predict, seed, folds)
        runs.append({str(b): rank_report(y[rows], predicted, pairs.removed[rows], b, config["band"])
                     for b in config["budgets"]})
        for b in config["budgets"] if by_sampler else ():
            near = np.abs(pairs.removed[rows] - b) <= config["band"] + 1e-12
            for kind in sorted(set(samplers[rows])):
                chosen = near & (samplers[rows] == kind)
                if chosen.sum() >= 8:
                    key = f"{b} band {kind} (n={chosen.sum()}) kendall_tau"
                    kinds.setdefault(key, []).append(kendall_tau(y[rows][chosen], predicted[chosen]))
    return {**{f"{b} {subset} {metric}": float(np.mean([r[str(b)][subset][metric] for r in runs]))
               for b in config["budgets"] for subset in ("all", "band") for metric in metrics},
            **{key: float(np.mean(taus)) for key, taus in kinds.items()}}


def out_of_fold_predictions(rows: np.ndarray, fit_predict: Callable[[np.ndarray, np.ndarray], np.ndarray],
                            seed: int, folds: int = 5) -> np.ndarray:
    """Each of ``rows`` predicted by a ``fit_predict`` that did not train on it, ``folds`` folds drawn with
    ``seed``."""
    from sklearn.model_selection import KFold

    predicted = np.empty(len(rows))
    for train, test in KFold(folds, shuffle=True, random_state=seed).split(rows):
        predicted[test] = fit_predict(rows[train], rows[test])
    return predicted


def second_read(pairs: RunPairs, loaded: Any, rows: Any, done: dict[str, float] | None = None,
                on_read: Callable[[str, float], None] | None = None) -> np.ndarray:
    """Log-ppl of ``pairs.archs[rows]`` at the run's fidelity (same splits, window and token count) on the text
    that follows the campaign's read. ``done`` holds reads already made, by architecture key; ``on_read(key,
    log_ppl)`` sees each new one (so a long read can be saved as it goes)."""
    from prunesearch.data import eval_windows, token_ids
    from prunesearch.evaluate.perplexity import perplexity
    from prunesearch.evaluate.store import Fidelity
    from prunesearch.pruners import materialize

    fidelity = Fidelity.from_dict(pairs.store.meta["fidelity"])
    rest = {data: token_ids(loaded.tokenizer, data)[fidelity.per_data:] for data in fidelity.data}
    done = dict(done or {})
    for i in rows:
        key = pairs.archs[i].key(units=True)
        if key in done:
            continue
        pruned = materialize(loaded.model, pairs.archs[i])
        total = count = 0
        for ids in rest.values():
            result = perplexity(pruned, eval_windows(ids, fidelity.window, fidelity.per_data), progress=False)
            total += result.nll * result.scored_tokens
            count += result.scored_tokens
        done[key] = total / count
        if on_read:
            on_read(key, done[key])
    return np.array([done[pairs.archs[i].key(units=True)] for i in rows])


def run_features(pairs: RunPairs) -> tuple[np.ndarray, list[str], list[int]]:
    """The run's pairs as the saved predictor's float64 feature matrix, with its column names and monotone signs."""
    from prunesearch.predictor import feature_names, featurize, monotone_signs

    ctx = pairs.predictor.ctx
    return featurize(pairs.archs, ctx).astype(np.float64), feature_names(ctx), monotone_signs(ctx)


def matrix_fit(X: np.ndarray, y: np.ndarray, members: int | None = None, margin: np.ndarray | None = None,
               **params: Any) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """``fit_predict`` for ``out_of_fold``: the predictor's bootstrap ensemble (its parameters, overridden by
    ``params``; member m resamples with seed m) on the columns of ``X``, starting from ``margin`` where given."""
    import xgboost as xgb

    from prunesearch.predictor.model import DEFAULTS, MEMBERS

    params = {**DEFAULTS, **params}

    def margin_of(rows: np.ndarray) -> dict[str, np.ndarray]:
        return {} if margin is None else {"base_margin": margin[rows]}

    def fit_predict(train: np.ndarray, test: np.ndarray) -> np.ndarray:
        out = []
        for m in range(MEMBERS if members is None else members):
            rows = train[np.random.default_rng(m).integers(0, len(train), len(train))]
            model = xgb.XGBRegressor(**{**params, "random_state": m})
            model.fit(X[rows], y[rows], **margin_of(rows))
            out.append(model.predict(X[test], **margin_of(test)))
        return np.mean(out, axis=0)

    return fit_predict


def score_contexts(pairs: RunPairs, contexts: dict[str, Any], seeds: tuple[int, ...], members: int,
                   results: dict[str, Any], out: Path) -> None:
    """The project's predictor scored ``out_of_fold`` on each named feature context, into ``results``, which is
    written to ``out`` after each (a long bench keeps what it has measured)."""
    for name, context in contexts.items():
        results[name] = out_of_fold(pairs, predictor_fit(pairs, context, members=members), seeds)
        print(name, json.dumps(results[name]), flush=True)
        out.write_text(json.dumps(results, indent=1) + "\n")


def predictor_fit(pairs: RunPairs, ctx: Any, members: int = 5,
                  **kwargs: Any) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """``fit_predict`` for ``out_of_fold``: the project's predictor on feature context ``ctx`` (``kwargs`` go to
    ``Predictor``)."""
    from prunesearch.predictor import Predictor

    def fit_predict(train: np.ndarray, test: np.ndarray) -> np.ndarray:
        model = Predictor(ctx, members=members, **kwargs).fit([pairs.archs[i] for i in train], pairs.y[train])
        return model.predict([pairs.archs[i] for i in test])

    return fit_predict


def blend_args(out: Path) -> Any:
    """The command line of the benches that score several models on a run's folds: ``--run`` (repeatable),
    ``--seeds`` (fold seeds, default 0 1 2), ``--out`` (default ``out``)."""
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--run", type=Path, action="append", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=out)
    return parser.parse_args()


def score_models(runs: list[Path], seeds: list[int], out: Path, names: list[str],
                 models: Callable[[RunPairs], Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]]]) -> None:
    """Band Kendall tau and top-10% precision, ``out_of_fold``, of the ``names`` models whose predictions
    ``models(pairs)(train, test)`` returns, all fitted once per fold, for each of ``runs``; written to ``out`` after
    each run (kept across calls)."""
    results = json.loads(out.read_text()) if out.exists() else {}
    for run in runs:
        pairs = run_pairs(run)
        fit_all = models(pairs)
        cache: dict[bytes, dict[str, np.ndarray]] = {}

        def predicted(train: np.ndarray, test: np.ndarray) -> dict[str, np.ndarray]:
            key = train.tobytes() + b"|" + test.tobytes()
            if key not in cache:
                cache[key] = fit_all(train, test)
            return cache[key]

        results[str(run)] = {}
        for name in names:
            scores = out_of_fold(pairs, lambda tr, te, n=name: predicted(tr, te)[n], tuple(seeds),
                                 ("kendall_tau", "precision_at_top"))
            results[str(run)][name] = scores
            print(run, name, json.dumps({k: round(v, 3) for k, v in scores.items() if "band" in k}), flush=True)
        out.write_text(json.dumps(results, indent=1) + "\n")
