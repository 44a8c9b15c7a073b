"""Models: loading dense checkpoints offline, fingerprints, and the heterogeneous pruned model class."""

from transformers import AutoConfig, AutoModelForCausalLM

from prunesearch.models.device import describe_device, dtype_name, resolve_device, resolve_dtype
from prunesearch.models.fingerprint import fingerprint
from prunesearch.models.loading import DEFAULT_MODEL, LoadedModel, check_supported, load_config, load_model
from prunesearch.models.modeling_pruned_llama import PrunedLlamaConfig, PrunedLlamaForCausalLM

AutoConfig.register(PrunedLlamaConfig.model_type, PrunedLlamaConfig, exist_ok=True)
AutoModelForCausalLM.register(PrunedLlamaConfig, PrunedLlamaForCausalLM, exist_ok=True)
PrunedLlamaConfig.register_for_auto_class()
PrunedLlamaForCausalLM.register_for_auto_class("AutoModelForCausalLM")

__all__ = [
    "DEFAULT_MODEL",
    "LoadedModel",
    "PrunedLlamaConfig",
    "PrunedLlamaForCausalLM",
    "check_supported",
    "describe_device",
    "dtype_name",
    "fingerprint",
    "load_config",
    "load_model",
    "resolve_device",
    "resolve_dtype",
]
