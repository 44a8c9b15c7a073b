"""The ``prunesearch`` command line. Every user mistake ends as one ``error:`` line and exit code 2."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from prunesearch.errors import BudgetError, PrunesearchError
from prunesearch.paths import atomic_write_text

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Search for the best structurally pruned version of a LLaMA-family model.")
out = Console(width=None if sys.stdout.isatty() else 240)
"""Piped or logged output has no terminal to fit: tables print whole instead of at rich's default 80 columns."""
err = Console(stderr=True)

ModelOpt = Annotated[str, typer.Option("--model", "-m", help="'smollm2-135m' (built in) or a local checkpoint dir")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout instead of a summary")]
DEVICE_HELP = ("Where the model runs: auto (the first CUDA GPU when there is one, else the CPU), cpu, cuda, cuda:N "
               "or mps")
DeviceOpt = Annotated[str, typer.Option(help=DEVICE_HELP)]
DTYPE_HELP = "The weights' precision: float32, bfloat16 or float16 (a model of its own: its own caches and fingerprint)"
DtypeOpt = Annotated[str, typer.Option(help=DTYPE_HELP)]
MaxFlopsOpt = Annotated[Optional[float], typer.Option(
    help="Also keep at most this fraction of the dense model's FLOPs per token (512-token context)")]
MaxKvOpt = Annotated[Optional[float], typer.Option(
    help="Also keep at most this fraction of the dense model's KV-cache bytes per token")]
MinSpeedupOpt = Annotated[Optional[float], typer.Option(
    help="Also run at least this many times the dense model's tokens/s, as a latency model timed on this device "
         "predicts (measured once per model and device, then cached)")]
SPEED_MODE_HELP = ("What a speed is of: prefill (a prompt's forward) or decode (one generated token per sequence "
                   "against the prompt's KV cache)")
SpeedModeOpt = Annotated[str, typer.Option(help=SPEED_MODE_HELP)]
SPEED_BATCH_HELP = "Sequences per timed step (the serving batch)"
SpeedBatchOpt = Annotated[int, typer.Option(help=SPEED_BATCH_HELP)]
SPEED_CONTEXT_HELP = "Prompt tokens per sequence (decode: the length of the KV cache each token attends to)"
SpeedContextOpt = Annotated[int, typer.Option(help=SPEED_CONTEXT_HELP)]
RefitOpt = Annotated[Optional[bool], typer.Option(
    "--refit/--no-refit", help="Refit each pruned layer's output projection by least squares on calibration text "
                               "(default: as the architecture was searched)")]
ProbesOpt = Annotated[Optional[str], typer.Option(
    "--probes", help="Sensitivity probes of the greedy allocator: loss (default) or kl-dims (also thinned head dims, "
                     "by KL divergence; twice the probing time)")]


def _task_names(tasks: str | None, limit: int | None) -> tuple[str, ...]:
    """The zero-shot tasks asked for (none without --tasks); --limit alone is a mistake."""
    from prunesearch.evaluate.zeroshot import resolve_tasks

    if limit is not None and not tasks:
        raise PrunesearchError("--limit applies to zero-shot tasks: give --tasks too")
    return resolve_tasks(tasks) if tasks else ()


def _quiet_libraries() -> None:
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()


def _space(model: str, mlp_step: int, dim_step: int):
    from prunesearch.models import load_config
    from prunesearch.space import ModelShape, SearchSpace

    return SearchSpace(ModelShape.from_config(load_config(model)), mlp_step=mlp_step, dim_step=dim_step)


@app.command()
def sample(
    out_path: Annotated[Path, typer.Option("--out", "-o", help="Where to write the architecture JSON")],
    model: ModelOpt = "smollm2-135m",
    budget: Annotated[Optional[float], typer.Option(help="Fraction of total parameters to remove")] = None,
    seed: int = 0,
    mlp_step: Annotated[int, typer.Option(help="MLP channel granularity")] = 64,
    dim_step: Annotated[int, typer.Option(help="Per-head dim granularity (even)")] = 8,
) -> None:
    """Write a random valid architecture (at --budget within 1% of total parameters, or uniformly random)."""
    from prunesearch.space import cost

    space = _space(model, mlp_step, dim_step)
    arch = space.sample(seed) if budget is None else space.sample_at_budget(budget, seed)
    arch.meta["model"] = model
    arch.save(out_path)
    c = cost(arch)
    err.print(f"wrote {out_path}: removes {c.removed:.2%} of {c.dense_params:,} parameters "
              f"({c.params:,} kept, {sum(not l.keep for l in arch.layers)} blocks removed)")


def _summary(record: dict) -> None:
    from prunesearch.space import Workload

    table = Table(title=f"{record['model']} on {record['split']} "
                        f"({record['tokens']:,} tokens, {record['window']}-token windows)")
    table.add_column("")
    table.add_column("dense", justify="right")
    table.add_column("pruned", justify="right")
    table.add_column("ratio", justify="right")
    if "dense_ppl" in record:
        table.add_row("perplexity", f"{record['dense_ppl']:.2f}", f"{record['ppl']:.2f}",
                      f"{record['ppl_ratio']:.3f}")
    else:
        table.add_row("perplexity", "-", f"{record['ppl']:.2f}", "")
    table.add_row("parameters", f"{record['dense_params']:,}", f"{record['params']:,}",
                  f"{record['params'] / record['dense_params']:.3f}")
    table.add_row("GFLOPs/token", f"{record['dense_flops'] / 1e9:.3f}", f"{record['flops'] / 1e9:.3f}",
                  f"{record['flops'] / record['dense_flops']:.3f}")
    table.add_row("KV bytes/token", f"{record['dense_kv_bytes']:,}", f"{record['kv_bytes']:,}",
                  f"{record['kv_bytes'] / record['dense_kv_bytes']:.3f}")
    if "speed_ratio" in record:
        workload = Workload(record["speed_mode"], record["speed_batch"], record["speed_context"]).describe()
        label = "tokens/s" if workload == "prefill" else f"{workload} tokens/s"
        table.add_row(label, f"{record['dense_tokens_per_s']:.0f}", f"{record['tokens_per_s']:.0f}",
                      f"{record['speed_ratio']:.3f}")
    out.print(table)
    out.print(f"removed {record['removed']:.2%} of parameters, {record['blocks_removed']} blocks; "
              f"model fingerprint {record['fingerprint']}")
    if record.get("refit"):
        spec = record["refit"]
        out.print(f"output projections refitted by least squares on {spec['count']} x {spec['length']} tokens of "
                  f"{spec['data']} (damp {spec['damp']})")


@app.command()
def evaluate(
    model: ModelOpt = "smollm2-135m",
    arch_path: Annotated[Optional[Path], typer.Option("--arch", help="Architecture JSON (default: dense)")] = None,
    data: Annotated[str, typer.Option(help="ptb-test, ptb-valid, wiki-test, wiki-valid, ...")] = "ptb-test",
    window: Annotated[int, typer.Option(help="Perplexity window length in tokens")] = 512,
    max_tokens: Annotated[Optional[int], typer.Option(help="Use only the first N tokens of the split")] = None,
    dense: Annotated[bool, typer.Option(help="Also measure the dense model (cached)")] = True,
    speed_repeats: Annotated[int, typer.Option(help="Interleaved timed steps per model (0: skip)")] = 5,
    speed_mode: SpeedModeOpt = "prefill",
    speed_batch: SpeedBatchOpt = 1,
    speed_context: SpeedContextOpt = 512,
    tasks: Annotated[Optional[str], typer.Option(
        help="Also zero-shot accuracy through lm-eval: comma-separated tasks, or paper7 for the 7-task set")] = None,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Zero-shot: first N documents of each task")] = None,
    refit: RefitOpt = None,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "float32",
    as_json: JsonOpt = False,
) -> None:
    """Materialize an architecture and measure perplexity, cost and speed beside the dense model."""
    from prunesearch.evaluate import EvalSpec, evaluate_architecture, with_units
    from prunesearch.evaluate.zeroshot import evaluate_tasks
    from prunesearch.models import load_model
    from prunesearch.pruners import materialize
    from prunesearch.pruners.refit import resolve_refit
    from prunesearch.space import Architecture, ModelShape, Workload

    speed = Workload(speed_mode, speed_batch, speed_context)
    task_names = _task_names(tasks, limit)
    _quiet_libraries()
    loaded = load_model(model, dtype=dtype, device=device)
    shape = ModelShape.from_config(loaded.model.config)
    arch = Architecture.load(arch_path, shape) if arch_path else Architecture.dense(shape)
    if task_names:  # units chosen once, so the zero-shot model is the very one whose perplexity is measured
        arch = with_units(loaded, arch)
    applied = resolve_refit(loaded, refit, [arch], progress=not as_json)
    record = evaluate_architecture(
        loaded, arch, EvalSpec(data=data, window=window, max_tokens=max_tokens), with_dense=dense,
        speed_repeats=speed_repeats, speed=speed, refit=applied,
    )
    record["arch"] = str(arch_path) if arch_path else "dense"
    if task_names:
        zero_shot = evaluate_tasks(materialize(loaded.model, arch, applied), loaded.tokenizer, task_names, limit,
                                   fingerprint=loaded.fingerprint)
        record.update(tasks=zero_shot["tasks"], zero_shot_avg=zero_shot["zero_shot_avg"], task_limit=limit)
        record["versions"]["lm_eval"] = zero_shot["lm_eval"]
    if as_json:
        sys.stdout.write(json.dumps(record) + "\n")
    else:
        _summary(record)
        if task_names:
            _zero_shot_summary(record)


def _zero_shot_summary(record: dict) -> None:
    """The zero-shot table of ``evaluate``; a --limit is stated beside the numbers it qualifies."""
    scope = f"first {record['task_limit']} documents per task" if record["task_limit"] else "full splits"
    if record["task_limit"] and "mmlu" in record["tasks"]:
        scope += " (per subject for mmlu)"
    table = Table(title=f"zero-shot accuracy (lm-eval {record['versions']['lm_eval']}, {scope})")
    for column in ("task", "split", "metric", "value", "stderr", "n"):
        table.add_column(column, justify="left" if column in ("task", "split", "metric") else "right")
    for name, row in record["tasks"].items():
        stderr = f"{row['stderr']:.4f}" if row["stderr"] is not None else "-"
        table.add_row(name, row["split"], row["metric"], f"{row['value']:.4f}", stderr, f"{row['n']:,}")
    out.print(table)
    if record["zero_shot_avg"] is not None:
        out.print(f"7-task zero-shot average: {record['zero_shot_avg']:.4f} ({scope})")


@app.command()
def export(
    arch_path: Annotated[Path, typer.Option("--arch", help="Architecture JSON")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Directory for the pruned model")],
    model: ModelOpt = "smollm2-135m",
    refit: RefitOpt = None,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "float32",
) -> None:
    """Write the pruned model as a Hugging Face directory (loads with AutoModelForCausalLM)."""
    from prunesearch.evaluate import with_units
    from prunesearch.models import load_model
    from prunesearch.paths import atomic_dir
    from prunesearch.pruners import materialize
    from prunesearch.pruners.refit import resolve_refit
    from prunesearch.space import Architecture, ModelShape

    _quiet_libraries()
    loaded = load_model(model, dtype=dtype, device=device)
    arch = with_units(loaded, Architecture.load(arch_path, ModelShape.from_config(loaded.model.config)))
    applied = resolve_refit(loaded, refit, [arch])
    arch.meta.update(model=model, fingerprint=loaded.fingerprint)
    arch.meta.pop("refit", None)
    if applied:
        arch.meta["refit"] = applied.spec.to_dict()
    pruned = materialize(loaded.model, arch, applied)
    with atomic_dir(out_dir) as tmp:
        pruned.save_pretrained(tmp)
        loaded.tokenizer.save_pretrained(tmp)
        arch.save(tmp / "architecture.json")
    params = sum(p.numel() for p in pruned.parameters())
    err.print(f"wrote {out_dir}: {params:,} parameters ({pruned.config.num_hidden_layers} layers)")


@app.command()
def baseline(
    method: Annotated[str, typer.Option(help="bip, transact, mi, sleb, shortgpt or uniform; or greedy, the "
                                             "allocator on measured sensitivity a campaign seeds its search with")],
    budget: Annotated[float, typer.Option(help="Fraction of total parameters to remove")],
    model: ModelOpt = "smollm2-135m",
    out_path: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write the architecture JSON")] = None,
    run_eval: Annotated[bool, typer.Option("--evaluate", help="Also evaluate it beside the dense model")] = False,
    data: Annotated[str, typer.Option(help="Evaluation split (with --evaluate)")] = "ptb-test",
    max_tokens: Annotated[Optional[int], typer.Option(help="Evaluate on the first N tokens only")] = None,
    probes: ProbesOpt = None,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "float32",
    as_json: JsonOpt = False,
) -> None:
    """A published method's own architecture at a budget (its unit choices recorded in the JSON), or the greedy
    allocator's (re-probed in 3 stages, as a campaign builds it)."""
    from prunesearch.evaluate import EvalSpec, evaluate_architecture
    from prunesearch.models import load_model
    from prunesearch.pruners.baselines import METHODS, baseline as make_baseline
    from prunesearch.pruners.greedy import greedy_reference
    from prunesearch.pruners.sensitivity import probe_spec
    from prunesearch.space import ModelShape, cost, space_for

    if method not in (*METHODS, "greedy"):
        raise PrunesearchError(f"unknown method '{method}' (choose from {', '.join(METHODS)}, greedy)")
    probe_spec(probes or "loss")
    _quiet_libraries()
    loaded = load_model(model, dtype=dtype, device=device)
    if method == "greedy":
        space_for(ModelShape.from_config(loaded.model.config)).check_budget(budget)
        arch = greedy_reference(loaded, probes=probes or "loss", progress=not as_json)(budget)
    else:
        arch = make_baseline(method, loaded, budget)
    if out_path:
        arch.save(out_path)
    record: dict = {"method": method, "budget": budget, "arch": str(out_path) if out_path else None,
                    "removed": cost(arch).removed,
                    "blocks_removed": [i for i, layer in enumerate(arch.layers) if not layer.keep]}
    if run_eval:
        record.update(evaluate_architecture(loaded, arch, EvalSpec(data=data, max_tokens=max_tokens)))
    if as_json:
        sys.stdout.write(json.dumps(record) + "\n")
    elif run_eval:
        _summary(record)
    else:
        out.print(f"{method} at budget {budget}: removes {record['removed']:.2%}, "
                  f"blocks removed {record['blocks_removed']}" + (f", wrote {out_path}" if out_path else ""))


@app.command()
def scores(model: ModelOpt = "smollm2-135m", device: DeviceOpt = "auto", dtype: DtypeOpt = "float32",
           as_json: JsonOpt = False) -> None:
    """Compute and cache every method's importance scores (the search's priors) and show a summary."""
    from prunesearch.models import load_model
    from prunesearch.pruners.priors import compute_priors

    _quiet_libraries()
    loaded = load_model(model, dtype=dtype, device=device)
    priors = compute_priors(loaded)
    ranking = {name: _by_redundancy(values) for name, values in priors.block.items()}
    if as_json:
        sys.stdout.write(json.dumps({"fingerprint": loaded.fingerprint, "seconds": priors.seconds,
                                     "block_redundancy": {k: v.tolist() for k, v in priors.block.items()},
                                     "most_redundant_blocks": ranking}) + "\n")
        return
    table = Table(title=f"priors for {model} ({loaded.fingerprint})")
    table.add_column("step")
    table.add_column("seconds", justify="right")
    for step, seconds in priors.seconds.items():
        table.add_row(step, f"{seconds:.1f}")
    out.print(table)
    for name, order in ranking.items():
        out.print(f"{name:>9}: most redundant blocks first: {order[:10]}")


def _by_redundancy(values) -> list[int]:
    """Block indices by decreasing redundancy (blocks a method never removes are left out)."""
    return [int(i) for i in values.argsort(descending=True, stable=True) if float(values[i]) > 0]


@app.command()
def info(model: ModelOpt = "smollm2-135m", as_json: JsonOpt = False) -> None:
    """Show a model's shape, parameter count and fingerprint."""
    from prunesearch.models import load_model
    from prunesearch.space import Architecture, ModelShape, cost

    _quiet_libraries()
    loaded = load_model(model)
    shape = ModelShape.from_config(loaded.model.config)
    record = {"model": model, "fingerprint": loaded.fingerprint, **shape.to_dict(),
              "params": cost(Architecture.dense(shape)).params}
    if as_json:
        sys.stdout.write(json.dumps(record) + "\n")
    else:
        for key, value in record.items():
            out.print(f"{key:>18}: {value}")


@app.command()
def campaign(
    model: ModelOpt = "smollm2-135m",
    budget: Annotated[Optional[list[float]], typer.Option(help="Fraction of parameters to remove (repeatable)")] = None,
    pairs: Annotated[Optional[int], typer.Option(help="Pairs measured before the first predictor fit")] = None,
    tokens: Annotated[Optional[int], typer.Option(help="Search-time fidelity: validation tokens per pair "
                                                      "(default 4096)")] = None,
    window: Annotated[Optional[int], typer.Option(help="Window length of every perplexity")] = None,
    layout: Annotated[Optional[str], typer.Option(help="Where the validation windows lie in each split: spread "
                                                       "(evenly over it, default) or head (its first tokens)")] = None,
    rounds: Annotated[Optional[int], typer.Option(help="Search + verify rounds")] = None,
    verify: Annotated[Optional[int], typer.Option(help="Candidates verified per round and budget")] = None,
    trials: Annotated[Optional[int], typer.Option(help="Predictor queries per search")] = None,
    sampler: Annotated[Optional[str], typer.Option(help="Search engine: evolution (vectorised, thousands of "
                                                        "queries/s), or Optuna's nsga2, tpe or random")] = None,
    pessimism: Annotated[Optional[float], typer.Option(help="Search the predictor's mean + this x its ensemble's "
                                                            "spread (0: the mean)")] = None,
    compare_tokens: Annotated[Optional[int], typer.Option(help="Test tokens per split in the final comparison")] = None,
    name: Annotated[Optional[str], typer.Option(help="Campaign name (default: model and budgets)")] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Run folder (default runs/<name>)")] = None,
    storage: Annotated[Optional[str], typer.Option(help="Optuna storage URL (default SQLite in the run folder)")] = None,
    config: Annotated[Optional[Path], typer.Option(help="campaign.toml with any of these settings")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed of the pair design and the search")] = None,
    objective: Annotated[Optional[str], typer.Option(help="What the search minimises: ppl, or accuracy (minus mean "
                                                          "zero-shot accuracy on --tasks, --task-limit docs each)")] = None,
    units: Annotated[Optional[str], typer.Option(help="Scores choosing the units a width keeps: transact, "
                                                      "activation or bip")] = None,
    refine_top: Annotated[Optional[int], typer.Option(help="Best widths per budget whose units are re-chosen "
                                                           "by TransAct's iterative schedule (0: none)")] = None,
    greedy_stages: Annotated[Optional[int], typer.Option(help="Shares of the budget after each of which the greedy "
                                                              "seed probes its sensitivity again (1: once)")] = None,
    probes: ProbesOpt = None,
    final_top: Annotated[Optional[int], typer.Option(help="Best pairs per budget read again on --final-tokens "
                                                          "validation tokens to pick the winner (0: none)")] = None,
    final_tokens: Annotated[Optional[int], typer.Option(
        help="Validation tokens of the finalists' read, none of them the search fidelity's")] = None,
    deep_top: Annotated[Optional[int], typer.Option(help="Best finalists per budget read again on --deep-tokens "
                                                         "more validation tokens (0: none; default 3)")] = None,
    deep_tokens: Annotated[Optional[int], typer.Option(
        help="Validation tokens of the best finalists' second read, none read before (default 16384)")] = None,
    tasks: Annotated[Optional[str], typer.Option(help="Zero-shot columns in the comparison: tasks or paper7")] = None,
    task_limit: Annotated[Optional[int], typer.Option(min=1, help="Zero-shot: first N documents per task")] = None,
    max_flops: MaxFlopsOpt = None,
    max_kv: MaxKvOpt = None,
    min_speedup: MinSpeedupOpt = None,
    speed_mode: Annotated[Optional[str], typer.Option(help=SPEED_MODE_HELP + ": the floor's and the comparison's "
                                                             "(default prefill)")] = None,
    speed_batch: Annotated[Optional[int], typer.Option(help=SPEED_BATCH_HELP + " (default 1)")] = None,
    speed_context: Annotated[Optional[int], typer.Option(help=SPEED_CONTEXT_HELP + " (default 512)")] = None,
    refit: Annotated[Optional[bool], typer.Option(
        "--refit/--no-refit", help="Refit each pruned layer's output projection by least squares on calibration "
                                   "text, in every pair and every compared model")] = None,
    device: Annotated[Optional[str], typer.Option(help=DEVICE_HELP + " (default auto)")] = None,
    dtype: Annotated[Optional[str], typer.Option(help=DTYPE_HELP + " (default float32)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Priors, measured pairs, XGBoost predictor, Optuna search, verified winners, comparison and report."""
    from prunesearch.evaluate.zeroshot import resolve_tasks
    from prunesearch.search.campaign import run_campaign
    from prunesearch.search.config import CampaignConfig
    from prunesearch.search.report import Row, comparison_table
    from prunesearch.space import Workload

    _quiet_libraries()
    base = CampaignConfig.from_toml(config) if config else CampaignConfig()
    settings = base.replace(model=None if model == "smollm2-135m" and config else model,
                            budgets=tuple(budget) if budget else None, pairs=pairs, tokens=tokens, window=window,
                            layout=layout, rounds=rounds, verify=verify, trials=trials, sampler=sampler,
                            pessimism=pessimism, compare_tokens=compare_tokens, name=name,
                            storage=storage, seed=seed, objective=objective, units=units, refine_top=refine_top,
                            greedy_stages=greedy_stages, probes=probes, final_top=final_top, final_tokens=final_tokens,
                            deep_top=deep_top, deep_tokens=deep_tokens,
                            task_limit=task_limit, max_flops=max_flops, max_kv=max_kv, min_speedup=min_speedup,
                            speed_mode=speed_mode, speed_batch=speed_batch, speed_context=speed_context,
                            refit=None if refit and base.refit else refit,  # --refit keeps a configured spec
                            device=device, dtype=dtype,
                            tasks=resolve_tasks(tasks) if tasks else None)
    run_dir = out_dir or Path("runs") / settings.campaign
    summary = run_campaign(settings, run_dir, progress=True)
    if as_json:
        sys.stdout.write(json.dumps(summary, default=str) + "\n")
        return
    rows = [Row(**{k: v for k, v in r.items()}) for r in summary["comparison"]]
    if rows:
        out.print(comparison_table(rows, title=f"campaign {settings.campaign}: test perplexity"))
    for b, info in summary["best"].items():
        final = f", {info['final_ppl']:.2f} on the finalists' fresh read" if info.get("final_ppl") else ""
        if info.get("fresh_ppl") and info["fresh_ppl"] != info.get("final_ppl"):
            final += f", {info['fresh_ppl']:.2f} with the second fresh read"
        speed = (f", predicted {Workload(info['speed_mode'], info['speed_batch'], info['speed_context']).describe()} "
                 f"speed {info['predicted_speedup']:.2f}× dense" if "predicted_speedup" in info else "")
        out.print(f"best at {float(b):.0%}: {info['path']} (fidelity ppl {info['ppl']:.2f}{final}, "
                  f"from {info['sampler']}{speed})")
    out.print(f"predictor: {summary['predictor']}\nreport: {summary['report']}")


@app.command()
def worker(
    storage: Annotated[str, typer.Option(help="The campaign's Optuna storage URL (sqlite:///... or postgresql://...)")],
    campaign_name: Annotated[str, typer.Option("--campaign", help="Campaign name (its Optuna study)")],
    model: Annotated[Optional[str], typer.Option(
        "--model", "-m", help="The campaign's model at another path on this machine (checked by fingerprint)")] = None,
    idle: Annotated[float, typer.Option(help="Exit after this many seconds with nothing to claim")] = 600.0,
    device: DeviceOpt = "auto",
    as_json: JsonOpt = False,
) -> None:
    """Join a campaign from any machine: claim queued architectures, evaluate them, report to the storage."""
    from prunesearch.evaluate.worker import join, work

    _quiet_libraries()
    store, loaded, fidelity, refit = join(storage, campaign_name, model, device)
    done = work(store, loaded, fidelity, idle=idle, progress=not as_json, refit=refit)
    record = {"campaign": campaign_name, "evaluated": len(done), "trials": [p.number for p in done]}
    if as_json:
        sys.stdout.write(json.dumps(record) + "\n")
    else:
        out.print(f"worker done: evaluated {len(done)} architecture(s) of campaign {campaign_name}")


@app.command("search")
def search_command(
    predictor: Annotated[Path, typer.Option(help="A saved predictor folder (runs/<campaign>/predictor)")],
    budget: Annotated[float, typer.Option(help="Fraction of parameters to remove")],
    verify: Annotated[int, typer.Option(help="Measure the top K on the predictor's fidelity (loads the model)")] = 0,
    trials: Annotated[int, typer.Option(help="Predictor queries")] = 20000,
    sampler: Annotated[str, typer.Option(help="Search engine: evolution, or Optuna's nsga2, tpe or random")] = "evolution",
    pessimism: Annotated[float, typer.Option(help="Search the mean + this x the ensemble's spread")] = 1.0,
    out_path: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write the best architecture JSON")] = None,
    seed: Annotated[int, typer.Option(help="Search seed")] = 0,
    max_flops: MaxFlopsOpt = None,
    max_kv: MaxKvOpt = None,
    min_speedup: MinSpeedupOpt = None,
    speed_mode: SpeedModeOpt = "prefill",
    speed_batch: SpeedBatchOpt = 1,
    speed_context: SpeedContextOpt = 512,
    device: Annotated[str, typer.Option(help=DEVICE_HELP + " (with --verify or --min-speedup)")] = "auto",
    as_json: JsonOpt = False,
) -> None:
    """Reuse a trained predictor for a new budget: no evaluation unless --verify."""
    from prunesearch.search.reuse import reuse_search
    from prunesearch.space import Limits, Workload

    limits = Limits(max_flops, max_kv, min_speedup, Workload(speed_mode, speed_batch, speed_context))
    result = reuse_search(predictor, budget, verify, trials, out_path, seed, sampler, pessimism,
                          progress=not as_json, limits=limits, device=device)
    if "warning" in result:
        err.print(f"warning: {result['warning']}")
    if as_json:
        sys.stdout.write(json.dumps(result, default=str) + "\n")
        return
    for key, value in result.items():
        out.print(f"{key:>20}: {value}")


@app.command("compare")
def compare_command(
    budget: Annotated[float, typer.Option(help="Compare against every baseline at this budget")],
    arch_paths: Annotated[Optional[list[Path]], typer.Option(
        "--arch", help="Searched architecture JSON (repeatable), e.g. runs/<campaign>/best.json")] = None,
    model: ModelOpt = "smollm2-135m",
    methods: Annotated[str, typer.Option(help="Comma-separated baselines (default: all six)")] = "",
    max_tokens: Annotated[Optional[int], typer.Option(help="First N tokens of each test split (default: all)")] = None,
    tasks: Annotated[Optional[str], typer.Option(
        help="Also zero-shot accuracy: comma-separated tasks, or paper7")] = None,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Zero-shot: first N documents of each task")] = None,
    out_path: Annotated[Optional[Path], typer.Option("--out", "-o", help="Also write the table as markdown")] = None,
    refit: Annotated[Optional[bool], typer.Option(
        "--refit/--no-refit", help="Refit every pruned model's output projections by least squares, the baselines "
                                   "too (default: on when a searched architecture was searched with it)")] = None,
    max_flops: MaxFlopsOpt = None,
    max_kv: MaxKvOpt = None,
    min_speedup: MinSpeedupOpt = None,
    speed_mode: Annotated[str, typer.Option(help=SPEED_MODE_HELP + ": the floor's and the table's")] = "prefill",
    speed_batch: SpeedBatchOpt = 1,
    speed_context: SpeedContextOpt = 512,
    greedy_stages: Annotated[int, typer.Option(
        min=0, help="Also the greedy allocator (no search; the campaign's seed), re-probed in this many stages "
                    "(each costs one probe pass, cached); 0 leaves it out")] = 3,
    probes: ProbesOpt = None,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "float32",
    as_json: JsonOpt = False,
) -> None:
    """The searched model(s), the greedy allocator and every heuristic baseline on held-out test text, in one run
    and one table. With --max-flops/--max-kv/--min-speedup each heuristic stands at the least budget (from --budget
    up) whose model meets them."""
    from prunesearch.models import load_model
    from prunesearch.pruners.baselines import METHODS
    from prunesearch.pruners.refit import resolve_refit
    from prunesearch.pruners.greedy import greedy_reference
    from prunesearch.pruners.sensitivity import probe_spec
    from prunesearch.search.compare import HIGHEST_BUDGET, baselines_at, check_model, compare, greedy_beside
    from prunesearch.search.report import comparison_markdown, comparison_table, rows_to_json
    from prunesearch.evaluate.latency import with_latency
    from prunesearch.space import Architecture, Limits, ModelShape, SearchSpace, Workload, space_for

    limits = Limits(max_flops, max_kv, min_speedup, Workload(speed_mode, speed_batch, speed_context))
    chosen = [m.strip() for m in methods.split(",") if m.strip()] or list(METHODS)
    unknown = [m for m in chosen if m not in METHODS]
    if unknown:
        raise PrunesearchError(f"unknown method '{unknown[0]}' (choose from {', '.join(METHODS)})")
    task_names = _task_names(tasks, limit)
    probe_spec(probes or "loss")
    _quiet_libraries()
    loaded = load_model(model, dtype=dtype, device=device)
    shape = ModelShape.from_config(loaded.model.config)
    SearchSpace(shape).check_budget(budget)
    limits = with_latency(limits, loaded.model.config, space_for(shape), not as_json, loaded.model.device,
                          loaded.model.dtype)
    models = {}
    for path in arch_paths or []:
        arch = Architecture.load(path, shape)
        check_model(loaded, arch, str(path))
        models[f"searched: {path}"] = ("searched", arch)
    applied = resolve_refit(loaded, refit, [arch for _, arch in models.values()], progress=not as_json)
    reference = (greedy_beside(greedy_reference(loaded, probes=probes or "loss", progress=not as_json), budget,
                               greedy_stages, limits)
                 if greedy_stages else {})
    models.update(reference)
    baselines, unmet = baselines_at(loaded, budget, chosen, progress=not as_json, limits=limits)
    models.update(baselines)
    if greedy_stages and not reference:
        unmet.insert(0, "greedy")
    if not models:
        raise BudgetError(f"no heuristic meets {limits.describe()} at any budget up to {HIGHEST_BUDGET:.0%} "
                          "and no --arch was given")
    rows = compare(loaded, models, max_tokens, tasks=task_names, limit=limit, progress=not as_json, refit=applied,
                   speed=limits.speed)
    if out_path:
        atomic_write_text(out_path, comparison_markdown(rows) + "\n")
    if as_json:
        sys.stdout.write(json.dumps({"budget": budget, "limits": limits.to_dict(), "unmet": unmet,
                                     "max_tokens": max_tokens, "limit": limit, "fingerprint": loaded.fingerprint,
                                     "refit": applied.spec.to_dict() if applied else None,
                                     "rows": rows_to_json(rows)}) + "\n")
        return
    title = (f"{loaded.name} at {budget:.0%}" + (f", {limits.describe()}" if limits else "") + ": held-out test text"
             + (", every model refitted" if applied else ""))
    out.print(comparison_table(rows, title=title))
    if limits:
        out.print("Heuristics stand at the least budget whose model meets the limits"
                  + (f"; no budget up to {HIGHEST_BUDGET:.0%} does for {', '.join(unmet)}" if unmet else "") + ".")


def _out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an accelerator running out of memory (torch is loaded by then whenever it is)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(exc, torch.OutOfMemoryError)


def main() -> None:
    """Console entry point: user errors become one line on stderr and exit code 2, and so does a model too large
    for its device, with what to try (a campaign or worker killed by it resumes where it stopped)."""
    try:
        app()
    except PrunesearchError as exc:
        sys.stderr.write(f"error: {' '.join(str(exc).split())}\n")
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        err.print("interrupted")
        raise SystemExit(130) from None
    except Exception as exc:
        if not _out_of_memory(exc):
            raise
        first = str(exc).split(". ")[0]
        sys.stderr.write(f"error: the device ran out of memory ({first}): load the model in half precision "
                         "(--dtype bfloat16), use a larger device, or lower --speed-batch/--speed-context\n")
        raise SystemExit(2) from None
