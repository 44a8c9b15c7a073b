"""Who measured what in a campaign's store, and whether any architecture was measured twice.

Usage: .venv/bin/python bench/store_census.py --run runs/<campaign> [--out bench/results/X.json]

Reads the campaign's study and its finalists' study (where it has one) read-only: trials per state and worker,
and the keys (counts plus unit indices) that more than one COMPLETE trial holds. A multi-worker campaign must end
with none.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import optuna

    from prunesearch.evaluate.store import default_storage
    from prunesearch.search.campaign import final_study

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name = json.loads((args.run / "config.json").read_text())["name"] or args.run.name
    path = default_storage(args.run).removeprefix("sqlite:///")
    storage = f"sqlite:///file:{path}?mode=ro&uri=true"
    census = {}
    names = optuna.get_all_study_names(storage)
    for study_name in (n for n in (name, final_study(name)) if n in names):
        trials = optuna.load_study(study_name=study_name, storage=storage).get_trials(deepcopy=False)
        states = Counter(f"{t.state.name} by {t.user_attrs.get('worker', '-')}" for t in trials)
        done = Counter(t.user_attrs["arch_key"] for t in trials if t.state.name == "COMPLETE")
        twice = sorted(key for key, count in done.items() if count > 1)
        census[study_name] = {"trials": len(trials), "states": dict(sorted(states.items())),
                              "complete": sum(done.values()), "keys measured twice": twice}
    text = json.dumps(census, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
