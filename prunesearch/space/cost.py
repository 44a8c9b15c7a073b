"""Exact cost of an architecture: parameters, forward FLOPs per token, KV-cache bytes per token.

Parameters count every weight and bias of the materialized model (tied embeddings once), so they equal
``sum(p.numel() for p in model.parameters())``. FLOPs count matrix multiplications at 2 per multiply-add
(projections, the LM head, attention scores and the weighted sum of values over an average causal context of
``(seq_len + 1) / 2`` keys); elementwise work (norms, activations, rotary, softmax) is left out.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from prunesearch.space.architecture import Architecture, LayerArch
from prunesearch.space.shape import ModelShape


def layer_params(shape: ModelShape, layer: LayerArch) -> int:
    """Parameters of one block as materialized (norms included, nothing for a removed block)."""
    if not layer.keep:
        return 0
    h = shape.hidden_size
    total = 0
    if layer.has_attention:
        q, kv = layer.q_heads, layer.kv_heads
        total += h  # input norm
        total += h * q * layer.qk_dim + h * kv * layer.qk_dim + h * kv * layer.v_dim  # q, k, v
        total += q * layer.v_dim * h  # o
        if shape.qkv_bias:
            total += q * layer.qk_dim + kv * layer.qk_dim + kv * layer.v_dim
        if shape.o_bias:
            total += h
    if layer.has_mlp:
        total += h + 3 * h * layer.mlp  # post-attention norm, gate, up, down
        if shape.mlp_bias:
            total += 2 * layer.mlp + h
    return total


def fixed_params(shape: ModelShape) -> int:
    """Parameters no architecture removes: embeddings, final norm, LM head unless tied."""
    embed = shape.vocab_size * shape.hidden_size
    return embed + shape.hidden_size + (0 if shape.tie_embeddings else embed)


def param_count(arch: Architecture) -> int:
    return fixed_params(arch.shape) + sum(layer_params(arch.shape, layer) for layer in arch.layers)


def layer_flops(shape: ModelShape, layer: LayerArch, seq_len: int) -> float:
    """Forward FLOPs per token of one block at a causal sequence of ``seq_len`` tokens."""
    if not layer.keep:
        return 0.0
    h = shape.hidden_size
    flops = 0.0
    if layer.has_attention:
        q, kv = layer.q_heads, layer.kv_heads
        flops += 2 * h * (q * layer.qk_dim + kv * layer.qk_dim + kv * layer.v_dim + q * layer.v_dim)
        flops += 2 * q * (layer.qk_dim + layer.v_dim) * (seq_len + 1) / 2
    if layer.has_mlp:
        flops += 2 * 3 * h * layer.mlp
    return flops


def flops_per_token(arch: Architecture, seq_len: int = 512) -> float:
    lm_head = 2 * arch.shape.hidden_size * arch.shape.vocab_size
    return lm_head + sum(layer_flops(arch.shape, layer, seq_len) for layer in arch.layers)


def kv_bytes_per_token(arch: Architecture, dtype_bytes: int = 2) -> int:
    """Bytes the KV cache grows by per generated token (``dtype_bytes=2`` for fp16/bf16 caches)."""
    elems = sum(layer.kv_heads * (layer.qk_dim + layer.v_dim) for layer in arch.layers if layer.has_attention)
    return elems * dtype_bytes


@dataclass(frozen=True)
class Cost:
    """The cost figures of one architecture beside the dense model's."""

    params: int
    dense_params: int
    flops: float
    dense_flops: float
    kv_bytes: int
    dense_kv_bytes: int
    seq_len: int

    @property
    def removed(self) -> float:
        """Fraction of the dense model's total parameters removed."""
        return 1 - self.params / self.dense_params

    def to_dict(self) -> dict:
        return {**asdict(self), "removed": self.removed}


def cost(arch: Architecture, seq_len: int = 512, dtype_bytes: int = 2) -> Cost:
    dense = Architecture.dense(arch.shape)
    return Cost(
        params=param_count(arch),
        dense_params=param_count(dense),
        flops=flops_per_token(arch, seq_len),
        dense_flops=flops_per_token(dense, seq_len),
        kv_bytes=kv_bytes_per_token(arch, dtype_bytes),
        dense_kv_bytes=kv_bytes_per_token(dense, dtype_bytes),
        seq_len=seq_len,
    )
