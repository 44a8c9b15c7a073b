"""The dense model's dimensions: everything the space and the cost model need to know about it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from prunesearch.errors import ArchitectureError


@dataclass(frozen=True)
class ModelShape:
    """Dimensions of a dense LLaMA-family decoder (GQA: ``num_heads`` query heads in ``num_kv_heads`` groups)."""

    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    tie_embeddings: bool
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False

    @property
    def group_size(self) -> int:
        """Query heads per key/value head."""
        return self.num_heads // self.num_kv_heads

    @classmethod
    def from_config(cls, config) -> "ModelShape":
        """Read a transformers config (llama, mistral, qwen2)."""
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        attention_bias = bool(getattr(config, "attention_bias", False))
        qkv_bias = attention_bias or config.model_type == "qwen2"
        return cls(
            num_layers=config.num_hidden_layers,
            hidden_size=config.hidden_size,
            num_heads=config.num_attention_heads,
            num_kv_heads=config.num_key_value_heads,
            head_dim=head_dim,
            intermediate_size=config.intermediate_size,
            vocab_size=config.vocab_size,
            tie_embeddings=bool(getattr(config, "tie_word_embeddings", False)),
            qkv_bias=qkv_bias,
            o_bias=attention_bias,
            mlp_bias=bool(getattr(config, "mlp_bias", False)),
        )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelShape":
        if not isinstance(data, dict):
            raise ArchitectureError("'model' must be an object of model dimensions")
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ArchitectureError(f"unknown model dimension(s): {', '.join(sorted(unknown))}")
        missing = names - set(data)
        if missing:
            raise ArchitectureError(f"incomplete model dimensions: missing {', '.join(sorted(missing))}")
        for f in fields(cls):
            value = data[f.name]
            wanted = bool if f.type in (bool, "bool") else int
            if type(value) is not wanted or (wanted is int and value < 1):
                raise ArchitectureError(f"model dimension {f.name} must be a{' positive integer' if wanted is int else ' boolean'}, got {value!r}")
        return cls(**data)
