"""Turn an architecture with unit indices into a physically smaller model (real, smaller ``nn.Linear``s)."""

from __future__ import annotations

import torch
from accelerate import init_empty_weights
from torch import nn
from transformers import PreTrainedModel

from prunesearch.errors import ArchitectureError
from prunesearch.models.modeling_pruned_llama import PrunedLlamaConfig, PrunedLlamaForCausalLM
from prunesearch.pruners.refit import Refit
from prunesearch.space.architecture import Architecture, LayerArch
from prunesearch.space.shape import ModelShape

_COPIED_CONFIG_KEYS = (
    "vocab_size", "hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads", "hidden_act",
    "max_position_embeddings", "rms_norm_eps", "rope_parameters", "tie_word_embeddings", "bos_token_id",
    "eos_token_id", "pad_token_id", "initializer_range",
)


def unit_rows(shape: ModelShape, layer: LayerArch) -> dict[str, torch.Tensor]:
    """Indices into the dense projections that ``layer`` keeps, in the pruned model's layout.

    Query rows are ordered group-major, then query head, then dims; query/key dims list the kept rotary pairs'
    first halves, then their second halves, so ``rotate_half`` still pairs them.
    """
    d, half, gs = shape.head_dim, shape.head_dim // 2, shape.group_size
    q_rows, k_rows, v_rows, o_cols = [], [], [], []
    for g, group in enumerate(layer.kv_idx):
        pairs = list(layer.qk_idx[g])
        dims = pairs + [f + half for f in pairs]
        k_rows += [group * d + x for x in dims]
        v_rows += [group * d + x for x in layer.v_idx[g]]
        for q in layer.q_idx[g]:
            head = group * gs + q
            q_rows += [head * d + x for x in dims]
            o_cols += [head * d + x for x in layer.v_idx[g]]
    as_long = lambda xs: torch.tensor(xs, dtype=torch.long)  # noqa: E731
    return {"q": as_long(q_rows), "k": as_long(k_rows), "v": as_long(v_rows), "o": as_long(o_cols),
            "mlp": as_long(list(layer.mlp_idx))}


def pruned_config(dense_config, arch: Architecture) -> PrunedLlamaConfig:
    """The pruned model's config: the dense config's common keys plus per-layer sizes of the kept layers."""
    shape = arch.shape
    kept = [(i, layer) for i, layer in enumerate(arch.layers) if layer.keep]
    full_pairs = tuple(range(shape.head_dim // 2))

    def rope_pairs(layer: LayerArch):
        if not layer.has_attention or all(p == full_pairs for p in layer.qk_idx):
            return None
        return [list(p) for p in layer.qk_idx]

    source = dense_config.to_dict()
    window = source.get("sliding_window") if dense_config.model_type == "mistral" else None
    return PrunedLlamaConfig(
        **{k: source[k] for k in _COPIED_CONFIG_KEYS if k in source},
        head_dim=shape.head_dim,
        num_hidden_layers=len(kept),
        layer_kv_heads=[layer.kv_heads for _, layer in kept],
        layer_q_per_kv=[layer.q_per_kv for _, layer in kept],
        layer_qk_dims=[layer.qk_dim for _, layer in kept],
        layer_v_dims=[layer.v_dim for _, layer in kept],
        layer_intermediate=[layer.mlp for _, layer in kept],
        layer_rope_pairs=[rope_pairs(layer) for _, layer in kept],
        source_layers=[i for i, _ in kept],
        qkv_bias=shape.qkv_bias,
        o_bias=shape.o_bias,
        mlp_bias=shape.mlp_bias,
        attn_sliding_window=window,
        source_model_type=dense_config.model_type,
    )


def _param(tensor: torch.Tensor) -> nn.Parameter:
    return nn.Parameter(tensor.detach().clone())


def _copy(dst: nn.Module, src: nn.Module, rows: torch.Tensor | None = None, cols: torch.Tensor | None = None) -> None:
    """Give ``dst`` (built on the meta device) the kept slice of ``src``'s weight and bias."""
    weight = src.weight
    if rows is not None:
        weight = weight[rows]
    if cols is not None:
        weight = weight[:, cols]
    dst.weight = _param(weight)
    if getattr(dst, "bias", None) is not None:
        dst.bias = _param(src.bias[rows] if rows is not None else src.bias)


def _refit(dst: nn.Linear, src: nn.Linear, refit: Refit | None, part: str, layer: int, cols: torch.Tensor) -> None:
    """With a ``refit``, replace the kept columns ``dst`` was given by their least-squares refit (see ``Refit``)."""
    if refit is not None and len(cols) < src.in_features:
        dst.weight = _param(refit.projection(src.weight, part, layer, cols))


@torch.no_grad()
def materialize(dense: PreTrainedModel, arch: Architecture, refit: Refit | None = None) -> PrunedLlamaForCausalLM:
    """Build the pruned model from the dense one; ``arch`` must say which units it keeps (see ``select_units``).
    With ``refit``, each output projection that lost input columns is refitted to the dense layer's output."""
    shape = ModelShape.from_config(dense.config)
    if arch.shape != shape:
        raise ArchitectureError("the architecture was made for a model of another shape than this one")
    if not arch.has_indices:
        raise ArchitectureError("the architecture lacks unit indices: select units from importance scores first")
    config = pruned_config(dense.config, arch)
    with init_empty_weights(include_buffers=False):
        model = PrunedLlamaForCausalLM(config)
    _copy(model.model.embed_tokens, dense.model.embed_tokens)
    _copy(model.model.norm, dense.model.norm)
    if config.tie_word_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
    else:
        _copy(model.lm_head, dense.lm_head)
    pruned_layers = iter(model.model.layers)
    for i, layer in enumerate(arch.layers):
        if not layer.keep:
            continue
        src, dst = dense.model.layers[i], next(pruned_layers)
        rows = unit_rows(shape, layer)
        if layer.has_attention:
            _copy(dst.input_layernorm, src.input_layernorm)
            _copy(dst.self_attn.q_proj, src.self_attn.q_proj, rows=rows["q"])
            _copy(dst.self_attn.k_proj, src.self_attn.k_proj, rows=rows["k"])
            _copy(dst.self_attn.v_proj, src.self_attn.v_proj, rows=rows["v"])
            _copy(dst.self_attn.o_proj, src.self_attn.o_proj, cols=rows["o"])
            _refit(dst.self_attn.o_proj, src.self_attn.o_proj, refit, "attn", i, rows["o"])
        if layer.has_mlp:
            _copy(dst.post_attention_layernorm, src.post_attention_layernorm)
            _copy(dst.mlp.gate_proj, src.mlp.gate_proj, rows=rows["mlp"])
            _copy(dst.mlp.up_proj, src.mlp.up_proj, rows=rows["mlp"])
            _copy(dst.mlp.down_proj, src.mlp.down_proj, cols=rows["mlp"])
            _refit(dst.mlp.down_proj, src.mlp.down_proj, refit, "mlp", i, rows["mlp"])
    model.to(dense.device)
    model.generation_config = dense.generation_config
    return model.eval()
