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
    boundary_tokens: int = 2048
    boundary_rank: int = 64
    lipschitz_tokens: int = 16

    def key(self, fingerprint: str) -> str:
        spec = {k: v for k, v in asdict(self).items() if k != "batch_size"}
        return hashlib.sha256(json.dumps([fingerprint, spec], sort_keys=True).encode()).hexdigest()[:16]


STAT_NAMES = (
    "mlp_abs", "mlp_sq", "attn_abs", "attn_sq", "head_out", "q_pair_sq", "k_pair_sq", "block_cos",
    "mlp_lipschitz", "boundary",
)


@dataclass
class CalibrationStats:
    """Per-layer sums over ``tokens`` calibration tokens (divide by ``tokens`` for means).

    - ``mlp_abs``/``mlp_sq`` [L, I]: |a| and a^2 of the MLP activation a = act(gate x) * up x (down_proj input).
    - ``attn_abs``/``attn_sq`` [L, H*D]: |z| and z^2 of each head's attention output dims (o_proj input).
    - ``head_out`` [L, H]: ||W_o[:, h] z_h||, each query head's contribution to the residual stream.
    - ``q_pair_sq`` [L, H, D/2] / ``k_pair_sq`` [L, KV, D/2]: squared norm of each rotary pair of queries/keys
      (rotation leaves a pair's norm unchanged, so pre-rotary values serve).
    - ``block_cos`` [L]: cosine similarity of each block's input and output hidden state.
    - ``mlp_lipschitz`` [L]: mean over sampled tokens and heads of ||MLP(n(H)) - MLP(n(H - c_h))|| / ||c_h||,
      how strongly the MLP sublayer amplifies a head's removal (c_h) on its way to the block output: the
      empirical Lipschitz constant LLM-BIP's head bound needs.
    - ``boundary`` [L+1, n, r]: hidden states at the block boundaries (i: input of block i, L: output of the
      last block) for the same ``n`` sampled tokens, each boundary reduced to ``r`` dims by its own PCA (MI-PRUN).
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
    mlp_lipschitz: torch.Tensor
    boundary: torch.Tensor

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


def _pca(states: torch.Tensor, rank: int) -> torch.Tensor:
    """Project centred [n, h] states on their top ``rank`` principal directions."""
    centred = states - states.mean(0, keepdim=True)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    return centred @ v[:rank].T


def _rms_norm(norm: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The block's RMSNorm applied by hand (calling the module would re-enter its hooks)."""
    return norm.weight.float() * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon)


