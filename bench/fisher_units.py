"""Would Fisher (mask-gradient) scores pick better units for a given width than TransAct's activation norms?

Usage: .venv/bin/python bench/fisher_units.py [--windows 256] [--length 128] [--tokens 8192] [--arch NAME=PATH ...]

The counts of each architecture stay; only *which* heads, dims and channels it keeps change. A unit's score is its
removal's loss change to second order, from per-window loss gradients of a mask on it (``fisher.mask_gradients``,
PTB-train windows, seed 7): ``1/2 mean_n s_n^2`` (Fisher), with ``s_n`` the gradient summed over what removing the
unit zeroes (a value dim: that dim in every query head of its group; a rotary pair: both key dims; a group: all of
its heads' o_proj inputs). ``taylor`` adds the first-order term ``-mean_n s_n``. Read on PTB-valid and
Wikipedia-prose-valid, first ``--tokens`` tokens, 512-token windows.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fisher import mask_gradients


def fisher_scores(G: np.ndarray, shape, first_order: bool):
    """``UnitScores`` (plus whole-group scores) from mask gradients ``G`` [N, U] in ``mask_gradients``' layout."""
    from prunesearch.pruners.scores import UnitScores

    @dataclass
    class GroupScores(UnitScores):
        groups: torch.Tensor = None

        def kv_groups(self, shape) -> torch.Tensor:
            return self.groups

    def damage(s: np.ndarray) -> torch.Tensor:
        value = 0.5 * (s ** 2).mean(0)
        if first_order:
            value = value - s.mean(0)
        return torch.from_numpy(value).float()

    L, I, H, KV, D = shape.num_layers, shape.intermediate_size, shape.num_heads, shape.num_kv_heads, shape.head_dim
    gs, per, N = shape.group_size, I + H * D + KV * D, len(G)
    mlp, heads, v_dims, qk_pairs, groups = [], [], [], [], []
    for i in range(L):
        g = G[:, i * per:(i + 1) * per]
        o = g[:, I:I + H * D].reshape(N, KV, gs, D)
        k = g[:, I + H * D:].reshape(N, KV, D)
        mlp.append(damage(g[:, :I]))
        heads.append(damage(o.sum(3).reshape(N, H)))
        v_dims.append(damage(o.sum(2).reshape(N, KV * D)).view(KV, D))
        qk_pairs.append(damage((k[:, :, :D // 2] + k[:, :, D // 2:]).reshape(N, -1)).view(KV, D // 2))
        groups.append(damage(o.sum((2, 3))))
    return GroupScores(torch.stack(mlp), torch.stack(heads), torch.stack(v_dims), torch.stack(qk_pairs),
                       torch.stack(groups))


def mixed(attention, mlp):
    """Attention units by one score, MLP channels by another (plain ``UnitScores``: a group's score is then its
    heads' summed scores, not a whole-group estimate)."""
    from prunesearch.pruners.scores import UnitScores

    return UnitScores(mlp.mlp, attention.heads, attention.v_dims, attention.qk_pairs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--windows", type=int, default=256)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--tokens", type=int, default=8192)
    parser.add_argument("--arch", action="append", default=[], help="NAME=PATH, counts read from PATH")
    args = parser.parse_args()

    from prunesearch.data import calibration_windows, eval_windows, token_ids
    from prunesearch.evaluate.perplexity import perplexity
    from prunesearch.models import load_model
    from prunesearch.pruners import CalibrationSpec
    from prunesearch.pruners.masking import mask_model
    from prunesearch.pruners.priors import compute_priors
    from prunesearch.pruners.selection import select_units
    from prunesearch.space import Architecture, ModelShape

    loaded = load_model("smollm2-135m")
    dense, shape = loaded.model, ModelShape.from_config(loaded.model.config)
    transact = compute_priors(loaded, CalibrationSpec()).unit["transact"]
    windows = calibration_windows(token_ids(loaded.tokenizer, "ptb-train"), args.windows, args.length, 7)
    start = time.time()
    G = mask_gradients(dense, windows)
    results: dict = {"gradient seconds": round(time.time() - start, 1), "windows": [args.windows, args.length],
                     "tokens": args.tokens, "rows": []}
    torch.set_grad_enabled(False)
    fisher, taylor = fisher_scores(G, shape, False), fisher_scores(G, shape, True)
    unit_choices = {"transact": transact, "fisher": fisher, "taylor": taylor,
                    "transact attention, fisher mlp": mixed(transact, fisher),
                    "fisher attention, transact mlp": mixed(fisher, transact)}
    splits = {s: eval_windows(token_ids(loaded.tokenizer, s), 512, args.tokens) for s in ("ptb-valid", "wiki-valid")}
    archs = [("transact 20%", Path("bench/results/transact-20.json"))] + [
        (a.split("=", 1)[0], Path(a.split("=", 1)[1])) for a in args.arch]
    for name, path in archs:
        arch = Architecture.load(path, shape)
        variants = {"own units": arch} if arch.has_indices else {}
        counts = Architecture(shape, tuple(layer.counts() for layer in arch.layers), arch.meta)
        variants.update({f"units by {k}": select_units(counts, v, k) for k, v in unit_choices.items()})
        for variant, chosen in variants.items():
            row = {"arch": name, "units": variant, **{s: round(perplexity(mask_model(dense, chosen), w,
                                                                          progress=False).ppl, 2)
                                                      for s, w in splits.items()}}
            results["rows"].append(row)
            print(json.dumps(row), flush=True)
    Path("bench/results/fisher_units.json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
