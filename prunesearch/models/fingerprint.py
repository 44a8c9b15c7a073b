"""A model's identity: a hash of its structure-relevant config and every weight, recorded with every result."""

from __future__ import annotations

import hashlib
import json

import torch
from transformers import PreTrainedModel

_VOLATILE_KEYS = {"transformers_version", "_name_or_path", "_model_name_or_path", "dtype", "torch_dtype", "architectures"}


def fingerprint(model: PreTrainedModel) -> str:
    """16 hex digits of SHA-256 over the config (minus volatile keys) and the weights' names, shapes and bytes."""
    digest = hashlib.sha256()
    config = {k: v for k, v in model.config.to_dict().items() if k not in _VOLATILE_KEYS}
    digest.update(json.dumps(config, sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().to(device="cpu", dtype=torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]
