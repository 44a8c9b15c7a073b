"""A model's identity: a hash of its structure-relevant config and every weight, recorded with every result."""

from __future__ import annotations

import hashlib
import json

import torch
from transformers import PreTrainedModel

_VOLATILE_KEYS = {"transformers_version", "_name_or_path", "_model_name_or_path", "dtype", "torch_dtype", "architectures"}


def fingerprint(model: PreTrainedModel) -> str:
    """16 hex digits of SHA-256 over the config (minus volatile keys) and the weights' names, shapes and bytes (as
    fp32), and their precisions where any is not fp32: the same checkpoint loaded in bf16 computes other numbers,
    so it is another model to every cache, campaign and predictor."""
    digest = hashlib.sha256()
    config = {k: v for k, v in model.config.to_dict().items() if k not in _VOLATILE_KEYS}
    digest.update(json.dumps(config, sort_keys=True, default=str).encode())
    state = model.state_dict()
    precisions = sorted({str(t.dtype) for t in state.values() if t.is_floating_point()} - {str(torch.float32)})
    if precisions:
        digest.update(json.dumps(precisions).encode())
    for name, tensor in sorted(state.items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().to(device="cpu", dtype=torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]