@torch.no_grad()
def collect(model: PreTrainedModel, windows: torch.Tensor, batch_size: int = 8, progress: bool = True,
            boundary_tokens: int = 2048, boundary_rank: int = 64, lipschitz_tokens: int = 16) -> CalibrationStats:
    """Run ``model`` over ``windows`` [n, length] once and reduce every statistic on the fly.

    ``boundary_tokens`` evenly spaced calibration tokens keep their boundary hidden states (PCA-reduced to
    ``boundary_rank`` dims at the end); ``lipschitz_tokens`` per batch probe each MLP's Lipschitz constant.
    """
    s = ModelShape.from_config(model.config)
    L, H, KV, D = s.num_layers, s.num_heads, s.num_kv_heads, s.head_dim
    stats = {
        "mlp_abs": torch.zeros(L, s.intermediate_size), "mlp_sq": torch.zeros(L, s.intermediate_size),
        "attn_abs": torch.zeros(L, H * D), "attn_sq": torch.zeros(L, H * D), "head_out": torch.zeros(L, H),
        "q_pair_sq": torch.zeros(L, H, D // 2), "k_pair_sq": torch.zeros(L, KV, D // 2), "block_cos": torch.zeros(L),
        "mlp_lipschitz": torch.zeros(L),
    }
    per_batch = windows.shape[1] * min(batch_size, len(windows))
    stride = max(1, windows.numel() // boundary_tokens)
    lip_stride = max(1, per_batch // lipschitz_tokens)
    boundary: list[list[torch.Tensor]] = [[] for _ in range(L + 1)]
    probes: dict[int, torch.Tensor] = {}
    lip_count = [0] * L
    probing = [False]
    handles = []

    def add(name: str, i: int, value: torch.Tensor) -> None:
        stats[name][i] += value.cpu()

    for i, block in enumerate(model.model.layers):
        w_o = block.self_attn.o_proj.weight.float().view(s.hidden_size, H, D)

        def down_in(_m, args, i=i):
            if probing[0]:
                return
            a = args[0].reshape(-1, s.intermediate_size).float()
            add("mlp_abs", i, a.abs().sum(0))
            add("mlp_sq", i, a.pow(2).sum(0))

        def o_in(_m, args, i=i, w_o=w_o):
            z = args[0].reshape(-1, H * D).float()
            add("attn_abs", i, z.abs().sum(0))
            add("attn_sq", i, z.pow(2).sum(0))
            contrib = torch.einsum("nhd,ohd->nho", z.view(-1, H, D), w_o)
            add("head_out", i, contrib.norm(dim=-1).sum(0))
            probes[i] = contrib[::lip_stride]

        def mlp_probe(_m, args, i=i, block=block):
            h = args[0].reshape(-1, s.hidden_size)[::lip_stride].float()
            c = probes.pop(i)
            probing[0] = True
            base = block.mlp(_rms_norm(block.post_attention_layernorm, h).to(args[0].dtype)).float()
            shifted = _rms_norm(block.post_attention_layernorm, h[:, None] - c).to(args[0].dtype)
            moved = (block.mlp(shifted).float() - base[:, None]).norm(dim=-1)
            probing[0] = False
            ratio = moved / c.norm(dim=-1).clamp_min(1e-12)
            add("mlp_lipschitz", i, ratio.sum())
            lip_count[i] += ratio.numel()

        def q_out(_m, _args, out, i=i):
            add("q_pair_sq", i, _pair_sq(out, H, D))

        def k_out(_m, _args, out, i=i):
            add("k_pair_sq", i, _pair_sq(out, KV, D))

        def block_io(_m, args, kwargs, out, i=i):
            x_in = (args[0] if args else kwargs["hidden_states"]).float()
            x_out = (out[0] if isinstance(out, tuple) else out).float()
            add("block_cos", i, torch.nn.functional.cosine_similarity(x_in, x_out, dim=-1).sum())
            if i == 0:
                boundary[0].append(x_in.reshape(-1, s.hidden_size)[::stride].cpu())
            boundary[i + 1].append(x_out.reshape(-1, s.hidden_size)[::stride].cpu())

        handles += [
            block.mlp.down_proj.register_forward_pre_hook(down_in),
            block.self_attn.o_proj.register_forward_pre_hook(o_in),
            block.post_attention_layernorm.register_forward_pre_hook(mlp_probe),
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
    stats["mlp_lipschitz"] /= torch.tensor(lip_count).clamp_min(1)
    reduced = torch.stack([_pca(torch.cat(states), boundary_rank) for states in boundary])
    return CalibrationStats(tokens=int(windows.numel()), boundary=reduced, **stats)


def calibrate(model: PreTrainedModel, tokenizer, fingerprint: str, spec: CalibrationSpec = CalibrationSpec(),
              progress: bool = True) -> CalibrationStats:
    """Calibration statistics of ``model`` for ``spec``, from the disk cache when present."""
    path = cache_dir("calibration") / f"{spec.key(fingerprint)}.pt"
    if path.exists():
        return CalibrationStats.from_bytes(path.read_bytes())
    ids = token_ids(tokenizer, spec.data)
    windows = calibration_windows(ids, spec.count, spec.length, spec.seed)
    stats = collect(model, windows, spec.batch_size, progress, spec.boundary_tokens, spec.boundary_rank,
                    spec.lipschitz_tokens)
    atomic_write_bytes(path, stats.to_bytes())
    return stats
