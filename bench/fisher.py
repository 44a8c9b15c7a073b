"""Do Fisher (mask-gradient) damage estimates help the predictor rank? 5-fold rank quality on a run's pairs.

Usage: .venv/bin/python bench/fisher.py --run runs/<campaign> [--windows 128] [--length 128]

Every prunable unit gets a mask variable (MLP channel: down_proj input; query head x value dim: o_proj input;
key dim: k_proj output, which zeroes a rotary pair's logit share for the whole group). One backward pass per
PTB-train window gives that window's loss gradient g_n over all masks. An architecture removes the mask set r,
and the loss change to second order (Fisher for the Hessian) is

    -mean_n(g_n . r) + 1/2 mean_n (g_n . r)^2,

whose quadratic term couples every pair of removed units, across layers too: what the per-layer probe tables,
one layer cut at a time, cannot see (Kwon et al. 2022, "A Fast Post-Training Pruning Framework for
Transformers", search masks on the same Fisher form). The bench scores each estimate alone in the band, then adds
them to the run's saved feature context in two ways: five totals per architecture (first order, second order,
its block-diagonal part by layer and the cross-layer rest, and the sum) as extra columns, and per-layer tables
``fisher/mlp``, ``fisher/kv`` (each layer's own estimate as a function of units kept, the form a
``FeatureContext`` takes). 5-fold out-of-fold rank quality with and without, same folds, same ensemble; the
"predictor (check)" row is the project's ``Predictor`` on the saved features, which the hand-rolled ensemble
must reproduce.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from prunesearch.pruners.materialize import unit_rows


def mask_gradients(model, windows: torch.Tensor) -> np.ndarray:
    """[N, U] loss gradients of each window w.r.t. every unit mask (layer-major: mlp [I], o [H*D], k [KV*D])."""
    layers = model.model.layers
    masks = []
    handles = []
    for block in layers:
        attn, mlp = block.self_attn, block.mlp
        m_mlp = torch.ones(mlp.down_proj.in_features, requires_grad=True)
        m_o = torch.ones(attn.o_proj.in_features, requires_grad=True)
        m_k = torch.ones(attn.k_proj.out_features, requires_grad=True)
        masks += [m_mlp, m_o, m_k]
        handles.append(mlp.down_proj.register_forward_pre_hook(lambda _, a, m=m_mlp: (a[0] * m,)))
        handles.append(attn.o_proj.register_forward_pre_hook(lambda _, a, m=m_o: (a[0] * m,)))
        handles.append(attn.k_proj.register_forward_hook(lambda _, a, out, m=m_k: out * m))
    for p in model.parameters():
        p.requires_grad_(False)
    rows = []
    try:
        for window in windows:
            for m in masks:
                m.grad = None
            ids = window[None]
            loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            rows.append(torch.cat([m.grad for m in masks]).numpy().copy())
    finally:
        for h in handles:
            h.remove()
    return np.stack(rows)


def removal(arch, shape) -> np.ndarray:
    """[U] 1 where ``arch`` (with unit indices) removes a mask variable, in ``mask_gradients``' layout: the MLP
    channels and o_proj columns the materializer drops, and the key dims it drops from the groups it keeps (a
    dropped group's o_proj columns already remove it)."""
    I, H, KV, D = shape.intermediate_size, shape.num_heads, shape.num_kv_heads, shape.head_dim
    layers = []
    for layer in arch.layers:
        mlp, o, k = np.ones(I, np.float32), np.ones(H * D, np.float32), np.zeros(KV * D, np.float32)
        if layer.keep:
            rows = unit_rows(shape, layer)
            mlp[rows["mlp"].numpy()] = 0
            o[rows["o"].numpy()] = 0
            for group in layer.kv_idx:
                k[group * D:(group + 1) * D] = 1
            k[rows["k"].numpy()] = 0
        layers.append(np.concatenate([mlp, o, k]))
    return np.concatenate(layers)


def estimates(G: np.ndarray, R: np.ndarray, layers: int) -> dict[str, np.ndarray]:
    """Per architecture: first-order, second-order (full and block-diagonal by layer) and their sum."""
    D = R @ G.T
    first = -D.mean(1)
    second = 0.5 * (D ** 2).mean(1)
    per = R.shape[1] // layers
    diag = sum(0.5 * ((R[:, i * per:(i + 1) * per] @ G[:, i * per:(i + 1) * per].T) ** 2).mean(1)
               for i in range(layers))
    return {"fisher:first": first, "fisher:second": second, "fisher:diag": diag, "fisher:total": first + second,
            "fisher:cross": second - diag}


def layer_tables(G: np.ndarray, scores, shape) -> dict[str, np.ndarray]:
    """Per-layer second-order estimates as feature tables: ``fisher/mlp`` [L, I+1] for keeping the top-k MLP
    channels, ``fisher/kv`` [L, KV+1] for keeping the top-g groups (whole groups: every o_proj dim of their
    heads), each layer and module alone (no cross terms)."""
    I, H, KV, D, gs = shape.intermediate_size, shape.num_heads, shape.num_kv_heads, shape.head_dim, shape.group_size
    per = I + H * D + KV * D
    mlp, kv = np.zeros((shape.num_layers, I + 1)), np.zeros((shape.num_layers, KV + 1))
    for i in range(shape.num_layers):
        g = G[:, i * per:(i + 1) * per]
        order = np.argsort(-scores.mlp[i].numpy(), kind="stable")
        suffix = np.concatenate([np.cumsum(g[:, order[::-1]], 1)[:, ::-1], np.zeros((len(g), 1))], 1)
        mlp[i] = -suffix.mean(0) + 0.5 * (suffix ** 2).mean(0)
        groups = g[:, I:I + H * D].reshape(len(g), KV, gs * D).sum(2)
        order = np.argsort(-scores.kv_groups(shape)[i].numpy(), kind="stable")
        suffix = np.concatenate([np.cumsum(groups[:, order[::-1]], 1)[:, ::-1], np.zeros((len(g), 1))], 1)
        kv[i] = -suffix.mean(0) + 0.5 * (suffix ** 2).mean(0)
    return {"fisher/mlp": mlp, "fisher/kv": kv}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--windows", type=int, default=128)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    import xgboost as xgb
    from scipy.stats import kendalltau

    from prunesearch.data import calibration_windows, token_ids
    from prunesearch.predictor import FeatureContext
    from prunesearch.predictor.features import featurize
    from prunesearch.predictor.model import DEFAULTS
    from prunesearch.pruners.selection import select_units
    from runs import out_of_fold, predictor_fit, run_model, run_pairs

    pairs = run_pairs(args.run)
    m = run_model(pairs)
    shape, ctx = m.space.shape, pairs.predictor.ctx
    windows = calibration_windows(token_ids(m.loaded.tokenizer, "ptb-train"), args.windows, args.length, args.seed)
    start = time.time()
    G = mask_gradients(m.loaded.model, windows)
    grad_s = time.time() - start
    R = np.stack([removal(select_units(a, m.scores), shape) for a in pairs.archs])
    extra = estimates(G, R, shape.num_layers)
    names = sorted(extra)
    E = np.stack([extra[n] for n in names], 1)

    results = {"run": str(args.run), "pairs": len(pairs.y), "windows": args.windows, "length": args.length,
               "gradient_s": round(grad_s, 1), "single": {}}
    for b in pairs.config["budgets"]:
        near = np.abs(pairs.removed - b) <= pairs.config["band"] + 1e-12
        results["single"][str(b)] = {n: float(kendalltau(extra[n][near], pairs.y[near])[0]) for n in names}
    print(json.dumps(results["single"]), flush=True)

    X_base = featurize(pairs.archs, ctx)

    def fit_with(X: np.ndarray, members: int):
        def fit_predict(train: np.ndarray, test: np.ndarray) -> np.ndarray:
            preds = []
            for k in range(members):
                rows = (np.random.default_rng(k).integers(0, len(train), len(train)) if members > 1
                        else np.arange(len(train)))
                model = xgb.XGBRegressor(**{**DEFAULTS, "random_state": k}).fit(X[train][rows], pairs.y[train][rows])
                preds.append(model.predict(X[test]))
            return np.mean(preds, 0)
        return fit_predict

    variants = {"saved features": X_base, "+ fisher totals": np.concatenate([X_base, E], 1),
                "fisher totals only": E}
    for label, X in variants.items():
        results[label] = {"ensemble": out_of_fold(pairs, fit_with(X, 5), (0, 1))}
        print(label, json.dumps(results[label]), flush=True)
    results["predictor (check)"] = {"ensemble": out_of_fold(pairs, predictor_fit(pairs, ctx, 5), (0, 1))}
    print("predictor", json.dumps(results["predictor (check)"]), flush=True)
    tables = layer_tables(G, m.scores, shape)
    richer = FeatureContext(shape, {**ctx.tables, **tables}, ctx.block)
    results["+ fisher per-layer tables"] = {"ensemble": out_of_fold(pairs, predictor_fit(pairs, richer, 5), (0, 1))}
    print("+ tables", json.dumps(results["+ fisher per-layer tables"]), flush=True)
    Path("bench/results").mkdir(parents=True, exist_ok=True)
    Path("bench/results/fisher.json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
