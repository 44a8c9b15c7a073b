"""SLEB: greedy elimination of redundant transformer blocks by calibration loss (Song et al., ICML 2024).

SLEB (arXiv 2402.09025, code at github.com/jiwonsong-dev/SLEB) removes whole decoder blocks one at a time. At each
step it tries skipping every remaining block of the *current*, already pruned model, measures the language-modeling
loss on calibration text, and removes the block whose absence hurts least. Re-measuring after every removal is the
point of the method: a block that looks redundant in the dense model may stop being so once a neighbour is gone.
The first and last blocks are never candidates (the paper's "barriers"; on SmolLM2-135M dropping block 0 or 29
alone is catastrophic). Because each step only extends the previous one, the removal order is prefix-consistent:
the first k entries of a longer order are the order for budget k.

Cost. Skipping block j changes nothing before j, so the hidden states entering every remaining block are cached for
all calibration windows; scoring candidate j runs only the blocks after it, then the final norm and the lm_head.
After a removal the cache is refreshed from the removed block on. Memory: blocks x windows x length x hidden floats
(SmolLM2-135M, default spec: 30 x 8 x 128 x 576 x 4 B = 71 MB), plus one batch of logits and its log-softmax
(2 x 8 x 128 x 49152 x 4 B = 0.4 GB). ``reuse=False`` runs a full forward per candidate instead; both paths run
the same batched operations, so they score identically. Per candidate the lm_head costs about as much as eight
SmolLM2 blocks in either path, which caps the saving: reuse does ~0.63x the naive block-equivalents for 4 removals.
The default spec also screens each step's candidates on half the windows and finishes only the best four on the
other half (``shortlist``), which took 0.50x the time on SmolLM2-135M (405 s vs 808 s for 8 removals); the block
a step removes is the exact rule's unless the exact winner ranked below fourth on the first half (on SmolLM2-135M
the orders agree: BENCHMARKS.md).

Calibration differs from the reference code, which joins 128 shuffled WikiText-2 *rows* and cuts 2048-token
windows from them (a few windows, a few thousand tokens). WikiText-2 is not installable here and a 2048-token
forward per candidate is too slow on a 2-core CPU, so the default is 8 windows x 128 tokens (1,024 tokens) of PTB
train drawn at seeded random offsets, the project's calibration split. The score is the mean next-token cross
entropy over those windows (the reference sums it; with equal-length windows the ranking is the same).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import PreTrainedModel
from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask

from prunesearch.data import calibration_windows, token_ids
from prunesearch.errors import ArchitectureError, BudgetError
from prunesearch.paths import atomic_write_text, cache_dir

_CACHE_VERSION = "sleb-v1"
ALL = slice(None)


@dataclass(frozen=True)
class SlebSpec:
    """SLEB's calibration: ``count`` windows of ``length`` tokens drawn with ``seed`` from ``data``.

    ``protected`` lists blocks that are never removed; None means the first and the last block, as in the paper.
    ``shortlist``: candidates finished on the second half of the windows after screening on the first (see
    ``sleb_order``; 0 for the exact rule). ``batch_size`` only trades memory (its logits are batch x length x
    vocab floats) for speed.
    """

    data: str = "ptb-train"
    count: int = 8
    length: int = 128
    seed: int = 0
    protected: tuple[int, ...] | None = None
    batch_size: int = 8
    shortlist: int = 4

    def key(self, fingerprint: str) -> str:
        """Cache key: what the order depends on (an exact-rule spec keys as before the shortlist existed)."""
        spec = {k: v for k, v in asdict(self).items() if k != "batch_size" and not (k == "shortlist" and v == 0)}
        payload = json.dumps([_CACHE_VERSION, fingerprint, spec], sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def removable_blocks(num_layers: int, protected: Iterable[int] | None = None) -> list[int]:
    """The blocks SLEB may remove: all but ``protected`` (default: the first and the last)."""
    guarded = {0, num_layers - 1} if protected is None else set(protected)
    outside = sorted(i for i in guarded if not 0 <= i < num_layers)
    if outside:
        raise ArchitectureError(f"protected block(s) {outside} out of range for a model of {num_layers} blocks")
    return [i for i in range(num_layers) if i not in guarded]


def _check_budget(n_remove: int, removable: list[int]) -> None:
    if n_remove < 0:
        raise BudgetError(f"cannot remove a negative number of blocks ({n_remove})")
    if n_remove > len(removable):
        raise BudgetError(
            f"cannot remove {n_remove} blocks: only {len(removable)} are removable "
            f"(protected blocks are never removed; removable: {removable})"
        )


class BlockRunner:
    """Drives a dense decoder one block at a time over fixed calibration windows, as ``LlamaModel.forward`` does.

    Hidden states are kept as one tensor per batch of windows, so every path through the blocks runs exactly the
    same batched operations. Rotary embeddings and causal masks depend only on positions and are built once; masks
    come from the same transformers helpers the model uses (None under SDPA, which then takes its causal path).
    """

    def __init__(self, model: PreTrainedModel, windows: torch.Tensor, batch_size: int) -> None:
        self.model = model
        self.batches = list(windows.to(model.device).split(batch_size))
        config = model.config
        self.position_ids = torch.arange(windows.shape[1], device=model.device)[None]
        sliding = _sliding_layers(config)
        self.masks: list[list[torch.Tensor | None]] = []
        for embeds in self.embed():
            args = (config, embeds, None, None)  # no mask, no cache: the 4th is named `cache` from transformers 5.24
            full = create_causal_mask(*args, position_ids=self.position_ids)
            window = create_sliding_window_causal_mask(*args, position_ids=self.position_ids) if any(sliding) else None
            self.masks.append([window if s else full for s in sliding])
        self.position_embeddings = model.model.rotary_emb(embeds, position_ids=self.position_ids)

    def embed(self, part: slice = ALL) -> list[torch.Tensor]:
        return [self.model.model.embed_tokens(ids) for ids in self.batches[part]]

    def block(self, index: int, states: list[torch.Tensor], part: slice = ALL) -> list[torch.Tensor]:
        """The output of block ``index`` for the given input states (of the batches ``part`` selects)."""
        layer = self.model.model.layers[index]
        return [
            layer(h, attention_mask=masks[index], position_embeddings=self.position_embeddings,
                  position_ids=self.position_ids, use_cache=False)
            for h, masks in zip(states, self.masks[part], strict=True)
        ]

    def run(self, blocks: Iterable[int], states: list[torch.Tensor], part: slice = ALL) -> list[torch.Tensor]:
        for index in blocks:
            states = self.block(index, states, part)
        return states

    def head(self, states: torch.Tensor) -> torch.Tensor:
        """Logits from one batch of last-block output states."""
        return self.model.lm_head(self.model.model.norm(states))

    def nll(self, states: list[torch.Tensor], part: slice = ALL) -> float:
        """Mean next-token cross entropy over the windows of ``part``, from the last block's output states."""
        total, count = self.nll_sum(states, part)
        return total / count

    def nll_sum(self, states: list[torch.Tensor], part: slice = ALL) -> tuple[float, int]:
        """Summed next-token cross entropy and the number of scored tokens over the windows of ``part``."""
        total, count = 0.0, 0
        for h, ids in zip(states, self.batches[part], strict=True):
            logits = self.head(h)[:, :-1]
            targets = ids[:, 1:]
            total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1),
                                     reduction="sum").item()
            count += targets.numel()
        return total, count


