"""One streaming pass of the dense model over calibration windows, collecting the statistics scores need.

Hooks reduce every activation to per-unit sums as it is produced, so memory does not grow with the number of
calibration tokens. Results are cached on disk keyed by model fingerprint and calibration spec.
"""

from __future__ import annotations

import io
import json
import hashlib
from dataclasses import asdict, dataclass

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel

from prunesearch.data import calibration_windows, token_ids
from prunesearch.paths import atomic_write_bytes, cache_dir
from prunesearch.space.shape import ModelShape


@dataclass(frozen=True)
class CalibrationSpec:
    """Which text calibrates: ``count`` windows of ``length`` tokens drawn with ``seed`` from ``data``."""

    data: str = "ptb-train"
    count: int = 32
    length: int = 256
    seed: int = 0
    batch_size: int = 8

    def key(self, fingerprint: str) -> str:
        spec = {k: v for k, v in asdict(self).items() if k != "batch_size"}
        return hashlib.sha256(json.dumps([fingerprint, spec], sort_keys=True).encode()).hexdigest()[:16]


STAT_NAMES = ("mlp_abs", "mlp_sq", "attn_abs", "attn_sq", "head_out", "q_pair_sq", "k_pair_sq", "block_cos")


@dataclass
class CalibrationStats:
    """Per-layer sums over ``tokens`` calibration tokens (divide by ``tokens`` for means).

    - ``mlp_abs``/``mlp_sq`` [L, I]: |a| and a^2 of the MLP activation a = act(gate x) * up x (down_proj input).
    - ``attn_abs``/``attn_sq`` [L, H*D]: |z| and z^2 of each head's attention output dims (o_proj input).
    - ``head_out`` [L, H]: ||W_o[:, h] z_h||, each query head's contribution to the residual stream.
    - ``q_pair_sq`` [L, H, D/2] / ``k_pair_sq`` [L, KV, D/2]: squared norm of each rotary pair of queries/keys
      (rotation leaves a pair's norm unchanged, so pre-rotary values serve).
    - ``block_cos`` [L]: cosine similarity of each block's input and output hidden state.
    """

    tokens: int
    mlp_abs: torch.Tensor
    mlp_sq: torch.Tensor
    attn_abs: torch.Tensor
    attn_sq: torch.Tensor
    head_out: torch.Tensor
    q_pair_sq: torch.Tensor
    k_pair_sq: torch.Tensor
    block_cos: torch.Tensor

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        torch.save({"tokens": self.tokens, **{k: getattr(self, k) for k in STAT_NAMES}}, buffer)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "CalibrationStats":
        return cls(**torch.load(io.BytesIO(data), weights_only=True))


def _pair_sq(x: torch.Tensor, heads: int, head_dim: int) -> torch.Tensor:
    """Sum over tokens of each rotary pair's squared norm: [heads, head_dim/2]."""
    x = x.reshape(-1, heads, 2, head_dim // 2).float()
    return x.pow(2).sum(dim=(0, 2))


@torch.no_grad()
def collect(model: PreTrainedModel, windows: torch.Tensor, batch_size: int = 8, progress: bool = True) -> CalibrationStats:
    """Run ``model`` over ``windows`` [n, length] once and reduce every statistic on the fly."""
    s = ModelShape.from_config(model.config)
    L, H, KV, D = s.num_layers, s.num_heads, s.num_kv_heads, s.head_dim
    stats = {
        "mlp_abs": torch.zeros(L, s.intermediate_size), "mlp_sq": torch.zeros(L, s.intermediate_size),
        "attn_abs": torch.zeros(L, H * D), "attn_sq": torch.zeros(L, H * D), "head_out": torch.zeros(L, H),
        "q_pair_sq": torch.zeros(L, H, D // 2), "k_pair_sq": torch.zeros(L, KV, D // 2), "block_cos": torch.zeros(L),
    }
    handles = []

    def add(name: str, i: int, value: torch.Tensor) -> None:
        stats[name][i] += value.cpu()

    for i, block in enumerate(model.model.layers):
        w_o = block.self_attn.o_proj.weight.float().view(s.hidden_size, H, D)

        def down_in(_m, args, i=i):
            a = args[0].reshape(-1, s.intermediate_size).float()
            add("mlp_abs", i, a.abs().sum(0))
            add("mlp_sq", i, a.pow(2).sum(0))

        def o_in(_m, args, i=i, w_o=w_o):
            z = args[0].reshape(-1, H * D).float()
            add("attn_abs", i, z.abs().sum(0))
            add("attn_sq", i, z.pow(2).sum(0))
            contrib = torch.einsum("nhd,ohd->nho", z.view(-1, H, D), w_o)
            add("head_out", i, contrib.norm(dim=-1).sum(0))

        def q_out(_m, _args, out, i=i):
            add("q_pair_sq", i, _pair_sq(out, H, D))

        def k_out(_m, _args, out, i=i):
            add("k_pair_sq", i, _pair_sq(out, KV, D))

        def block_io(_m, args, kwargs, out, i=i):
            x_in = (args[0] if args else kwargs["hidden_states"]).float()
            x_out = (out[0] if isinstance(out, tuple) else out).float()
            add("block_cos", i, torch.nn.functional.cosine_similarity(x_in, x_out, dim=-1).sum())

        handles += [
            block.mlp.down_proj.register_forward_pre_hook(down_in),
            block.self_attn.o_proj.register_forward_pre_hook(o_in),
            block.self_attn.q_proj.register_forward_hook(q_out),
            block.self_attn.k_proj.register_forward_hook(k_out),
            block.register_forward_hook(block_io, with_kwargs=True),
        ]
    try:
        for start in tqdm(range(0, len(windows), batch_size), desc="calibration", disable=not progress, leave=False):
            batch = windows[start:start + batch_size].to(model.device)
            model(input_ids=batch, use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
    return CalibrationStats(tokens=int(windows.numel()), **stats)


def calibrate(model: PreTrainedModel, tokenizer, fingerprint: str, spec: CalibrationSpec = CalibrationSpec(),
              progress: bool = True) -> CalibrationStats:
    """Calibration statistics of ``model`` for ``spec``, from the disk cache when present."""
    path = cache_dir("calibration") / f"{spec.key(fingerprint)}.pt"
    if path.exists():
        return CalibrationStats.from_bytes(path.read_bytes())
    ids = token_ids(tokenizer, spec.data)
    windows = calibration_windows(ids, spec.count, spec.length, spec.seed)
    stats = collect(model, windows, spec.batch_size, progress)
    atomic_write_bytes(path, stats.to_bytes())
    return stats
