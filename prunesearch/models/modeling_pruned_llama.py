"""A LLaMA-family decoder with heterogeneous per-layer sizes: the physical form of a pruned architecture.

Every layer has its own number of key/value groups, query heads per group, query/key dims (kept rotary pairs,
possibly different per group), value/output dims and MLP channels; a layer may lack attention or MLP, and
removed blocks are simply absent. LLaMA's config cannot express this, so this module brings its own config
and model classes. It imports only torch and transformers, so ``save_pretrained`` can ship it beside the
weights and the directory loads with ``trust_remote_code=True`` even where prunesearch is not installed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from huggingface_hub.dataclasses import strict
from torch import nn
from transformers import GenerationMixin, LlamaConfig, PreTrainedModel
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache, DynamicCache
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast
from transformers.models.llama.modeling_llama import LlamaRMSNorm, LlamaRotaryEmbedding, rotate_half

CACHE_FIELD = "cache" if "cache" in BaseModelOutputWithPast.__dataclass_fields__ else "past_key_values"
"""The outputs' name for the KV cache: ``cache`` from transformers 5.24 on (the old name then warns), before it
``past_key_values``."""


@strict
class PrunedLlamaConfig(LlamaConfig):
    """LLaMA config plus per-layer sizes. The dense head counts and ``head_dim`` stay those of the parent model
    (they set the rotary frequencies and the attention scale); the ``layer_*`` lists describe what exists.

    ``layer_rope_pairs[i][g]`` lists the rotary pairs (frequency indices) kept by key/value group ``g`` of layer
    ``i``; ``None`` for a layer that keeps all of them.
    """

    model_type = "prunesearch_llama"

    layer_kv_heads: list[int] | None = None
    layer_q_per_kv: list[int] | None = None
    layer_qk_dims: list[int] | None = None
    layer_v_dims: list[int] | None = None
    layer_intermediate: list[int] | None = None
    layer_rope_pairs: list | None = None
    source_layers: list[int] | None = None
    qkv_bias: bool = False
    o_bias: bool = False
    attn_sliding_window: int | None = None
    source_model_type: str = "llama"

    def __post_init__(self, **kwargs):
        if self.layer_kv_heads is None:
            n = self.num_hidden_layers
            self.layer_kv_heads = [self.num_key_value_heads or self.num_attention_heads] * n
            self.layer_q_per_kv = [self.num_attention_heads // self.layer_kv_heads[0]] * n
            hd = self.head_dim or self.hidden_size // self.num_attention_heads
            self.layer_qk_dims = [hd] * n
            self.layer_v_dims = [hd] * n
            self.layer_intermediate = [self.intermediate_size] * n
        if self.layer_rope_pairs is None:
            self.layer_rope_pairs = [None] * len(self.layer_kv_heads)
        super().__post_init__(**kwargs)

    def validate_architecture(self):
        lists = (self.layer_kv_heads, self.layer_q_per_kv, self.layer_qk_dims, self.layer_v_dims,
                 self.layer_intermediate, self.layer_rope_pairs)
        if any(len(x) != self.num_hidden_layers for x in lists):
            raise ValueError("every layer_* list needs one entry per layer (num_hidden_layers)")


class PrunedAttention(nn.Module):
    """Grouped-query attention with per-layer head counts and per-group kept rotary pairs."""

    def __init__(self, config: PrunedLlamaConfig, layer_idx: int, cache_idx: int) -> None:
        super().__init__()
        self.cache_idx = cache_idx
        self.kv_heads = config.layer_kv_heads[layer_idx]
        self.q_per_kv = config.layer_q_per_kv[layer_idx]
        self.qk_dim = config.layer_qk_dims[layer_idx]
        self.v_dim = config.layer_v_dims[layer_idx]
        self.scaling = config.head_dim**-0.5
        self.sliding_window = config.attn_sliding_window
        h, q_heads = config.hidden_size, self.kv_heads * self.q_per_kv
        self.q_proj = nn.Linear(h, q_heads * self.qk_dim, bias=config.qkv_bias)
        self.k_proj = nn.Linear(h, self.kv_heads * self.qk_dim, bias=config.qkv_bias)
        self.v_proj = nn.Linear(h, self.kv_heads * self.v_dim, bias=config.qkv_bias)
        self.o_proj = nn.Linear(q_heads * self.v_dim, h, bias=config.o_bias)
        self.rope_pairs = config.layer_rope_pairs[layer_idx]
        self.half = config.head_dim // 2
        if self.rope_pairs is None:
            self.rope_index = None
        else:
            self.register_buffer("rope_index", self.rope_index_values(), persistent=False)

    def rope_index_values(self) -> torch.Tensor:
        """[kv_heads, qk_dim]: the full-head rotary dims each group keeps (pair firsts, then their partners)."""
        return torch.tensor([list(p) + [f + self.half for f in p] for p in self.rope_pairs], dtype=torch.long)

    def _rotate(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        return x * cos + rotate_half(x) * sin

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: torch.Tensor | None,
        cache: Cache | None,
    ) -> torch.Tensor:
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.kv_heads, self.q_per_kv, self.qk_dim).permute(0, 2, 3, 1, 4)
        k = self.k_proj(x).view(b, t, self.kv_heads, self.qk_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.kv_heads, self.v_dim).transpose(1, 2)
        if self.rope_index is None:
            cos, sin = cos[:, None], sin[:, None]
        else:
            cos, sin = cos[:, None, :, self.rope_index].transpose(2, 3), sin[:, None, :, self.rope_index].transpose(2, 3)
            cos, sin = cos.squeeze(1), sin.squeeze(1)
        k = self._rotate(k, cos, sin)
        q = self._rotate(q, cos.unsqueeze(2), sin.unsqueeze(2)).reshape(b, -1, t, self.qk_dim)
        if cache is not None:
            k, v = cache.update(k, v, self.cache_idx)
        s = k.shape[2]
        attn_mask, causal = _attention_mask(mask, t, s, self.sliding_window, x.device)
        if self.qk_dim != self.v_dim:
            # SDPA's fused CPU kernels need equal q/k and v widths (else a math path several times slower):
            # zero-pad the narrower side for the kernel; zeros add nothing to scores, padded outputs are dropped.
            width = max(self.qk_dim, self.v_dim)
            q, k, v = (F.pad(y, (0, width - y.shape[-1])) for y in (q, k, v))
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, is_causal=causal, scale=self.scaling, enable_gqa=self.q_per_kv > 1
        )[..., : self.v_dim]
        return self.o_proj(out.transpose(1, 2).reshape(b, t, -1))


def _attention_mask(
    padding: torch.Tensor | None, t: int, s: int, window: int | None, device: torch.device
) -> tuple[torch.Tensor | None, bool]:
    """Boolean mask [b, 1, t, s] (True = attend) for queries at the last ``t`` of ``s`` positions, or the
    cheap ``is_causal`` path when nothing but plain causality applies."""
    needs_window = window is not None and s > window
    if padding is None and not needs_window:
        if t == s:
            return None, True
        if t == 1:
            return None, False
    q_pos = torch.arange(s - t, s, device=device)[:, None]
    k_pos = torch.arange(s, device=device)[None, :]
    allowed = k_pos <= q_pos
    if needs_window:
        allowed = allowed & (k_pos > q_pos - window)
    allowed = allowed[None, None]
    if padding is not None:
        allowed = allowed & padding[:, None, None, -s:].bool()
    allowed = allowed | ~allowed.any(-1, keepdim=True)
    return allowed, False


class PrunedMLP(nn.Module):
    def __init__(self, config: PrunedLlamaConfig, size: int) -> None:
        super().__init__()
        h = config.hidden_size
        self.gate_proj = nn.Linear(h, size, bias=config.mlp_bias)
        self.up_proj = nn.Linear(h, size, bias=config.mlp_bias)
        self.down_proj = nn.Linear(size, h, bias=config.mlp_bias)
        self.act_fn = ACT2FN[config.hidden_act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))


class PrunedDecoderLayer(nn.Module):
    """A block whose attention or MLP may be absent (then so is its norm)."""

    def __init__(self, config: PrunedLlamaConfig, layer_idx: int, cache_idx: int) -> None:
        super().__init__()
        has_attn = config.layer_kv_heads[layer_idx] > 0
        has_mlp = config.layer_intermediate[layer_idx] > 0
        eps = config.rms_norm_eps
        self.input_layernorm = LlamaRMSNorm(config.hidden_size, eps=eps) if has_attn else None
        self.self_attn = PrunedAttention(config, layer_idx, cache_idx) if has_attn else None
        self.post_attention_layernorm = LlamaRMSNorm(config.hidden_size, eps=eps) if has_mlp else None
        self.mlp = PrunedMLP(config, config.layer_intermediate[layer_idx]) if has_mlp else None

    def forward(self, x, cos, sin, mask, cache):
        if self.self_attn is not None:
            x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, cache)
        if self.mlp is not None:
            x = x + self.mlp(self.post_attention_layernorm(x))
        return x


class PrunedLlamaPreTrainedModel(PreTrainedModel):
    config_class = PrunedLlamaConfig
    base_model_prefix = "model"
    _no_split_modules = ["PrunedDecoderLayer"]
    _skip_keys_device_placement = ["past_key_values"]
    _supports_sdpa = True

    def _init_weights(self, module: nn.Module) -> None:
        """Besides the usual init, refill the non-persistent rotary index that loading leaves empty."""
        super()._init_weights(module)
        if isinstance(module, PrunedAttention) and module.rope_index is not None:
            with torch.no_grad():
                module.rope_index.copy_(module.rope_index_values())


class PrunedLlamaModel(PrunedLlamaPreTrainedModel):
    def __init__(self, config: PrunedLlamaConfig) -> None:
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, config.pad_token_id)
        cache_ids, n = [], 0
        for kv in config.layer_kv_heads:
            cache_ids.append(n)
            n += kv > 0
        self.layers = nn.ModuleList(
            PrunedDecoderLayer(config, i, cache_ids[i]) for i in range(config.num_hidden_layers)
        )
        self.norm = LlamaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = LlamaRotaryEmbedding(config=config)
        self.post_init()

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        *,
        cache: Cache | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPast:
        """``cache`` is transformers' new name for ``past_key_values`` (generation passes it from 5.24 on, the old
        name before): either carries the cache, so a generation under any 5.x version reuses it."""
        past_key_values = cache if cache is not None else past_key_values
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        use_cache = self.config.use_cache if use_cache is None else use_cache
        if use_cache and past_key_values is None:
            past_key_values = DynamicCache(config=self.config)
        if position_ids is None:
            past = past_key_values.get_seq_length() if past_key_values is not None else 0
            position_ids = torch.arange(past, past + inputs_embeds.shape[1], device=inputs_embeds.device)[None]
        if attention_mask is not None and bool(attention_mask.all()):
            attention_mask = None
        x = inputs_embeds
        cos, sin = self.rotary_emb(x, position_ids)
        cache = past_key_values if use_cache else None
        for layer in self.layers:
            x = layer(x, cos, sin, attention_mask, cache)
        return BaseModelOutputWithPast(last_hidden_state=self.norm(x), **{CACHE_FIELD: cache})


class PrunedLlamaForCausalLM(PrunedLlamaPreTrainedModel, GenerationMixin):
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config: PrunedLlamaConfig) -> None:
        super().__init__(config)
        self.model = PrunedLlamaModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int = 0,
        *,
        cache: Cache | None = None,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        out = self.model(input_ids, attention_mask, position_ids, past_key_values, inputs_embeds, use_cache,
                         cache=cache)
        hidden = out.last_hidden_state
        logits = self.lm_head(hidden[:, -logits_to_keep:] if logits_to_keep else hidden)
        loss = None
        if labels is not None:
            loss = self.loss_function(logits=logits, labels=labels, vocab_size=self.config.vocab_size, **kwargs)
        return CausalLMOutputWithPast(loss=loss, logits=logits, **{CACHE_FIELD: getattr(out, CACHE_FIELD)})