def _sliding_layers(config) -> list[bool]:
    """Which layers use a sliding-window mask: per ``layer_types`` (qwen2), else all when ``sliding_window`` is set
    (mistral), else none (llama)."""
    types = getattr(config, "layer_types", None)
    if types is not None:
        return [t == "sliding_attention" for t in types[: config.num_hidden_layers]]
    return [getattr(config, "sliding_window", None) is not None] * config.num_hidden_layers


@torch.no_grad()
def sleb_order(model: PreTrainedModel, windows: torch.Tensor, n_remove: int, protected: Iterable[int] | None = None,
               reuse: bool = True, progress: bool = True, batch_size: int = 8, shortlist: int = 0) -> list[int]:
    """SLEB's greedy removal order on ``windows`` [n, length]: element k is the block removed at step k.

    The model is not modified (blocks are skipped, not deleted). ``reuse=False`` re-runs the full forward for
    every candidate; it exists to measure what prefix reuse saves and gives the same order. ``shortlist`` > 0
    screens every candidate on the first half of the windows and finishes only the ``shortlist`` best on the
    rest: the step still removes the block with the lowest loss over all windows among those, and costs a little
    over half (0: every candidate on every window, the paper's exact rule).
    """
    num_layers = len(model.model.layers)
    removable = removable_blocks(num_layers, protected)
    _check_budget(n_remove, removable)
    if shortlist < 0:
        raise ValueError(f"shortlist must not be negative, got {shortlist}")
    if shortlist and len(windows) > 1:
        batch_size = min(batch_size, -(-len(windows) // 2))
    runner = BlockRunner(model, windows, batch_size)
    half = len(runner.batches) // 2
    parts = (slice(0, half), slice(half, None)) if shortlist and half else (ALL,)
    kept = list(range(num_layers))
    inputs: dict[int, list[torch.Tensor]] = {}
    if reuse and n_remove:
        _refresh(runner, kept, 0, runner.embed(), inputs)

    def loss(j: int, part: slice) -> tuple[float, int]:
        position = kept.index(j)
        if reuse:
            states = runner.run(kept[position + 1:], inputs[j][part], part)
        else:
            states = runner.run(kept[:position] + kept[position + 1:], runner.embed(part), part)
        bar.update()
        return runner.nll_sum(states, part)

    order: list[int] = []
    with tqdm(desc="sleb", disable=not progress, leave=False) as bar:
        for step in range(n_remove):
            bar.set_description(f"sleb step {step + 1}/{n_remove}")
            candidates = [i for i in kept if i in removable]
            sums = {j: loss(j, parts[0]) for j in candidates}
            if len(parts) > 1:
                finalists = sorted(candidates, key=lambda j: sums[j][0] / sums[j][1])[:shortlist]
                sums = {j: tuple(a + b for a, b in zip(sums[j], loss(j, parts[1]))) for j in finalists}
            best = min(sums, key=lambda j: sums[j][0] / sums[j][1])
            position = kept.index(best)
            kept.remove(best)
            order.append(best)
            if reuse and len(order) < n_remove:
                _refresh(runner, kept, position, inputs.pop(best), inputs)
    return order


def _refresh(runner: BlockRunner, kept: list[int], position: int, states: list[torch.Tensor],
             inputs: dict[int, list[torch.Tensor]]) -> None:
    """Recompute the cached input states of ``kept[position:]``, starting from ``states`` entering that slot."""
    blocks = kept[position:]
    if blocks:
        inputs[blocks[0]] = states
    for previous, index in zip(blocks, blocks[1:]):
        states = runner.block(previous, states)
        inputs[index] = states


def sleb(model: PreTrainedModel, tokenizer, fingerprint: str, n_remove: int, spec: SlebSpec = SlebSpec(),
         progress: bool = True) -> list[int]:
    """SLEB's removal order for ``n_remove`` blocks, cached on disk per model fingerprint and spec.

    Orders are prefix-consistent, so a cached order for a larger budget answers a smaller one without recomputing.
    """
    _check_budget(n_remove, removable_blocks(len(model.model.layers), spec.protected))
    folder = cache_dir("sleb")
    key = spec.key(fingerprint)
    for path in sorted(folder.glob(f"{key}-n*.json")):
        cached = json.loads(path.read_text())["order"]
        if len(cached) >= n_remove:
            return cached[:n_remove]
    windows = calibration_windows(token_ids(tokenizer, spec.data), spec.count, spec.length, spec.seed)
    order = sleb_order(model, windows, n_remove, spec.protected, progress=progress, batch_size=spec.batch_size,
                       shortlist=spec.shortlist)
    record = {"fingerprint": fingerprint, "spec": asdict(spec), "order": order}
    atomic_write_text(folder / f"{key}-n{n_remove}.json", json.dumps(record))
    return order
